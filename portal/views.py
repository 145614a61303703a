"""The portal shell: home, choosing the client to act for, the company profile."""
import mimetypes

from django.conf import settings
from django.contrib import messages
from django.utils.translation import gettext as _
from django.views.i18n import set_language as django_set_language

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from invoices.selectors import client_dashboard
from portal.middleware import outside_request_transaction
from portal.models import Brand, Client, Membership, Notification, NotificationKind, NotificationPreference, User
from portal.notifications import notification_open as notification_open_service
from portal.notifications import notifications_mark_all_read, preferences_save
from portal.permissions import client_required
from portal.selectors import notifications_for
from portal.selectors import client_get
from portal.services import client_switch


@client_required
def home(request):
    return render(request, "portal/home.html", {
        "dashboard": client_dashboard(client=request.client),
    })


@client_required
def notifications(request):
    return render(request, "portal/notifications.html", {
        "notifications": notifications_for(user=request.user, client=request.client)})


@require_http_methods(["GET", "HEAD", "POST"])
@client_required
def notification_open(request, pk: int):
    """A notification leads to what it is about. Opening it from the list is a POST (a button),
    which marks it read; a GET (an old bookmark, a link followed by a prefetcher or a mail
    scanner) only leads there and changes nothing."""
    notification = Notification.objects.filter(pk=pk, user=request.user, client=request.client).first()
    if notification is None:
        raise Http404("No such notification")
    target = notification.url
    if request.method == "POST":
        target = notification_open_service(notification=notification)
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "portal:notifications"
    return redirect(target)


@require_POST
@client_required
def notifications_read_all(request):
    notifications_mark_all_read(user=request.user, client=request.client)
    return redirect("portal:notifications")


@client_required
def notification_preferences(request):
    if request.method == "POST":
        preferences_save(user=request.user, email_on=set(request.POST.getlist("email")))
        messages.success(request, _("Your email settings are saved."))
        return redirect("portal:notification_preferences")
    off = set(NotificationPreference.objects.filter(user=request.user, email=False).values_list("kind", flat=True))
    return render(request, "portal/notification_preferences.html", {
        "kinds": [(value, label, value not in off) for value, label in NotificationKind.choices]})


@require_POST
def set_language(request):
    """Django's language switch, remembered on the user for emails and the next login."""
    response = django_set_language(request)
    language = request.POST.get("language")
    if request.user.is_authenticated and language in dict(settings.LANGUAGES):
        User.objects.filter(pk=request.user.pk).update(language=language)
    return response


@login_required
def choose_client(request):
    if request.method == "POST":
        return switch_client(request)
    return render(request, "portal/choose_client.html", {"next": request.GET.get("next", "")})


@require_POST
@login_required
def switch_client(request):
    try:
        client_switch(request=request, client_id=int(request.POST.get("client_id", "0")))
    except (ValueError, Membership.DoesNotExist):
        raise Http404("No such client")
    # A new session key for the new company: a key seen while acting for one company (in a log,
    # a shared screen, a fixated cookie) does not carry over to the next one.
    request.session.cycle_key()
    next_url = request.POST.get("next") or ""
    # Only a path on this site; anything else (redirect() would take "0" for a view name) goes home.
    if not next_url.startswith("/") or not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        next_url = reverse("portal:home")
    return redirect(next_url)


@client_required
def client_detail(request, pk: int):
    try:
        client = client_get(client_id=pk, current_client=request.client)
    except Client.DoesNotExist:
        raise Http404("No such client")
    members = client.memberships.select_related("user")
    return render(request, "portal/client_detail.html", {"client": client, "members": members})


@outside_request_transaction
@require_GET
def brand_logo(request, pk: int, name: str):
    """A brand's logo, read through the storage (the local disk or the private bucket), for the
    login page and every portal page; public like the brand itself (rls.NO_RLS_NEEDED). An upload
    never reuses a name, so the address of a logo never shows another one: cached for a year."""
    brand = Brand.objects.filter(pk=pk).only("logo").first()
    if brand is None or not brand.logo or brand.logo.name != name:
        raise Http404("No such logo")
    try:
        with brand.logo.storage.open(name) as handle:
            content = handle.read()
    except FileNotFoundError:
        raise Http404("No such logo") from None
    response = HttpResponse(content, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
