"""Staff reach the back office only with a second factor: enrolled, and used in this session.

A password (or a code by email) alone opens the mailbox's door; the back office sees every
client, so it also asks for something the staff member holds (TOTP; a passkey when enabled).
allauth records how a session authenticated (`get_authentication_records`); a record with the
method "mfa" means a second factor was checked in this session: at login, at a
re-authentication, or when the authenticator was enrolled (see `_enrolment_counts_as_use`).
"""
from __future__ import annotations

from allauth.account.authentication import get_authentication_records
from allauth.account.internal.flows.login import record_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.dispatch import receiver
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

# The authenticators that count as a second factor (recovery codes only stand in for one).
SECOND_FACTORS = [Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]


def used_second_factor(request) -> bool:
    """True when this session's login (or a later re-authentication) checked a second factor."""
    return any(record.get("method") == "mfa" for record in get_authentication_records(request, request.user))


class StaffMFAMiddleware:
    """In admin, a staff member without an authenticator is sent to enrol one; with one but not
    used in this session, to re-authenticate with it. Placed after TenantScopeMiddleware, so the
    authenticator is read under the back-office scope."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._admin_prefix = self._logout_path = None

    def __call__(self, request):
        if self._applies(request):
            response = self._missing_second_factor(request)
            if response is not None:
                return response
        return self.get_response(request)

    def _applies(self, request) -> bool:
        if self._admin_prefix is None:
            self._admin_prefix, self._logout_path = reverse("admin:index"), reverse("admin:logout")
        user = getattr(request, "user", None)
        return (user is not None and user.is_authenticated and user.is_staff
                and request.path.startswith(self._admin_prefix) and request.path != self._logout_path)

    def _missing_second_factor(self, request) -> HttpResponseRedirect | None:
        # Read with the user by the authentication backend (portal/backends.py), fresh each request.
        enrolled = getattr(request.user, "has_second_factor", None)
        if enrolled is None:
            enrolled = is_mfa_enabled(request.user, SECOND_FACTORS)
        if not enrolled:
            messages.info(request, _("The back office needs two-factor authentication. "
                                     "Set up an authenticator app to continue."))
            return HttpResponseRedirect(reverse("mfa_activate_totp"))
        if not used_second_factor(request):
            next_url = request.get_full_path() if request.method == "GET" else reverse("admin:index")
            return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{urlencode({'next': next_url})}")
        return None


@receiver(authenticator_added, dispatch_uid="portal.staff_mfa.enrolment_counts_as_use")
def _enrolment_counts_as_use(sender, request, user, authenticator, **kwargs):
    # Enrolling checked a code from the new device: the session has used a second factor, and is
    # not sent to type the next code again straight away. allauth sends this on commit, which may
    # come after the session middleware saved the session (a request inside an outer transaction),
    # so the session is saved here.
    if request is not None and authenticator.type in SECOND_FACTORS:
        record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type, enrolled=True)
        request.session.save()
