"""The ledger: invoices, credit notes, payments and their allocations, client credit and
recurring schedules. Each state machine is a transition table next to its model; every
transition goes through invoices.services (one function per machine) with an audit event."""
from __future__ import annotations

import datetime
from decimal import Decimal

from django.core import signing
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Concat, Upper
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from invoices.money import ZERO
from portal.formatting import format_money, format_number

MONEY = dict(max_digits=14, decimal_places=2, default=ZERO)


class TaxCategory(models.TextChoices):
    """The VAT category of a line (EN 16931 BT-151, UNCL 5305 as Peppol uses it)."""
    STANDARD = "S", _("Standard rate")
    ZERO_RATED = "Z", _("Zero rated")
    EXEMPT = "E", _("Exempt from VAT")
    REVERSE_CHARGE = "AE", _("VAT reverse charge")
    INTRA_COMMUNITY = "K", _("Intra-Community supply")
    EXPORT = "G", _("Export outside the EU")
    NOT_SUBJECT = "O", _("Not subject to VAT")


# What an e-invoice and the PDF say when no VAT is charged (BT-121 code from the VATEX list, and
# BT-120 text), unless a line names its own reason.
TAX_EXEMPTIONS = {
    TaxCategory.EXEMPT: ("", _("Exempt from VAT")),
    TaxCategory.REVERSE_CHARGE: ("VATEX-EU-AE", _("VAT reverse charge")),
    TaxCategory.INTRA_COMMUNITY: ("VATEX-EU-IC", _("Intra-Community supply")),
    TaxCategory.EXPORT: ("VATEX-EU-G", _("Export outside the EU")),
    TaxCategory.NOT_SUBJECT: ("VATEX-EU-O", _("Not subject to VAT")),
}


def tax_currency_constraints(prefix: str) -> list[models.CheckConstraint]:
    """A VAT accounting currency comes with the VAT in it, and differs from the document's own."""
    return [models.CheckConstraint(
        condition=Q(tax_currency="", tax_total_in_tax_currency__isnull=True)
        | (~Q(tax_currency="") & ~Q(tax_currency=F("currency")) & Q(tax_total_in_tax_currency__isnull=False)),
        name=f"{prefix}_tax_currency_with_total",
        violation_error_message=_("Give the VAT in the accounting currency with that currency, which differs "
                                  "from the document's."))]


def line_tax_constraints(prefix: str) -> list[models.CheckConstraint]:
    """Only the standard rate charges VAT, and it charges some (an empty category means either)."""
    return [models.CheckConstraint(
        condition=Q(tax_category="") | Q(tax_category="S", tax_rate__gt=0) | (~Q(tax_category="S") & Q(tax_rate=0)),
        name=f"{prefix}_tax_category_matches_rate",
        violation_error_message=_("Only the standard rate charges VAT (above 0 %); every other VAT category "
                                  "has a rate of 0 %."))]


