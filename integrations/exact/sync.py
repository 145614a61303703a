"""Exact Online in: the Sync API's rows become the canonical events of docs/webhooks.md and take
the generic accounting webhook's own path, so an Exact invoice is created, updated, voided and
paid by the very handlers that take a signed webhook (integrations.handlers), never by a second
way.

The path, and why this one. Each event is stored exactly as the intake stores an accepted
webhook (a `portal_webhookrequest` row, source "exact-sync", account the connection's URL name,
with a natural key per Exact record and version) together with the same "accounting.event" job,
subject and key (`integrations.services.event_subject`, `webhook:<id>`). So:
- the events of one invoice, client or payment are applied one at a time in the order stored
  (the job claim orders a subject by id), whoever stores them next (a webhook, a later sync);
- an event waiting for what it names (an invoice before its client) is retried with backoff by
  `accounting_event_apply` on UnknownReference, and staff see and replay it like any webhook;
- the natural key `<entity>:<Exact id>:<Timestamp>` makes a re-sync of an unchanged record a
  duplicate (ON CONFLICT DO NOTHING), so reading a page twice (after a crash) applies nothing twice.
Calling the handlers straight from the sync would have lost all three (no order across workers,
no retry of one record without holding the sync up, no record staff can inspect).

The cursor (ExactCursor.timestamp, the highest `Timestamp` stored) advances in the transaction that
stores the page's events: a crash loses neither, a page is read again at worst. No transaction is
open while Exact is called (portal/txguard.py). Sources: api-facts.md §1.6 (sync endpoints,
`Timestamp gt {n}L`, pages of 1,000, sync/Deleted's EntityType 13 = SalesInvoices) and the field
lists of Exact's REST reference (picqer/exact-php-client SyncSalesInvoice.php, SyncAccount.php,
SyncTransactionLine.php, SyncDeleted.php, generated from
https://start.exactonline.nl/docs/HlpRestAPIResourcesDetails.aspx?name=SyncSalesInvoiceSalesInvoices).
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from integrations import normalise, services
from integrations.exact import mapping
from integrations.exact.client import ExactClient
from integrations.exact.models import ExactConnection, ExactCursor
from integrations.models import Connection, OutboxMessage
from invoices.models import Invoice


SOURCE_NAME = "exact-sync"  # what staff see as the stored events' source (Back office → Webhooks)
Entity = ExactCursor.Entity
PATHS = {
    Entity.ACCOUNTS: "sync/CRM/Accounts",
    Entity.SALES_INVOICES: "sync/SalesInvoice/SalesInvoices",
    Entity.TRANSACTION_LINES: "sync/Financial/TransactionLines",
    Entity.DELETED: "sync/Deleted",
}
# The order a full sync goes in: clients before their invoices, invoices before payments and deletes.
ORDER = [Entity.ACCOUNTS, Entity.SALES_INVOICES, Entity.TRANSACTION_LINES, Entity.DELETED]
# Our own bank entries name the outbox message they book (integrations.exact.booking).
OWN_ENTRY = re.compile(r"\bmsg_[0-9a-f]{32}\b")


class WaitForInvoice(Exception):
    """A payment in Exact names an invoice the portal does not hold yet: the sync stops before it
    (the cursor stays there) and is retried once the invoice's event is applied."""

    def __init__(self, reason: str, *, timestamp: int):
        super().__init__(reason)
        self.timestamp = timestamp


@dataclass
class Counts:
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    skipped: int = 0
    own: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rows": self.rows, "stored": self.stored, "duplicates": self.duplicates, "refused": self.refused,
                "skipped": self.skipped, "own": self.own}


def sync_entity(exact: ExactConnection, entity: str) -> dict:
    """Read one Sync API entity from its cursor to the end, store each record as its canonical
    event, and advance the cursor page by page. Returns the counts. Raises the client's errors
    (RateLimited, NeedsReauthorisation, EndpointBlocked, ExactRefused) and WaitForInvoice; what
    was stored before stays stored, with the cursor just behind it."""
    entity = Entity(entity)
    client = ExactClient(exact)
    with transaction.atomic():
        cursor, _ = ExactCursor.objects.get_or_create(exact=exact, entity=entity)
        connection = Connection.objects.get(pk=exact.connection_id)
    counts = Counts()
    context = mapping.Context(vat_codes={})
    pending: list[dict] = []  # invoice lines whose invoice may go on past the page read so far
    since = cursor.timestamp
    for rows in client.pages(PATHS[entity], select=mapping.SELECT[entity], filter=f"Timestamp gt {since}L"):
        counts.rows += len(rows)
        if entity == Entity.SALES_INVOICES:
            if rows and not context.vat_codes:  # read once a run, and only when an invoice changed
                context.vat_codes = mapping.vat_codes(client)
            rows, pending = _complete_invoices(pending + rows)
        _store_page(connection, exact, entity, rows, context, counts, held_back=pending)
    if pending:  # the last page ends the entity: its last invoice is complete
        _store_page(connection, exact, entity, pending, context, counts, held_back=[])
    with transaction.atomic():
        ExactCursor.objects.filter(pk=cursor.pk).update(synced_at=timezone.now())
    return counts.as_dict()


