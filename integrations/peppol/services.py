"""Peppol delivery's use cases. The ledger's announcements (an invoice issued, a credit note
issued) plan a delivery in the ledger's own transaction, with its job; the job (peppol.deliver)
asks discovery, checks the UBL against the official rules and submits it, each call with no
transaction open (read, call out, record); the provider's status webhooks move it on from there.
Every change of state goes through delivery_transition (PeppolDelivery.TRANSITIONS, audited)."""
from __future__ import annotations

import datetime
import logging

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from integrations.models import Connection
from integrations.peppol.client import AccessPointClient, AccessPointError, AccessPointRefused
from integrations.peppol.models import DocumentKind, PeppolConnection, PeppolDelivery, PeppolReceiver
from invoices.documents.einvoice import ubl_xml
from invoices.documents.rules import validate_ubl
from invoices.errors import InvalidTransition
from invoices.models import CreditNote, Invoice
from portal import jobs
from portal.models import AuditEvent
from portal.participants import participant
from portal.services import audit_record

log = logging.getLogger(__name__)
State = PeppolDelivery.State
Skip = PeppolDelivery.Skip
JOB_KIND = "peppol.deliver"
STATUS_JOB = "peppol.status"
POLL_JOB = "peppol.poll"
# A delivery the network has not finished with after this long is asked about (a webhook lost on
# the way, or never configured at the provider), at most once per POLL_EVERY.
POLL_AFTER = datetime.timedelta(hours=1)
POLL_EVERY = datetime.timedelta(hours=1)
POLL_LIMIT = 500
# What the provider's status events say, and the state each moves a delivery to.
EVENT_STATES = {"accepted": State.ACCEPTED, "delivered": State.DELIVERED, "failed": State.FAILED}
NO_REASON = gettext_noop("The access point reported the delivery as failed without giving a reason.")
NOT_REACHABLE = gettext_noop("Participant discovery: %(participant)s cannot receive this document over Peppol.")


# --- The state machine ------------------------------------------------------------------

def delivery_transition(*, delivery: PeppolDelivery, to: str, actor=None, request=None, reason: str = "",
                        details: dict | None = None, **fields) -> None:
    """The one way a delivery changes state: checked against PeppolDelivery.TRANSITIONS and
    audited in the caller's transaction. `fields` are stored with it (submission id, reason...)."""
    current = delivery.state
    if to not in PeppolDelivery.TRANSITIONS[current]:
        raise InvalidTransition("Peppol delivery", delivery, current, to)
    now = timezone.now()
    delivery.state, delivery.changed_at = to, now
    if reason or to == State.PENDING:
        delivery.reason = reason
    if to == State.DELIVERED:
        delivery.delivered_at = now
    for name, value in fields.items():
        setattr(delivery, name, value)
    delivery.save(update_fields=["state", "changed_at", "reason", "delivered_at", *fields])
    audit_record(action=AuditEvent.Action.PEPPOL_DELIVERY, actor=actor, request=request, client=delivery.client,
                 obj=delivery, details={"from": current, "to": to, "document": delivery.document,
                                        "number": delivery.document_number, "reason": reason[:500],
                                        **(details or {})})


# --- Planning (in the ledger's transaction) ------------------------------------------------

def exact_sends_peppol(brand) -> bool:
    """The brand's Exact Online connection delivers its documents over Peppol itself."""
    return Connection.objects.filter(brand=brand, kind=Connection.Kind.EXACT_ONLINE, enabled=True,
                                     exact__sends_peppol=True).exists()


def delivery_plan(*, document: Invoice | CreditNote) -> PeppolDelivery | None:
    """A document was issued: if its client has a Peppol identifier and its brand sends over
    Peppol (an enabled connection), write its one delivery and the job that sends it, in the
    caller's transaction. A brand whose Exact Online sends over Peppol gets the delivery recorded
    as sent by Exact, and nothing is sent twice. None when Peppol has nothing to do with it."""
    client, brand = document.client, document.brand
    receiver = participant(client)
    if not receiver:
        return None
    by_exact = exact_sends_peppol(brand)
    if not by_exact and not PeppolConnection.objects.filter(brand=brand, enabled=True).exists():
        return None
    kind = DocumentKind.INVOICE if isinstance(document, Invoice) else DocumentKind.CREDIT_NOTE
    delivery, created = PeppolDelivery.objects.get_or_create(
        **{kind: document}, defaults={"client": client, "brand": brand, "document": kind, "receiver": receiver})
    if not created:
        return delivery
    audit_record(action=AuditEvent.Action.PEPPOL_DELIVERY, client=client, obj=delivery,
                 details={"from": "", "to": State.PENDING, "document": kind, "number": document.number})
    if by_exact:
        delivery_transition(delivery=delivery, to=State.SKIPPED, skip=Skip.SENT_BY_EXACT,
                            reason=gettext_noop("Sent by Exact Online (its connection sends over Peppol)."))
        return delivery
    delivery_job(delivery)
    return delivery


