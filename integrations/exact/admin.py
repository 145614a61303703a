"""Back office for Exact Online connections: the app's credentials (masked) and Exact's consent
round trip (integrations.oauth_admin, shared with Twinfield), the division and bank journal, and
a page that shows how the connection stands (state, budgets, last sync per entity) with buttons
to sync now and to subscribe webhooks."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _, gettext_lazy
from django.views.decorators.http import require_POST

from integrations.exact import connect
from integrations.exact.models import ExactConnection, ExactCursor
from integrations.models import Connection
from integrations.oauth_admin import AuthorisedAppAdmin, ConnectionForm
from portal.formatting import format_moment, format_number

TOKEN_CALLS_A_DAY = 200  # Exact's limit on calls to the token endpoint, per app and day


class ExactConnectionForm(ConnectionForm):
    slug = forms.SlugField(label=gettext_lazy("URL name"),
                           help_text=gettext_lazy("Exact's webhooks arrive at /webhooks/exact/ followed by this "
                                                  "name (see the webhook URL below)."))

    class Meta:
        model = ExactConnection
        fields = ["country", "client_id", "client_secret", "webhook_secret", "sends_peppol"]


@admin.register(ExactConnection)
class ExactConnectionAdmin(AuthorisedAppAdmin):
    system = "Exact Online"
    kind = Connection.Kind.EXACT_ONLINE
    connect = connect
    templates = "admin/integrations/exact"
    testid = "exact"
    connecting_text = gettext_lazy("Exact gave access. The portal is collecting the tokens and reading the divisions "
                                   "you can reach; this page refreshes itself.")
    form = ExactConnectionForm
    change_form_template = "admin/integrations/exact/change_form.html"
    list_display = ["__str__", "country", "state", "division_name", "journal_name", "last_sync"]
    list_filter = ["state", "country"]
    list_select_related = ["connection"]
    search_fields = ["connection__name", "connection__slug"]
    secret_fields = ("client_secret", "webhook_secret")
    readonly_fields = ["redirect_uri", "webhook_url", "division_name", "journal_name"]

    def get_fieldsets(self, request, obj=None):
        app = [
            (None, {"fields": ["name", "slug", "brand", "enabled"]}),
            (_("The app in Exact's App Center"), {
                "fields": ["country", "client_id", "client_secret", "webhook_secret", "redirect_uri", "webhook_url"],
                "description": _("Register an app in Exact's App Center with the redirect URI below, then copy its "
                                 "client ID, client secret and webhook secret here (stored encrypted).")}),
        ]
        app.append((_("Peppol"), {"fields": ["sends_peppol"]}))
        if obj is not None:
            app.append((_("Administration"), {"fields": ["division_name", "journal_name"]}))
        return app

    @admin.display(description=gettext_lazy("redirect URI"))
    def redirect_uri(self, obj):
        return connect.redirect_uri()

    @admin.display(description=gettext_lazy("webhook URL"))
    def webhook_url(self, obj):
        return connect.webhook_url(obj) if obj and obj.connection_id else _("(shown once saved)")

    @admin.display(description=gettext_lazy("division"))
    def division_name(self, obj):
        if obj.division is None:
            return _("not chosen yet")
        names = {d["code"]: d["name"] for d in obj.divisions}
        return f"{obj.division} {names.get(obj.division, '')}".strip()

    @admin.display(description=gettext_lazy("bank journal"))
    def journal_name(self, obj):
        if not obj.journal:
            return _("not chosen yet")
        names = {j["code"]: j["name"] for j in obj.journals}
        return f"{obj.journal} {names.get(obj.journal, '')}".strip()

    @admin.display(description=gettext_lazy("last sync"))
    def last_sync(self, obj):
        moments = [c.synced_at for c in obj.cursors.all() if c.synced_at]
        return format_moment(max(moments)) if moments else _("never")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("connection").prefetch_related("cursors")

    def own_urls(self, view) -> list:
        return [
            path("<int:pk>/division/", view(self.division_view), name=self.url_name("division")),
            path("<int:pk>/sync/", view(require_POST(self.sync_view)), name=self.url_name("sync")),
            path("<int:pk>/webhooks/", view(require_POST(self.webhooks_view)), name=self.url_name("webhooks")),
        ]

    def connected_enough(self, exact: ExactConnection) -> bool:
        return bool(exact.divisions)

    def ready_url(self, exact: ExactConnection) -> str:
        return reverse("admin:integrations_exactconnection_division", args=[exact.pk])

    def consent_host(self, exact: ExactConnection) -> str:
        return exact.base_url

    def status(self, exact: ExactConnection) -> dict:
        return connection_status(exact)

    def division_view(self, request, pk: int):
        """Choose the division (from those the user can reach), then the bank journal. Reading the
        division's journals calls Exact, so it happens in the POST (no transaction held)."""
        from integrations.exact.client import ExactError

        exact = self._connection(request, pk)
        division_form = DivisionForm(exact, request.POST if "division" in request.POST else None)
        journal_form = JournalForm(exact, request.POST if "journal" in request.POST else None)
        if request.method == "POST":
            try:
                if division_form.is_bound and division_form.is_valid():
                    connect.exact_division_choose(exact=exact, division=int(division_form.cleaned_data["division"]))
                    if not exact.journals:
                        messages.warning(request, _("This division has no bank or payment-service journal. Add one "
                                                    "in Exact, then choose the division again."))
                    return HttpResponseRedirect(request.path)
                if journal_form.is_bound and journal_form.is_valid():
                    connect.exact_journal_choose(exact=exact, journal=journal_form.cleaned_data["journal"])
                    messages.success(request, _("Exact Online is connected: division %(division)s, journal "
                                                "%(journal)s.") % {"division": exact.division, "journal": exact.journal})
                    return HttpResponseRedirect(self._change_url(exact))
            except ExactError as error:
                messages.error(request, _("Exact could not be asked for the journals: %(error)s")
                               % {"error": _exact_error(error)})
        return self._page(request, "division.html", exact, _("Choose the division and journal"),
                          division_form=division_form, journal_form=journal_form)

    def sync_view(self, request, pk: int):
        exact = self._connection(request, pk)
        if exact.state != ExactConnection.State.CONNECTED or exact.division is None:
            messages.error(request, _("Connect and choose a division before syncing."))
            return HttpResponseRedirect(self._change_url(exact))
        written = connect.exact_sync_now(exact=exact)
        if written:
            messages.success(request, _("Sync started for %(count)s entities.") % {"count": written})
        else:
            messages.info(request, _("A sync of every entity is already waiting to run."))
        return HttpResponseRedirect(self._change_url(exact))

    def webhooks_view(self, request, pk: int):
        """Subscribes Exact's topics to the connection's webhook URL: calls Exact, in this POST
        (no transaction held)."""
        from integrations.exact.client import ExactError

        exact = self._connection(request, pk)
        if exact.state != ExactConnection.State.CONNECTED or exact.division is None or not exact.webhook_secret:
            messages.error(request, _("Connect, choose a division and enter the app's webhook secret before "
                                      "subscribing webhooks."))
            return HttpResponseRedirect(self._change_url(exact))
        try:
            connect.exact_webhooks_subscribe(exact=exact)
        except ExactError as error:
            messages.error(request, _("Exact refused the webhook subscriptions: %(error)s") % {"error": _exact_error(error)})
        else:
            messages.success(request, _("Webhooks subscribed: Exact now tells the portal about changes to %(url)s.")
                             % {"url": connect.webhook_url(exact)})
        return HttpResponseRedirect(self._change_url(exact))


