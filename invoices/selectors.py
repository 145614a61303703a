"""Reads of the ledger that views, PDFs and reminders share."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace

from django.contrib.postgres.expressions import ArraySubquery
from django.db import models
from django.db.models import CharField, Count, DateField, DateTimeField, DecimalField, F, OuterRef, Prefetch, Q, Subquery, Sum, TextField, Value
from django.db.models.functions import Cast, Coalesce, JSONObject
from django.urls import reverse
from django.utils import timezone

from invoices.models import (TAX_EXEMPTIONS, ClientCredit, CreditNote, Invoice, InvoiceLine, Payment, PaymentAllocation,
                             RenderedDocument, TaxCategory)
from invoices.signals import document_detail_annotations
from portal.compiled import CompiledQuery


@dataclass(frozen=True)
class TaxRow:
    rate: Decimal
    base: Decimal
    tax: Decimal
    category: str = TaxCategory.STANDARD  # the VAT category code (S, Z, E, AE, K, G, O)
    exemption: str = ""  # a line's own words for why no VAT is charged, if it gave any

    @property
    def exemption_text(self) -> str:
        """Why no VAT is charged, as the PDF and the e-invoice say it (empty where VAT is charged)."""
        if self.category not in TAX_EXEMPTIONS:
            return ""
        return self.exemption or str(TAX_EXEMPTIONS[self.category][1])

    @property
    def exemption_code(self) -> str:
        """The VATEX code of the category without VAT (EN 16931 BT-121), where there is one."""
        return TAX_EXEMPTIONS.get(self.category, ("", ""))[0]


def document_tax_breakdown(*, document: Invoice | CreditNote, lines=None) -> list[TaxRow]:
    """Base and tax per VAT category and rate, from the stored (rounded) lines: what the invoice,
    its PDF and its e-invoice show. Given the document's lines already read, summed from them (no
    query)."""
    if lines is None:
        lines = [SimpleNamespace(**row) for row in document.lines.values(
            "tax_rate", "tax_category", "tax_exemption_reason", "net_amount", "tax_amount")]
    sums: dict[tuple[str, Decimal], list] = {}
    for item in lines:
        category = item.tax_category or (TaxCategory.STANDARD if item.tax_rate > 0 else TaxCategory.ZERO_RATED)
        row = sums.setdefault((category, item.tax_rate), [Decimal("0.00"), Decimal("0.00"), ""])
        row[0] += item.net_amount
        row[1] += item.tax_amount
        row[2] = row[2] or item.tax_exemption_reason
    return [TaxRow(rate=rate, base=base, tax=tax, category=category, exemption=exemption)
            for (category, rate), (base, tax, exemption) in sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


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
    credited = (ClientCredit.objects.filter(payment=OuterRef("pk")).order_by().values("payment")
                .annotate(total=Sum("amount")).values("total"))
    return (Payment.objects.select_related("client", "brand").prefetch_related(
        Prefetch("allocations", queryset=PaymentAllocation.objects.select_related("invoice").order_by("id")))
        .annotate(credited_total=Coalesce(Subquery(credited), Value(Decimal("0.00")),
                                          output_field=DecimalField(max_digits=14, decimal_places=2)))
        .get(client=client, pk=pk))


def _id_of(client) -> int | None:
    """A client's id for a compiled read; None (no client: no row) as `.get(client=None)` found none."""
    return client.pk if client is not None else None


def _client_invoice_query(*, with_stored_pdf: bool):
    def build(client_id, pk):
        invoices = Invoice.objects.select_related("client", "brand").exclude(status=Invoice.Status.DRAFT)
        return (with_stored_pdf_of(invoices, "invoice") if with_stored_pdf else invoices).filter(
            client_id=client_id, pk=pk)
    return CompiledQuery(build, single=True, client_id=int, pk=int)


# Every invoice page, payment and download reads its invoice this way: compiled once (portal.compiled).
_CLIENT_INVOICE = {stored: _client_invoice_query(with_stored_pdf=stored) for stored in (False, True)}


