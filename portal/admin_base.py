"""Admin base classes every app's admin uses (audited changes, read-only records). Kept apart
from portal.admin, which registers the portal's own models and imports the ledger's views."""
from django.contrib import admin

from portal.models import AuditEvent, Client
from portal.services import audit_record


def _client_of(obj):
    if isinstance(obj, Client):
        return obj
    return getattr(obj, "client", None) if hasattr(obj, "client_id") else None


class AuditedAdminMixin:
    """Every add, change and delete made in admin also lands in the audit log."""

    def log_addition(self, request, obj, message):
        audit_record(action=AuditEvent.Action.ADMIN_ADDED, request=request, obj=obj, client=_client_of(obj),
                     details={"change": str(message)})
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit_record(action=AuditEvent.Action.ADMIN_CHANGED, request=request, obj=obj, client=_client_of(obj),
                     details={"change": message if isinstance(message, (list, str)) else str(message)})
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit_record(action=AuditEvent.Action.ADMIN_DELETED, request=request, obj=obj,
                         client=_client_of(obj))
        return super().log_deletions(request, queryset)


class AuditedModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass


class ReadOnlyAdminMixin:
    """For records nobody edits by hand: logs, ledgers, stored events."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