class DivisionForm(forms.Form):
    division = forms.TypedChoiceField(label=gettext_lazy("Division"), coerce=int)

    def __init__(self, exact: ExactConnection, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["division"].choices = [(d["code"], f'{d["code"]} – {d["name"]}') for d in exact.divisions]
        self.fields["division"].initial = exact.division
        self.fields["division"].widget.attrs["data-testid"] = "exact-division"


class JournalForm(forms.Form):
    journal = forms.ChoiceField(label=gettext_lazy("Bank journal"),
                                help_text=gettext_lazy("Payments, refunds and chargebacks made in the portal are "
                                                       "booked on this journal."))

    def __init__(self, exact: ExactConnection, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kinds = {12: _("bank"), 16: _("payment service")}
        self.fields["journal"].choices = [(j["code"], f'{j["code"]} – {j["name"]} ({kinds.get(j["type"], j["type"])})')
                                          for j in exact.journals]
        self.fields["journal"].initial = exact.journal or None
        self.fields["journal"].widget.attrs["data-testid"] = "exact-journal"


def _exact_error(error: Exception) -> str:
    until = getattr(error, "until", None)
    if until is not None:
        return _("Exact's limit is reached; try again after %(when)s.") % {"when": format_moment(until)}
    return getattr(error, "message", "") or str(error) or error.__class__.__name__


def connection_status(exact: ExactConnection) -> dict:
    """How the connection stands, as its admin page shows it: state and why, the budgets Exact
    reported (calls used today against the day's limit, token calls), rate-limited until, and the
    last sync and cursor per entity."""
    now = timezone.now()
    day_counts = exact.day_remaining is not None and (exact.day_resets_at is None or exact.day_resets_at > now)
    used_today = max(exact.day_limit - exact.day_remaining, 0) if day_counts else 0
    cursors = {c.entity: c for c in ExactCursor.objects.filter(exact=exact)}
    entities = [{"label": label, "cursor": cursors[value].timestamp if value in cursors else None,
                 "synced_at": format_moment(cursors[value].synced_at) if value in cursors and cursors[value].synced_at
                 else _("never")}
                for value, label in ExactCursor.Entity.choices]
    synced = [c.synced_at for c in cursors.values() if c.synced_at]
    limited = exact.rate_limited_until if exact.rate_limited_until and exact.rate_limited_until > now else None
    return {
        "state": exact.get_state_display(), "state_code": exact.state, "reason": exact.state_reason,
        "since": format_moment(exact.state_changed_at) if exact.state_changed_at else "",
        "rate_limited_until": format_moment(limited) if limited else "",
        "calls_used": format_number(used_today), "day_limit": format_number(exact.day_limit),
        "day_resets_at": format_moment(exact.day_resets_at) if day_counts and exact.day_resets_at else "",
        "token_calls": format_number(exact.token_calls if exact.token_calls_on == timezone.localdate() else 0),
        "token_limit": format_number(TOKEN_CALLS_A_DAY),
        "last_sync": format_moment(max(synced)) if synced else _("never"),
        "entities": entities,
        "can_sync": exact.state == ExactConnection.State.CONNECTED and exact.division is not None,
        "needs_division": exact.state == ExactConnection.State.CONNECTED and (exact.division is None
                                                                               or not exact.journal),
        "jobs_url": reverse("admin:portal_job_changelist") + "?kind=" + connect.SYNC_JOB,
        "connect_label": _("Connect") if exact.state == ExactConnection.State.NEW else _("Connect again"),
    }


def link_to_exact(connection: Connection) -> str:
    """For the generic connection's page: where its Exact side is edited."""
    exact = ExactConnection.objects.filter(connection=connection).first()
    if exact is None:
        return "—"
    return format_html('<a href="{}">{}</a>', reverse("admin:integrations_exactconnection_change", args=[exact.pk]),
                       _("Exact Online settings"))