class InvoiceQuerySet(models.QuerySet):
    def payable(self):
        return self.filter(status__in=Invoice.PAYABLE, open_balance__gt=0)

    def payable_now(self):
        """What a client can start paying now: an open balance beyond what is pending at a gateway."""
        return self.payable().filter(open_balance__gt=F("amount_pending"))

    def pending(self):
        """Invoices with a payment the gateway has not settled yet (a SEPA debit, say)."""
        return self.filter(amount_pending__gt=0)

    def overdue(self, today: datetime.date | None = None):
        """The overdue label, as a filter: an open balance past its due date."""
        return self.payable().filter(due_date__lt=today or timezone.localdate())

    def not_overdue(self, today: datetime.date | None = None):
        return self.exclude(pk__in=self.overdue(today).values("pk"))


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        OPEN = "open", _("Open")
        PARTIALLY_PAID = "partially_paid", _("Partially paid")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")

    # The invoice state machine. Payments, credit notes, refunds and chargebacks move
    # between open, partially paid and paid; void is final.
    TRANSITIONS = {
        Status.DRAFT: {Status.OPEN, Status.VOID},
        Status.OPEN: {Status.PARTIALLY_PAID, Status.PAID, Status.VOID},
        Status.PARTIALLY_PAID: {Status.PAID, Status.OPEN, Status.VOID},
        Status.PAID: {Status.PARTIALLY_PAID, Status.OPEN},
        Status.VOID: set(),
    }
    PAYABLE = (Status.OPEN, Status.PARTIALLY_PAID)

    class DisplayStatus(models.TextChoices):
        """What the client reads: the stored status, told more precisely (display only)."""
        DRAFT = "draft", _("Draft")
        OPEN = "open", _("Open")
        PARTIALLY_PAID = "partially_paid", _("Partially paid")
        PARTLY_CREDITED = "partly_credited", _("Partly credited")
        PAYMENT_PENDING = "payment_pending", _("Payment pending")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")

    # Reasons the portal itself writes when it voids, as the client reads them.
    VOID_REASONS = {
        "voided": _("Voided."),
        "voided in the back office": _("Voided by our administration."),
        "voided in accounting": _("Voided in our accounting system."),
    }

    client = models.ForeignKey("portal.Client", on_delete=models.PROTECT, related_name="invoices")
    brand = models.ForeignKey("portal.Brand", verbose_name=_("brand"), on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(_("number"), max_length=40)
    connection = models.ForeignKey("integrations.Connection", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="invoices")
    external_id = models.CharField(_("external id"), max_length=100, blank=True)
    recurring_schedule = models.ForeignKey("RecurringSchedule", null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="invoices")
    period_start = models.DateField(null=True, blank=True)
    issue_date = models.DateField(_("issue date"))
    due_date = models.DateField(_("due date"))
    payment_terms_days = models.PositiveSmallIntegerField(_("payment terms (days)"), default=30)
    payment_terms_text = models.CharField(_("payment terms"), max_length=300, blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    purchase_order = models.CharField(_("purchase order"), max_length=100, blank=True)
    # What the list's search matches: the number and the purchase order in capitals, kept by
    # PostgreSQL and held in the number index, so a search does not compute upper() of two
    # columns for every one of a client's invoices (about half of a search's time).
    search_key = models.GeneratedField(
        expression=Upper(Concat("number", Value("\n"), "purchase_order", output_field=models.TextField())),
        output_field=models.TextField(), db_persist=True, verbose_name=_("search key"))
    notes = models.TextField(_("notes"), blank=True)
    # A document in a foreign currency states its VAT in the currency the seller accounts for VAT
    # in too (EN 16931 BT-6 and BT-111).
    tax_currency = models.CharField(
        _("VAT accounting currency"), max_length=3, blank=True, db_default="",
        help_text=_("For an invoice in a foreign currency: the currency VAT is accounted in (EUR)."))
    tax_total_in_tax_currency = models.DecimalField(_("VAT in the accounting currency"), max_digits=14,
                                                    decimal_places=2, null=True, blank=True)
    subtotal = models.DecimalField(_("subtotal"), **MONEY)
    tax_total = models.DecimalField(_("tax"), **MONEY)
    total = models.DecimalField(_("total"), **MONEY)
    amount_paid = models.DecimalField(_("paid"), **MONEY)
    amount_credited = models.DecimalField(_("credited"), **MONEY)
    open_balance = models.DecimalField(_("open balance"), **MONEY)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DRAFT)
    overdue_since = models.DateTimeField(_("overdue since"), null=True, blank=True)
    # What gateways hold for this invoice but have not settled (checkout attempts in PENDING):
    # kept in step by payments.services under this row's lock; not paid, not payable again.
    amount_pending = models.DecimalField(_("payment pending"), **MONEY)
    pending_method = models.CharField(_("pending payment method"), max_length=20, blank=True)
    pending_since = models.DateTimeField(_("payment pending since"), null=True, blank=True)
    voided_at = models.DateTimeField(_("voided at"), null=True, blank=True)
    void_reason = models.CharField(_("reason voided"), max_length=300, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True,
                                             help_text="The accounting system's version of this invoice.")
    # Counted up by the database whenever a line is added, changed or removed, and never down
    # (a save from a stale copy keeps the higher number): the PDF's fingerprint reads it instead
    # of the lines (migration 0012).
    lines_revision = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-issue_date", "-id"]
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        constraints = [
            models.UniqueConstraint(fields=["brand", "number"], name="invoice_number_unique_per_brand"),
            models.UniqueConstraint(fields=["connection", "external_id"], condition=~Q(external_id=""),
                                    name="invoice_external_id_unique_per_connection"),
            models.UniqueConstraint(fields=["recurring_schedule", "period_start"],
                                    condition=Q(recurring_schedule__isnull=False),
                                    name="one_invoice_per_recurring_period"),
            models.CheckConstraint(
                condition=(Q(status="void", open_balance=ZERO)
                           | Q(open_balance=F("total") - F("amount_paid") - F("amount_credited"))),
                name="invoice_balance_adds_up"),
            models.CheckConstraint(condition=Q(open_balance__gte=0, amount_paid__gte=0, amount_credited__gte=0),
                                   name="invoice_amounts_not_negative"),
            models.CheckConstraint(condition=Q(due_date__gte=F("issue_date")), name="invoice_due_after_issue"),
            models.CheckConstraint(condition=Q(amount_pending__gte=0), name="invoice_pending_not_negative"),
            *tax_currency_constraints("invoice"),
        ]
        # A client's list, dashboard and export read their page of invoices from one of these in
        # the order shown (migration 0014; bench/portal.py measures them at a million invoices).
        indexes = [
            # Status filters, what is open and overdue, the dashboard's totals (read from the index alone).
            models.Index(fields=["client", "status", "due_date"],
                         include=["currency", "open_balance", "amount_pending"], name="invoice_client_status_due"),
            # One per sortable column, in the order the list sorts it either way (the id breaks ties).
            # The default order's index also holds every column a filter reads: which invoices are
            # on a filtered or deep page is read from it alone (invoices.filters.InvoicePaginator).
            models.Index(fields=["client", "issue_date", "id"],
                         include=["status", "due_date", "total", "open_balance", "amount_paid", "amount_credited"],
                         name="invoice_client_issued"),
            models.Index(fields=["client", "due_date", "id"], name="invoice_client_due"),
            models.Index(fields=["client", "total", "id"], name="invoice_client_total"),
            models.Index(fields=["client", "open_balance", "id"], name="invoice_client_open"),
            models.Index(fields=["client", "status", "id"], name="invoice_client_status"),
            # Sorting by number, and the number search read from the index alone.
            models.Index(fields=["client", "number", "id"], include=["search_key", "status"],
                         name="invoice_client_number"),
            models.Index(fields=["client", "pending_since", "id"], condition=Q(amount_pending__gt=0),
                         name="invoice_client_pending"),
            models.Index(fields=["due_date"], condition=Q(status__in=["open", "partially_paid"]),
                         name="invoice_payable_due"),
        ]

    def __str__(self):
        return self.number

    def is_overdue(self, today: datetime.date | None = None) -> bool:
        today = today or timezone.localdate()
        return self.status in self.PAYABLE and self.open_balance > 0 and self.due_date < today

    @property
    def days_overdue(self) -> int:
        return max(0, (timezone.localdate() - self.due_date).days) if self.is_overdue() else 0

    @property
    def payable_balance(self) -> Decimal:
        """What the client can pay now: the open balance less what a gateway is still settling."""
        if self.status not in self.PAYABLE:
            return ZERO
        return max(ZERO, self.open_balance - self.amount_pending)

    @property
    def display_status(self) -> "Invoice.DisplayStatus":
        """The status as the client reads it: "Payment pending" while a gateway settles all that
        is open, "Partly credited" when only a credit note lowered the balance."""
        shown = self.DisplayStatus
        if self.status in self.PAYABLE and self.amount_pending > 0 and self.payable_balance == 0:
            return shown.PAYMENT_PENDING
        if self.status == self.Status.PARTIALLY_PAID and self.amount_paid == 0 and self.amount_credited > 0:
            return shown.PARTLY_CREDITED
        return shown(self.status)

    @property
    def shows_overdue(self) -> bool:
        """The overdue label: past due with something left to pay (not what is pending)."""
        return self.is_overdue() and self.payable_balance > 0

    @property
    def void_reason_display(self) -> str:
        return str(self.VOID_REASONS.get(self.void_reason.strip().lower(), self.void_reason))

    def get_pending_method_display(self) -> str:
        return str(dict(Payment.Method.choices).get(self.pending_method, self.pending_method))


class LineFields(models.Model):
    position = models.PositiveSmallIntegerField(_("position"))
    description = models.CharField(_("description"), max_length=500)
    quantity = models.DecimalField(_("quantity"), max_digits=12, decimal_places=3)
    unit = models.CharField(_("unit"), max_length=20, blank=True)
    unit_price = models.DecimalField(_("unit price"), max_digits=14, decimal_places=4)
    discount_percent = models.DecimalField(_("discount %"), max_digits=5, decimal_places=2, default=ZERO)
    tax_rate = models.DecimalField(_("tax rate %"), max_digits=5, decimal_places=2)
    tax_category = models.CharField(
        _("VAT category"), max_length=2, choices=TaxCategory.choices, blank=True, db_default="",
        help_text=_("Empty: the standard rate, or zero rated when the rate is 0 %."))
    tax_exemption_reason = models.CharField(
        _("VAT exemption reason"), max_length=300, blank=True, db_default="",
        help_text=_("Why no VAT is charged (exempt, reverse charge, export ...); empty: the usual wording."))
    net_amount = models.DecimalField(_("net"), **MONEY)
    tax_amount = models.DecimalField(_("tax"), **MONEY)
    line_total = models.DecimalField(_("line total"), **MONEY)

    class Meta:
        abstract = True
        ordering = ["position"]

    def __str__(self):
        return f"{self.position}. {self.description}"

    @property
    def vat_category(self) -> str:
        """The line's VAT category code: as set, or S (or Z at 0 %) when it was left empty."""
        return self.tax_category or (TaxCategory.STANDARD if self.tax_rate > 0 else TaxCategory.ZERO_RATED)


class InvoiceLine(LineFields):
    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")

    class Meta(LineFields.Meta):
        verbose_name = _("invoice line")
        verbose_name_plural = _("invoice lines")
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position"),
                       *line_tax_constraints("invoice_line")]


