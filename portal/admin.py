"""Back office: brands, clients, memberships, users, the audit log, background jobs and webhooks."""
import json

import allauth.mfa.admin  # noqa: F401  (registers Authenticator; replaced below)
from allauth.account.decorators import secure_admin_login
from allauth.mfa.models import Authenticator
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import CharField, OuterRef, Value
from django.db.models.functions import Cast, Concat
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from invoices.views import statement_response
from portal import jobs
from portal.adapters import MFA_SECRET_KEYS, MFAAdapter
from portal.admin_base import (typed_filter, AuditedAdminMixin, AuditedModelAdmin, LedgerAdminMixin, ReadOnlyAdminMixin, first_line,
                               job_link, MASK, mask_secret, moment_display, with_job)
from portal.crypto import DecryptionError
from portal.middleware import outside_request_transaction
from portal.models import AuditEvent, Brand, Client, Job, Membership, User, WebhookRequest

# Staff log in through allauth too: the same throttling, verification and two-factor.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = _("Client portal back office")
admin.site.site_title = _("Back office")
# The app menu beside every page took a quarter of a 1280 px screen from the lists' columns;
# the home page and the breadcrumbs lead everywhere it did.
admin.site.enable_nav_sidebar = False


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
        (_("Emails"), {"fields": ["email_attach_pdf", "allow_document_links", "document_link_days"]}),
        (_("Company and bank"), {"fields": ["kvk_number", "vat_number", "address_line", "postal_code", "city",
                                            "country", "bank_account_name",
                                            "iban", "bic"]}),
        (_("Peppol"), {"fields": ["peppol_scheme", "peppol_id"]}),
    ]


@admin.register(Client)
class ClientAdmin(AuditedModelAdmin):
    list_display = ["name", "brand", "kvk_number", "vat_number", "billing_email", "default_currency", "locale",
                    "statement_link"]
    list_filter = ["brand", "locale", typed_filter("currency", "default_currency__iexact", _("currency")),
                   typed_filter("country", "country__iexact", _("country"))]
    search_fields = ["name", "kvk_number", "vat_number", "billing_email", "city"]
    list_select_related = ["brand"]
    inlines = [MembershipInline]

    def get_urls(self):
        return [path("<int:pk>/statement/", self.admin_site.admin_view(self.statement_view),
                     name="portal_client_statement")] + super().get_urls()

    @outside_request_transaction
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
class AuditEventAdmin(LedgerAdminMixin, admin.ModelAdmin):
    """Read-only: the log is append-only for everyone, staff included."""

    list_display = ["created_at", "actor_email", "client", "action", "object_repr", "ip_address"]
    list_filter = ["action", "created_at", typed_filter("client_name", "client__name__icontains", _("client")),
                   typed_filter("actor", "actor_email__icontains", _("actor"))]
    search_fields = ["actor_email", "object_repr", "object_id", "ip_address"]
    list_select_related = ["client"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]


@admin.register(Job)
class JobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every piece of background work, by kind and state; dead ones can be replayed (audited)."""

    list_display = ["kind", "state", "tries", "subject", "next_column", "created_column", "short_error"]
    list_filter = ["state", typed_filter("kind", "kind__icontains", _("kind")), "created_at"]
    search_fields = ["key", "subject", "last_error"]
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["replay_dead_jobs"]
    next_column = moment_display("run_after", _("next attempt"))
    created_column = moment_display("created_at", _("created"))

    @admin.display(description=_("attempts"))
    def tries(self, obj):
        return f"{obj.attempts} / {obj.max_attempts}"

    @admin.display(description=_("last error"))
    def short_error(self, obj):
        return first_line(obj.last_error)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context={
            **(extra_context or {}), "figures": jobs.jobs_figures(days=14), "states": Job.State.choices})

    @admin.action(description=_("Replay the selected dead jobs"))
    def replay_dead_jobs(self, request, queryset):
        replayed = sum(jobs.job_replay(job=job, actor=request.user, request=request) for job in queryset)
        skipped = queryset.count() - replayed
        self.message_user(request, _("%(replayed)d replayed; %(skipped)d skipped (only dead jobs are replayed).")
                          % {"replayed": replayed, "skipped": skipped})


@admin.register(WebhookRequest)
class WebhookRequestAdmin(LedgerAdminMixin, admin.ModelAdmin):
    """Webhooks as they arrived from every source (bodies decrypted for staff only), with the
    reason a rejected one got; an accepted one's processing is its job."""

    list_display = ["received_column", "source", "account", "natural_key", "status", "job", "short_error"]
    list_filter = ["status", "source", "received_at"]
    search_fields = ["natural_key", "account"]
    fields = ["received_at", "source", "account", "natural_key", "status", "ip_address", "error", "job",
              "pretty_headers", "pretty_body"]
    readonly_fields = fields
    received_column = moment_display("received_at", _("received"))

    def get_queryset(self, request):
        return with_job(super().get_queryset(request), Concat(Value("webhook:"), Cast(OuterRef("pk"), CharField())))

    @admin.display(description=_("job"))
    def job(self, obj):
        return job_link(obj)

    @admin.display(description=_("why it was rejected"))
    def short_error(self, obj):
        return first_line(obj.error)

    @admin.display(description=_("headers"))
    def pretty_headers(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, ensure_ascii=False))

    @admin.display(description=_("body"))
    def pretty_body(self, obj):
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html('<pre class="pre-wrap">{}</pre>', text)


admin.site.unregister(Authenticator)


@admin.register(Authenticator)
class AuthenticatorAdmin(AuditedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Staff's second factors, for support: which a user has and when it was last used. The
    secret is never shown (masked); a lost device is reset by deleting its authenticator."""

    list_display = ["user", "type", "created_at", "last_used_at"]
    list_filter = ["type", "created_at", "last_used_at"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    fields = readonly_fields = ["user", "type", "masked_secret", "created_at", "last_used_at"]

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    @admin.display(description=_("secret"))
    def masked_secret(self, obj):
        adapter = MFAAdapter()
        secrets = []
        for key in MFA_SECRET_KEYS.get(obj.type, ()):
            if obj.data.get(key):
                try:
                    secrets.append(mask_secret(adapter.decrypt(obj.data[key])))
                except (DecryptionError, ValueError):  # encrypted under a key that is gone
                    secrets.append(MASK)
        return ", ".join(secrets) or "—"
