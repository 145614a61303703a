"""Exact Online's records as the canonical events of docs/webhooks.md (pure functions, no I/O but
the VAT codes read once per sync).

Field names and codes are Exact's REST reference, as generated into picqer/exact-php-client
(SyncAccount.php, SyncSalesInvoice.php, TransactionLine.php, SyncDeleted.php, VatCode.php; see
../shared/reference/api-facts.md §1.5-1.6): sales invoice `Status` 10 draft, 20 open, 50 processed;
`Type` 8020 invoice, 8021 credit note (8023/8024 their direct-sales twins); amounts of a credit note
are negative; transaction line `Type` 40 is a cash-flow (bank or cash) entry; sync/Deleted
`EntityType` 13 is a sales invoice; a VAT code's `Type` is E (excluding), I (including), B (0%,
base only) or N (no VAT).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from integrations.exact.models import ExactCursor
from integrations.exact.values import parse_date, parse_moment
from invoices.money import document_totals, line_amounts

Entity = ExactCursor.Entity
INVOICE_TYPES = {8020, 8023}
CREDIT_NOTE_TYPES = {8021, 8024}
DRAFT, OPEN, PROCESSED = 10, 20, 50
CASH_FLOW = 40
DELETED_SALES_INVOICE = 13
CENT = Decimal("0.01")
HUNDRED = Decimal(100)

SELECT = {
    Entity.ACCOUNTS: ["Timestamp", "ID", "Code", "Name", "Email", "VATNumber", "ChamberOfCommerce",
                      "AddressLine1", "Postcode", "City", "Country", "Status", "IsSales", "Modified"],
    Entity.SALES_INVOICES: ["Timestamp", "ID", "InvoiceID", "InvoiceNumber", "InvoiceTo", "InvoiceDate", "DueDate",
                            "Currency", "Status", "Type", "YourRef", "Modified", "AmountFCExclVat", "LineNumber",
                            "Description", "Quantity", "UnitPrice", "AmountFC", "VATAmountFC", "VATCode",
                            "VATPercentage"],
    Entity.TRANSACTION_LINES: ["Timestamp", "ID", "Account", "AmountFC", "Currency", "Date", "Description", "EntryID",
                               "EntryNumber", "InvoiceNumber", "JournalCode", "Type", "Notes"],
    Entity.DELETED: ["Timestamp", "EntityKey", "EntityType", "DeletedDate"],
}
VAT_SELECT = ["Code", "Description", "Percentage", "Type"]


@dataclass(frozen=True)
class VatCode:
    code: str
    rate: Decimal  # percent, 0-100
    includes_vat: bool


@dataclass
class Context:
    """What one sync run learns as it goes: the division's VAT codes, and the InvoiceIDs of the
    invoice numbers read so far (a credit note may come pages after the invoice it credits)."""
    vat_codes: dict[str, VatCode]
    invoice_ids: dict[str, str] = field(default_factory=dict)


def vat_codes(client) -> dict[str, VatCode]:
    """The division's own VAT codes (they differ per administration: never hard-coded), by code."""
    codes = {}
    for row in client.get_all("vat/VATCodes", select=VAT_SELECT):
        kind = (row.get("Type") or "E").upper()
        rate = Decimal(0) if kind in ("B", "N") else _percent(row.get("Percentage"))
        codes[str(row["Code"]).strip()] = VatCode(code=str(row["Code"]).strip(), rate=rate, includes_vat=kind == "I")
    return codes


def _percent(value) -> Decimal:
    """Exact writes a VAT percentage as a fraction (0.21); a whole number (21) is read as percent."""
    number = Decimal(str(value or 0))
    return (number * HUNDRED if number <= 1 else number).quantize(CENT).normalize()


def _text(value, limit: int) -> str:
    return " ".join(str(value or "").split())[:limit]


def _money(value) -> str:
    return str(Decimal(str(value)).quantize(CENT, ROUND_HALF_UP))


def _iso_moment(value) -> str:
    return parse_moment(value).isoformat()


# --- Customers ------------------------------------------------------------------------------

def account_event(row: dict) -> dict | None:
    """crm/Accounts -> client.upserted; None for an account that is no customer (a supplier,
    a prospect)."""
    if row.get("Status") not in (None, "C") and not row.get("IsSales"):
        return None
    kvk = "".join(ch for ch in str(row.get("ChamberOfCommerce") or "") if ch.isdigit())
    data = {"external_id": str(row["ID"]), "name": _text(row.get("Name"), 200),
            "kvk_number": kvk if len(kvk) == 8 else "",
            "vat_number": _text(row.get("VATNumber"), 20).replace(" ", "").upper(),
            "billing_email": _text(row.get("Email"), 254),
            "address": {"line": _text(row.get("AddressLine1"), 200), "postal_code": _text(row.get("Postcode"), 16),
                        "city": _text(row.get("City"), 100), "country": _text(row.get("Country"), 2).upper() or "NL"}}
    return {"type": "client.upserted", "data": data}


# --- Sales invoices and credit notes ----------------------------------------------------------

def credited_numbers(groups) -> set[str]:
    """Invoice numbers the credit notes among these groups say they credit."""
    numbers = set()
    for lines in groups:
        number = _credited_number(lines[0])
        if lines[0].get("Type") in CREDIT_NOTE_TYPES and number:
            numbers.add(number)
    return numbers


def _credited_number(header: dict) -> str:
    """Where Exact names the invoice a credit note credits: the credit note's `YourRef` holds the
    invoice's number when it was made with "Credit" from the invoice."""
    reference = str(header.get("YourRef") or "").strip()
    return reference if reference.isdigit() else ""


