"""Twinfield in, by polling: Twinfield sends nothing by itself ("the only option is to retrieve
this data from Twinfield by using the Browse Data functionality", Wolters Kluwer; api-facts §2.5).

One poll of one connection (the "twinfield.poll" job, integrations.twinfield.tasks):
- the first time, every customer (Finder `DIM`, dimtype DEB, 25 a page; each read once);
- the customer lines of final transactions (browse 100) changed since the last poll
  (`fin.trs.line.modified`, which a match changes too, so payments are seen), or on the first
  load the last FIRST_LOAD_MONTHS periods one at a time (a large browse times out);
- for each sales invoice among them, the transaction read whole (lines, VAT) into the canonical
  invoice event, and what Twinfield says is paid of it (its value less its open value) against
  what the portal knows is settled: the difference becomes a payment.

Each record becomes the canonical event of docs/webhooks.md, stored by
integrations.services.event_store with the same "accounting.event" job as every other source.
Natural keys hash the event's data, so an unchanged record read again is a duplicate that
changes nothing. The cursor (the last `modified` seen, Twinfield's clock) moves after the events
of the poll are stored; the next poll starts at that second, included (a row changed later in the
same second is not missed; the ones read before are duplicates), and a poll cut off reads the
same rows again, harmlessly.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from xml.sax.saxutils import escape

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from integrations import services
from integrations.models import ClientLink, Connection
from integrations.twinfield.client import TwinfieldClient, TwinfieldRefused
from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor
from invoices.models import Invoice, PaymentAllocation
from portal.models import WebhookRequest
from invoices.money import document_totals

SOURCE_NAME = "twinfield-poll"  # what staff see as the stored events' source (Back office → Webhooks)
CUSTOMERS_PAGE = 25
FIRST_LOAD_MONTHS = 24
BROWSE_CUSTOMER_LINES = "100"
FIELDS = ["fin.trs.head.code", "fin.trs.head.number", "fin.trs.head.status", "fin.trs.line.dim2",
          "fin.trs.line.invnumber", "fin.trs.line.valuesigned", "fin.trs.line.openvaluesigned",
          "fin.trs.line.matchstatus", "fin.trs.line.modified"]
LATEST = "99991231235959"
# Final transactions only: a provisional one can still be changed or deleted in Twinfield (a final
# one only reversed, which voids it here), and a client is not shown an invoice that is not final.
FINAL = {"fin.trs.head.status": ("equal", "final", "")}
FIRST_LOAD = "first:"  # a cursor during the first load: first:<moment it began>/<last period done>
CENT = Decimal("0.01")
Entity = TwinfieldCursor.Entity


@dataclass
class Counts:
    customers: int = 0
    invoices: int = 0
    payments: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    skipped: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def poll(twinfield: TwinfieldConnection) -> dict:
    """One poll (see the module's docstring). Raises the client's errors (Throttled,
    NeedsReauthorisation, TwinfieldError); what was stored before stays stored."""
    client = TwinfieldClient(twinfield)
    with transaction.atomic():
        connection = Connection.objects.get(pk=twinfield.connection_id)
        cursors = {entity: TwinfieldCursor.objects.get_or_create(twinfield=twinfield, entity=entity)[0]
                   for entity in (Entity.CUSTOMERS, Entity.TRANSACTIONS)}
    counts = Counts()
    known_customers: set[str] = set()
    if not cursors[Entity.CUSTOMERS].position:
        known_customers = _load_customers(client, connection, counts)
        _move(cursors[Entity.CUSTOMERS], "loaded")
    cursor = cursors[Entity.TRANSACTIONS]
    vat = VatCodes(client)
    if cursor.position and not cursor.position.startswith(FIRST_LOAD):
        rows = client.browse(BROWSE_CUSTOMER_LINES, FIELDS,
                             {"fin.trs.line.modified": ("between", cursor.position, LATEST), **FINAL})
        _store_rows(client, connection, rows, vat, known_customers, counts)
        latest = max((r.get("fin.trs.line.modified") or "" for r in rows), default="")
        _move(cursor, max(latest, cursor.position))
        return counts.as_dict()
    # The first load, period by period, oldest first; the cursor keeps the last period done, so a
    # first load cut off (a 429, a worker gone) goes on where it stopped. It ends at the moment it
    # began: whatever changed meanwhile is read by the next poll.
    started, _, done = cursor.position.removeprefix(FIRST_LOAD).partition("/") if cursor.position else \
        (_twinfield_now(), "", "")
    for period in _first_load_periods():
        if done and period <= done:
            continue
        rows = client.browse(BROWSE_CUSTOMER_LINES, FIELDS,
                             {"fin.trs.head.yearperiod": ("between", period, period), **FINAL})
        _store_rows(client, connection, rows, vat, known_customers, counts)
        _move(cursor, f"{FIRST_LOAD}{started}/{period}")
    _move(cursor, started)
    return counts.as_dict()


def _store_rows(client: TwinfieldClient, connection: Connection, rows: list[dict], vat: "VatCodes",
                known_customers: set[str], counts: Counts) -> None:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["fin.trs.head.code"], row["fin.trs.head.number"]), []).append(row)
    for (code, number), lines in sorted(groups.items()):
        invoice_line = next((r for r in lines if _amount(r.get("fin.trs.line.valuesigned")) > 0
                             and r.get("fin.trs.line.invnumber")), None)
        if invoice_line is None:
            counts.skipped += 1  # a payment or credit note: it shows on the invoice it settles
            continue
        customer = invoice_line["fin.trs.line.dim2"]
        if customer not in known_customers and not _linked(connection, customer):
            _store_customer(client, connection, customer, counts)
            known_customers.add(customer)
        _store_invoice(client, connection, code, number, vat, counts)


def _first_load_periods() -> list[str]:
    """This month and the FIRST_LOAD_MONTHS before it, oldest first, as Twinfield writes periods."""
    today = timezone.localdate()
    months = [(today.year * 12 + today.month - 1) - back for back in range(FIRST_LOAD_MONTHS, -1, -1)]
    return [f"{month // 12}/{month % 12 + 1:02d}" for month in months]


# --- Customers ---------------------------------------------------------------------------------

def _load_customers(client: TwinfieldClient, connection: Connection, counts: Counts) -> set[str]:
    codes, first = [], 1
    while True:
        page = client.search("DIM", options={"dimtype": "DEB"}, first_row=first, max_rows=CUSTOMERS_PAGE)
        codes += [row[0] for row in page.rows if row]
        first += CUSTOMERS_PAGE
        if not page.rows or first > page.total:
            break
    for code in codes:
        _store_customer(client, connection, code, counts)
    return set(codes)


def _linked(connection: Connection, code: str) -> bool:
    with transaction.atomic():
        return ClientLink.objects.filter(connection=connection, external_id=code).exists()


def _store_customer(client: TwinfieldClient, connection: Connection, code: str, counts: Counts) -> None:
    try:
        dimension = client.process(f"<read><type>dimensions</type><office>{escape(client.office)}</office>"
                                   f"<dimtype>DEB</dimtype><code>{escape(code)}</code></read>")
    except TwinfieldRefused:
        counts.skipped += 1  # gone since it was listed
        return
    event = customer_event(dimension)
    counts.customers += 1
    _store(connection, f"dimension:{code}", event, counts)


def customer_event(dimension) -> dict:
    """A `<dimension>` of type DEB -> client.upserted (the invoice address, or the first)."""
    addresses = dimension.findall("addresses/address")
    address = next((a for a in addresses if a.get("type") == "invoice" and a.get("default") == "true"), None)
    if address is None and addresses:
        address = addresses[0]

    def text(node, path: str, limit: int) -> str:
        return ((node.findtext(path) if node is not None else "") or "").strip()[:limit]

    kvk = "".join(ch for ch in text(dimension, "cocnumber", 40) if ch.isdigit())
    return {"type": "client.upserted", "data": {
        "external_id": text(dimension, "code", 100), "name": text(dimension, "name", 200),
        "kvk_number": kvk if len(kvk) == 8 else "",
        "vat_number": text(dimension, "vatnumber", 20).replace(" ", "").upper(),
        "billing_email": text(address, "email", 254),
        "address": {"line": text(address, "field2", 200), "postal_code": text(address, "postcode", 16),
                    "city": text(address, "city", 100), "country": text(address, "country", 2).upper() or "NL"}}}


# --- Invoices and what is paid of them -----------------------------------------------------------

def _store_invoice(client: TwinfieldClient, connection: Connection, code: str, number: str, vat: "VatCodes",
                   counts: Counts) -> None:
    try:
        found = client.process(f"<read><type>transaction</type><office>{escape(client.office)}</office>"
                               f"<code>{escape(code)}</code><number>{escape(number)}</number></read>")
    except TwinfieldRefused:
        counts.skipped += 1  # a provisional transaction deleted since it was listed
        return
    event = invoice_event(found, vat)
    if event is None:
        counts.skipped += 1
        return
    with transaction.atomic():
        if Invoice.objects.filter(connection=connection, external_id=event["data"]["external_id"]).exists():
            event["type"] = "invoice.updated"
    counts.invoices += 1
    parts = matched_parts(found)
    if parts["reversed"] and parts["reversed"] >= _amount(_total_line(found).findtext("value")):
        # Undone the Twinfield way (a mirrored transaction in the same daybook, matched with it): void.
        data = event["data"]
        _store(connection, f"voided:{code}:{number}", {"type": "invoice.voided", "data": {
            "external_id": data["external_id"], "reason": "reversed in Twinfield",
            "updated_at": data["updated_at"]}}, counts)
        return
    _store(connection, f"transaction:{code}:{number}", event, counts)
    payment = payment_event(found, event, connection, paid=parts["paid"])
    if payment is not None:
        counts.payments += 1
        _store(connection, f"paid:{code}:{number}", payment, counts)


def invoice_event(found, vat: "VatCodes") -> dict | None:
    """A sales transaction read whole -> invoice.created (applied as an update when the portal has
    it). None for a transaction without a debit customer line and an invoice number."""
    header = found.find("header")
    total = next((line for line in found.iterfind("lines/line") if line.get("type") == "total"), None)
    if header is None or total is None or (total.findtext("debitcredit") or "") != "debit":
        return None
    invoice_number = (header.findtext("invoicenumber") or total.findtext("invoicenumber") or "").strip()
    customer = (total.findtext("dim2") or "").strip()
    if not invoice_number or not customer:
        return None
    issue_date = _date(header.findtext("date")) or timezone.localdate()
    due_date = _date(header.findtext("duedate")) or issue_date
    lines = []
    for line in found.iterfind("lines/line"):
        if line.get("type") != "detail":
            continue
        value = _amount(line.findtext("value"))
        if (line.findtext("debitcredit") or "") == "debit":
            value = -value  # a discount line on a sales invoice
        lines.append({"description": (line.findtext("description") or "-").strip()[:500] or "-", "quantity": "1",
                      "unit_price": str(value.quantize(CENT)),
                      "tax_rate": _rate_text(vat.rate(line, issue_date))})
    if not lines:
        return None
    totals = document_totals([{**line, "discount_percent": "0"} for line in lines])
    code, number = header.findtext("code"), header.findtext("number")
    return {"type": "invoice.created", "data": {
        "external_id": f"{code}:{number}", "number": invoice_number, "client_external_id": customer,
        "issue_date": issue_date.isoformat(), "due_date": due_date.isoformat(),
        "currency": (header.findtext("currency") or "EUR").strip(),
        "payment_terms": {"days": max(0, (due_date - issue_date).days), "text": ""},
        "purchase_order": "", "status": "open", "lines": lines,
        "tax_breakdown": [{"rate": _rate_text(rate), "base": str(base), "tax": str(tax)}
                          for rate, (base, tax) in sorted(totals.tax_breakdown.items())],
        "subtotal": str(totals.subtotal), "tax_total": str(totals.tax_total), "total": str(totals.total),
        "updated_at": _moment(header.findtext("modificationdate")).isoformat()}}


def _total_line(found):
    return next(line for line in found.iterfind("lines/line") if line.get("type") == "total")


def matched_parts(found) -> dict:
    """What of the invoice's customer line is matched, by what it is matched with: "reversed" by
    transactions in its own (sales) daybook (a reversal, a credit note), "paid" by anything else
    (a bank or cash transaction, a memorial booking of a payment)."""
    header, total = found.find("header"), _total_line(found)
    own = ((header.findtext("code") or "").strip(), (header.findtext("number") or "").strip())
    parts = {"reversed": Decimal(0), "paid": Decimal(0)}
    for match in total.iterfind("matches/set"):
        ours, others = Decimal(0), []
        for line in match.iterfind("lines/line"):
            key = ((line.findtext("code") or "").strip(), (line.findtext("number") or "").strip())
            if key == own:
                ours += _amount(line.findtext("matchvalue"))
            else:
                others.append(key[0])
        kind = "reversed" if others and all(code == own[0] for code in others) else "paid"
        parts[kind] += ours
    return parts


def payment_event(found, invoice: dict, connection: Connection, *, paid: Decimal) -> dict | None:
    """What Twinfield says is paid of the invoice (`paid`: matched with payments) beyond what the
    portal already knows is settled of it: one payment of the difference, named by the amount
    paid in all, so reading the same state again changes nothing."""
    total = _total_line(found)
    if paid <= 0:
        return None
    data = invoice["data"]
    new = (paid - _settled_known(connection, data["external_id"])).quantize(CENT)
    if new <= 0:
        return None
    matched = [_date(node.text) for node in total.iterfind("matches/set/matchdate")] + [_date(total.findtext("matchdate"))]
    when = max((d for d in matched if d), default=None)
    received = timezone.make_aware(datetime.datetime.combine(when, datetime.time(12))) if when else timezone.now()
    return {"type": "payment.recorded", "data": {
        "external_id": f"twinfield:{data['external_id']}:paid:{paid.quantize(CENT)}",
        "client_external_id": data["client_external_id"], "amount": str(new), "currency": data["currency"],
        "received_at": received.isoformat(), "method": "bank_transfer", "reference": "",
        "allocations": [{"invoice_external_id": data["external_id"], "amount": str(new)}]}}


def _settled_known(connection: Connection, external_id: str) -> Decimal:
    """What the portal has, or is about to have, settled of the invoice: its total less its open
    balance (payments and credit notes applied), with the polls' own payments counted as stored
    rather than as applied, so one stored by an earlier poll and not yet applied (its job still
    waiting) is not recorded again."""
    prefix = f"twinfield:{external_id}:paid:"
    with transaction.atomic():
        held = Invoice.objects.filter(connection=connection, external_id=external_id).values(
            "pk", "total", "open_balance").first()
        applied = Decimal(0)
        if held:
            applied = PaymentAllocation.objects.filter(invoice_id=held["pk"], payment__connection=connection,
                                                       payment__external_id__startswith=prefix) \
                .aggregate(total=Sum("amount"))["total"] or Decimal(0)
        stored = WebhookRequest.objects.filter(source=SOURCE_NAME, account=connection.slug,
                                               natural_key__startswith=f"paid:{external_id}:",
                                               status=WebhookRequest.Status.ACCEPTED)
        recorded = sum((Decimal(json.loads(row.body)["data"]["amount"]) for row in stored), Decimal(0))
    settled = (held["total"] - held["open_balance"]) if held else Decimal(0)
    return settled - applied + recorded


class VatCodes:
    """The office's VAT codes, read once a poll and only when an invoice needs one: a code's
    percentage on a date (codes change rate over time: VH 19 % then 21 %)."""

    def __init__(self, client: TwinfieldClient):
        self.client = client
        self.read: dict[str, list[tuple[datetime.date, Decimal]]] = {}

    def rate(self, line, on: datetime.date) -> Decimal:
        code = (line.findtext("vatcode") or "").strip()
        if code and code not in self.read:
            self.read[code] = self._percentages(code)
        dated = [(start, rate) for start, rate in self.read.get(code, []) if start <= on]
        if dated:
            return max(dated)[1]
        value, tax = _amount(line.findtext("value")), _amount(line.findtext("vatvalue"))
        return (tax * 100 / value).quantize(CENT, ROUND_HALF_UP) if value else Decimal(0)

    def _percentages(self, code: str) -> list[tuple[datetime.date, Decimal]]:
        try:
            found = self.client.process(f"<read><type>vat</type><office>{escape(self.client.office)}</office>"
                                        f"<code>{escape(code)}</code></read>")
        except TwinfieldRefused:
            return []
        rates = []
        for node in found.iterfind("percentages/percentage"):
            start, rate = _date(node.findtext("date")), node.findtext("percentage")
            if start and rate:
                rates.append((start, _amount(rate)))
        return rates


# --- Small things --------------------------------------------------------------------------------

def _store(connection: Connection, key: str, event: dict, counts: Counts) -> None:
    # The data, not the type: an invoice read again unchanged (created then, an update now) is a duplicate.
    digest = hashlib.sha256(json.dumps(event["data"], sort_keys=True).encode()).hexdigest()[:24]
    with transaction.atomic():
        outcome = services.event_store(connection, source=SOURCE_NAME, natural_key=f"{key}:{digest}", payload=event)
    setattr(counts, outcome, getattr(counts, outcome) + 1)


def _move(cursor: TwinfieldCursor, position: str) -> None:
    with transaction.atomic():
        TwinfieldCursor.objects.filter(pk=cursor.pk).update(position=position, polled_at=timezone.now())
    cursor.position = position


def _twinfield_now() -> str:
    """Twinfield's moments are Dutch local time, YYYYMMDDHHMMSS."""
    from zoneinfo import ZoneInfo

    return timezone.now().astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%Y%m%d%H%M%S")


def _amount(text) -> Decimal:
    try:
        return Decimal(str(text or "0").strip() or "0")
    except InvalidOperation:
        return Decimal(0)


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def _date(text) -> datetime.date | None:
    text = (text or "").strip()
    try:
        return datetime.datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def _moment(text) -> datetime.datetime:
    from zoneinfo import ZoneInfo

    try:
        return datetime.datetime.strptime((text or "").strip()[:14], "%Y%m%d%H%M%S").replace(
            tzinfo=ZoneInfo("Europe/Amsterdam"))
    except ValueError:
        return timezone.now()