def client_invoice_get(*, client, pk: int, with_stored_pdf: bool = False) -> Invoice:
    """An invoice as its client may see it (never a draft); DoesNotExist otherwise. With
    `with_stored_pdf`, also which PDF of it is stored (see `with_stored_pdf_of`)."""
    return _CLIENT_INVOICE[with_stored_pdf].get(client_id=_id_of(client), pk=int(pk))


def with_stored_pdf_of(documents, owner: str):
    """Documents (invoices or credit notes, `owner` says which) each with the fingerprint and file
    of its latest stored PDF, or None, read in the same query: a download whose PDF is current
    then needs no lookup of its own (invoices.documents.render.document_pdf)."""
    latest = RenderedDocument.objects.filter(**{owner: OuterRef("pk")}).order_by("-id")
    return documents.annotate(stored_pdf_fingerprint=Subquery(latest.values("fingerprint")[:1]),
                              stored_pdf_file=Subquery(latest.values("file_name")[:1]))


@dataclass(frozen=True)
class InvoiceDetail:
    invoice: Invoice
    lines: list[InvoiceLine]
    credit_notes: list[CreditNote]
    allocations: list[PaymentAllocation]  # each with its payment, oldest first


def _client_invoice_detail(client_id, pk):
    return (Invoice.objects.select_related("client", "brand").exclude(status=Invoice.Status.DRAFT)
            .annotate(**detail_annotations(Invoice))
            .annotate(
                line_rows=ArraySubquery(InvoiceLine.objects.filter(invoice=OuterRef("pk"))
                                        .order_by("position").values(row=_json_row(InvoiceLine))),
                credit_note_rows=ArraySubquery(
                    CreditNote.objects.filter(invoice=OuterRef("pk")).exclude(status=CreditNote.Status.DRAFT)
                    .order_by("-issue_date", "-id").values(row=_json_row(CreditNote))),
                allocation_rows=ArraySubquery(
                    PaymentAllocation.objects.filter(invoice=OuterRef("pk")).order_by("created_at", "id")
                    .values(row=_json_row(PaymentAllocation, payment=_json_row(Payment, "payment__")))))
            .filter(client_id=client_id, pk=pk))


# An invoice's page reads it this way: compiled once (portal.compiled), with what the apps
# above the ledger annotate (detail_annotations: their receivers are connected at start-up).
_CLIENT_INVOICE_DETAIL = CompiledQuery(_client_invoice_detail, single=True, client_id=int, pk=int)


def client_invoice_detail(*, client, pk: int) -> InvoiceDetail:
    """An invoice as its client may see it, with its lines, its credit notes (never drafts) and
    what payments, refunds and chargebacks did to it, each with its payment: one query, the
    related rows read as arrays of JSON objects beside the invoice's columns (a prefetch
    would cost a query per relation). DoesNotExist as client_invoice_get."""
    invoice = _CLIENT_INVOICE_DETAIL.get(client_id=_id_of(client), pk=int(pk))
    db = invoice._state.db
    allocations = []
    for row in invoice.allocation_rows:
        allocation = _from_json_row(PaymentAllocation, row, db)
        allocation.payment = _from_json_row(Payment, row["payment"], db)
        allocation.invoice = invoice
        allocations.append(allocation)
    lines = [_from_json_row(InvoiceLine, row, db) for row in invoice.line_rows]
    credit_notes = [_from_json_row(CreditNote, row, db) for row in invoice.credit_note_rows]
    for item in lines + credit_notes:
        item.invoice = invoice
    return InvoiceDetail(invoice=invoice, lines=lines, credit_notes=credit_notes, allocations=allocations)


def _json_row(model, prefix: str = "", **nested) -> JSONObject:
    """A row of `model` (its columns, by attribute name) as one JSON object; decimals as text,
    which JSON numbers would round."""
    columns = {}
    for field in model._meta.concrete_fields:
        column = F(prefix + field.name)
        columns[field.attname] = Cast(column, TextField()) if isinstance(field, models.DecimalField) else column
    return JSONObject(**columns, **nested)


