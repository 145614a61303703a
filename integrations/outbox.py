"""The outbox: what accounting must hear about (payments, refunds, chargebacks), written in
the ledger's own transaction, delivered by a worker as a signed POST (Standard Webhooks),
retried with a growing wait, parked as dead with its reason after the last try."""
from __future__ import annotations

import datetime
import json
import logging
import uuid

import requests
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integrations.models import ClientLink, Connection, OutboxMessage
from integrations.signing import signed_headers
from invoices.errors import DomainError

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6
SWEEP_GRACE = datetime.timedelta(seconds=60)
TIMEOUT = (3, 10)


def _backoff(attempts: int) -> datetime.timedelta:
    return datetime.timedelta(seconds=30 * 2 ** max(0, attempts - 1))


def accounting_connection(*, client, invoices) -> tuple[Connection | None, str]:
    """The accounting system that owns this client (and its id there), if it takes payments back."""
    connections = [i.connection for i in invoices if i.connection_id]
    link = ClientLink.objects.select_related("connection").filter(client=client)
    if connections:
        link = link.filter(connection=connections[0])
    link = link.first()
    connection = connections[0] if connections else (link.connection if link else None)
    if connection is None or not connection.outbound_url or not connection.enabled:
        return None, ""
    return connection, link.external_id if link else ""


def _enqueue(message_id: int) -> None:
    from integrations.tasks import deliver_outbox_message  # here: integrations.tasks imports this module

    try:
        deliver_outbox_message.delay(message_id)
    except Exception:  # noqa: BLE001 - the broker is down: the sweep delivers it later
        log.warning("could not enqueue outbox message %s; the sweep will", message_id, exc_info=True)


def outbox_write(*, connection: Connection, event_type: str, data: dict) -> OutboxMessage:
    """Call inside the transaction that makes the change, so both happen or neither."""
    message = OutboxMessage.objects.create(
        connection=connection, message_id=f"msg_{uuid.uuid4().hex}", event_type=event_type,
        payload={"type": event_type, "occurred_at": timezone.now().isoformat(), "data": data},
        next_attempt_at=timezone.now() + SWEEP_GRACE)
    transaction.on_commit(lambda: _enqueue(message.pk))
    return message


def outbox_deliver(*, message_id: int) -> str | None:
    """Deliver one message once. Returns its new status (None if another worker has it)."""
    now = timezone.now()
    claimed = OutboxMessage.objects.filter(
        pk=message_id, status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.WAITING],
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + datetime.timedelta(minutes=5))
    if not claimed:
        return None
    message = OutboxMessage.objects.select_related("connection").get(pk=message_id)
    body = json.dumps(message.payload, separators=(",", ":")).encode()
    secrets_ = message.connection.secrets()
    status, error, code = OutboxMessage.Status.DELIVERED, "", None
    try:
        response = requests.post(message.connection.outbound_url, data=body, timeout=TIMEOUT,
                                 headers={"Content-Type": "application/json",
                                          **signed_headers(secrets_[0], message.message_id, body)})
        code = response.status_code
        if not 200 <= code < 300:
            status, error = OutboxMessage.Status.WAITING, f"HTTP {code}: {response.text[:500]}"
    except requests.RequestException as exc:
        status, error = OutboxMessage.Status.WAITING, f"{type(exc).__name__}: {exc}"
    if status == OutboxMessage.Status.WAITING and message.attempts >= MAX_ATTEMPTS:
        status = OutboxMessage.Status.DEAD
    OutboxMessage.objects.filter(pk=message_id).update(
        status=status, last_error=error[:2000], response_status=code,
        delivered_at=now if status == OutboxMessage.Status.DELIVERED else None,
        next_attempt_at=now + _backoff(message.attempts) if status == OutboxMessage.Status.WAITING else None)
    return status


def outbox_due(*, now=None) -> list[int]:
    now = now or timezone.now()
    return list(OutboxMessage.objects.filter(
        status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.WAITING], next_attempt_at__lte=now)
        .order_by("created_at").values_list("pk", flat=True)[:500])


def outbox_sweep(*, now=None) -> int:
    due = outbox_due(now=now)
    for pk in due:
        _enqueue(pk)
    return len(due)


@transaction.atomic
def outbox_replay(*, message: OutboxMessage) -> None:
    if message.status != OutboxMessage.Status.DEAD:
        raise DomainError("only dead messages are replayed")
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.WAITING, attempts=0,
                                                       next_attempt_at=timezone.now())
    transaction.on_commit(lambda: _enqueue(message.pk))
