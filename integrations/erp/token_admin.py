"""API tokens in the back office: made for a connection with scopes, an expiry and a rate, shown
once (the page that answers the save, never stored in clear or put in a message), revoked by
an action; never deleted, so the audit log's references stay readable."""
from __future__ import annotations

import datetime

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _, ngettext

from integrations.erp.models import ApiToken
from portal.admin_base import AuditedModelAdmin, moment_display
from portal.models import AuditEvent
from portal.services import audit_record

DEFAULT_DAYS = 365
SCOPE_NAMES = {"read": _("read"), "write": _("write")}


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["connection", "name", "can_read", "can_write", "expires_at", "rate_per_minute"]

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("can_read") and not cleaned.get("can_write"):
            self.add_error(None, _("Give the token at least one scope: read or write."))
        expires = cleaned.get("expires_at")
        if expires is not None and expires <= timezone.now() and not self.instance.pk:
            self.add_error("expires_at", _("Choose a moment in the future."))
        return cleaned


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "connection", "prefix", "scopes_display", "expires", "last_used", "state"]
    list_filter = ["connection", "can_write"]
    list_select_related = ["connection"]
    search_fields = ["name", "prefix", "connection__name"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    expires = moment_display("expires_at", _("expires"))
    last_used = moment_display("last_used_at", _("last used"))

    @admin.display(description=_("scopes"))
    def scopes_display(self, obj):
        return ", ".join(str(SCOPE_NAMES[scope]) for scope in obj.scopes)

    @admin.display(description=_("state"))
    def state(self, obj):
        if obj.revoked_at:
            return _("revoked")
        return _("expired") if obj.expires_at <= timezone.now() else _("active")

    def get_changeform_initial_data(self, request):
        return {"expires_at": timezone.now() + datetime.timedelta(days=DEFAULT_DAYS), "can_write": True}

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # what it is for and whom it serves stay as made
            return [*self.readonly_fields, "connection"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            request._api_token_secret = ApiToken.new_secret()
            obj.set_secret(request._api_token_secret)
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            audit_record(action=AuditEvent.Action.API_TOKEN_CREATED, request=request, obj=obj,
                         details={"connection": obj.connection.slug, "scopes": obj.scopes,
                                  "expires_at": obj.expires_at.isoformat()})

    def response_add(self, request, obj, post_url_continue=None):
        """The token, this once: on the page that answers the save."""
        context = {**self.admin_site.each_context(request), "token": obj, "secret": request._api_token_secret,
                   "opts": self.opts, "title": _("API token made")}
        return TemplateResponse(request, "admin/integrations/erp/token_made.html", context)

    @admin.action(description=_("Revoke the selected tokens"))
    def revoke(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).select_related("connection"):
            ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
            audit_record(action=AuditEvent.Action.API_TOKEN_REVOKED, request=request, obj=token,
                         details={"connection": token.connection.slug})
            revoked += 1
        self.message_user(request, ngettext("%(count)d token revoked: it no longer works.",
                                            "%(count)d tokens revoked: they no longer work.", revoked)
                          % {"count": revoked}, messages.SUCCESS)
