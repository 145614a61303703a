"""Connecting an Exact Online connection from admin: Exact's consent round trip, the job that
exchanges the code and reads the divisions, choosing the division and the bank journal, and the
buttons on the connection's page (sync now, subscribe webhooks).

The callback of the consent is a GET, which runs inside a read transaction
(portal.middleware.TenantScopeMiddleware), and no call may leave the process inside a
transaction (portal.txguard): so the callback only checks `state` and keeps the code (encrypted,
for minutes), and the job "exact.connect" does the calls.
"""
from __future__ import annotations

import datetime

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations import oauth
from integrations.exact.models import ExactConnection
from portal import jobs
from portal.formatting import format_moment
from portal.models import Job

CONNECT_JOB = "exact.connect"
SYNC_JOB = "exact.sync"  # integrations.exact.tasks
# Exact's authorisation code is meant to be exchanged at once; one kept longer is not tried.
CODE_LIFETIME = datetime.timedelta(minutes=10)
# Journals portal payments can be booked on: 12 bank, 16 payment service (Adyen, PayPal, Stripe, Mollie).
# https://start.exactonline.nl/docs/HlpRestAPIResourcesDetails.aspx?name=FinancialJournals
BOOKABLE_JOURNAL_TYPES = (12, 16)


ConsentRefused = oauth.ConsentRefused


def redirect_uri() -> str:
    """The one redirect URI of the app in Exact's App Center: the back office's callback on
    SITE_URL (the same in the web server and in the worker that exchanges the code)."""
    return settings.SITE_URL + reverse("admin:integrations_exactconnection_callback")


def webhook_url(exact: ExactConnection) -> str:
    """Where Exact posts its webhooks for this connection (the one intake, source "exact")."""
    return settings.SITE_URL + reverse("integrations:exact_webhook", args=[exact.connection.slug])


def consent_start(exact: ExactConnection) -> str:
    """A fresh `state` for this round trip, stored; returns Exact's consent page to send staff to."""
    from integrations.exact import tokens

    state = oauth.consent_start(exact)
    return tokens.authorise_url(exact, redirect_uri=redirect_uri(), state=state)


def consent_receive(*, state: str, code: str, error: str = "") -> ExactConnection:
    """The callback (integrations.oauth.consent_receive): the code kept, the connect job written."""
    return oauth.consent_receive(ExactConnection, state=state, code=code, error=error, system="Exact",
                                 job_kind=CONNECT_JOB)


def connect_job(exact: ExactConnection) -> Job | None:
    """The latest connect job of this connection (its progress is what the waiting page shows)."""
    return Job.objects.filter(kind=CONNECT_JOB, subject=f"{CONNECT_JOB}:{exact.pk}").order_by("-created_at", "-pk").first()


# Fast queue, not with the syncs: a few calls while the user watches the waiting page, and the
# consent's code expires if it waits behind a backlog of syncs.
@jobs.handler(CONNECT_JOB, max_attempts=6, backoff_seconds=5, lease_seconds=120, queue=jobs.FAST)
def exact_connect(job: Job) -> str:
    """Exchange the code for tokens (tokens.exchange_code commits them), then read the divisions
    the user can reach. A code Exact refused is not kept; one it failed on (5xx, no answer) is
    tried again. Over Exact's budget (the division's calls a minute, the day's token calls), the
    job waits until it is back."""
    from integrations.exact.client import EndpointBlocked, RateLimited

    try:
        return _connect(job)
    except (RateLimited, EndpointBlocked) as exc:
        raise jobs.Retry(str(exc), until=exc.until) from None