class CreditNote(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ISSUED = "issued", _("Issued")
        APPLIED = "applied", _("Applied")

    TRANSITIONS = {Status.DRAFT: {Status.ISSUED}, Status.ISSUED: {Status.APPLIED}, Status.APPLIED: set()}

    client = models.ForeignKey("portal.Client", on_delete=models.PROTECT, related_name="credit_notes")
    brand = models.ForeignKey("portal.Brand", verbose_name=_("brand"), on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(_("number"), max_length=40)
    connection = models.ForeignKey("integrations.Connection", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="credit_notes")
    external_id = models.CharField(_("external id"), max_length=100, blank=True)
    issue_date = models.DateField(_("issue date"))
    currency = models.CharField(_("currency"), max_length=3)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    tax_currency = models.CharField(
        _("VAT accounting currency"), max_length=3, blank=True, db_default="",
        help_text=_("For a credit note in a foreign currency: the currency VAT is accounted in (EUR)."))
    tax_total_in_tax_currency = models.DecimalField(_("VAT in the accounting currency"), max_digits=14,
                                                    decimal_places=2, null=True, blank=True)
    subtotal = models.DecimalField(_("subtotal"), **MONEY)
    tax_total = models.DecimalField(_("tax"), **MONEY)
    total = models.DecimalField(_("total"), **MONEY)
    amount_applied = models.DecimalField(_("applied to the invoice"), **MONEY)
    amount_to_credit = models.DecimalField(_("left as client credit"), **MONEY)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DRAFT)
    lines_revision = models.PositiveIntegerField(default=0, db_default=0, editable=False)  # as Invoice's
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issue_date", "-id"]
        verbose_name = _("credit note")
        verbose_name_plural = _("credit notes")
        constraints = [
            models.UniqueConstraint(fields=["brand", "number"], name="credit_note_number_unique_per_brand"),
            models.UniqueConstraint(fields=["connection", "external_id"], condition=~Q(external_id=""),
                                    name="credit_note_external_id_unique_per_connection"),
            models.CheckConstraint(condition=Q(total__gt=0), name="credit_note_total_positive"),
            *tax_currency_constraints("credit_note"),
        ]
        indexes = [models.Index(fields=["client", "issue_date", "id"], name="credit_note_client_issued")]

    def __str__(self):
        return self.number


class CreditNoteLine(LineFields):
    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="+")
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")

    class Meta(LineFields.Meta):
        verbose_name = _("credit note line")
        verbose_name_plural = _("credit note lines")
        constraints = [models.UniqueConstraint(fields=["credit_note", "position"], name="credit_note_line_position"),
                       *line_tax_constraints("credit_note_line")]


