"""Accounting events: taken in through the one webhook intake (portal.webhooks) as the source
"accounting", and applied once by a job of kind "accounting.event" (integrations.tasks)."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

from django.db import transaction

from integrations.handlers import HANDLERS, Stale
from integrations.models import Connection
from integrations.signing import SignatureError, verify
from integrations.validation import event_problems, event_validate
from invoices.errors import DomainError
from portal import jobs
from portal.models import WebhookRequest
from portal.webhooks import Accepted, Rejected, Source, request_store, webhook_for

log = logging.getLogger(__name__)
JOB_KIND = "accounting.event"
# The Standard Webhooks headers are kept with the body, so staff can check a signature later.
GRAPHQL_SOURCE = "graphql"  # events from the GraphQL API's mutations (integrations.erp.commands)
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
    # more than the lookup itself. With the secrets as stored (encrypted), for _recheck.
    found = list(Connection.objects.raw(
        f"SELECT c.*, c.signing_secrets AS stored_secrets FROM {Connection._meta.db_table} c "
        f"WHERE c.slug = %s AND c.enabled", [slug]))
    return found[0] if found else None


def _recheck(connection: Connection) -> tuple[str, dict]:
    """The connection a process remembers is still the one in the database: the same row, URL
    name and stored secrets, and enabled (portal.webhooks.Source.recheck)."""
    return (f"SELECT FROM {Connection._meta.db_table} WHERE id = %(connection_id)s AND slug = %(connection_slug)s "
            f"AND enabled AND signing_secrets = %(connection_secrets)s",
            {"connection_id": connection.pk, "connection_slug": connection.slug,
             "connection_secrets": connection.stored_secrets})


def _verify(connection: Connection, headers, body: bytes) -> Accepted:
    try:
        verify(connection.secrets(), headers, body)
    except SignatureError as exc:
        raise Rejected(401, f"signature: {exc}") from None
    payload = event_validate(body, event_id=headers["webhook-id"])  # 400 or 422 with the reasons
    return Accepted(natural_key=headers["webhook-id"], subject=event_subject(connection, payload))


SOURCE = Source(name="accounting", job_kind=JOB_KIND, find=_find, verify=_verify, kept_headers=KEPT_HEADERS,
                recheck=_recheck)


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
    except DomainError as exc:
        if webhook.source == GRAPHQL_SOURCE:
            # The API's caller is answered with this (integrations.erp.commands) and sends anew.
            raise jobs.Permanent(str(exc)) from None
        raise jobs.Retry(str(exc)) from None  # UnknownReference too: what it waits for may arrive yet
    return f"applied {payload['type']}"


def event_store(connection: Connection, *, source: str, natural_key: str, payload: dict) -> str:
    """Store a canonical event read from an accounting system (Exact's sync, Twinfield's poll, an
    ERP pull) as the intake stores an accepted webhook, with the same "accounting.event" job: the
    one path that creates, voids and pays invoices. An event the ledger could not take is kept as
    a rejected one (with its reasons) for staff instead. In the caller's transaction. Returns
    "stored", "duplicates" (the natural key was stored before: nothing changes) or "refused"."""
    body = json.dumps(payload, separators=(",", ":"))
    problems = event_problems(json.loads(body, parse_float=Decimal))
    if problems:
        reason = "; ".join(f"{p['field']}: {p['reason']}" for p in problems[:5])
        log.warning("%s record %s refused: %s", source, natural_key, reason)
        WebhookRequest.objects.create(source=source, account=connection.slug, natural_key=natural_key[:200],
                                      status=WebhookRequest.Status.REJECTED, headers={}, body=body[:1024],
                                      error=f"invalid event: {reason}"[:2000])
        return "refused"
    stored = event_insert(connection, source=source, natural_key=natural_key, payload=payload)
    return "duplicates" if stored is None else "stored"


def event_insert(connection: Connection, *, source: str, natural_key: str, payload: dict,
                 headers: dict | None = None) -> int | None:
    """Store a checked canonical event and its "accounting.event" job, in the caller's
    transaction: the stored request's id, or None when its natural key was stored before."""
    _, stored = request_store(source=source, job_kind=JOB_KIND, account_key=connection.slug, natural_key=natural_key,
                              headers=headers or {}, body=json.dumps(payload, separators=(",", ":")), ip=None,
                              subject=event_subject(connection, payload))
    return stored
