"""What the accounting systems connected by OAuth2 (Exact Online, Twinfield) share, and only that:

- the app's credentials, the tokens and the state staff see, on the system's own connection row
  (the abstract model `AuthorisedApp`; each system adds what is its own: Exact's division and
  rate budgets, Twinfield's cluster and office);
- one token refresh at a time per connection, across processes and machines (`lease`: a row
  claimed by a conditional insert and renewed while the token endpoint is called with no
  transaction open; Twinfield's one action at a time per organisation takes the same kind of
  lease);
- the day's budget of token-endpoint calls, counted before each call (`spend_token_call`);
- "needs re-authorisation": the tokens dropped, the reason kept, staff told once by email
  (`mark_reauthorise`), after which the system's jobs stop with STOPPED until staff connect again.

How each system's tokens behave (lifetimes, rotation, what a refused refresh looks like) stays in
its own tokens module.
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
import uuid
from contextlib import contextmanager

from django.db import DatabaseError, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.crypto import EncryptedTextField
from portal.rls import staff_scope

log = logging.getLogger(__name__)
LOCK_WAIT = 60.0  # seconds: longest wait for another worker's refresh (every token call's timeout is shorter)
LEASE_HOLD = 10.0  # seconds a lease lasts unless its holder renews it (a dead holder's is free after that)


class AuthorisedApp(models.Model):
    """An accounting system's app as one connection uses it: credentials, tokens, consent."""

    class State(models.TextChoices):
        NEW = "new", _("Not connected yet")
        CONNECTED = "connected", _("Connected")
        REAUTHORISE = "reauthorise", _("Needs re-authorisation")

    client_id = models.CharField(_("client ID"), max_length=100)
    client_secret = EncryptedTextField(_("client secret"))
    state = models.CharField(_("state"), max_length=12, choices=State.choices, default=State.NEW)
    state_reason = models.CharField(_("why"), max_length=300, blank=True)
    state_changed_at = models.DateTimeField(_("state since"), null=True, blank=True)
    # The new refresh token is committed before the new access token is used (each tokens module).
    access_token = EncryptedTextField(blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token = EncryptedTextField(blank=True)
    refreshed_at = models.DateTimeField(_("tokens last refreshed"), null=True, blank=True)
    token_calls_on = models.DateField(null=True, blank=True)
    token_calls = models.PositiveIntegerField(_("token calls today"), default=0)
    oauth_state = models.CharField(max_length=64, blank=True)  # the consent round trip's CSRF check
    # The authorisation code from the consent's callback, kept only until the connect job
    # exchanges it (the callback is a GET inside a read transaction: no call out there).
    oauth_code = EncryptedTextField(blank=True)
    oauth_code_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class LockTimeout(Exception):
    """Another worker has held the lock for longer than the wait allowed."""


CLAIM_SQL = """
INSERT INTO integrations_lease AS lease (key, holder, expires_at)
VALUES (%(key)s, %(holder)s, statement_timestamp() + make_interval(secs => %(hold)s))
ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE lease.expires_at <= statement_timestamp()
RETURNING holder"""
RENEW_SQL = """
UPDATE integrations_lease SET expires_at = statement_timestamp() + make_interval(secs => %(hold)s)
WHERE key = %(key)s AND holder = %(holder)s"""
RELEASE_SQL = "DELETE FROM integrations_lease WHERE key = %(key)s AND holder = %(holder)s"


@contextmanager
def lease(key: str, *, wait: float = LOCK_WAIT, hold: float | None = None,
          error: type[Exception] = LockTimeout):
    """One holder at a time for `key` ("exact-token:12": a refresh; "twinfield-org:ACME": an action
    on a Twinfield organisation), across processes and machines, with no transaction open during
    the HTTP call it guards and nothing kept in a database session (so it holds behind PgBouncer in
    transaction mode): a row claimed by a conditional insert, held for `hold` seconds and renewed
    every third of that by a thread of the holder's for as long as the block runs, always deleted
    at the end, also when the call fails. A holder that dies (a killed worker) stops renewing, and
    its lease is free again at most `hold` seconds (LEASE_HOLD) later. A wait longer than `wait` seconds raises
    `error` (the caller's own error class, so its callers handle it as any failed call)."""
    params = {"key": key, "holder": uuid.uuid4(), "hold": float(LEASE_HOLD if hold is None else hold)}
    deadline = time.monotonic() + wait
    pause = 0.01
    while not _run(CLAIM_SQL, params):
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(f"another worker has held {key.split(':')[0]} for over {wait:g} s")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(params, stop), name=f"lease {key}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        try:
            _run(RELEASE_SQL, params)
        except DatabaseError:
            log.warning("lease %s not released; it runs out in %g s", key, params["hold"], exc_info=True)


def _run(sql: str, params: dict) -> int:
    """One statement in a short transaction of its own, in the back office's scope: rows it
    returned or changed."""
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _renew(params: dict, stop: threading.Event) -> None:
    """The holder's renewals, until `stop` (on its own database connection: this thread's)."""
    try:
        while not stop.wait(params["hold"] / 3):
            try:
                if not _run(RENEW_SQL, params):
                    log.error("lease %s ran out before it was renewed: another may hold it", params["key"])
                    return
            except DatabaseError:
                log.warning("lease %s not renewed this time", params["key"], exc_info=True)
    finally:
        connection.close()


def reload(app: AuthorisedApp) -> None:
    """Read the row again (another worker may have refreshed or moved it)."""
    with staff_scope(), transaction.atomic():
        app.refresh_from_db()


def spend_token_call(app: AuthorisedApp, *, per_day: int) -> bool:
    """Count one token-endpoint call against today's `per_day` before making it; False (nothing
    counted) when they are spent. Run under the refresh lock, so no two count at once."""
    today = timezone.localdate()
    rows = type(app).objects.filter(pk=app.pk)
    with staff_scope(), transaction.atomic():
        spent = rows.filter(Q(token_calls_on=today, token_calls__lt=per_day)).update(token_calls=F("token_calls") + 1)
        if not spent:
            spent = rows.exclude(token_calls_on=today).update(token_calls_on=today, token_calls=1)
    reload(app)
    return bool(spent)


def next_midnight() -> datetime.datetime:
    """When today's token calls are counted again."""
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)
    return timezone.make_aware(datetime.datetime.combine(tomorrow, datetime.time()))


