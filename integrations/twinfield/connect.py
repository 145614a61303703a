"""Connecting a Twinfield connection from admin: Wolters Kluwer's consent round trip (with the
nonce OpenID Connect asks for), the job that exchanges the code, discovers the cluster and lists
the offices, choosing the office and its bank daybook.

The consent's callback is a GET, which runs inside a read transaction
(portal.middleware.TenantScopeMiddleware), and no call may leave the process inside a
transaction: so the callback only checks `state` and keeps the code (integrations.oauth), and the
job "twinfield.connect" does the calls.
"""
from __future__ import annotations

import datetime
import secrets

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations import oauth
from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor
from portal import jobs
from portal.models import Job

CONNECT_JOB = "twinfield.connect"
CODE_LIFETIME = datetime.timedelta(minutes=5)  # a code is meant to be exchanged at once
ConsentRefused = oauth.ConsentRefused


def redirect_uri() -> str:
    """The one redirect URI registered for the client at Wolters Kluwer: the back office's callback."""
    return settings.SITE_URL + reverse("admin:integrations_twinfieldconnection_callback")


def consent_start(twinfield: TwinfieldConnection) -> str:
    """A fresh `state` and `nonce`, stored; returns Wolters Kluwer's consent page to send staff to."""
    from integrations.twinfield import tokens

    nonce = secrets.token_urlsafe(24)
    state = oauth.consent_start(twinfield, oauth_nonce=nonce)
    return tokens.authorise_url(twinfield, redirect_uri=redirect_uri(), state=state, nonce=nonce)


def consent_receive(*, state: str, code: str, error: str = "") -> TwinfieldConnection:
    return oauth.consent_receive(TwinfieldConnection, state=state, code=code, error=error, system="Twinfield",
                                 job_kind=CONNECT_JOB)


def connect_job(twinfield: TwinfieldConnection) -> Job | None:
    """The latest connect job of this connection (its progress is what the waiting page shows)."""
    return Job.objects.filter(kind=CONNECT_JOB, subject=f"{CONNECT_JOB}:{twinfield.pk}").order_by(
        "-created_at", "-pk").first()


# Fast queue, not with the syncs: a few calls while the user watches the waiting page, and the
# consent's code expires if it waits behind a backlog of syncs.
@jobs.handler(CONNECT_JOB, max_attempts=6, backoff_seconds=5, lease_seconds=120, queue=jobs.FAST)
def twinfield_connect(job: Job) -> str:
    """Exchange the code for tokens (and learn the cluster), then list the offices the user can
    reach. A code Twinfield refused is not kept; one it failed on (5xx, no answer) is tried again;
    over the credits, the job waits for Twinfield's minute."""
    from integrations.twinfield.client import Throttled

    try:
        return _connect(job)
    except Throttled as exc:
        raise jobs.Retry(str(exc), until=exc.until) from None


def _connect(job: Job) -> str:
    from integrations.twinfield import tokens
    from integrations.twinfield.client import TwinfieldClient

    with transaction.atomic():
        twinfield = TwinfieldConnection.objects.select_related("connection").get(pk=job.payload["app"])
    code = twinfield.oauth_code
    if code:
        if twinfield.oauth_code_at is None or timezone.now() - twinfield.oauth_code_at > CODE_LIFETIME:
            _forget_code(twinfield)
            raise jobs.Permanent(_("The code from Twinfield's consent has expired. Press Connect again."))
        try:
            tokens.exchange_code(twinfield, code=code, redirect_uri=redirect_uri())
        except tokens.TwinfieldRefused as refused:
            _forget_code(twinfield)
            raise jobs.Permanent(_("Twinfield refused the code: %(message)s. Press Connect again.")
                                 % {"message": refused.message or refused.status}) from refused
        _forget_code(twinfield)
        oauth.reload(twinfield)
    elif not twinfield.refresh_token:
        raise jobs.Permanent(_("No code from Twinfield to exchange. Press Connect again."))
    found = TwinfieldClient(twinfield, office="").search("OFF", max_rows=100)
    offices = sorted(({"code": row[0], "name": row[1] if len(row) > 1 else row[0]} for row in found.rows),
                     key=lambda o: (o["name"].lower(), o["code"]))
    with transaction.atomic():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(offices=offices)
    resumed = 0
    if twinfield.office:
        # Connected again after "needs re-authorisation": the polls stopped for it start again.
        from integrations.twinfield.tasks import twinfield_resume

        with transaction.atomic():
            resumed = twinfield_resume(twinfield=twinfield)
    return f"connected to {twinfield.organisation}; {len(offices)} offices; {resumed} jobs resumed"


def _forget_code(twinfield: TwinfieldConnection) -> None:
    with transaction.atomic():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(oauth_code="", oauth_code_at=None)


def twinfield_office_choose(*, twinfield: TwinfieldConnection, office: str) -> list[dict]:
    """Store the chosen office (one the user can reach), then read its bank daybooks (Finder TRS:
    a call out, the caller holds no transaction) and store them. A changed office forgets the
    daybook chosen for the old one and the poll cursors (the next poll is a first load)."""
    from integrations.twinfield.client import TwinfieldClient

    if office not in {o["code"] for o in twinfield.offices}:
        raise ValueError(_("Choose one of the offices the connected user can reach."))
    with transaction.atomic():
        changed = twinfield.office != office
        twinfield.office = office
        if changed:
            # Another administration: its customers and history are loaded from the start.
            twinfield.daybook, twinfield.daybooks = "", []
            TwinfieldCursor.objects.filter(twinfield=twinfield).delete()
        twinfield.save(update_fields=["office", "daybook", "daybooks"])
    found = TwinfieldClient(twinfield).search("TRS", options={"category": "bank"}, max_rows=100)
    daybooks = sorted(({"code": row[0], "name": row[1] if len(row) > 1 else row[0]} for row in found.rows),
                      key=lambda d: d["code"])
    with transaction.atomic():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(daybooks=daybooks)
    twinfield.daybooks = daybooks
    return daybooks


def twinfield_daybook_choose(*, twinfield: TwinfieldConnection, daybook: str) -> None:
    if daybook not in {d["code"] for d in twinfield.daybooks}:
        raise ValueError(_("Choose one of the office's bank daybooks."))
    with transaction.atomic():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(daybook=daybook)
    twinfield.daybook = daybook
