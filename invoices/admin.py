"""Back office for the ledger. Amounts and statuses are read-only here: they change only
through invoices.services (the state machines), e.g. with the actions below."""

from django.contrib import admin, messages
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from invoices import services
from invoices.documents.einvoice import ubl_xml
from invoices.documents.render import document_pdf
from invoices.errors import DomainError
from invoices.links import document_link_revoke
from invoices.models import (ClientCredit, CreditNote, CreditNoteLine, DocumentLink, Invoice, InvoiceLine, Payment,
                             PaymentAllocation, RecurringLine, RecurringSchedule)
from invoices.money import line_amounts
from portal.admin_base import AuditedModelAdmin, ReadOnlyAdminMixin
from portal.http import download_response
from portal.models import AuditEvent
from portal.services import audit_record

LINE_FIELDS = ["position", "description", "quantity", "unit", "unit_price", "discount_percent", "tax_rate",
               "net_amount", "tax_amount", "line_total"]


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


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = readonly_fields = LINE_FIELDS


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = readonly_fields = ["number", "issue_date", "total", "amount_applied", "amount_to_credit", "status"]
    show_change_link = True


class AllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fields = readonly_fields = ["payment", "invoice", "kind", "amount", "created_at"]


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
class InvoiceAdmin(DocumentDownloadsMixin, AuditedModelAdmin):
    formats = ("pdf", "ubl")
    list_display = ["number", "client", "brand", "issue_date", "due_date", "currency", "total", "open_balance",
                    "status", "overdue"]
    list_filter = ["status", OverdueFilter, "brand", ("client", admin.RelatedOnlyFieldListFilter), "issue_date",
                   "due_date", "connection"]
    search_fields = ["number", "client__name", "purchase_order", "external_id"]
    date_hierarchy = "issue_date"
    list_select_related = ["client", "brand"]
    inlines = [InvoiceLineInline, CreditNoteInline, AllocationInline]
    actions = ["void_invoices"]
    fieldsets = [
        (None, {"fields": ["number", "client", "brand", "status", "overdue_since", "documents"]}),
        (_("Dates and terms"), {"fields": ["issue_date", "due_date", "payment_terms_days", "payment_terms_text",
                                           "purchase_order", "notes"]}),
        (_("Amounts"), {"fields": ["currency", "subtotal", "tax_total", "total", "amount_paid", "amount_credited",
                                   "open_balance"]}),
        (_("Source"), {"fields": ["connection", "external_id", "source_updated_at", "recurring_schedule",
                                  "period_start", "created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        # What came from accounting is accounting's to change; amounts and status move only
        # through the ledger's services.
        return [f.name for f in Invoice._meta.fields] + ["created_at", "updated_at", "documents"]

    def has_add_permission(self, request):
        return False

    @admin.display(boolean=True, description=_("overdue"))
    def overdue(self, obj):
        return obj.is_overdue()

    @admin.action(description=_("Void selected invoices"), permissions=["change"])
    def void_invoices(self, request, queryset):
        for invoice in queryset:
            try:
                services.invoice_void(invoice=invoice, reason="voided in the back office", actor=request.user)
            except DomainError as exc:
                self.message_user(request, str(exc), messages.ERROR)


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = readonly_fields = LINE_FIELDS


@admin.register(CreditNote)
class CreditNoteAdmin(DocumentDownloadsMixin, AuditedModelAdmin):
    list_display = ["number", "invoice", "client", "issue_date", "total", "amount_applied", "amount_to_credit", "status"]
    list_filter = ["status", "brand", ("client", admin.RelatedOnlyFieldListFilter), "issue_date"]
    search_fields = ["number", "invoice__number", "client__name"]
    list_select_related = ["invoice", "client"]
    inlines = [CreditNoteLineInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in CreditNote._meta.fields] + ["created_at", "documents"]

    def has_add_permission(self, request):
        return False


@admin.register(Payment)
class PaymentAdmin(AuditedModelAdmin):
    list_display = ["received_at", "client", "amount", "currency", "method", "source", "reference"]
    list_filter = ["source", "method", "currency", ("client", admin.RelatedOnlyFieldListFilter), "received_at"]
    search_fields = ["reference", "external_id", "client__name"]
    date_hierarchy = "received_at"
    list_select_related = ["client"]
    inlines = [AllocationInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Payment._meta.fields] + ["created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(ClientCredit)
class ClientCreditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "client", "currency", "amount", "source"]
    list_filter = ["source", "currency", ("client", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["client__name"]


class RecurringLineInline(admin.TabularInline):
    model = RecurringLine
    extra = 1
    fields = ["position", "description", "quantity", "unit", "unit_price", "discount_percent", "tax_rate",
              "net_amount", "tax_amount", "line_total"]
    readonly_fields = ["net_amount", "tax_amount", "line_total"]


@admin.register(RecurringSchedule)
class RecurringScheduleAdmin(AuditedModelAdmin):
    list_display = ["name", "client", "interval_count", "interval_unit", "next_date", "end_date", "remaining_count",
                    "status"]
    list_filter = ["status", "interval_unit", "brand", ("client", admin.RelatedOnlyFieldListFilter)]
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
    list_filter = [("client", admin.RelatedOnlyFieldListFilter), "revoked_at", "expires_at"]
    search_fields = ["invoice__number", "user__email"]
    list_select_related = ["invoice", "user"]
    actions = ["revoke"]

    @admin.action(description=_("Revoke selected links"), permissions=["view"])
    def revoke(self, request, queryset):
        for link in queryset:
            document_link_revoke(link=link, actor=request.user, request=request)
        self.message_user(request, _("Links revoked."), messages.SUCCESS)