def _from_json_row(model, row: dict, db: str):
    """The model instance a `_json_row` object describes, as if read from the database."""
    fields = model._meta.concrete_fields
    return model.from_db(db, [field.attname for field in fields],
                         [None if row[field.attname] is None else field.to_python(row[field.attname])
                          for field in fields])


def _client_credit_notes():
    return CreditNote.objects.select_related("client", "brand", "invoice").exclude(status=CreditNote.Status.DRAFT)


def _client_credit_note_query(*, with_stored_pdf: bool, for_page: bool) -> CompiledQuery:
    def build(client_id, pk):
        credit_notes = _client_credit_notes()
        if for_page:
            credit_notes = credit_notes.annotate(**detail_annotations(CreditNote))
        if with_stored_pdf:
            credit_notes = with_stored_pdf_of(credit_notes, "credit_note")
        return credit_notes.filter(client_id=client_id, pk=pk)
    return CompiledQuery(build, single=True, client_id=int, pk=int)


# A credit note's page and download read it this way: compiled once (portal.compiled).
_CLIENT_CREDIT_NOTE = {(stored, page): _client_credit_note_query(with_stored_pdf=stored, for_page=page)
                       for stored in (False, True) for page in (False, True)}


def client_credit_note_get(*, client, pk: int, with_stored_pdf: bool = False, for_page: bool = False) -> CreditNote:
    """A credit note as its client may see it; DoesNotExist otherwise. `for_page`: with what the
    apps above the ledger show on its page (`detail_annotations`), in the same query."""
    return _CLIENT_CREDIT_NOTE[with_stored_pdf, for_page].get(client_id=_id_of(client), pk=int(pk))


def detail_annotations(model) -> dict:
    """What the apps above the ledger add to a client's invoice or credit note page, as
    annotations of the page's query (invoices.signals.document_detail_annotations)."""
    annotations = {}
    for _receiver, added in document_detail_annotations.send(sender=model):
        annotations |= added or {}
    return annotations


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


def _dashboard_totals(client_id, today):
    """Per currency: what is open, what is overdue and can be paid now, and the client's credit."""
    visible = Invoice.objects.filter(client_id=client_id).payable()
    overdue = Q(due_date__lt=today, open_balance__gt=F("amount_pending"))
    money = DecimalField(max_digits=14, decimal_places=2)
    zero = Value(Decimal("0.00"), output_field=money)
    # Every column it reads is in invoice_client_status_due, so PostgreSQL reads the index alone:
    # the overdue are counted by their due date (an overdue invoice has one), not their id, which
    # the index does not hold. By id, a client with 50,000 invoices, 19,000 of them open, had each
    # open invoice's row read from the table: 20 ms (bench/README.md, "50,000 invoices").
    totals = visible.order_by().values("currency").annotate(
        open=Sum("open_balance"), overdue=Sum(F("open_balance") - F("amount_pending"), filter=overdue),
        overdue_count=Count("due_date", filter=overdue), credit=zero, source=Value("invoices"))
    credits = ClientCredit.objects.filter(client_id=client_id).order_by().values("currency").annotate(
        open=zero, overdue=zero, overdue_count=Value(0), credit=Sum("amount"), source=Value("credit"))
    return totals.union(credits, all=True)


def _dashboard_invoices(client_id, today):
    """The invoices the overview names: the latest six, the next due, the pending ones."""
    visible = Invoice.objects.filter(client_id=client_id).payable()

    def tagged(queryset, role: str):
        return queryset.annotate(dashboard_role=Value(role, output_field=CharField()))

    return (tagged(Invoice.objects.filter(client_id=client_id).exclude(status=Invoice.Status.DRAFT)
                   .order_by("-issue_date", "-id")[:6], "latest")
            .union(tagged(visible.filter(due_date__gte=today).order_by("due_date", "id")[:1], "next"),
                   tagged(visible.pending().order_by("pending_since", "id")[:10], "pending"), all=True))