def _connect(job: Job) -> str:
    from integrations.exact import tokens
    from integrations.exact.client import ExactClient, ExactRefused, RateLimited

    with transaction.atomic():
        exact = ExactConnection.objects.select_related("connection").get(pk=job.payload["app"])
    code = exact.oauth_code
    if code:
        if exact.oauth_code_at is None or timezone.now() - exact.oauth_code_at > CODE_LIFETIME:
            _forget_code(exact)
            raise jobs.Permanent(_("The code from Exact's consent has expired. Press Connect again."))
        try:
            tokens.exchange_code(exact, code=code, redirect_uri=redirect_uri())
        except ExactRefused as refused:
            _forget_code(exact)
            raise jobs.Permanent(_("Exact refused the code: %(message)s. Press Connect again.")
                                 % {"message": refused.message or refused.status}) from refused
        except RateLimited as limited:
            # The code lives minutes; Exact's token calls come back tomorrow: waiting cannot help.
            _forget_code(exact)
            raise jobs.Permanent(_("Exact allows no more token requests today (%(message)s). Press Connect "
                                   "again after %(when)s.") % {"message": limited,
                                                               "when": format_moment(limited.until)}) from None
        _forget_code(exact)
        exact.refresh_from_db()
    elif not exact.refresh_token:
        raise jobs.Permanent(_("No code from Exact to exchange. Press Connect again."))
    divisions = [_division(row) for row in ExactClient(exact).divisions()]
    with transaction.atomic():
        exact = ExactConnection.objects.select_for_update().get(pk=exact.pk)
        exact.divisions = sorted(divisions, key=lambda d: (d["name"].lower(), d["code"]))
        if exact.state != ExactConnection.State.CONNECTED:
            exact.state, exact.state_reason, exact.state_changed_at = ExactConnection.State.CONNECTED, "", timezone.now()
        exact.save(update_fields=["divisions", "state", "state_reason", "state_changed_at"])
    resumed = 0
    if exact.division is not None:
        # Connected again after "needs re-authorisation": what stopped for it starts again.
        from integrations.exact.tasks import exact_resume

        with transaction.atomic():
            resumed = exact_resume(exact=exact)
    return f"connected; {len(divisions)} divisions; {resumed} jobs resumed"


def _forget_code(exact: ExactConnection) -> None:
    with transaction.atomic():
        ExactConnection.objects.filter(pk=exact.pk).update(oauth_code="", oauth_code_at=None)


def _division(row: dict) -> dict:
    """system/Divisions' row as the model keeps it: {"code": 123, "name": "..."}."""
    code = row.get("Code", row.get("code"))
    name = row.get("Description") or row.get("name") or str(code)
    return {"code": int(code), "name": str(name)}


def exact_division_choose(*, exact: ExactConnection, division: int) -> list[dict]:
    """Store the chosen division (one the user can reach), then read its bank and payment-service
    journals with the client (a call outside: the caller holds no transaction) and store them.
    A division that changes forgets the journal chosen for the old one."""
    from integrations.exact.client import ExactClient

    if division not in {d["code"] for d in exact.divisions}:
        raise ValueError(_("Choose one of the divisions the connected user can reach."))
    with transaction.atomic():
        changed = exact.division != division
        exact.division = division
        if changed:
            exact.journal, exact.journals = "", []
        exact.save(update_fields=["division", "journal", "journals"])
    # A division has a handful of journals: all are read and filtered here (one call, no OData `or`).
    rows = ExactClient(exact).get_all("financial/Journals", select=["Code", "Description", "Type"])
    journals = sorted(({"code": str(row["Code"]).strip(), "name": row.get("Description") or "", "type": int(row["Type"])}
                       for row in rows if int(row.get("Type") or 0) in BOOKABLE_JOURNAL_TYPES),
                      key=lambda j: j["code"])
    with transaction.atomic():
        ExactConnection.objects.filter(pk=exact.pk).update(journals=journals)
    exact.journals = journals
    return journals


def exact_journal_choose(*, exact: ExactConnection, journal: str) -> None:
    if journal not in {j["code"] for j in exact.journals}:
        raise ValueError(_("Choose one of the division's bank or payment-service journals."))
    with transaction.atomic():
        ExactConnection.objects.filter(pk=exact.pk).update(journal=journal)
    exact.journal = journal


def exact_sync_now(*, exact: ExactConnection) -> int:
    """A sync of every entity from its cursor ("exact.sync", written by the sync's own
    sync_all_enqueue: none for an entity whose sync is already waiting). Returns how many were written."""
    from integrations.exact.tasks import sync_all_enqueue

    return sync_all_enqueue(exact=exact)


def exact_webhooks_subscribe(*, exact: ExactConnection) -> object:
    """Subscribe Exact's topics to this connection's webhook URL (calls Exact: no transaction)."""
    from integrations.exact.webhooks import subscribe_webhooks

    return subscribe_webhooks(exact, webhook_url(exact))
