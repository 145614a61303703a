"""Back office: reminder policies with a preview, holds, the dispatch log (with who each reminder
reached, and why not) and delivery rates."""
import datetime
from decimal import Decimal

from django.contrib import admin, messages
from django.db.models import CharField, Count, OuterRef, Q, Sum, Value
from django.db.models.functions import Cast, Concat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from portal.admin_base import typed_filter, AuditedModelAdmin, ReadOnlyAdminMixin, first_line, job_link, money_display, with_job
from portal.formatting import format_day, format_money
from reminders.models import ReminderDelivery, ReminderDispatch, ReminderHold, ReminderPolicy, ReminderStep
from reminders.services import _render

def _sample(language: str) -> dict:
    """The sample invoice a policy's preview fills its texts with, as a client reading `language` sees it."""
    return {"client": "Northwind Traders B.V.", "invoice_number": "INV-2026-00042",
            "open_balance": format_money(Decimal("1208.33"), "EUR", language=language),
            "due_date": format_day(datetime.date(2026, 11, 30), language=language), "days_overdue": 7,
            "pay_link": "https://portal.example.com/invoices/42/pay/"}


class ReminderStepInline(admin.StackedInline):
    model = ReminderStep
    extra = 0
    fields = [("offset_days", "channel", "level"), ("subject_en", "subject_nl"), ("body_en", "body_nl"),
              ("late_fee_fixed", "late_fee_percent", "attach_letter")]


@admin.register(ReminderPolicy)
class ReminderPolicyAdmin(AuditedModelAdmin):
    list_display = ["name", "brand", "client", "business_days_only", "business_hours_start", "business_hours_end",
                    "enabled", "steps_summary"]
    list_filter = [typed_filter("brand_name", "brand__name__icontains", _("brand")), "enabled"]
    autocomplete_fields = ["client"]
    list_select_related = ["brand", "client"]
    inlines = [ReminderStepInline]
    readonly_fields = ["preview"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("steps")

    @admin.display(description=_("steps"))
    def steps_summary(self, obj):
        return ", ".join(f"{s.offset_days:+d} {s.get_level_display()}" for s in obj.steps.all())

    @admin.display(description=_("preview (sample invoice, English and Dutch)"))
    def preview(self, obj):
        if not obj.pk:
            return "-"
        english, dutch = _sample("en"), _sample("nl")
        return format_html_join("", "<div class='stacked'><strong>{} · {}</strong><br>{}<br><em>{}</em>"
                                    "<br>{}</div>", (
            (f"{s.offset_days:+d}", s.get_level_display(), _render(s.subject_en, english), _render(s.body_en, english),
             _render(s.subject_nl, dutch)) for s in obj.steps.all()))


@admin.register(ReminderHold)
class ReminderHoldAdmin(AuditedModelAdmin):
    list_display = ["invoice", "client", "reason", "note", "created_at"]
    list_filter = ["reason"]
    raw_id_fields = ["invoice"]
    readonly_fields = ["client"]
    list_select_related = ["invoice", "client"]

    def save_model(self, request, obj, form, change):
        obj.client = obj.invoice.client
        super().save_model(request, obj, form, change)


class ReminderDeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReminderDelivery
    fields = readonly_fields = ["channel", "recipient", "sent_at", "error"]
    extra = 0


@admin.register(ReminderDispatch)
class ReminderDispatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "invoice", "client", "step", "status", "balance_column", "attempts", "short_error"]
    list_filter = ["status", "step__level", "step__policy"]
    search_fields = ["invoice__number", "client__name"]
    list_select_related = ["invoice", "client", "step__policy"]
    inlines = [ReminderDeliveryInline]
    fields = ["invoice", "client", "step", "status", "balance_column", "attempts", "error", "fee_invoice",
              "created_at", "sent_at", "send_job"]
    readonly_fields = ["send_job", "balance_column"]
    actions = ["mark_bounced"]
    balance_column = money_display("open_balance", _("open when sent"), currency_field="invoice__currency")

    @admin.display(description=_("last error"))
    def short_error(self, obj):
        return first_line(obj.error)

    def get_queryset(self, request):
        return with_job(super().get_queryset(request), Concat(Value("reminder:"), Cast(OuterRef("pk"), CharField())))

    @admin.display(description=_("send job"))
    def send_job(self, obj):
        """Its attempts, last error and replay live on the job."""
        return job_link(obj)

    def get_urls(self):
        return [path("rates/", self.admin_site.admin_view(self.rates_view), name="reminders_delivery_rates")] \
            + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra = {"subtitle": format_html('<a href="{}">{}</a>', reverse("admin:reminders_delivery_rates"),
                                         _("Delivery rates and money collected per step"))}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    @admin.action(description=_("Mark as bounced"), permissions=["view"])
    def mark_bounced(self, request, queryset):
        count = queryset.update(status=ReminderDispatch.Status.BOUNCED)
        self.message_user(request, _("%(n)d marked as bounced.") % {"n": count}, messages.SUCCESS)

    def rates_view(self, request):
        rows = (ReminderDispatch.objects.values("step__policy__name", "step__policy__brand__name",
                                                "step__offset_days", "step__level")
                .order_by("step__policy__name", "step__offset_days")
                .annotate(total=Count("pk"), sent=Count("pk", filter=Q(status="sent")),
                          failed=Count("pk", filter=Q(status="failed")),
                          bounced=Count("pk", filter=Q(status="bounced")),
                          at_send=Sum("open_balance"), now_open=Sum("invoice__open_balance")))
        for row in rows:
            row["rate"] = round(100 * row["sent"] / row["total"], 1) if row["total"] else 0
            row["collected"] = (row["at_send"] or Decimal(0)) - (row["now_open"] or Decimal(0))
        context = {**self.admin_site.each_context(request), "title": _("Reminder delivery rates"), "rows": rows}
        return TemplateResponse(request, "admin/reminders/rates.html", context)


