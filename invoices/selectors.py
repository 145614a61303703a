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
