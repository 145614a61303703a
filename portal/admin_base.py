"""Admin base classes every app's admin uses (audited changes, read-only records). Kept apart
from portal.admin, which registers the portal's own models and imports the ledger's views."""
from django.contrib import admin
from django.db.models import Subquery
from django.urls import reverse
from django.utils.html import format_html

from portal.models import AuditEvent, Client, Job
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


def with_job(queryset, key):
    """Annotate each row with the job whose key is `key` (an expression on the row, e.g.
    Concat(Value("reminder:"), "pk")): job_pk, job_state, job_attempts, job_max_attempts, in
    the list's one query rather than one per row."""
    job = Job.objects.filter(key=key)
    return queryset.annotate(**{f"job_{field}": Subquery(job.values(field)[:1])
                                for field in ("pk", "state", "attempts", "max_attempts")})


def job_link(obj) -> str:
    """A link to the row's job (see with_job) showing its state and attempts, or a dash."""
    if getattr(obj, "job_pk", None) is None:
        return "—"
    return format_html('<a href="{}">{} ({}/{})</a>', reverse("admin:portal_job_change", args=[obj.job_pk]),
                       Job.State(obj.job_state).label, obj.job_attempts, obj.job_max_attempts)
