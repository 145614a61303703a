"""Accounting events: taken in through the one webhook intake (portal.webhooks) as the source
"accounting", and applied once by a job of kind "accounting.event" (integrations.tasks)."""
from __future__ import annotations

import json

from django.db import transaction

from integrations.handlers import HANDLERS, Stale
from integrations.models import Connection
from integrations.signing import SignatureError, verify
from integrations.validation import event_validate
from invoices.errors import DomainError
from portal import jobs
from portal.webhooks import Accepted, Rejected, Source, webhook_for

JOB_KIND = "accounting.event"
# The Standard Webhooks headers are kept with the body, so staff can check a signature later.
KEPT_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")


def event_subject(connection: Connection, payload: dict) -> str:
    """What the event is about; events about one thing are applied one at a time, in order.

    Everything about one invoice (created, updated, voided) shares the invoice's subject. A
    payment or credit note is its own subject, although it names invoices: it may arrive before
    its invoice and wait for it (retried), and with the invoice's subject it would hold up the
    very event it waits for."""
    data = payload["data"]
    thing = {"client.upserted": "client", "payment.recorded": "payment",
             "credit_note.created": "credit_note"}.get(payload["type"], "invoice")
    return f"accounting:{connection.pk}:{thing}:{data['external_id']}"


def _find(slug: str, body: bytes) -> Connection | None:
    # Written out: the ORM's first() would order by name for one row, and compiling it costs
    # more than the lookup itself on every webhook.
    found = list(Connection.objects.raw(
        f"SELECT c.* FROM {Connection._meta.db_table} c WHERE c.slug = %s AND c.enabled", [slug]))
    return found[0] if found else None


def _verify(connection: Connection, headers, body: bytes) -> Accepted:
    try:
        verify(connection.secrets(), headers, body)
    except SignatureError as exc:
        raise Rejected(401, f"signature: {exc}") from None
    payload = event_validate(body, event_id=headers["webhook-id"])  # 400 or 422 with the reasons
    return Accepted(natural_key=headers["webhook-id"], subject=event_subject(connection, payload))


SOURCE = Source(name="accounting", job_kind=JOB_KIND, find=_find, verify=_verify, kept_headers=KEPT_HEADERS)


def accounting_event_apply(*, job) -> str:
    """Apply the event a webhook job carries. Runs inside the transaction that records the job
    done (a transactional handler), so an event is applied exactly once or not at all."""
    webhook = webhook_for(job)
    connection = Connection.objects.filter(slug=webhook.account).first()
    if connection is None:
        raise jobs.Permanent(f"connection {webhook.account!r} no longer exists")
    payload = json.loads(webhook.body)  # checked by the intake (validation.event_validate)
    try:
        with transaction.atomic():  # a Stale event keeps nothing it may have begun
            HANDLERS[payload["type"]](connection, payload["data"])
    except Stale as exc:
        return f"ignored ({payload['type']}): {exc}"
    except DomainError as exc:  # UnknownReference too: what it waits for may arrive yet
        raise jobs.Retry(str(exc)) from None
    return f"applied {payload['type']}"
