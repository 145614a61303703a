"""The inbound event store: receive (verify, keep, answer), process (apply once), retry, replay."""
from __future__ import annotations

import datetime
import json
import logging
import traceback
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import normalise
from integrations.handlers import HANDLERS, Stale
from integrations.models import Connection, InboundEvent
from integrations.signing import SignatureError, verify
from invoices.errors import DomainError, UnknownReference
from invoices.services import totals_validate
from portal.models import AuditEvent
from portal.services import audit_record

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6
LEASE = datetime.timedelta(minutes=10)
SWEEP_GRACE = datetime.timedelta(seconds=60)
KEPT_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")


@dataclass
class Answer:
    status: int
    body: dict


def _backoff(attempts: int) -> datetime.timedelta:
    return datetime.timedelta(seconds=30 * 2 ** max(0, attempts - 1))


def _enqueue(event_id: int) -> None:
    from integrations.tasks import process_inbound_event  # here: integrations.tasks imports this module

    try:
        process_inbound_event.delay(event_id)
    except Exception:  # noqa: BLE001 - the broker is down: the sweep picks the event up later
        log.warning("could not enqueue inbound event %s; the sweep will retry", event_id, exc_info=True)


def _validate(body: bytes) -> tuple[dict, str]:
    """(payload, event type) or raise ValueError with the reason and the HTTP status in args."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(400, f"malformed JSON: {exc}") from None
    errors = normalise.schema_errors(payload)
    if errors:
        raise ValueError(422, "schema violation: " + "; ".join(errors[:5]))
    if payload["type"] in ("invoice.created", "invoice.updated", "credit_note.created"):
        try:
            totals_validate(**normalise.totals(payload["data"]))
        except DomainError as exc:
            raise ValueError(422, f"totals do not add up: {exc}") from None
    return payload, payload["type"]


def inbound_event_receive(*, connection: Connection, headers, body: bytes, ip: str | None) -> Answer:
    """Verify and keep a webhook, then answer at once; processing happens in a worker.
    Rejected requests are kept too (status rejected), with the reason they got."""
    kept_headers = {name: headers.get(name, "") for name in KEPT_HEADERS if headers.get(name)}
    event_id = (headers.get("webhook-id") or "")[:200]
    event = InboundEvent(connection=connection, event_id=event_id, headers=kept_headers,
                         body=body.decode("utf-8", "replace"), ip_address=ip)
    try:
        verify(connection.secrets(), headers, body)
        payload, event.event_type = _validate(body)
    except SignatureError as exc:
        return _reject(event, 401, f"signature: {exc}")
    except ValueError as exc:
        status, reason = exc.args
        return _reject(event, status, reason)
    event.status = InboundEvent.Status.PENDING
    event.next_attempt_at = timezone.now() + SWEEP_GRACE
    try:
        with transaction.atomic():
            event.save()
    except IntegrityError:
        return Answer(200, {"status": "duplicate", "detail": f"event {event_id} was received before"})
    transaction.on_commit(lambda: _enqueue(event.pk))
    return Answer(202, {"status": "accepted", "event": event_id})


def _reject(event: InboundEvent, status: int, reason: str) -> Answer:
    event.status = InboundEvent.Status.REJECTED
    event.error = reason
    event.save()
    return Answer(status, {"status": "rejected", "error": reason})


def inbound_event_process(*, event_id: int) -> str | None:
    """Apply one stored event, once. Returns its new status (None if another worker has it)."""
    now = timezone.now()
    claimed = InboundEvent.objects.filter(
        Q(status__in=[InboundEvent.Status.PENDING, InboundEvent.Status.WAITING])
        | Q(status=InboundEvent.Status.PROCESSING, next_attempt_at__lte=now),  # a worker died holding it
        pk=event_id,
    ).update(status=InboundEvent.Status.PROCESSING, attempts=F("attempts") + 1, next_attempt_at=now + LEASE)
    if not claimed:
        return None
    event = InboundEvent.objects.select_related("connection").get(pk=event_id)
    payload = json.loads(event.body)
    try:
        with transaction.atomic():
            HANDLERS[payload["type"]](event.connection, payload["data"])
        outcome, error = InboundEvent.Status.PROCESSED, ""
    except Stale as exc:
        outcome, error = InboundEvent.Status.IGNORED, str(exc)
    except UnknownReference as exc:
        outcome, error = InboundEvent.Status.WAITING, f"waiting: {exc}"
    except DomainError as exc:
        outcome, error = InboundEvent.Status.WAITING, str(exc)
    except Exception:  # noqa: BLE001 - kept on the event for staff, then retried
        outcome, error = InboundEvent.Status.WAITING, traceback.format_exc(limit=5)
    if outcome == InboundEvent.Status.WAITING and event.attempts >= MAX_ATTEMPTS:
        outcome = InboundEvent.Status.DEAD
    InboundEvent.objects.filter(pk=event_id).update(
        status=outcome, error=error,
        processed_at=now if outcome in (InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED) else None,
        next_attempt_at=now + _backoff(event.attempts) if outcome == InboundEvent.Status.WAITING else None)
    return outcome


def inbound_events_due(*, now: datetime.datetime | None = None) -> list[int]:
    """Stored events whose turn has come: never enqueued (Redis was down), waiting for a
    retry, or held by a worker that died."""
    now = now or timezone.now()
    return list(InboundEvent.objects.filter(
        status__in=[InboundEvent.Status.PENDING, InboundEvent.Status.WAITING, InboundEvent.Status.PROCESSING],
        next_attempt_at__lte=now).order_by("received_at").values_list("pk", flat=True)[:500])


def inbound_events_sweep(*, now: datetime.datetime | None = None) -> int:
    due = inbound_events_due(now=now)
    for pk in due:
        _enqueue(pk)
    return len(due)


@transaction.atomic
def inbound_event_replay(*, event: InboundEvent, actor=None, request=None) -> None:
    """Staff give a dead event another round of attempts."""
    if event.status != InboundEvent.Status.DEAD:
        raise DomainError(f"only dead events are replayed; this one is {event.get_status_display().lower()}")
    InboundEvent.objects.filter(pk=event.pk).update(status=InboundEvent.Status.WAITING, attempts=0,
                                                    next_attempt_at=timezone.now())
    audit_record(action=AuditEvent.Action.EVENT_REPLAYED, actor=actor, request=request, obj=event,
                 details={"event_id": event.event_id, "type": event.event_type, "last_error": event.error[:500]})
    transaction.on_commit(lambda: _enqueue(event.pk))
