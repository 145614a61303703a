"""Back office for Twinfield connections: the client's credentials (masked) and Wolters Kluwer's
consent round trip (integrations.oauth_admin, shared with Exact Online), the office and bank
daybook, and a page that shows how the connection stands (state, throttled until, credits spent
this minute and today, last poll and cursor per entity)."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _, gettext_lazy
from django.views.decorators.http import require_POST

from integrations.models import Connection
from integrations.oauth_admin import AuthorisedAppAdmin, ConnectionForm
from integrations.twinfield import connect
from integrations.twinfield.client import CREDITS_PER_MINUTE
from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor
from portal.formatting import format_moment, format_number


class TwinfieldConnectionForm(ConnectionForm):
    class Meta:
        model = TwinfieldConnection
        fields = ["client_id", "client_secret", "poll_minutes"]


@admin.register(TwinfieldConnection)
class TwinfieldConnectionAdmin(AuthorisedAppAdmin):
    system = "Twinfield"
    kind = Connection.Kind.TWINFIELD
    connect = connect
    templates = "admin/integrations/twinfield"
    testid = "twinfield"
    connecting_text = gettext_lazy("Twinfield gave access. The portal is collecting the tokens and reading the "
                                   "offices you can reach; this page refreshes itself.")
    form = TwinfieldConnectionForm
    change_form_template = "admin/integrations/twinfield/change_form.html"
    list_display = ["__str__", "state", "office_name", "daybook_name", "last_poll"]
    list_filter = ["state"]
    list_select_related = ["connection"]
    search_fields = ["connection__name", "connection__slug"]
    secret_fields = ("client_secret",)
    readonly_fields = ["redirect_uri", "office_name", "daybook_name"]

    def get_fieldsets(self, request, obj=None):
        app = [
            (None, {"fields": ["name", "slug", "brand", "enabled"]}),
            (_("The client registered at Wolters Kluwer"), {
                "fields": ["client_id", "client_secret", "redirect_uri"],
                "description": _("Request an OpenID Connect client from Wolters Kluwer with the redirect URI below "
                                 "and the scopes openid, twf.user, twf.organisationUser, twf.organisation and "
                                 "offline_access, then copy its client ID and secret here (stored encrypted).")}),
            (_("Polling"), {"fields": ["poll_minutes"]}),
        ]
        if obj is not None:
            app.append((_("Administration"), {"fields": ["office_name", "daybook_name"]}))
        return app

    @admin.display(description=gettext_lazy("redirect URI"))
    def redirect_uri(self, obj):
        return connect.redirect_uri()

    @admin.display(description=gettext_lazy("office"))
    def office_name(self, obj):
        if not obj.office:
            return _("not chosen yet")
        names = {o["code"]: o["name"] for o in obj.offices}
        return f"{obj.office} {names.get(obj.office, '')}".strip()

    @admin.display(description=gettext_lazy("bank daybook"))
    def daybook_name(self, obj):
        if not obj.daybook:
            return _("not chosen yet")
        names = {d["code"]: d["name"] for d in obj.daybooks}
        return f"{obj.daybook} {names.get(obj.daybook, '')}".strip()

    @admin.display(description=gettext_lazy("last poll"))
    def last_poll(self, obj):
        moments = [c.polled_at for c in obj.cursors.all() if c.polled_at]
        return format_moment(max(moments)) if moments else _("never")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("connection").prefetch_related("cursors")

    # --- Pages of their own -----------------------------------------------------------------

    def own_urls(self, view) -> list:
        return [path("<int:pk>/office/", view(self.office_view), name=self.url_name("office")),
                path("<int:pk>/poll/", view(require_POST(self.poll_view)), name=self.url_name("poll"))]

    def poll_view(self, request, pk: int):
        """Poll now (as the beat task does when the interval has passed): only writes the job."""
        from integrations.twinfield.tasks import poll_enqueue

        twinfield = self._connection(request, pk)
        if twinfield.state != TwinfieldConnection.State.CONNECTED or not twinfield.office:
            messages.error(request, _("Connect and choose an office before polling."))
            return HttpResponseRedirect(self._change_url(twinfield))
        with transaction.atomic():
            written = poll_enqueue(twinfield=twinfield)
        if written:
            messages.success(request, _("Poll started: new and changed invoices and payments are read now."))
        else:
            messages.info(request, _("A poll is already waiting to run."))
        return HttpResponseRedirect(self._change_url(twinfield))

    def connected_enough(self, twinfield: TwinfieldConnection) -> bool:
        return bool(twinfield.offices)

    def ready_url(self, twinfield: TwinfieldConnection) -> str:
        return reverse("admin:integrations_twinfieldconnection_office", args=[twinfield.pk])

    def consent_host(self, twinfield: TwinfieldConnection) -> str:
        return twinfield.login_url

    def status(self, twinfield: TwinfieldConnection) -> dict:
        return connection_status(twinfield)

    def office_view(self, request, pk: int):
        """Choose the office (from those the user can reach), then the bank daybook. Reading the
        office's daybooks calls Twinfield, so it happens in the POST (no transaction held)."""
        from integrations.twinfield.client import TwinfieldError

        twinfield = self._connection(request, pk)
        office_form = OfficeForm(twinfield, request.POST if "office" in request.POST else None)
        daybook_form = DaybookForm(twinfield, request.POST if "daybook" in request.POST else None)
        if request.method == "POST":
            try:
                if office_form.is_bound and office_form.is_valid():
                    connect.twinfield_office_choose(twinfield=twinfield, office=office_form.cleaned_data["office"])
                    if not twinfield.daybooks:
                        messages.warning(request, _("This office has no bank daybook. Add one in Twinfield, then "
                                                    "choose the office again."))
                    return HttpResponseRedirect(request.path)
                if daybook_form.is_bound and daybook_form.is_valid():
                    connect.twinfield_daybook_choose(twinfield=twinfield, daybook=daybook_form.cleaned_data["daybook"])
                    messages.success(request, _("Twinfield is connected: office %(office)s, daybook %(daybook)s.")
                                     % {"office": twinfield.office, "daybook": twinfield.daybook})
                    return HttpResponseRedirect(self._change_url(twinfield))
            except TwinfieldError as error:
                messages.error(request, _("Twinfield could not be asked for the daybooks: %(error)s")
                               % {"error": twinfield_error(error)})
        return self._page(request, "office.html", twinfield, _("Choose the office and daybook"),
                          office_form=office_form, daybook_form=daybook_form)


