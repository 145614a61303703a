"""Back office for connections, client links and the inbound event store (with replay)."""
import json

from django.contrib import admin, messages
from django.db import models
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from integrations.models import ClientLink, Connection, InboundEvent, OutboxMessage
from integrations.outbox import outbox_replay
from integrations.services import inbound_event_replay
from invoices.errors import DomainError
from portal.admin_base import AuditedModelAdmin, ReadOnlyAdminMixin


@admin.register(Connection)
class ConnectionAdmin(AuditedModelAdmin):
    list_display = ["name", "kind", "brand", "enabled", "webhook_url"]
    list_filter = ["kind", "enabled", "brand"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["webhook_url"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description=_("webhook URL"))
    def webhook_url(self, obj):
        return f"/webhooks/accounting/{obj.slug}/" if obj.slug else "-"


@admin.register(ClientLink)
class ClientLinkAdmin(AuditedModelAdmin):
    list_display = ["external_id", "connection", "client"]
    list_filter = ["connection"]
    search_fields = ["external_id", "client__name"]
    autocomplete_fields = ["client"]


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["received_at", "connection", "event_type", "event_id", "status", "attempts", "short_error"]
    list_filter = ["status", "connection", "event_type", "received_at"]
    search_fields = ["event_id", "event_type", "error"]
    date_hierarchy = "received_at"
    actions = ["replay_dead_events"]
    fields = ["connection", "event_id", "event_type", "status", "attempts", "received_at", "processed_at",
              "next_attempt_at", "ip_address", "error", "pretty_headers", "pretty_body"]
    readonly_fields = fields

    @admin.display(description=_("error"))
    def short_error(self, obj):
        return (obj.error[:80] + "…") if len(obj.error) > 80 else obj.error

    @admin.display(description=_("headers"))
    def pretty_headers(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2))

    @admin.display(description=_("body"))
    def pretty_body(self, obj):
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html("<pre>{}</pre>", text)

    @admin.action(description=_("Replay selected dead events"), permissions=["view"])
    def replay_dead_events(self, request, queryset):
        replayed = 0
        for event in queryset:
            try:
                inbound_event_replay(event=event, actor=request.user, request=request)
                replayed += 1
            except DomainError as exc:
                self.message_user(request, f"{event}: {exc}", messages.WARNING)
        if replayed:
            self.message_user(request, _("%(count)d event(s) queued again.") % {"count": replayed}, messages.SUCCESS)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "connection", "event_type", "status", "attempts", "response_status", "last_error"]
    list_filter = ["status", "connection", "event_type"]
    search_fields = ["message_id", "last_error"]
    actions = ["replay_dead_messages"]
    fields = readonly_fields = ["connection", "message_id", "event_type", "status", "attempts", "next_attempt_at",
                                "response_status", "last_error", "created_at", "delivered_at", "payload"]

    @admin.action(description=_("Send selected dead messages again"), permissions=["view"])
    def replay_dead_messages(self, request, queryset):
        for message in queryset:
            try:
                outbox_replay(message=message)
            except DomainError as exc:
                self.message_user(request, f"{message}: {exc}", messages.WARNING)