def mark_reauthorise(app: AuthorisedApp, reason: str, *, tell_staff) -> bool:
    """Move the connection to "needs re-authorisation" (the tokens are dropped: only a new consent
    helps) and, the first time, call `tell_staff(pk, reason)` once this commits. True when this
    call moved it."""
    State = AuthorisedApp.State
    with staff_scope(), transaction.atomic():
        moved = type(app).objects.filter(pk=app.pk).exclude(state=State.REAUTHORISE).update(
            state=State.REAUTHORISE, state_reason=reason[:300], state_changed_at=timezone.now(), access_token="",
            access_expires_at=None, refresh_token="")
        if moved:
            transaction.on_commit(lambda: tell_staff(app.pk, reason))
    reload(app)
    return bool(moved)


def tell_staff(model: type[AuthorisedApp], pk: int, reason: str, *, system: str, admin_url: str) -> None:
    """Email active staff that the connection needs a new consent (after commit, no transaction
    open). A failed send is logged: admin shows the state whatever happens to the email."""
    from django.contrib.auth import get_user_model
    from django.template.loader import render_to_string
    from django.urls import NoReverseMatch, reverse

    from portal.notifications import brand_email_context, branded_email, site_link

    try:
        with staff_scope(), transaction.atomic():
            app = model.objects.select_related("connection__brand").get(pk=pk)
            recipients = list(get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
                              .values_list("email", flat=True))
        if not recipients:
            return
        brand = app.connection.brand
        try:
            link = site_link(reverse(admin_url, args=[app.pk]))
        except NoReverseMatch:
            link = site_link(reverse("admin:integrations_connection_change", args=[app.connection_id]))
        context = {**brand_email_context(brand), "settings_link": "", "system": system,
                   "connection": app.connection, "reason": reason, "link": link}
        subject = render_to_string("integrations/email/reauthorise_subject.txt", context).strip()
        text = render_to_string("integrations/email/reauthorise.txt", context)
        html = render_to_string("integrations/email/reauthorise.html", context)
        branded_email(brand=brand, subject=subject, text=text, html=html, to=recipients).send()
    except Exception:
        log.exception("could not email staff that %s connection %s needs re-authorisation", system, pk)


# --- The consent round trip ------------------------------------------------------------------

class ConsentRefused(Exception):
    """The callback cannot be taken: wrong or used `state`, or the system said why not (`error`)."""


def consent_start(app: AuthorisedApp, **fields) -> str:
    """A fresh `state` for this round trip (the connection's pk and a random part), stored with
    `fields` (Twinfield's nonce); returns the state."""
    import secrets

    state = f"{app.pk}.{secrets.token_urlsafe(32)}"
    with staff_scope(), transaction.atomic():
        type(app).objects.filter(pk=app.pk).update(oauth_state=state, **fields)
    app.oauth_state = state
    for name, value in fields.items():
        setattr(app, name, value)
    return state


def consent_receive(model: type[AuthorisedApp], *, state: str, code: str, error: str, system: str,
                    job_kind: str) -> AuthorisedApp:
    """The callback: `state` must be the one this connection's Connect stored (once: it is
    cleared), then the code is kept encrypted and the `job_kind` job that exchanges it is written.
    Database only, in the caller's transaction. ConsentRefused with what to do otherwise."""
    from django.utils.crypto import constant_time_compare
    from django.utils.translation import gettext as _

    from portal import jobs

    pk, _dot, _random = (state or "").partition(".")
    with transaction.atomic():
        app = (model.objects.select_for_update().select_related("connection").filter(pk=int(pk)).first()
               if pk.isdigit() else None)
        if app is None or not app.oauth_state or not constant_time_compare(app.oauth_state, state):
            raise ConsentRefused(_("This answer from %(system)s does not belong to a Connect started here (or was "
                                   "used already). Press Connect again.") % {"system": system})
        app.oauth_state = ""
        if code and not error:
            app.oauth_code, app.oauth_code_at = code, timezone.now()
            jobs.job_enqueue(kind=job_kind, key=f"{job_kind}:{app.pk}:{state}", subject=f"{job_kind}:{app.pk}",
                             payload={"app": app.pk})
        app.save(update_fields=["oauth_state", "oauth_code", "oauth_code_at"])
    if error or not code:
        raise ConsentRefused(_("%(system)s did not give access: %(error)s")
                             % {"system": system, "error": error or _("no code")})
    return app
