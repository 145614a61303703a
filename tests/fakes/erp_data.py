"""The books of the local custom ERP (tests/fakes/erp.py): customers, invoices, credit notes and
payments, kept in the REST flavour's shape (docs: /work/notes/erp_spec.md, "The fake ERP") with
money as Decimal, and written out either as REST JSON (amounts as JSON numbers with their decimals
written literally, 242.00) or as GraphQL nodes (amounts as strings, dates DD-MM-YYYY).

Totals follow the portal's money rules (docs/webhooks.md, Money rules), so a faithful mapping of a
record the fake made is an event the portal takes: a line's net is qty × price × (1 − discount/100)
rounded half-up to the cent, its VAT is net × rate/100 rounded half-up; the VAT breakdown has one row
per rate.

Every change stamps `modified` with the fake's clock, in whole seconds and strictly increasing (one
second past the last stamp when two changes fall in the same second), so that "modified > watermark"
never loses a record changed in the same second as the last one a client saw."""
from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

COLLECTIONS = ("customers", "invoices", "credit-notes", "payments")
CENT = Decimal("0.01")


def money(value) -> Decimal:
    return Decimal(str(value))


def decimal_text(value: Decimal) -> str:
    """At least two decimals, more when the value has them (a unit price of 19.9950 stays so)."""
    value = Decimal(value)
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(CENT)
    return format(value, "f")


def dumps(value) -> str:
    """JSON with every Decimal written as a number with its decimals (242.00, never 242.0 or "242.00")."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def moment_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_moment(text: str) -> datetime:
    """ISO 8601; a moment without a zone is taken as UTC. ValueError when it is not one."""
    moment = datetime.fromisoformat(text.strip().replace(" ", "+") if "T" in text else text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _line(line) -> dict:
    """A line from a dict or a tuple (text, qty, price, vat rate[, discount])."""
    if not isinstance(line, dict):
        text, qty, price, vat, *rest = line
        line = {"text": text, "qty": qty, "price": price, "vat": vat, "discount": rest[0] if rest else 0}
    return {"text": line["text"], "qty": money(line.get("qty", 1)), "price": money(line["price"]),
            "vat": money(line.get("vat", 21)), "discount": money(line.get("discount", 0))}


def document_totals(lines: list[dict]) -> tuple[dict, list[dict]]:
    """(totals {net, vat, gross}, vat_breakdown [{rate, base, amount}]) by the portal's money rules."""
    breakdown: dict[Decimal, list[Decimal]] = {}
    for line in lines:
        net = _round(line["qty"] * line["price"] * (1 - line["discount"] / 100))
        row = breakdown.setdefault(line["vat"], [Decimal("0.00"), Decimal("0.00")])
        row[0] += net
        row[1] += _round(net * line["vat"] / 100)
    rows = [{"rate": rate, "base": base, "amount": amount} for rate, (base, amount) in breakdown.items()]
    net = sum((r["base"] for r in rows), Decimal("0.00"))
    vat = sum((r["amount"] for r in rows), Decimal("0.00"))
    return {"net": net, "vat": vat, "gross": net + vat}, rows


