"""Back office for the pull adapter (integrations.erp.pull): an ERP pull connection with its feeds
inline (endpoint, authentication with its secrets masked, paging, schedule, the JMESPath mapping
per feed, and how payments are told back), a Preview that fetches one page live from a POST and
shows each record mapped or why not, Pull now, how a running pull goes (records and pages read
per feed, the job), and the parked records with a replay once the mapping is fixed."""
from __future__ import annotations

import base64
import json
import secrets

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _, gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from integrations.erp import pull
from integrations.erp.mapping import MappingInvalid, compile_expression, mapping_problems
from integrations.erp.models import ErpFeed, ErpParked, ErpPull
from integrations.models import Connection
from integrations.signing import verify_secret
from portal.admin_base import MASK, AuditedModelAdmin, SecretInput, mask_secret
from portal.formatting import format_moment, format_number
from portal.models import AuditEvent, Brand
from portal.services import audit_record

# (form field, credentials key, secret?) per way of authenticating
CREDENTIALS = {
    ErpPull.Auth.BEARER: [("token", "token", True)],
    ErpPull.Auth.BASIC: [("username", "username", False), ("password", "password", True)],
    ErpPull.Auth.OAUTH2: [("token_url", "token_url", False), ("client_id", "client_id", False),
                          ("client_secret", "client_secret", True), ("scope", "scope", False),
                          ("token_auth_method", "auth_method", False)],
}
CREDENTIAL_FIELDS = sorted({name for rows in CREDENTIALS.values() for name, _, _ in rows})
SECRET_FIELDS = {name for rows in CREDENTIALS.values() for name, _, secret in rows if secret}