class Payment(models.Model):
    """Money received, once. Allocations spread it over invoices; what is left is client credit."""

    class Source(models.TextChoices):
        GATEWAY = "gateway", _("Payment gateway")
        ACCOUNTING = "accounting", _("Accounting system")
        MANUAL = "manual", _("Manual")

    class Method(models.TextChoices):
        BANK_TRANSFER = "bank_transfer", _("Bank transfer")
        IDEAL = "ideal", _("iDEAL")
        CARD = "card", _("Card")
        SEPA_DIRECT_DEBIT = "sepa_direct_debit", _("SEPA direct debit")
        OTHER = "other", _("Other")

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    source = models.CharField(_("source"), max_length=20, choices=Source.choices)
    method = models.CharField(_("method"), max_length=20, choices=Method.choices)
    reference = models.CharField(_("reference"), max_length=200, blank=True)
    received_at = models.DateTimeField(_("received at"))
    connection = models.ForeignKey("integrations.Connection", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="payments")
    external_id = models.CharField(_("external id"), max_length=100, blank=True)
    gateway_payment_id = models.CharField(_("gateway payment"), max_length=120, blank=True,
                                          help_text="<provider>:<account>:<the gateway's payment id>")
    # The reference the client reads (PAY-2026-000123): per brand and year of receipt, without
    # gaps, taken from a locked NumberSequence when the payment is recorded.
    brand = models.ForeignKey("portal.Brand", null=True, on_delete=models.PROTECT, related_name="payments")
    number = models.CharField(_("payment number"), max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    NUMBER_PREFIX = "PAY"

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [
            models.UniqueConstraint(fields=["brand", "number"], condition=~Q(number=""),
                                    name="payment_number_unique_per_brand"),
            models.UniqueConstraint(fields=["connection", "external_id"], condition=~Q(external_id=""),
                                    name="payment_external_id_unique_per_connection"),
            models.UniqueConstraint(fields=["gateway_payment_id"], condition=~Q(gateway_payment_id=""),
                                    name="payment_once_per_gateway_payment"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
        ]
        # A client's payments newest first (the dashboard's latest, the payments page): migration 0014.
        indexes = [models.Index(fields=["client", "received_at", "id"], name="payment_client_received")]

    def __str__(self):
        return self.number or f"{self.currency} {self.amount} {self.get_method_display()} {self.reference}".strip()


class PaymentAllocation(models.Model):
    """An append-only ledger entry: part of a payment applied to an invoice (positive), or
    taken back by a refund or chargeback (negative)."""

    class Kind(models.TextChoices):
        ALLOCATION = "allocation", _("Allocation")
        REFUND = "refund", _("Refund")
        CHARGEBACK = "chargeback", _("Chargeback")

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ALLOCATION)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("payment allocation")
        verbose_name_plural = _("payment allocations")
        constraints = [
            models.CheckConstraint(condition=(Q(kind="allocation", amount__gt=0) | (~Q(kind="allocation") & Q(amount__lt=0))),
                                   name="allocation_sign_matches_kind"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {format_number(self.amount, places=2)}"


class ClientCredit(models.Model):
    """The client's credit ledger: what a credit note or an overpayment left over (positive)
    and what was used up (negative). The balance is the sum, per currency."""

    class Source(models.TextChoices):
        CREDIT_NOTE = "credit_note", _("Credit note beyond the open balance")
        OVERPAYMENT = "overpayment", _("Overpayment")
        VOIDED_INVOICE = "voided_invoice", _("Payment on a voided invoice")

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="credits")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    source = models.CharField(max_length=20, choices=Source.choices)
    credit_note = models.ForeignKey(CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("client credit")
        verbose_name_plural = _("client credit")

    def __str__(self):
        return f"{format_money(self.amount, self.currency)} ({self.get_source_display()})"


class RecurringSchedule(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        ENDED = "ended", _("Ended")

    class Unit(models.TextChoices):
        DAYS = "days", _("days")
        MONTHS = "months", _("months")

    TRANSITIONS = {
        Status.ACTIVE: {Status.PAUSED, Status.ENDED},
        Status.PAUSED: {Status.ACTIVE, Status.ENDED},
        Status.ENDED: set(),
    }

    client = models.ForeignKey("portal.Client", on_delete=models.PROTECT, related_name="recurring_schedules")
    brand = models.ForeignKey("portal.Brand", verbose_name=_("brand"), on_delete=models.PROTECT, related_name="recurring_schedules")
    name = models.CharField(_("name"), max_length=200)
    currency = models.CharField(_("currency"), max_length=3, default="EUR")
    interval_unit = models.CharField(_("every"), max_length=10, choices=Unit.choices, default=Unit.MONTHS)
    interval_count = models.PositiveSmallIntegerField(
        _("interval"), default=1, help_text=_("1 month: monthly; 3 months: quarterly; 12 months: yearly."))
    start_date = models.DateField(_("first invoice date"))
    next_date = models.DateField(_("next invoice date"))
    end_date = models.DateField(_("end date"), null=True, blank=True)
    remaining_count = models.PositiveIntegerField(_("invoices left"), null=True, blank=True,
                                                  help_text=_("Empty: no limit."))
    payment_terms_days = models.PositiveSmallIntegerField(_("payment terms (days)"), default=14)
    purchase_order = models.CharField(_("purchase order"), max_length=100, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["client__name", "name"]
        verbose_name = _("recurring schedule")
        verbose_name_plural = _("recurring schedules")
        constraints = [models.CheckConstraint(condition=Q(interval_count__gte=1), name="recurring_interval_positive")]

    def __str__(self):
        return self.name


class RecurringLine(LineFields):
    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="+")
    schedule = models.ForeignKey(RecurringSchedule, on_delete=models.CASCADE, related_name="lines")

    class Meta(LineFields.Meta):
        verbose_name = _("recurring line")
        verbose_name_plural = _("recurring lines")
        constraints = [models.UniqueConstraint(fields=["schedule", "position"], name="recurring_line_position"),
                       *line_tax_constraints("recurring_line")]


class NumberSequence(models.Model):
    """Per brand, prefix and year, the last number the portal itself issued (recurring invoices,
    payment references)."""

    brand = models.ForeignKey("portal.Brand", verbose_name=_("brand"), on_delete=models.CASCADE)
    year = models.PositiveSmallIntegerField()
    prefix = models.CharField(max_length=10)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["brand", "prefix", "year"], name="one_sequence_per_year")]



class RenderedDocument(models.Model):
    """A PDF rendered from exactly the inputs its fingerprint names, stored encrypted."""

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.CASCADE, related_name="+")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.CASCADE, related_name="renders")
    credit_note = models.ForeignKey(CreditNote, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="renders")
    fingerprint = models.CharField(max_length=64)
    file_name = models.CharField(max_length=300)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(invoice__isnull=True) ^ Q(credit_note__isnull=True),
                                   name="rendered_document_of_one_document"),
            models.UniqueConstraint(fields=["invoice", "fingerprint"], name="one_render_per_invoice_version"),
            models.UniqueConstraint(fields=["credit_note", "fingerprint"], name="one_render_per_credit_note_version"),
        ]


class DocumentLink(models.Model):
    """A password-free link to one invoice for one contact: signed, expiring, revocable, logged."""

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.CASCADE, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="document_links")
    user = models.ForeignKey("portal.User", on_delete=models.CASCADE, related_name="document_links")
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    TOKEN_SALT = "invoices.document-link"

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("document link")
        verbose_name_plural = _("document links")

    def __str__(self):
        return f"{self.invoice} → {self.user}"

    def is_usable(self, now) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def token(self) -> str:
        """The signed token that names this row (invoices.links resolves it)."""
        return signing.dumps(self.pk, salt=self.TOKEN_SALT, compress=True)

    def url_path(self) -> str:
        """Where the link opens; the portal's notification emails use it without importing the ledger."""
        return reverse("invoices:document_link", args=[self.token()])