class OfficeForm(forms.Form):
    office = forms.ChoiceField(label=gettext_lazy("Office"))

    def __init__(self, twinfield: TwinfieldConnection, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["office"].choices = [(o["code"], f'{o["code"]} – {o["name"]}') for o in twinfield.offices]
        self.fields["office"].initial = twinfield.office or None
        self.fields["office"].widget.attrs["data-testid"] = "twinfield-office"


class DaybookForm(forms.Form):
    daybook = forms.ChoiceField(label=gettext_lazy("Bank daybook"),
                                help_text=gettext_lazy("Payments, refunds and chargebacks made in the portal are "
                                                       "booked on this daybook and matched to the invoice."))

    def __init__(self, twinfield: TwinfieldConnection, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["daybook"].choices = [(d["code"], f'{d["code"]} – {d["name"]}') for d in twinfield.daybooks]
        self.fields["daybook"].initial = twinfield.daybook or None
        self.fields["daybook"].widget.attrs["data-testid"] = "twinfield-daybook"


def twinfield_error(error: Exception) -> str:
    until = getattr(error, "until", None)
    if until is not None:
        return _("Twinfield asks to wait; try again after %(when)s.") % {"when": format_moment(until)}
    return str(error) or error.__class__.__name__


def connection_status(twinfield: TwinfieldConnection) -> dict:
    """How the connection stands, as its admin page shows it: state and why, throttled until,
    credits spent this minute (of 1,000) and today, token calls today, and the last poll and
    cursor per entity."""
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    cursors = {c.entity: c for c in TwinfieldCursor.objects.filter(twinfield=twinfield)}
    entities = [{"label": label, "cursor": cursors[value].position if value in cursors else "",
                 "polled_at": format_moment(cursors[value].polled_at) if value in cursors and cursors[value].polled_at
                 else _("never")}
                for value, label in TwinfieldCursor.Entity.choices]
    polled = [c.polled_at for c in cursors.values() if c.polled_at]
    throttled = twinfield.throttled_until if twinfield.throttled_until and twinfield.throttled_until > now else None
    connected = twinfield.state == TwinfieldConnection.State.CONNECTED
    return {
        "state": twinfield.get_state_display(), "state_code": twinfield.state, "reason": twinfield.state_reason,
        "since": format_moment(twinfield.state_changed_at) if twinfield.state_changed_at else "",
        "throttled_until": format_moment(throttled) if throttled else "",
        "credits_minute": format_number(twinfield.credits_this_minute if twinfield.credits_minute == minute else 0),
        "credits_limit": format_number(CREDITS_PER_MINUTE),
        "credits_today": format_number(twinfield.credits_today if twinfield.credits_day == timezone.localdate()
                                       else 0),
        "token_calls": format_number(twinfield.token_calls if twinfield.token_calls_on == timezone.localdate() else 0),
        "cluster": twinfield.cluster_url, "organisation": twinfield.organisation,
        "last_poll": format_moment(max(polled)) if polled else _("never"),
        "entities": entities,
        "needs_office": connected and (not twinfield.office or not twinfield.daybook),
        "can_poll": connected and bool(twinfield.office),
        "jobs_url": reverse("admin:portal_job_changelist") + "?kind=twinfield.poll",
        "connect_label": _("Connect") if twinfield.state == TwinfieldConnection.State.NEW else _("Connect again"),
    }
