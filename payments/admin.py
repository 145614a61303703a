"""Back office for gateways, checkout attempts and reconciliation. Gateway webhooks and the jobs
that process them are in portal's admin (webhooks, background jobs), with the other sources'."""
from django.contrib import admin
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _

from invoices.models import Payment, PaymentAllocation
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount
from payments.webhooks import GATEWAY_EVENT
from portal.admin_base import AuditedModelAdmin, LedgerAdminMixin, ReadOnlyAdminMixin, SecretFieldsMixin, money_display
from portal.models import Job


@admin.register(GatewayAccount)
class GatewayAccountAdmin(SecretFieldsMixin, AuditedModelAdmin):
    list_display = ["brand", "provider", "mode", "checkout_mode", "ideal", "card", "sepa_direct_debit", "allow_partial",
                    "enabled"]
    list_filter = ["provider", "mode", "enabled", "brand"]
    list_select_related = ["brand"]
    secret_fields = ("api_key", "webhook_secret")
    fieldsets = [
        (None, {"fields": ["brand", "provider", "mode", "enabled"]}),
        (_("Methods"), {"fields": ["ideal", "card", "sepa_direct_debit", "allow_partial", "partial_minimum"]}),
        (_("Checkout"), {"fields": ["checkout_mode", "publishable_key", "profile_id", "creditor_id"]}),
        (_("Keys (encrypted at rest)"), {"fields": ["api_key", "webhook_secret"]}),
    ]

    def get_urls(self):
        return [path("reconciliation/", self.admin_site.admin_view(self.reconciliation_view),
                     name="payments_reconciliation")] + super().get_urls()

    def reconciliation_view(self, request):
        """Payments per gateway and day, their allocations, and what staff must look at."""
        per_day = (Payment.objects.filter(source=Payment.Source.GATEWAY).annotate(day=TruncDate("received_at"))
                   .values("day", "currency", "method").order_by("-day", "currency", "method")
                   .annotate(count=Count("pk"), total=Sum("amount")))
        allocations = (PaymentAllocation.objects.filter(payment__source=Payment.Source.GATEWAY)
                       .select_related("payment", "invoice", "client").order_by("-created_at")[:200])
        flagged = CheckoutAttempt.objects.exclude(flagged="").select_related("client", "gateway")
        unmatched = (CheckoutAttempt.objects.filter(status=CheckoutAttempt.Status.PAID, payment__isnull=True,
                                                    flagged="").select_related("client", "gateway"))
        failed_events = _gateway_events_failing()
        context = {**self.admin_site.each_context(request), "title": _("Payment reconciliation"),
                   "per_day": per_day, "allocations": allocations, "flagged": flagged, "unmatched": unmatched,
                   "failed_events": failed_events}
        return TemplateResponse(request, "admin/payments/reconciliation.html", context)


def _gateway_events_failing(limit: int = 100) -> list[dict]:
    """Gateway webhooks whose job is waiting to retry or dead, as the reconciliation page lists
    them (when, which gateway, which payment, the last error); replay is in the jobs admin."""
    failing = (Job.objects.filter(kind=GATEWAY_EVENT, state__in=[Job.State.RETRYING, Job.State.DEAD])
               .order_by("-created_at")[:limit])
    gateways = {str(g.pk): g for g in GatewayAccount.objects.select_related("brand")}
    return [{"job": job, "received_at": job.created_at, "gateway": gateways.get(str(job.payload.get("account")), ""),
             "provider_payment_id": job.subject.partition(":")[2], "error": job.last_error[:300]}
            for job in failing]


class CheckoutItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = CheckoutItem
    fields = readonly_fields = ["invoice", "amount_shown"]
    extra = 0
    amount_shown = money_display("amount", _("amount"), currency_field="attempt__currency")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice", "attempt")


class FlaggedFilter(admin.SimpleListFilter):
    title = _("flagged")
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", _("Flagged for staff"))]

    def queryset(self, request, queryset):
        return queryset.exclude(flagged="") if self.value() == "yes" else queryset


@admin.register(CheckoutAttempt)
class CheckoutAttemptAdmin(LedgerAdminMixin, admin.ModelAdmin):
    """What the portal asked a gateway for and what it answered: a record, never edited."""

    list_display = ["created_at", "client", "gateway", "method", "amount_column", "status", "flagged"]
    list_filter = ["status", FlaggedFilter, "gateway__provider", "method"]
    search_fields = ["provider_payment_id", "client__name", "idempotency_key"]
    list_select_related = ["client", "gateway__brand"]
    inlines = [CheckoutItemInline]
    # Not the client secret: it is the client's browser's, never shown (it is encrypted at rest).
    fields = ["client", "gateway", "user", "status", "amount_column", "method", "embedded", "failure", "flagged",
              "provider_payment_id", "provider_reference", "checkout_url", "wants_mandate", "mandate",
              "provider_customer_id", "payment", "idempotency_key", "created_at", "updated_at"]
    amount_column = money_display("amount", _("amount"))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in CheckoutAttempt._meta.fields] + ["amount_column"]
