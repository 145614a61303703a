"""Back office for connections, client links and the outbox. Stored webhooks and background
jobs (with replay) have one admin for every source and kind, in portal.admin."""
from django.contrib import admin
from django.db import models
from django.db.models import OuterRef, Value
from django.db.models.functions import Concat
from django.utils.translation import gettext_lazy as _

from integrations.exact import admin as exact_admin  # registers Exact Online's admin and its connect job
from integrations.twinfield import admin as twinfield_admin  # noqa: F401 - registers Twinfield's admin and its connect job
from integrations.erp import admin as erp_admin  # noqa: F401 - registers the pull adapter's admin
from integrations.erp import token_admin  # noqa: F401 - registers the API tokens' admin
from integrations.peppol import admin as peppol_admin  # noqa: F401 - registers Peppol's connections and deliveries
from integrations.models import ClientLink, Connection, OutboxMessage
from portal.admin_base import typed_filter, AuditedModelAdmin, ReadOnlyAdminMixin, SecretFieldsMixin, job_link, with_job


@admin.register(Connection)
class ConnectionAdmin(SecretFieldsMixin, AuditedModelAdmin):
    list_display = ["name", "kind", "brand", "enabled", "webhook_url"]
    list_filter = ["kind", "enabled", "brand"]
    list_select_related = ["brand"]
    secret_lines_fields = ("signing_secrets",)
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["webhook_url", "exact_settings"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description=_("webhook URL"))
    def webhook_url(self, obj):
        return f"/webhooks/accounting/{obj.slug}/" if obj.slug else "-"

    @admin.display(description=_("Exact Online"))
    def exact_settings(self, obj):
        return exact_admin.link_to_exact(obj) if obj.pk else "—"


@admin.register(ClientLink)
class ClientLinkAdmin(AuditedModelAdmin):
    list_display = ["external_id", "connection", "client"]
    list_filter = ["connection"]
    search_fields = ["external_id", "client__name"]
    autocomplete_fields = ["client"]
    list_select_related = ["connection", "client"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What went (or goes) back to accounting. How delivery stands (attempts, next try, last
    error, replay) is its job's, one click away."""

    list_display = ["created_at", "connection", "event_type", "message_id", "delivery", "response_status",
                    "delivered_at"]
    list_filter = ["connection", typed_filter("event_type", "event_type__icontains", _("event type")), "created_at"]
    search_fields = ["message_id"]
    list_select_related = ["connection"]
    fields = readonly_fields = ["connection", "message_id", "event_type", "created_at", "delivery",
                                "response_status", "delivered_at", "payload"]

    def get_queryset(self, request):
        return with_job(super().get_queryset(request), Concat(Value("outbox:"), OuterRef("message_id")))

    @admin.display(description=_("delivery"))
    def delivery(self, obj):
        return job_link(obj)