class ErpPullForm(forms.ModelForm):
    """The connection (name, URL name, brand) and the ERP's side in one form; the credentials
    as fields of their own, secrets shown masked and kept unless a new value is typed."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    slug = forms.SlugField(label=gettext_lazy("URL name"))
    brand = forms.ModelChoiceField(label=gettext_lazy("Brand"), queryset=Brand.objects.all())
    base_url = forms.URLField(label=ErpPull._meta.get_field("base_url").verbose_name, assume_scheme="https",
                              max_length=200, help_text=ErpPull._meta.get_field("base_url").help_text)
    token = forms.CharField(label=gettext_lazy("Bearer token"), required=False, widget=SecretInput)
    username = forms.CharField(label=gettext_lazy("User name"), required=False)
    password = forms.CharField(label=gettext_lazy("Password"), required=False, widget=SecretInput)
    token_url = forms.URLField(label=gettext_lazy("Token endpoint"), required=False, assume_scheme="https",
                               help_text=gettext_lazy("OAuth2: where the access token is asked for "
                                                      "(grant type client_credentials)."))
    client_id = forms.CharField(label=gettext_lazy("Client ID"), required=False)
    client_secret = forms.CharField(label=gettext_lazy("Client secret"), required=False, widget=SecretInput)
    scope = forms.CharField(label=gettext_lazy("Scope"), required=False)
    outbound_url = forms.URLField(
        label=gettext_lazy("Payments go to"), required=False, assume_scheme="https", max_length=200,
        help_text=gettext_lazy("For the signed webhook: where payments, refunds and chargebacks are posted."))
    signing_secret = forms.CharField(
        label=gettext_lazy("Signing secret"), required=False, widget=SecretInput,
        help_text=gettext_lazy("For the signed webhook: the secret (whsec_...) your ERP checks the signatures "
                               "with. Shown masked; type a new one to replace it."))
    token_auth_method = forms.ChoiceField(
        label=gettext_lazy("Client authentication"), required=False,
        choices=[("client_secret_basic", gettext_lazy("HTTP Basic (client_secret_basic)")),
                 ("client_secret_post", gettext_lazy("In the body (client_secret_post)"))])

    class Meta:
        model = ErpPull
        fields = ["style", "base_url", "auth", "paging", "page_size", "poll_minutes", "enabled", "push",
                  "push_request"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        if instance.connection_id:
            for name in ("name", "slug", "brand", "outbound_url"):
                self.initial[name] = getattr(instance.connection, name)
            current = instance.connection.secrets()
            self.initial["signing_secret"] = mask_secret(current[0]) if current else ""
        stored = instance.credentials or {}
        for rows in CREDENTIALS.values():
            for name, key, secret in rows:
                value = stored.get(key, "")
                self.initial[name] = mask_secret(value) if secret else value
                if secret and value:
                    self.fields[name].help_text = _("Stored encrypted and shown masked; type a new value to "
                                                    "replace it.")

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if Connection.objects.filter(slug=slug).exclude(pk=self.instance.connection_id).exists():
            raise forms.ValidationError(_("Another connection already has this URL name."))
        return slug

    def clean(self):
        cleaned = super().clean()
        auth = cleaned.get("auth")
        stored = self.instance.credentials or {}
        credentials = {}
        for name, key, secret in CREDENTIALS.get(auth, []):
            typed = (cleaned.get(name) or "").strip()
            value = stored.get(key, "") if secret and (not typed or typed.startswith(MASK)) else typed
            if value:
                credentials[key] = value
        needed = {ErpPull.Auth.BEARER: ["token"], ErpPull.Auth.BASIC: ["username", "password"],
                  ErpPull.Auth.OAUTH2: ["token_url", "client_id", "client_secret"]}.get(auth, [])
        for name in needed:
            key = next(k for n, k, _ in CREDENTIALS[auth] if n == name)
            if not credentials.get(key):
                self.add_error(name, _("Needed for this way of authenticating."))
        self.credentials = credentials
        style, paging = cleaned.get("style"), cleaned.get("paging")
        if paging == ErpPull.Paging.RELAY and style != ErpPull.Style.GRAPHQL:
            self.add_error("paging", _("Relay paging is GraphQL's: choose the GraphQL style, or another paging."))
        if paging == ErpPull.Paging.LINK and style == ErpPull.Style.GRAPHQL:
            self.add_error("paging", _("A GraphQL answer has no Link header: choose Relay or cursor paging."))
        self.signing_secret = ""
        typed_secret = (cleaned.get("signing_secret") or "").strip()
        if typed_secret and not typed_secret.startswith(MASK):
            try:
                verify_secret(typed_secret)
                self.signing_secret = typed_secret
            except ValueError:
                self.add_error("signing_secret", _("A signing secret is whsec_ followed by base64, as the portal's "
                                                   "webhooks use (docs/webhooks.md)."))
        if cleaned.get("push") == ErpPull.Push.WEBHOOK:
            if not cleaned.get("outbound_url"):
                self.add_error("outbound_url", _("Needed to tell the ERP by signed webhook."))
            if not self.signing_secret and not (self.instance.connection_id and typed_secret.startswith(MASK)):
                self.add_error("signing_secret", _("Needed to tell the ERP by signed webhook: type the secret "
                                                   "your ERP checks signatures with."))
        if cleaned.get("enabled") and not self.instance.previewed_at:
            self.add_error("enabled", _("Press Preview first: pulling can be turned on once a preview has mapped "
                                        "at least one record."))
        return cleaned


class ErpFeedForm(forms.ModelForm):
    class Meta:
        model = ErpFeed
        fields = ["entity", "position", "request", "records", "next_cursor", "key", "version", "since_param",
                  "mapping"]
        widgets = {"request": forms.Textarea(attrs={"rows": 3, "cols": 80}),
                   "mapping": forms.Textarea(attrs={"rows": 12, "cols": 80, "spellcheck": "false"})}

    def clean(self):
        cleaned = super().clean()
        for name in ("records", "next_cursor", "key", "version"):
            if cleaned.get(name):
                try:
                    compile_expression(cleaned[name])
                except MappingInvalid as exc:
                    self.add_error(name, str(exc))
        if "mapping" in cleaned:
            for problem in mapping_problems(cleaned["mapping"]):
                self.add_error("mapping", problem)
        return cleaned


class ErpFeedInline(admin.StackedInline):
    model = ErpFeed
    form = ErpFeedForm
    extra = 0
    readonly_fields = ["watermark", "cursor", "records_seen", "pages_read", "pulled_at"]
    fieldsets = [(None, {"fields": ["entity", "position", "request", "records", "next_cursor", "key", "version",
                                    "since_param", "mapping"]}),
                 (gettext_lazy("Progress"), {"fields": readonly_fields})]


@admin.register(ErpPull)
class ErpPullAdmin(AuditedModelAdmin):
    form = ErpPullForm
    inlines = [ErpFeedInline]
    change_form_template = "admin/integrations/erp/change_form.html"
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["__str__", "style", "paging", "enabled", "last_pull", "last_error"]
    list_filter = ["style", "enabled"]
    list_select_related = ["connection"]
    search_fields = ["connection__name", "connection__slug", "base_url"]

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["name", "slug", "brand"]}),
            (_("The ERP's API"), {"fields": ["style", "base_url", "paging", "page_size"]}),
            (_("Authentication"), {
                "fields": ["auth", *CREDENTIAL_FIELDS],
                "description": _("Fill in what the chosen way needs: the bearer token; the user name and "
                                 "password; or, for OAuth2 client credentials, the token endpoint, client ID and "
                                 "secret (and a scope if the ERP asks for one). Secrets are stored encrypted.")}),
            (_("Pulling"), {"fields": ["poll_minutes", "enabled"]}),
            (_("Payments told back"), {"fields": ["push", "push_request", "outbound_url", "signing_secret"]}),
        ]

    @admin.display(description=gettext_lazy("last pull"), ordering="last_pull_at")
    def last_pull(self, obj):
        return format_moment(obj.last_pull_at) if obj.last_pull_at else _("never")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        link = obj.connection if obj.connection_id else Connection(
            kind=Connection.Kind.ERP_PULL,
            # Pulling signs nothing with this; it only keeps the generic connection valid.
            signing_secrets="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
        link.name, link.slug, link.brand = data["name"], data["slug"], data["brand"]
        link.outbound_url = data.get("outbound_url") or ""
        if form.signing_secret:
            link.signing_secrets = form.signing_secret
        link.save()
        obj.connection = link
        if obj.credentials != form.credentials:
            obj.access_token, obj.access_expires_at = "", None  # new credentials: a new token
        obj.credentials = form.credentials
        super().save_model(request, obj, form, change)

    # --- Pages of their own -----------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [path("<int:pk>/preview/", view(self.preview_view), name=f"{name}_preview"),
                path("<int:pk>/pull/", view(require_POST(self.pull_view)), name=f"{name}_pull"),
                ] + super().get_urls()

    def _erp(self, request, pk: int) -> ErpPull:
        erp = get_object_or_404(ErpPull.objects.select_related("connection"), pk=pk)
        if not self.has_change_permission(request, erp):
            raise PermissionDenied
        return erp

    def _change_url(self, erp: ErpPull) -> str:
        return reverse("admin:integrations_erppull_change", args=[erp.pk])

    def preview_view(self, request, pk: int):
        """The first page of every feed fetched live and mapped; nothing stored. Calls the ERP, so
        only from a POST (a GET runs in a read transaction): a GET goes back to the change page."""
        erp = self._erp(request, pk)
        if request.method != "POST":
            return HttpResponseRedirect(self._change_url(erp))
        results = pull.preview(erp)
        mapped = sum(result.mapped for result in results)
        audit_record(action=AuditEvent.Action.ADMIN_CHANGED, request=request, obj=erp,
                     details={"change": f"preview: {mapped} record(s) mapped"})
        context = {**self.admin_site.each_context(request), "opts": self.opts, "original": erp, "erp": erp,
                   "title": _("Preview of %(name)s") % {"name": erp}, "results": results, "mapped": mapped,
                   "change_url": self._change_url(erp)}
        return TemplateResponse(request, "admin/integrations/erp/preview.html", context)

    def pull_view(self, request, pk: int):
        """Pull now (as the beat task does when the interval has passed): only writes the job."""
        from integrations.erp.tasks import pull_enqueue

        erp = self._erp(request, pk)
        if not erp.enabled or not erp.connection.enabled:
            messages.error(request, _("Turn pulling on before pulling."))
            return HttpResponseRedirect(self._change_url(erp))
        with transaction.atomic():
            written = pull_enqueue(erp=erp)
        if written:
            messages.success(request, _("Pull started: new and changed records are read now."))
        else:
            messages.info(request, _("A pull is already waiting to run."))
        return HttpResponseRedirect(self._change_url(erp))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        erp = self.get_object(request, object_id)
        extra = {"status": pull_status(erp), "push_samples": push_samples(erp)} if erp is not None else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


def push_samples(erp: ErpPull) -> list[dict]:
    """What the ERP would be sent for a sample payment and refund by the configured REST call or
    mutation (built, not sent; the authorisation named, not shown), for staff to check the
    mapping before a real payment goes out."""
    from integrations.erp import push

    if erp.push not in (ErpPull.Push.REST, ErpPull.Push.GRAPHQL):
        return []
    samples = []
    for event_type, label in (("payment.recorded", _("A payment")), ("payment.refunded", _("A refund"))):
        built = push.push_preview(erp, push.sample_payload(event_type))
        if "error" not in built:
            built = {**built, "headers": "\n".join(f"{k}: {v}" for k, v in built["headers"].items()),
                     "body": json.dumps(built["body"], indent=2, ensure_ascii=False, default=str)}
        samples.append({"label": label, **built})
    return samples


def pull_status(erp: ErpPull) -> dict:
    """How the connection stands, as its admin page shows it: pulling or not, the last pull and
    error, the running pull (its job), and per feed the records and pages read, the watermark or
    cursor, and the records parked."""
    from integrations.erp.tasks import PULL_JOB, pull_running

    job = pull_running(erp)
    parked = {row["feed"]: row["count"] for row in ErpParked.objects.filter(feed__erp=erp, resolved_at__isnull=True)
              .values("feed").annotate(count=Count("pk"))}
    feeds = [{"label": feed.get_entity_display(), "records": format_number(feed.records_seen),
              "pages": format_number(feed.pages_read), "watermark": feed.watermark,
              "cursor": feed.cursor if len(feed.cursor) <= 40 else feed.cursor[:40] + "…",
              "pulled_at": format_moment(feed.pulled_at) if feed.pulled_at else _("never"),
              "parked": parked.get(feed.pk, 0),
              "parked_url": reverse("admin:integrations_erpparked_changelist") + f"?feed={feed.pk}"
              + "&resolved=no"}
             for feed in ErpFeed.objects.filter(erp=erp).order_by("position", "pk")]
    return {
        "enabled": erp.enabled, "previewed_at": format_moment(erp.previewed_at) if erp.previewed_at else "",
        "last_pull": format_moment(erp.last_pull_at) if erp.last_pull_at else _("never"),
        "last_error": erp.last_error, "feeds": feeds,
        "job": job, "job_state": job.get_state_display() if job else "",
        "job_url": reverse("admin:portal_job_change", args=[job.pk]) if job else "",
        "jobs_url": reverse("admin:portal_job_changelist") + f"?kind={PULL_JOB}",
        "can_pull": erp.enabled and erp.connection.enabled,
    }


class ResolvedFilter(admin.SimpleListFilter):
    title = gettext_lazy("resolved")
    parameter_name = "resolved"

    def lookups(self, request, model_admin):
        return [("no", _("Still parked")), ("yes", _("Resolved"))]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class FeedFilter(admin.SimpleListFilter):
    title = gettext_lazy("feed")
    parameter_name = "feed"

    def lookups(self, request, model_admin):
        return [(feed.pk, str(feed)) for feed in ErpFeed.objects.select_related("erp__connection")
                .order_by("erp__connection__name", "position", "pk")]

    def queryset(self, request, queryset):
        return queryset.filter(feed_id=self.value()) if self.value() else queryset


@admin.register(ErpParked)
class ErpParkedAdmin(admin.ModelAdmin):
    """Records that did not map: the reason and the record as the ERP sent it. Fix the feed's
    mapping, then replay them (mapped again with the mapping as it is now); dropped ones are gone."""

    list_display = ["record_key", "feed", "short_reason", "parked_at", "resolved_at"]
    list_filter = [ResolvedFilter, FeedFilter]
    list_select_related = ["feed__erp__connection"]
    search_fields = ["record_key", "reason"]
    fields = readonly_fields = ["feed", "record_key", "reason", "shown_record", "parked_at", "resolved_at"]
    actions = ["replay"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=gettext_lazy("why it did not map"))
    def short_reason(self, obj):
        return obj.reason if len(obj.reason) <= 120 else obj.reason[:120] + "…"

    @admin.display(description=gettext_lazy("record"))
    def shown_record(self, obj):
        try:
            text = pull.record_text(pull.parked_record(obj), indent=2)
        except ValueError:
            text = str(obj.record)
        return format_html("<pre>{}</pre>", text)

    @admin.action(description=gettext_lazy("Replay with the feed's mapping as it is now"), permissions=["view"])
    def replay(self, request, queryset):
        outcomes: dict[str, int] = {}
        for parked in queryset.filter(resolved_at__isnull=True).order_by("parked_at", "pk"):
            outcome = pull.parked_replay(parked)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            audit_record(action=AuditEvent.Action.EVENT_REPLAYED, request=request, obj=parked,
                         details={"feed": parked.feed_id, "record": parked.record_key, "outcome": outcome})
        mapped = sum(count for outcome, count in outcomes.items() if outcome != "parked")
        still = outcomes.get("parked", 0)
        if mapped:
            self.message_user(request, ngettext("%(count)s record mapped and handed on.",
                                                "%(count)s records mapped and handed on.", mapped)
                              % {"count": mapped}, messages.SUCCESS)
        if still:
            self.message_user(request, ngettext("%(count)s record still does not map: see its reason.",
                                                "%(count)s records still do not map: see their reasons.", still)
                              % {"count": still}, messages.WARNING)
