"""Back office for Peppol: each brand's access-point connection (API key and webhook secret
stored encrypted and shown masked), what discovery said of each client, and every document's
delivery (state, the provider's submission id and reason, the failed rules) with a retry."""
from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.db.models import OuterRef
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _, ngettext

from integrations.peppol.models import PeppolConnection, PeppolDelivery, PeppolReceiver
from integrations.peppol.services import delivery_retry
from portal.admin_base import AuditedModelAdmin, ReadOnlyAdminMixin, SecretFieldsMixin, job_link, with_job
from portal.participants import participant


@admin.register(PeppolConnection)
class PeppolConnectionAdmin(SecretFieldsMixin, AuditedModelAdmin):
    list_display = ["brand", "brand_participant", "base_url", "enabled", "webhook_url"]
    list_filter = ["enabled"]
    list_select_related = ["brand"]
    search_fields = ["brand__name", "slug"]
    secret_fields = ("api_key", "webhook_secret")
    readonly_fields = ["brand_participant", "webhook_url"]
    fields = ["brand", "brand_participant", "slug", "base_url", "api_key", "webhook_secret", "webhook_url", "enabled"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description=_("brand's Peppol identifier"))
    def brand_participant(self, obj):
        return (participant(obj.brand) if obj.pk else "") or "—"

    @admin.display(description=_("webhook URL"))
    def webhook_url(self, obj):
        return f"/webhooks/peppol/{obj.slug}/" if obj.slug else "—"


@admin.register(PeppolReceiver)
class PeppolReceiverAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Participant discovery's answers, per client and kind of document, and when each was asked
    (again after integrations.peppol.models.RECHECK_AFTER)."""

    list_display = ["client", "participant", "document", "can_receive", "checked_at"]
    list_filter = ["can_receive", "document"]
    search_fields = ["client__name", "participant"]
    list_select_related = ["client"]
    fields = readonly_fields = ["client", "participant", "document", "can_receive", "checked_at"]


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return PeppolDelivery.State.choices

    def queryset(self, request, queryset):
        return queryset.filter(state=self.value()) if self.value() else queryset


@admin.register(PeppolDelivery)
class PeppolDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every document's way over Peppol. A failed, refused or skipped one can be tried again
    (a new round, audited); how its sending stands (attempts, next try) is its job's."""

    list_display = ["created_at", "document", "document_number", "client", "brand", "state", "skip",
                    "submission_id", "short_reason", "changed_at", "sending"]
    list_filter = [StateFilter, "document", "skip", "brand", "created_at"]
    search_fields = ["invoice__number", "credit_note__number", "client__name", "submission_id", "receiver"]
    list_select_related = ["client", "brand", "invoice", "credit_note"]
    actions = ["retry_deliveries"]
    fields = readonly_fields = ["document", "invoice", "credit_note", "client", "brand", "receiver", "state", "skip",
                                "reason", "failed_rules", "rules_versions", "submission_id", "attempt", "sending",
                                "created_at", "submitted_at", "changed_at", "delivered_at"]

    def get_queryset(self, request):
        # The job of the delivery's current round (PeppolDelivery.job_key), in the list's one query.
        return with_job(super().get_queryset(request).annotate(sending_key=PeppolDelivery.job_key_expression()),
                        OuterRef("sending_key"))

    @admin.display(description=_("number"))
    def document_number(self, obj):
        return obj.document_number

    @admin.display(description=_("reason"))
    def short_reason(self, obj):
        return (obj.reason or "")[:120]

    @admin.display(description=_("failed rules"))
    def failed_rules(self, obj):
        if not obj.rule_failures:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li><strong>{}</strong> ({}): {} <code>{}</code></li>",
            ((f.get("rule", ""), f.get("flag", ""), f.get("text", ""), f.get("location", ""))
             for f in obj.rule_failures)))

    @admin.display(description=_("sending job"))
    def sending(self, obj):
        return job_link(obj)

    @admin.action(description=_("Try the selected failed, refused or skipped deliveries again"))
    def retry_deliveries(self, request, queryset):
        retried = sum(delivery_retry(delivery=delivery, actor=request.user, request=request) for delivery in queryset)
        skipped = queryset.count() - retried
        self.message_user(request, ngettext("%(retried)d delivery tried again", "%(retried)d deliveries tried again",
                                            retried) % {"retried": retried} + "; " +
                          ngettext("%(skipped)d skipped (only failed, refused or skipped ones are tried again).",
                                   "%(skipped)d skipped (only failed, refused or skipped ones are tried again).",
                                   skipped) % {"skipped": skipped})