def _dashboard_activity(client_id):
    """The latest payments and credit notes, in one query: the same columns from both."""
    no_day, no_moment, no_text = Value(None, output_field=DateField()), Value(None, output_field=DateTimeField()), Value("")
    payments = Payment.objects.filter(client_id=client_id).order_by("-received_at", "-id").values(
        kind=Value("payment"), key=F("pk"), moment=F("received_at"), day=no_day, ref=F("number"), sum=F("amount"),
        money=F("currency"), said=F("reference"), invoice_number=no_text)[:6]
    credit_notes = CreditNote.objects.filter(client_id=client_id).exclude(status=CreditNote.Status.DRAFT).order_by(
        "-issue_date", "-id").values(
        kind=Value("credit_note"), key=F("pk"), moment=no_moment, day=F("issue_date"), ref=F("number"),
        sum=F("total"), money=F("currency"), said=no_text, invoice_number=F("invoice__number"))[:6]
    return payments.union(credit_notes, all=True)


# Every overview runs these three: compiled once (portal.compiled).
_DASHBOARD_TOTALS = CompiledQuery(_dashboard_totals, client_id=int, today=datetime.date)
_DASHBOARD_INVOICES = CompiledQuery(_dashboard_invoices, client_id=int, today=datetime.date)
_DASHBOARD_ACTIVITY = CompiledQuery(_dashboard_activity, client_id=int)


def client_dashboard(*, client, today=None) -> Dashboard:
    """The overview: what is open, what is overdue and can be paid now (not what is pending at a
    gateway), the payments still pending, the client's credit and the latest activity. Three
    queries whatever the number of invoices: the totals per currency (with the credit), the
    invoices it names (latest, next due, pending), the latest payments and credit notes."""
    today = today or timezone.localdate()
    rows = sorted(_DASHBOARD_TOTALS.list(client_id=client.pk, today=today), key=lambda row: row["currency"])
    invoice_rows = [r for r in rows if r["source"] == "invoices"]
    open_by = [(r["currency"], r["open"]) for r in invoice_rows]
    overdue_by = [(r["currency"], r["overdue"]) for r in invoice_rows if r["overdue_count"]]
    overdue_count = sum(r["overdue_count"] for r in invoice_rows)
    credit_by = [(r["currency"], r["credit"]) for r in rows if r["source"] == "credit" and r["credit"]]
    named = _DASHBOARD_INVOICES.list(client_id=client.pk, today=today)
    latest = [i for i in named if i.dashboard_role == "latest"]
    next_due = next((i for i in named if i.dashboard_role == "next"), None)
    pending = sorted((i for i in named if i.dashboard_role == "pending"), key=lambda i: (i.pending_since, i.id))
    latest.sort(key=lambda i: (i.issue_date, i.id), reverse=True)
    activity = [Activity(i.issue_date, "invoice", {"number": i.number, "amount": i.total, "currency": i.currency},
                         reverse("invoices:detail", args=[i.pk])) for i in latest]
    for row in _DASHBOARD_ACTIVITY.list(client_id=client.pk):
        if row["kind"] == "payment":
            activity.append(Activity(timezone.localdate(row["moment"]), "payment",
                                     {"amount": row["sum"], "currency": row["money"],
                                      "reference": row["ref"] or row["said"]},
                                     reverse("payments:receipt", args=[row["key"]])))
        else:
            activity.append(Activity(row["day"], "credit_note",
                                     {"number": row["ref"], "amount": row["sum"], "currency": row["money"],
                                      "invoice": row["invoice_number"]},
                                     reverse("invoices:credit_note_detail", args=[row["key"]])))
    activity.sort(key=lambda a: a.when, reverse=True)
    return Dashboard(open_by, overdue_by, overdue_count, next_due, activity[:8], pending=pending,
                     credit_by_currency=credit_by)