def _complete_invoices(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split a page's lines into those of invoices complete on it and those of the invoice its
    last line belongs to (it may go on on the next page: one row per line, header repeated)."""
    if not rows:
        return [], []
    last = rows[-1]["InvoiceID"]
    return [r for r in rows if r["InvoiceID"] != last], [r for r in rows if r["InvoiceID"] == last]


def _store_page(connection: Connection, exact: ExactConnection, entity: str, rows: list[dict],
                context: "mapping.Context", counts: Counts, *, held_back: list[dict]) -> None:
    """One transaction: the page's events and jobs, then the cursor. Rows held back (an invoice
    that may go on) keep the cursor below their lowest Timestamp, so they are read again."""
    if not rows and not held_back:
        return
    waiting = None
    with transaction.atomic():
        cursor = ExactCursor.objects.select_for_update().get(exact=exact, entity=entity)
        try:
            for _, natural_key, payload in _events(connection, entity, rows, context, counts):
                _store_event(connection, natural_key, payload, counts)
        except WaitForInvoice as wait:
            waiting = wait  # every row before it is stored or not for us; it is read again next time
            _advance(cursor, wait.timestamp - 1, held_back)
        else:
            _advance(cursor, max(row["Timestamp"] for row in rows) if rows else cursor.timestamp, held_back)
    if waiting is not None:
        raise waiting


def _advance(cursor: ExactCursor, stored_up_to: int, held_back: list[dict]) -> None:
    if held_back:
        stored_up_to = min(stored_up_to, min(row["Timestamp"] for row in held_back) - 1)
    if stored_up_to > cursor.timestamp:
        ExactCursor.objects.filter(pk=cursor.pk).update(timestamp=stored_up_to)


def _events(connection: Connection, entity: str, rows: list[dict], context, counts: Counts):
    """(Timestamp, natural key, canonical event) for each record of the page, in Timestamp order."""
    if entity == Entity.ACCOUNTS:
        for row in rows:
            event = mapping.account_event(row)
            if event is None:
                counts.skipped += 1
                continue
            yield row["Timestamp"], f"account:{row['ID']}:{row['Timestamp']}", event
    elif entity == Entity.SALES_INVOICES:
        groups: dict[str, list[dict]] = {}
        for row in rows:
            groups.setdefault(row["InvoiceID"], []).append(row)
        known = set(Invoice.objects.filter(connection=connection, external_id__in=list(groups))
                    .values_list("external_id", flat=True))
        numbers = _invoice_ids_by_number(connection, groups, context)
        for invoice_id, lines in sorted(groups.items(), key=lambda item: max(r["Timestamp"] for r in item[1])):
            version = max(r["Timestamp"] for r in lines)
            event = mapping.invoice_event(lines, context, known=invoice_id in known, invoice_ids=numbers)
            if event is None:
                counts.skipped += 1
                continue
            yield version, f"invoice:{invoice_id}:{version}", event
    elif entity == Entity.TRANSACTION_LINES:
        for row in rows:
            if not mapping.is_payment_received(row):
                continue
            if _is_own_entry(connection, row):
                counts.own += 1
                continue
            invoice = Invoice.objects.filter(connection=connection, number=str(row["InvoiceNumber"])).first()
            if invoice is None:
                raise WaitForInvoice(f"payment line {row['ID']} names invoice {row['InvoiceNumber']}, which the "
                                     f"portal does not hold yet", timestamp=row["Timestamp"])
            yield row["Timestamp"], f"payment:{row['ID']}:{row['Timestamp']}", mapping.payment_event(row, invoice)
    elif entity == Entity.DELETED:
        for row in rows:
            event = mapping.deleted_event(row)
            stored = event and Invoice.objects.filter(connection=connection,
                                                      external_id=event["data"]["external_id"]).first()
            if not stored:
                counts.skipped += 1  # not an invoice, or one the portal never had: nothing to void
                continue
            # Gone from Exact is the last word on it, even when deleted within the second of its
            # last change (Exact's moments have whole seconds): never older than what is stored.
            known = stored.source_updated_at
            if known and normalise.moment(event["data"]["updated_at"]) <= known:
                event["data"]["updated_at"] = (known + datetime.timedelta(milliseconds=1)).isoformat()
            yield row["Timestamp"], f"deleted:{row['EntityKey']}:{row['Timestamp']}", event


def _invoice_ids_by_number(connection: Connection, groups: dict[str, list[dict]], context) -> dict[str, str]:
    """Exact's invoice numbers to InvoiceIDs, for credit notes that name the invoice they credit:
    from this run's pages so far and from what the portal holds."""
    context.invoice_ids.update({str(lines[0].get("InvoiceNumber")): invoice_id for invoice_id, lines in groups.items()
                                if lines[0].get("InvoiceNumber") is not None})
    numbers = dict(context.invoice_ids)
    for number, external_id in Invoice.objects.filter(connection=connection).exclude(external_id="").filter(
            number__in=[str(n) for n in mapping.credited_numbers(groups.values())]).values_list("number",
                                                                                                "external_id"):
        numbers.setdefault(number, external_id)
    return numbers


def _is_own_entry(connection: Connection, row: dict) -> bool:
    """A bank entry the portal booked itself (booking.py names the message in its description):
    the payment is in the portal already."""
    text = " ".join(str(row.get(name) or "") for name in ("Description", "Notes"))
    found = OWN_ENTRY.search(text)
    return bool(found) and OutboxMessage.objects.filter(connection=connection, message_id=found.group(0)).exists()


def _store_event(connection: Connection, natural_key: str, payload: dict, counts: Counts) -> None:
    outcome = services.event_store(connection, source=SOURCE_NAME, natural_key=natural_key, payload=payload)
    setattr(counts, outcome, getattr(counts, outcome) + 1)