class Books:
    """The records, by collection and id, in the REST shape. The caller holds the fake's lock."""

    def __init__(self, now: Callable[[], datetime]):
        self.now = now
        self.records: dict[str, dict[str, dict]] = {name: {} for name in COLLECTIONS}
        self.last_stamp: datetime | None = None
        self.counters = {"customers": 0, "invoices": 1000, "credit-notes": 2000, "payments": 3000}

    def stamp(self) -> str:
        moment = self.now().astimezone(timezone.utc).replace(microsecond=0)
        if self.last_stamp is not None and moment <= self.last_stamp:
            moment = self.last_stamp + timedelta(seconds=1)
        self.last_stamp = moment
        return moment_text(moment)

    def _next_id(self, collection: str) -> int:
        self.counters[collection] += 1
        return self.counters[collection]

    def _store(self, collection: str, record: dict) -> dict:
        if record["id"] in self.records[collection]:
            raise ValueError(f"{collection} {record['id']} exists already")
        record.setdefault("modified", self.stamp())
        self.records[collection][record["id"]] = record
        return copy.deepcopy(record)

    def today(self) -> date:
        return self.now().astimezone(timezone.utc).date()

    # Adding.
    def add_customer(self, name: str, *, id: str | None = None, email: str | None = None, vat: str | None = None,
                     kvk: str | None = None, street: str = "Kerkstraat 1", zip: str = "1234 AB",
                     city: str = "Utrecht", country: str = "NL", language: str = "nl", currency: str = "EUR",
                     **extra) -> dict:
        number = self._next_id("customers")
        slug = "".join(c for c in name.lower() if c.isalnum())[:20] or "klant"
        return self._store("customers", {
            "id": id or f"C{number:03d}", "name": name, "email": email or f"factuur@{slug}.test",
            "vat": vat, "kvk": kvk,
            "address": {"street": street, "zip": zip, "city": city, "country": country},
            "language": language, "currency": currency, **extra})

    def add_invoice(self, customer_id: str, lines, *, id: str | None = None, number: str | None = None,
                    date: str | None = None, due: str | None = None, currency: str | None = None,
                    status: str = "open", reference: str | None = None, **extra) -> dict:
        serial = self._next_id("invoices")
        issued = date or self.today().isoformat()
        lines = [_line(line) for line in lines]
        totals, breakdown = document_totals(lines)
        customer = self.records["customers"].get(customer_id, {})
        return self._store("invoices", {
            "id": id or f"INV-{serial}", "customer_id": customer_id, "number": number or f"2026-{serial}",
            "date": issued, "due": due or (datetime.fromisoformat(issued).date() + timedelta(days=30)).isoformat(),
            "currency": currency or customer.get("currency", "EUR"), "status": status, "reference": reference,
            "lines": lines, "totals": totals, "vat_breakdown": breakdown, **extra})

    def add_credit_note(self, invoice_id: str, lines=None, *, id: str | None = None, number: str | None = None,
                        date: str | None = None, reason: str = "Creditering", **extra) -> dict:
        """Lines positive (what is credited); by default every line of the invoice."""
        serial = self._next_id("credit-notes")
        if lines is None:
            lines = copy.deepcopy(self.records["invoices"][invoice_id]["lines"])
        lines = [_line(line) for line in lines]
        totals, breakdown = document_totals(lines)
        return self._store("credit-notes", {
            "id": id or f"CN-{serial}", "invoice_id": invoice_id, "number": number or f"2026-C{serial}",
            "date": date or self.today().isoformat(), "reason": reason, "lines": lines, "totals": totals,
            "vat_breakdown": breakdown, **extra})

    def add_payment(self, customer_id: str, amount, *, allocations=None, id: str | None = None,
                    currency: str | None = None, date: str | None = None, method: str = "bank_transfer",
                    reference: str | None = None, **extra) -> dict:
        """allocations: [(invoice_id, amount)] or dicts; by default none."""
        serial = self._next_id("payments")
        customer = self.records["customers"].get(customer_id, {})
        allocated = [a if isinstance(a, dict) else {"invoice_id": a[0], "amount": a[1]} for a in (allocations or [])]
        return self._store("payments", {
            "id": id or f"PAY-{serial}", "customer_id": customer_id, "amount": money(amount),
            "currency": currency or customer.get("currency", "EUR"), "date": date or moment_text(self.now()),
            "method": method, "reference": reference,
            "allocations": [{"invoice_id": a["invoice_id"], "amount": money(a["amount"])} for a in allocated],
            **extra})

    # Changing.
    def update(self, collection: str, record_id: str, **fields) -> dict:
        """Sets the fields as given (a test may break a record on purpose) and bumps `modified`;
        new `lines` on a document recompute its totals unless `totals` is given too."""
        record = self.records[collection][record_id]
        if "lines" in fields and collection in ("invoices", "credit-notes"):
            fields["lines"] = [_line(line) for line in fields["lines"]]
            if "totals" not in fields:
                fields["totals"], fields["vat_breakdown"] = document_totals(fields["lines"])
        record.update(fields)
        if "modified" not in fields:
            record["modified"] = self.stamp()
        return copy.deepcopy(record)

    def delete(self, collection: str, record_id: str) -> None:
        del self.records[collection][record_id]

    # Reading.
    def ordered(self, collection: str, since: datetime | None = None) -> list[dict]:
        """The records in (modified, id) order; only those modified after `since` when given."""
        rows = [(parse_moment(r["modified"]), r["id"], r) for r in self.records[collection].values()]
        rows.sort(key=lambda row: (row[0], row[1]))
        return [r for moment, _, r in rows if since is None or moment > since]

    def get(self, collection: str, record_id: str) -> dict | None:
        found = self.records[collection].get(record_id)
        return copy.deepcopy(found) if found else None


# The GraphQL flavour's view of a record: camelCase, amounts as strings, dates DD-MM-YYYY.
def _gql_date(value):
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-":
        return value  # a test broke it on purpose: passed on as it is
    return f"{value[8:10]}-{value[5:7]}-{value[0:4]}"


def _gql_amount(value):
    return decimal_text(value) if isinstance(value, Decimal) else (None if value is None else str(value))


def _gql_lines(lines) -> list[dict]:
    return [{"text": line.get("text"), "qty": _gql_amount(line.get("qty")), "price": _gql_amount(line.get("price")),
             "vat": _gql_amount(line.get("vat")), "discount": _gql_amount(line.get("discount"))}
            for line in lines or []]


def _gql_totals(record) -> tuple[dict | None, list[dict]]:
    totals = record.get("totals")
    return ({k: _gql_amount(v) for k, v in totals.items()} if isinstance(totals, dict) else None,
            [{"rate": _gql_amount(r.get("rate")), "base": _gql_amount(r.get("base")),
              "amount": _gql_amount(r.get("amount"))} for r in record.get("vat_breakdown") or []])


def graphql_node(collection: str, record: dict) -> dict:
    common = {"id": record["id"], "updatedAt": record.get("modified")}
    if collection == "customers":
        return {**common, "name": record.get("name"), "email": record.get("email"), "vat": record.get("vat"),
                "kvk": record.get("kvk"), "address": record.get("address"), "language": record.get("language"),
                "currency": record.get("currency")}
    if collection == "invoices":
        totals, breakdown = _gql_totals(record)
        return {**common, "customerId": record.get("customer_id"), "number": record.get("number"),
                "date": _gql_date(record.get("date")), "dueDate": _gql_date(record.get("due")),
                "currency": record.get("currency"), "status": record.get("status"),
                "reference": record.get("reference"), "lines": _gql_lines(record.get("lines")),
                "totals": totals, "vatBreakdown": breakdown}
    if collection == "credit-notes":
        totals, breakdown = _gql_totals(record)
        return {**common, "invoiceId": record.get("invoice_id"), "number": record.get("number"),
                "date": _gql_date(record.get("date")), "reason": record.get("reason"),
                "lines": _gql_lines(record.get("lines")), "totals": totals, "vatBreakdown": breakdown}
    return {**common, "customerId": record.get("customer_id"), "amount": _gql_amount(record.get("amount")),
            "currency": record.get("currency"), "paidAt": record.get("date"), "method": record.get("method"),
            "reference": record.get("reference"),
            "allocations": [{"invoiceId": a.get("invoice_id"), "amount": _gql_amount(a.get("amount"))}
                            for a in record.get("allocations") or []]}