def invoice_event(lines: list[dict], context: Context, *, known: bool, invoice_ids: dict[str, str]) -> dict | None:
    """The rows of one sales invoice (one per line, the header repeated) -> invoice.created or
    invoice.updated (open for Status 20 and 50), or credit_note.created for a credit note that
    names its invoice; None for a draft or a credit note that names none (nothing to attach it to)."""
    lines = sorted(lines, key=lambda r: (r.get("LineNumber") or 0, str(r["ID"])))
    header = lines[0]
    if header.get("Status") == DRAFT:
        return None
    credit = header.get("Type") in CREDIT_NOTE_TYPES
    document_lines = [_line(row, context, credit=credit) for row in lines if _is_priced(row)]
    totals = document_totals([{**line, "discount_percent": line.get("discount_percent", "0")}
                              for line in document_lines])
    issue_date = parse_date(header.get("InvoiceDate"))
    data = {"external_id": str(header["InvoiceID"]), "number": str(header.get("InvoiceNumber") or ""),
            "issue_date": issue_date.isoformat(), "lines": document_lines,
            "tax_breakdown": [{"rate": _rate_text(rate), "base": str(base), "tax": str(tax)}
                              for rate, (base, tax) in sorted(totals.tax_breakdown.items())],
            "subtotal": str(totals.subtotal), "tax_total": str(totals.tax_total), "total": str(totals.total)}
    if credit:
        invoice_id = invoice_ids.get(_credited_number(header))
        if not invoice_id:
            return None
        return {"type": "credit_note.created",
                "data": {**data, "invoice_external_id": invoice_id,
                         "reason": _text(header.get("Description"), 300)}}
    if header.get("Type") not in INVOICE_TYPES:
        return None
    due_date = parse_date(header.get("DueDate")) or issue_date
    data |= {"client_external_id": str(header["InvoiceTo"]), "due_date": due_date.isoformat(),
             "currency": header.get("Currency") or "EUR",
             "payment_terms": {"days": max(0, (due_date - issue_date).days),
                               "text": _text(header.get("PaymentConditionDescription"), 300)},
             "purchase_order": _text(header.get("YourRef"), 100), "status": "open",
             "updated_at": _iso_moment(header.get("Modified"))}
    return {"type": "invoice.updated" if known else "invoice.created", "data": data}


def _is_priced(row: dict) -> bool:
    return row.get("AmountFC") is not None and row.get("Quantity") is not None


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def _line(row: dict, context: Context, *, credit: bool) -> dict:
    """A line at the ledger's precision, its net equal to Exact's AmountFC (excluding VAT): as
    Exact wrote it (quantity × unit price less the discount) when that adds up, else as one
    amount (a price including VAT, more decimals than the ledger keeps)."""
    sign = -1 if credit else 1
    net = Decimal(str(row["AmountFC"])) * sign
    vat = context.vat_codes.get(str(row.get("VATCode") or "").strip())
    rate = vat.rate if vat else _percent(row.get("VATPercentage"))
    quantity = Decimal(str(row.get("Quantity") or 0)) * sign
    price = Decimal(str(row.get("UnitPrice") or 0))
    discount = _percent(row.get("Discount")) if row.get("Discount") else Decimal(0)
    line = {"description": _text(row.get("Description"), 500) or "-", "unit": _text(row.get("UnitCode"), 20)}
    fits = (quantity == quantity.quantize(Decimal("0.001")) and price == price.quantize(Decimal("0.0001"))
            and quantity > 0 and price >= 0 and not (vat and vat.includes_vat))
    if fits and line_amounts(quantity=quantity, unit_price=price, discount_percent=discount,
                             tax_rate=rate).net == net.quantize(CENT, ROUND_HALF_UP):
        line |= {"quantity": format(quantity.normalize(), "f"), "unit_price": format(price.normalize(), "f"),
                 "tax_rate": _rate_text(rate)}
        if discount:
            line["discount_percent"] = _rate_text(discount)
        return line
    return line | {"quantity": "1", "unit_price": _money(net), "tax_rate": _rate_text(rate)}


# --- Payments and deletes -----------------------------------------------------------------------

def is_payment_received(row: dict) -> bool:
    """A cash-flow line on a customer that settles one of its invoices: money received
    (a receipt credits the receivable: a negative amount)."""
    return (row.get("Type") == CASH_FLOW and bool(row.get("Account")) and bool(row.get("InvoiceNumber"))
            and Decimal(str(row.get("AmountFC") or 0)) < 0)


def payment_event(row: dict, invoice) -> dict:
    amount = _money(-Decimal(str(row["AmountFC"])))
    return {"type": "payment.recorded",
            "data": {"external_id": f"exact-line-{row['ID']}", "client_external_id": str(row["Account"]),
                     "amount": amount, "currency": row.get("Currency") or invoice.currency,
                     "received_at": _iso_moment(row.get("Date")),
                     "method": "bank_transfer", "reference": _text(row.get("Description"), 200),
                     "allocations": [{"invoice_external_id": invoice.external_id, "amount": amount}]}}


def deleted_event(row: dict) -> dict | None:
    """sync/Deleted: a sales invoice deleted in Exact is voided in the portal."""
    if row.get("EntityType") != DELETED_SALES_INVOICE:
        return None
    return {"type": "invoice.voided",
            "data": {"external_id": str(row["EntityKey"]), "reason": "deleted in Exact Online",
                     "updated_at": _iso_moment(row.get("DeletedDate"))}}
