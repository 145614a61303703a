"""The back office's pages that Exact Online and Twinfield connections share: one form for the
connection (name, URL name, brand, enabled) and the app's credentials, and the consent round
trip (Connect → the system's consent page → the callback → a page that follows the connect job
until the system's administrations are read). Each system's admin says where its pieces are
(`system`, `connect`, `templates`) and adds its own pages (choosing a division or an office,
syncing, webhooks)."""
from __future__ import annotations

import base64
import secrets
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _, gettext_lazy
from django.views.decorators.http import require_POST

from integrations.models import Connection
from portal.admin_base import AuditedModelAdmin, SecretFieldsMixin
from portal.models import Brand, Job


class ConnectionForm(forms.ModelForm):
    """The connection (name, URL name, brand) and the system's side in one form: staff add such a
    connection here, not as a generic connection (which would ask for signing secrets)."""

    # Admin shows a form field's help text as HTML: no "<URL name>" in it.
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    slug = forms.SlugField(label=gettext_lazy("URL name"))
    brand = forms.ModelChoiceField(label=gettext_lazy("Brand"), queryset=Brand.objects.all())
    enabled = forms.BooleanField(label=gettext_lazy("Enabled"), required=False, initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.connection_id:
            link = self.instance.connection
            for name in ("name", "slug", "brand", "enabled"):
                self.initial[name] = getattr(link, name)

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if Connection.objects.filter(slug=slug).exclude(pk=self.instance.connection_id).exists():
            raise forms.ValidationError(_("Another connection already has this URL name."))
        return slug


class AuthorisedAppAdmin(SecretFieldsMixin, AuditedModelAdmin):
    """Subclasses set `system` (its name for staff), `kind` (Connection.Kind), `connect` (the
    module with redirect_uri, consent_start(app), consent_receive(...), ConsentRefused and
    connect_job(app)), `templates` (their admin template folder), `consent_host(app)` (the site
    the Connect button's redirect goes to) and `ready_url(app)` (where the connecting page leads
    once the job is done), and add their own urls in `own_urls()`."""

    system = ""
    kind = ""
    connect = None
    templates = ""
    testid = ""  # the prefix of the pages' data-testid attributes ("exact", "twinfield")
    connecting_text = ""  # what the connecting page says while the job runs

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        link = obj.connection if obj.connection_id else Connection(
            kind=self.kind,
            # The system signs (or sends) nothing with this; it only keeps the generic connection
            # valid (a connection always has a signing secret).
            signing_secrets="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
        link.name, link.slug, link.brand, link.enabled = data["name"], data["slug"], data["brand"], data["enabled"]
        link.save()
        obj.connection = link
        super().save_model(request, obj, form, change)

    # --- Pages of their own -----------------------------------------------------------------

    def url_name(self, page: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{page}"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("callback/", view(self.callback_view), name=self.url_name("callback")),
            path("<int:pk>/connect/", view(require_POST(self.connect_view)), name=self.url_name("connect")),
            path("<int:pk>/connecting/", view(self.connecting_view), name=self.url_name("connecting")),
            *self.own_urls(view),
        ] + super().get_urls()

    def own_urls(self, view) -> list:
        return []

    def _connection(self, request, pk: int):
        app = get_object_or_404(self.model.objects.select_related("connection"), pk=pk)
        if not self.has_change_permission(request, app):
            raise PermissionDenied
        return app

    def _page(self, request, template: str, app, title: str, **context):
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, "app": app,
                   self.testid: app, "original": app, "system": self.system, "testid": self.testid,
                   "connecting_text": self.connecting_text,
                   "changelist_url": reverse(f"admin:{self.url_name('changelist')}"),
                   "change_url": self._change_url(app) if app is not None else "",
                   "connect_url": reverse(f"admin:{self.url_name('connect')}", args=[app.pk]) if app is not None else "",
                   **context}
        templates = [f"{self.templates}/{template}", f"admin/integrations/{template}"]
        return TemplateResponse(request, templates, context, status=context.pop("status", 200))

    def _change_url(self, app) -> str:
        return reverse(f"admin:{self.url_name('change')}", args=[app.pk])

    def connect_view(self, request, pk: int):
        """Connect: a fresh state, then the system's consent page; it sends staff back to the callback."""
        return HttpResponseRedirect(self.connect.consent_start(self._connection(request, pk)))

    def callback_view(self, request):
        """The system's redirect after the consent (a GET: inside the request's read transaction,
        so no call out here). The code is kept and a job exchanges it; staff wait on the next page."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            app = self.connect.consent_receive(state=request.GET.get("state", ""), code=request.GET.get("code", ""),
                                               error=request.GET.get("error_description")
                                               or request.GET.get("error", ""))
        except self.connect.ConsentRefused as refused:
            return self._page(request, "refused.html", None, _("%(system)s: not connected") % {"system": self.system},
                              reason=str(refused), status=400)
        return HttpResponseRedirect(reverse(f"admin:{self.url_name('connecting')}", args=[app.pk]))

    def connecting_view(self, request, pk: int):
        """Shows the connect job's progress and reloads itself until the system's
        administrations are read."""
        app = self._connection(request, pk)
        job = self.connect.connect_job(app)
        if self.connected_enough(app) and (job is None or job.state == Job.State.DONE):
            return HttpResponseRedirect(self.ready_url(app))
        failed = job is not None and job.state == Job.State.DEAD
        return self.form_may_lead_to(self._page(request, "connecting.html", app,
                                                _("Connecting to %(system)s") % {"system": self.system},
                                                job=job, failed=failed, waiting=not failed), app)

    def connected_enough(self, app) -> bool:
        raise NotImplementedError

    def ready_url(self, app) -> str:
        raise NotImplementedError

    def consent_host(self, app) -> str:
        raise NotImplementedError

    def form_may_lead_to(self, response, app):
        """The Connect button's POST answers with a redirect to the system's consent page, and
        browsers hold that redirect to the page's form-action (the policy allows only this site):
        so a page with that button also allows the system's site (as checkout allows the gateways')."""
        parts = urlsplit(self.consent_host(app))
        response._csp_update = {"form-action": [f"{parts.scheme}://{parts.netloc}"]}
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        app = self.get_object(request, object_id)
        extra = {"status": self.status(app)} if app is not None else {}
        response = super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})
        return self.form_may_lead_to(response, app) if app is not None else response

    def status(self, app) -> dict:
        raise NotImplementedError
