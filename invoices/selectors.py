"""Reads of the ledger that views, PDFs and reminders share."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from invoices.models import ClientCredit, CreditNote, Invoice


@dataclass(frozen=True)
class TaxRow:
    rate: Decimal
    base: Decimal
    tax: Decimal


def document_tax_breakdown(*, document: Invoice | CreditNote) -> list[TaxRow]:
    """Base and tax per rate, from the stored (rounded) lines: what the invoice and its PDF show."""
    rows = (document.lines.values("tax_rate").order_by("tax_rate")
            .annotate(base=Sum("net_amount"), tax=Sum("tax_amount")))
    return [TaxRow(rate=row["tax_rate"], base=row["base"], tax=row["tax"]) for row in rows]


def client_credit_balance(*, client, currency: str) -> Decimal:
    total = ClientCredit.objects.filter(client=client, currency=currency).aggregate(total=Sum("amount"))["total"]
    return total or Decimal("0.00")


def client_invoice_get(*, client, pk: int) -> Invoice:
    """An invoice as its client may see it (never a draft); DoesNotExist otherwise."""
    return (Invoice.objects.select_related("client", "brand")
            .exclude(status=Invoice.Status.DRAFT).get(client=client, pk=pk))


def client_credit_note_get(*, client, pk: int) -> CreditNote:
    return (CreditNote.objects.select_related("client", "brand", "invoice")
            .exclude(status=CreditNote.Status.DRAFT).get(client=client, pk=pk))


def client_recent_invoices(*, client, limit: int = 20) -> list[Invoice]:
    """The client's latest invoices, newest first, drafts never shown."""
    return list(Invoice.objects.filter(client=client).exclude(status=Invoice.Status.DRAFT)
                .order_by("-issue_date", "-id")[:limit])
