"""Back office: brands, clients, memberships, users and the audit log."""
from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from invoices.views import statement_response
from portal.models import AuditEvent, Brand, Client, Membership, User
from portal.services import audit_record

# Staff log in through allauth too: the same throttling, verification and two-factor.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = _("Client portal back office")
admin.site.site_title = _("Back office")


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


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Brand)
class BrandAdmin(AuditedModelAdmin):
    list_display = ["name", "support_email", "is_default", "primary_colour", "accent_colour"]
    list_filter = ["is_default"]
    search_fields = ["name", "support_email", "kvk_number", "vat_number"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_default", "support_email"]}),
        (_("Look"), {"fields": ["logo", "primary_colour", "accent_colour", "legal_footer"]}),
        (_("Emails"), {"fields": ["allow_document_links", "document_link_days"]}),
        (_("Company and bank"), {"fields": ["kvk_number", "vat_number", "address_line", "postal_code", "city",
                                            "country", "bank_account_name",
                                            "iban", "bic"]}),
    ]


@admin.register(Client)
class ClientAdmin(AuditedModelAdmin):
    list_display = ["name", "brand", "kvk_number", "vat_number", "billing_email", "default_currency", "locale",
                    "statement_link"]
    list_filter = ["brand", "locale", "default_currency", "country"]
    search_fields = ["name", "kvk_number", "vat_number", "billing_email", "city"]
    list_select_related = ["brand"]
    inlines = [MembershipInline]

    def get_urls(self):
        return [path("<int:pk>/statement/", self.admin_site.admin_view(self.statement_view),
                     name="portal_client_statement")] + super().get_urls()

    def statement_view(self, request, pk):
        return statement_response(request, get_object_or_404(Client.objects.select_related("brand"), pk=pk))

    @admin.display(description=_("statement"))
    def statement_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:portal_client_statement", args=[obj.pk]),
                           _("Statement"))


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    list_display = ["user", "client", "role", "created_at"]
    list_filter = ["role", "client__brand"]
    search_fields = ["user__email", "client__name"]
    autocomplete_fields = ["user", "client"]
    list_select_related = ["user", "client"]


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active", "language"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (_("Personal info"), {"fields": ["first_name", "last_name", "language"]}),
        (_("Permissions"), {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        (_("Important dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: the log is append-only for everyone, staff included."""

    list_display = ["created_at", "actor_email", "client", "action", "object_repr", "ip_address"]
    list_filter = ["action", "created_at", ("client", admin.RelatedOnlyFieldListFilter),
                   ("actor", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["actor_email", "object_repr", "object_id", "ip_address"]
    date_hierarchy = "created_at"
    list_select_related = ["client"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