def delivery_job(delivery: PeppolDelivery) -> int | None:
    return jobs.job_enqueue(kind=JOB_KIND, key=delivery.job_key, payload={"delivery": delivery.pk},
                            subject=f"peppol:{delivery.document}:{delivery.document_id}")


@transaction.atomic
def delivery_retry(*, delivery: PeppolDelivery, actor=None, request=None) -> bool:
    """Staff try a failed, refused or skipped delivery again: a new round, with a job of its own
    (and so a new idempotency key). False when the delivery is not in such a state."""
    delivery = (PeppolDelivery.objects.select_for_update(of=("self",))
                .select_related("client", "invoice", "credit_note").get(pk=delivery.pk))
    if delivery.state not in PeppolDelivery.RETRYABLE:
        return False
    if delivery.skip == Skip.NOT_REACHABLE:  # ask discovery again rather than trust its last answer
        PeppolReceiver.objects.filter(client=delivery.client, document=delivery.document).delete()
    delivery_transition(delivery=delivery, to=State.PENDING, actor=actor, request=request,
                        attempt=delivery.attempt + 1, submission_id="", skip="", rule_failures=[],
                        details={"retried": True})
    delivery_job(delivery)
    return True


# --- Sending (the job; no transaction open) ---------------------------------------------------

def _load(delivery_id: int) -> PeppolDelivery:
    return (PeppolDelivery.objects.select_related("client", "brand", "invoice", "credit_note",
                                                  "invoice__client", "invoice__brand", "credit_note__client",
                                                  "credit_note__brand", "credit_note__invoice")
            .get(pk=delivery_id))


def _record(delivery_id: int, *, expect: str, to: str, **fields) -> bool:
    """Move the delivery on in a short transaction of its own, if it is still where the job found
    it (a staff retry or a webhook may have moved it meanwhile). Returns whether it moved."""
    with transaction.atomic():
        delivery = PeppolDelivery.objects.select_for_update(of=("self",)).select_related("client").get(pk=delivery_id)
        if delivery.state != expect:
            return False
        delivery_transition(delivery=delivery, to=to, **fields)
        return True


TIMEOUT = 10  # seconds the access point's answers are waited for (the fault drills shorten it)


def access_point(connection: PeppolConnection) -> AccessPointClient:
    return AccessPointClient(base_url=connection.base_url, api_key=connection.api_key, timeout=TIMEOUT)


def _can_receive(delivery: PeppolDelivery, connection: PeppolConnection, receiver: str) -> bool:
    """Discovery's answer for this client and kind of document: the stored one while fresh, or
    the access point's (asked with no transaction open, stored after)."""
    now = timezone.now()
    known = PeppolReceiver.objects.filter(client=delivery.client, document=delivery.document).first()
    if known is not None and known.fresh_for(receiver, now):
        return known.can_receive
    answer = bool(access_point(connection).can_receive(receiver, document=delivery.document))
    with transaction.atomic():
        PeppolReceiver.objects.update_or_create(
            client=delivery.client, document=delivery.document,
            defaults={"participant": receiver, "can_receive": answer, "checked_at": timezone.now()})
    return answer


def _failures(report) -> list[dict]:
    return [{"rule": f.rule, "flag": f.flag, "text": f.text, "location": f.location} for f in report.fatal]


