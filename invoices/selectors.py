"""Reads of the ledger that views, PDFs and reminders share."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, Prefetch, Sum
from django.urls import reverse
from django.utils import timezone

from invoices.models import ClientCredit, CreditNote, Invoice, Payment, PaymentAllocation


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


def client_credit_balances(*, client) -> list[tuple[str, Decimal]]:
    """The client's credit per currency, where there is any: (currency, amount)."""
    rows = (ClientCredit.objects.filter(client=client).values("currency").order_by("currency")
            .annotate(total=Sum("amount")).values_list("currency", "total"))
    return [(currency, total) for currency, total in rows if total]


def client_payments(*, client) -> list[Payment]:
    """Every payment of the client, newest first, each with its allocations (the invoices it
    settled, and what refunds and chargebacks took back) in one query more."""
    return list(Payment.objects.filter(client=client).order_by("-received_at", "-id").prefetch_related(
        Prefetch("allocations", queryset=PaymentAllocation.objects.select_related("invoice").order_by("id"))))


def client_payment_get(*, client, pk: int) -> Payment:
    """One payment as its client may see it; DoesNotExist otherwise."""
    return (Payment.objects.select_related("client", "brand").prefetch_related(
        Prefetch("allocations", queryset=PaymentAllocation.objects.select_related("invoice").order_by("id")))
        .get(client=client, pk=pk))


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


def client_invoices(*, client):
    """Every invoice a client may see (never drafts), newest first, with credit notes."""
    return (Invoice.objects.filter(client=client).exclude(status=Invoice.Status.DRAFT)
            .select_related("brand").prefetch_related("credit_notes").order_by("-issue_date", "-id"))


@dataclass(frozen=True)
class Activity:
    when: object
    kind: str
    text_args: dict
    url: str


@dataclass(frozen=True)
class Dashboard:
    open_by_currency: list[tuple[str, Decimal]]
    overdue_by_currency: list[tuple[str, Decimal]]
    overdue_count: int
    next_due: Invoice | None
    activity: list[Activity]
    pending: list[Invoice] = ()
    credit_by_currency: list[tuple[str, Decimal]] = ()


def client_dashboard(*, client, today=None) -> Dashboard:
    """The overview: what is open, what is overdue and can be paid now (not what is pending at a
    gateway), the payments still pending, the client's credit and the latest activity."""
    today = today or timezone.localdate()
    visible = Invoice.objects.filter(client=client).payable()
    open_by = list(visible.values("currency").order_by("currency").annotate(total=Sum("open_balance"))
                   .values_list("currency", "total"))
    overdue = visible.payable_now().overdue(today)
    overdue_by = list(overdue.values("currency").order_by("currency")
                      .annotate(total=Sum(F("open_balance") - F("amount_pending"))).values_list("currency", "total"))
    overdue_count = overdue.aggregate(n=Count("pk"))["n"]
    next_due = visible.filter(due_date__gte=today).order_by("due_date", "id").first()
    activity = [Activity(i.issue_date, "invoice", {"number": i.number, "amount": i.total, "currency": i.currency},
                         reverse("invoices:detail", args=[i.pk]))
                for i in Invoice.objects.filter(client=client).exclude(status=Invoice.Status.DRAFT)
                .order_by("-issue_date", "-id")[:6]]
    activity += [Activity(timezone.localdate(p.received_at), "payment",
                          {"amount": p.amount, "currency": p.currency, "reference": p.number or p.reference},
                          reverse("payments:receipt", args=[p.pk]))
                 for p in Payment.objects.filter(client=client).order_by("-received_at")[:6]]
    activity += [Activity(c.issue_date, "credit_note", {"number": c.number, "amount": c.total, "currency": c.currency,
                                                        "invoice": c.invoice.number},
                          reverse("invoices:credit_note_detail", args=[c.pk]))
                 for c in CreditNote.objects.filter(client=client).exclude(status=CreditNote.Status.DRAFT)
                 .select_related("invoice").order_by("-issue_date")[:6]]
    activity.sort(key=lambda a: a.when, reverse=True)
    pending = list(visible.pending().order_by("pending_since", "id")[:10])
    return Dashboard(open_by, overdue_by, overdue_count, next_due, activity[:8], pending=pending,
                     credit_by_currency=client_credit_balances(client=client))
