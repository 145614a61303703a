"""The outbox: what accounting must hear about (payments, refunds, chargebacks, invoices the
portal issued), written in the ledger's own transaction together with the job that delivers
it (kind "outbox.deliver"). The job posts it signed (Standard Webhooks) with no transaction
open, with the message id as webhook-id, the key the receiver books a message by only once;
portal.jobs retries it with backoff, parks it as dead after the last try, and staff replay it.
Messages about one payment or invoice go out in the order they were written. A connection to Exact
Online or Twinfield takes them its own way: booked as bank entries or transactions
(integrations.exact.booking, integrations.twinfield.booking), by kind; a custom ERP that the portal
pulls from (kind "erp_pull") is told by the signed webhook, or by the REST call or GraphQL mutation
configured for it (integrations.erp.push)."""
from __future__ import annotations

import json
import uuid

import requests
from django.db import transaction
from django.utils import timezone

# Also registers Exact's and Twinfield's own job handlers (exact.sync, exact.hint, twinfield.poll) and
# their beat tasks wherever the integrations' jobs are found (integrations.tasks imports this module).
from integrations.erp.models import ErpPull
from integrations.erp.push import erp_of, outbox_deliver_erp, tells_payments
from integrations.exact.tasks import outbox_deliver_exact
from integrations.twinfield.tasks import outbox_deliver_twinfield
from integrations.models import ClientLink, Connection, OutboxMessage
from integrations.signing import signed_headers
from portal import jobs
from portal.jobs import job_enqueue

JOB_KIND = "outbox.deliver"
TIMEOUT = (3, 10)
MAX_RETRY_AFTER = 3600


def accounting_connection(*, client, invoices) -> tuple[Connection | None, str]:
    """The accounting system that owns this client (and its id there), if it takes payments back."""
    connections = [i.connection for i in invoices if i.connection_id]
    link = ClientLink.objects.select_related("connection").filter(client=client)
    if connections:
        link = link.filter(connection=connections[0])
    link = link.first()
    connection = connections[0] if connections else (link.connection if link else None)
    if connection is None or not takes_payments_back(connection):
        return None, ""
    return connection, link.external_id if link else ""


def takes_payments_back(connection: Connection) -> bool:
    """An enabled connection with an address for payments, or one to Exact Online or Twinfield
    (booked there as bank entries or transactions: integrations.exact.booking, .twinfield.booking),
    or a custom ERP pull connection told of payments (integrations.erp.push)."""
    if connection.kind == Connection.Kind.ERP_PULL:
        return tells_payments(connection)
    return connection.enabled and (bool(connection.outbound_url) or connection.kind in (
        Connection.Kind.EXACT_ONLINE, Connection.Kind.TWINFIELD))


def outbox_write(*, connection: Connection, event_type: str, data: dict, subject: str) -> OutboxMessage:
    """Call inside the transaction that makes the change, so the change, the message and its
    delivery job happen together or not at all. `subject` names what the message is about
    (`outbox:payment:<id>`): messages of one subject are delivered in the order written."""
    message = OutboxMessage.objects.create(
        connection=connection, message_id=f"msg_{uuid.uuid4().hex}", event_type=event_type,
        payload={"type": event_type, "occurred_at": timezone.now().isoformat(), "data": data})
    job_enqueue(kind=JOB_KIND, key=message.job_key, payload={"message": message.pk}, subject=subject)
    return message


def _retry_after(response: requests.Response) -> float | None:
    """A receiver's Retry-After in seconds (429, 503), if it gave a usable one."""
    try:
        return min(float(response.headers["Retry-After"]), MAX_RETRY_AFTER)
    except (KeyError, ValueError):
        return None


def outbox_deliver(*, job) -> str:
    """Deliver one message (the job's): read, post with no transaction open, record the answer.
    A non-2xx answer or a network error fails the attempt; the job mechanism retries it."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_related("connection").get(pk=job.payload["message"])
    connection = message.connection
    if connection.kind == Connection.Kind.EXACT_ONLINE and connection.enabled:
        return outbox_deliver_exact(message=message, job=job)  # Exact's own way: a bank entry
    if connection.kind == Connection.Kind.TWINFIELD and connection.enabled:
        return outbox_deliver_twinfield(message=message, job=job)  # a bank transaction, matched
    if connection.kind == Connection.Kind.ERP_PULL and connection.enabled:
        with transaction.atomic():
            erp = erp_of(connection)
        if erp is None or erp.push == ErpPull.Push.NONE:
            raise jobs.Permanent(f"connection {connection.slug!r} is not set to tell the ERP of payments")
        if erp.push != ErpPull.Push.WEBHOOK:
            return outbox_deliver_erp(message=message, erp=erp, job=job)  # its REST call or mutation
    if not connection.enabled or not connection.outbound_url:
        raise jobs.Permanent(f"connection {connection.slug!r} is disabled or has no address for payments")
    secrets_ = connection.secrets()
    if not secrets_:
        raise jobs.Permanent(f"connection {connection.slug!r} has no signing secret")
    body = json.dumps(message.payload, separators=(",", ":")).encode()
    try:
        response = requests.post(connection.outbound_url, data=body, timeout=TIMEOUT,
                                 headers={"Content-Type": "application/json",
                                          **signed_headers(secrets_[0], message.message_id, body)})
    except requests.RequestException as exc:
        # The receiver may have booked it before the line broke: the same webhook-id next time
        # lets it recognise the message.
        raise jobs.Retry(f"{type(exc).__name__}: {exc}") from None
    delivered = 200 <= response.status_code < 300
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=message.pk).update(
            response_status=response.status_code, delivered_at=timezone.now() if delivered else None)
    if not delivered:
        raise jobs.Retry(f"HTTP {response.status_code}: {response.text[:500]}", after=_retry_after(response))
    return f"HTTP {response.status_code}"