def delivery_send(*, job) -> str:
    """The job of one delivery: read, ask discovery, check the rules, submit, record. The
    provider has no idempotency key: the uploaded draft's id is recorded before it is sent, so a
    retry after a lost answer asks about that draft (sent already, or still to send) and never
    sends a second one."""
    delivery = _load(job.payload["delivery"])
    if delivery.job_key != job.key:
        return f"nothing to do: the delivery is in round {delivery.attempt} (this job was round {job.key})"
    if delivery.state == State.FAILED and job.attempts == 1 and delivery.reason == _dead_reason(job):
        # Staff replayed this round's dead job (its death failed the delivery): it goes on.
        _record(delivery.pk, expect=State.FAILED, to=State.PENDING, details={"replayed": job.pk})
        delivery = _load(delivery.pk)
    if delivery.state != State.PENDING:
        return f"nothing to do: the delivery is {delivery.state}"
    connection = PeppolConnection.objects.filter(brand=delivery.brand_id, enabled=True).first()
    if exact_sends_peppol(delivery.brand):
        _record(delivery.pk, expect=State.PENDING, to=State.SKIPPED, skip=Skip.SENT_BY_EXACT,
                reason=gettext_noop("Sent by Exact Online (its connection sends over Peppol)."))
        return "skipped: Exact Online sends it"
    if connection is None:
        raise jobs.Permanent("the brand has no enabled Peppol connection")
    document = delivery.invoice if delivery.document == DocumentKind.INVOICE else delivery.credit_note
    receiver, sender = participant(delivery.client), participant(delivery.brand)
    if not receiver:
        raise jobs.Permanent("the client has no Peppol identifier any more")
    if not sender:
        raise jobs.Permanent("the brand has no Peppol identifier: set one in admin, then try again")
    try:
        if not _can_receive(delivery, connection, receiver):
            _record(delivery.pk, expect=State.PENDING, to=State.SKIPPED, skip=Skip.NOT_REACHABLE, receiver=receiver,
                    reason=NOT_REACHABLE % {"participant": receiver})
            return f"skipped: {receiver} cannot receive"
    except AccessPointRefused as exc:
        raise jobs.Permanent(f"discovery refused: {exc.reason}") from None
    except AccessPointError as exc:
        raise jobs.Retry(f"discovery: {exc}") from None
    xml = ubl_xml(document)
    report = validate_ubl(xml)
    versions = str(report.versions or "")[:300]
    if report.fatal:
        failures = _failures(report)
        _record(delivery.pk, expect=State.PENDING, to=State.REFUSED_BY_RULES, rule_failures=failures,
                rules_versions=versions, reason="; ".join(f"{f['rule']}: {f['text']}" for f in failures)[:2000])
        return f"refused by {len(failures)} rule(s): " + ", ".join(f["rule"] for f in failures)[:200]
    client = access_point(connection)
    try:
        submission = delivery.submission_id
        if submission and client.status(submission) is not None:
            pass  # an earlier attempt sent it and lost the answer: sent once, recorded now
        else:
            if not submission:
                # e-invoice.be has no idempotency key: the uploaded draft's id is recorded before
                # it is sent, so a retry asks about that draft rather than uploading another.
                submission = client.create_document(xml, document=delivery.document, file_name=f"{job.key}.xml")
                with transaction.atomic():
                    PeppolDelivery.objects.filter(pk=delivery.pk, state=State.PENDING).update(
                        submission_id=submission, receiver=receiver, rules_versions=versions)
            client.send_document(submission, sender=sender, receiver=receiver)
    except AccessPointRefused as exc:
        _record(delivery.pk, expect=State.PENDING, to=State.FAILED, reason=str(exc.reason or exc)[:2000],
                rules_versions=versions)
        return f"refused by the access point: {exc.reason}"[:300]
    except AccessPointError as exc:
        raise jobs.Retry(f"submit: {exc}") from None
    _record(delivery.pk, expect=State.PENDING, to=State.SUBMITTED, submission_id=str(submission),
            submitted_at=timezone.now(), receiver=receiver, rules_versions=versions)
    return f"submitted: {submission}"


def _dead_reason(job) -> str:
    return (job.last_error or "").splitlines()[0][:2000] if job.last_error else ""


def delivery_dead(job, reason: str) -> None:
    """The send job died (the access point unreachable through every attempt): the delivery
    fails with that reason, for staff to try again (a new round) or to replay the job (this round)."""
    delivery = PeppolDelivery.objects.select_for_update(of=("self",)).select_related("client").filter(
        pk=job.payload.get("delivery")).first()
    if delivery is not None and delivery.state == State.PENDING and delivery.job_key == job.key:
        delivery_transition(delivery=delivery, to=State.FAILED, reason=(reason or "").splitlines()[0][:2000]
                            if reason else "dead")


# --- Status (webhook job) ---------------------------------------------------------------------

def status_receive(*, connection: PeppolConnection, event) -> str:
    """One verified status event of the provider. A failure's reason is not in e-invoice.be's
    event: it is asked for (status(), no transaction open) before the event is recorded."""
    if event.state == "failed" and not event.reason:
        try:
            current = access_point(connection).status(event.submission_id)
        except AccessPointError as exc:
            raise jobs.Retry(f"the failure's reason: {exc}") from None
        if current is not None and current.reason:
            event = type(event)(event_id=event.event_id, submission_id=event.submission_id, state=event.state,
                                reason=current.reason, occurred_at=event.occurred_at)
    with transaction.atomic():
        return status_apply(connection=connection, event=event)


def status_apply(*, connection: PeppolConnection, event) -> str:
    """Record one status event in the caller's transaction. An event for a state the delivery
    is in or past already (a replay, or one that arrives late) changes nothing."""
    delivery = (PeppolDelivery.objects.select_for_update(of=("self",))
                .select_related("client", "invoice", "credit_note")
                .filter(brand=connection.brand_id, submission_id=event.submission_id).first())
    if delivery is None:
        raise jobs.Retry(f"no delivery with submission {event.submission_id} yet")
    if delivery.state == State.PENDING:
        raise jobs.Retry(f"the send of {event.submission_id} is not recorded yet")
    target = EVENT_STATES.get(str(event.state))
    if target is None:
        return f"ignored: state {event.state!r}"
    if target == delivery.state or target not in PeppolDelivery.TRANSITIONS[delivery.state]:
        return f"nothing changes: {delivery.state}, event says {event.state}"
    reason = (event.reason or NO_REASON) if target == State.FAILED else ""
    delivery_transition(delivery=delivery, to=target, reason=reason, details={"event": event.event_id})
    return f"{event.submission_id}: {target}"


# --- Status by polling (the webhook's back-up) -------------------------------------------------

def polls_enqueue(*, now: datetime.datetime | None = None) -> int:
    """Write a poll for each delivery the network has had for over POLL_AFTER without news (at
    most one per delivery and POLL_EVERY, ordered with its webhooks). Returns how many."""
    now = now or timezone.now()
    written = 0
    due = (PeppolDelivery.objects.filter(state__in=[State.SUBMITTED, State.ACCEPTED], changed_at__lte=now - POLL_AFTER,
                                         brand__peppol__enabled=True)
           .exclude(submission_id="").order_by("changed_at").only("pk", "submission_id")[:POLL_LIMIT])
    for delivery in due:
        with transaction.atomic():
            written += poll_enqueue(delivery=delivery, now=now) is not None
    return written


def poll_enqueue(*, delivery: PeppolDelivery, now: datetime.datetime | None = None) -> int | None:
    """One poll of a delivery, in the caller's transaction (None: one was written this period)."""
    bucket = int((now or timezone.now()).timestamp() // POLL_EVERY.total_seconds())
    return jobs.job_enqueue(kind=POLL_JOB, key=f"peppol:poll:{delivery.pk}:{bucket}", payload={"delivery": delivery.pk},
                            subject=f"peppol-submission:{delivery.submission_id}")


def delivery_poll(*, job) -> str:
    """Ask the access point where one delivery stands (no transaction open) and record what it
    says as a status event would be (a state reached already changes nothing)."""
    delivery = PeppolDelivery.objects.select_related("brand__peppol").filter(pk=job.payload["delivery"]).first()
    if delivery is None or delivery.state not in (State.SUBMITTED, State.ACCEPTED):
        return "nothing to do: " + (delivery.state if delivery else "gone")
    connection = getattr(delivery.brand, "peppol", None)
    if connection is None or not connection.enabled:
        return "nothing to do: the brand's Peppol connection is off"
    try:
        event = access_point(connection).status(delivery.submission_id)
    except AccessPointRefused as exc:
        raise jobs.Permanent(f"status refused: {exc.reason}") from None
    except AccessPointError as exc:
        raise jobs.Retry(f"status: {exc}") from None
    if event is None:
        return "the access point has it as a draft"
    with transaction.atomic():
        return status_apply(connection=connection, event=event)
