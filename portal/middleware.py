"""Sets each request's row-level-security scope. The scope is a context, not a transaction: a
request that changes something (POST and friends) gets no request-wide transaction, so a view
that calls a payment gateway never holds one open; its services open short ones. A request
that only reads (GET, HEAD, OPTIONS) runs in one transaction: one snapshot of the data, and the
scope applied once instead of around every query. Such views make no call outside the
process (the test suite's transaction guard fails any that would)."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import translation

from portal.rls import client_scope, identity_scope, staff_scope
from portal.selectors import memberships_for
from portal.services import SESSION_CLIENT_KEY


READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")


class TenantScopeMiddleware:
    """Staff in admin get the staff scope; everyone else the scope of the client they
    act for (none until they have one, so nothing client-owned is visible)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._admin_prefix = self._accounts_prefix = None

    def _is_back_office(self, request) -> bool:
        if self._admin_prefix is None:
            self._admin_prefix = reverse("admin:index")
        return request.user.is_authenticated and request.user.is_staff and request.path.startswith(self._admin_prefix)

    def _is_account_page(self, request) -> bool:
        if self._accounts_prefix is None:
            self._accounts_prefix = reverse("account_login").rsplit("login/", 1)[0]
        return request.path.startswith(self._accounts_prefix)

    def __call__(self, request):
        if request.method in READ_ONLY_METHODS:
            with transaction.atomic():
                return self._scoped(request)
        return self._scoped(request)

    def _scoped(self, request):
        request.client = request.membership = None
        request.memberships = []
        if self._is_back_office(request):
            with staff_scope():
                return self.get_response(request)
        user_id = request.user.pk if request.user.is_authenticated else None
        if user_id is not None and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
            # No switch used in this browser: speak the contact's own language.
            translation.activate(request.user.language)
            request.LANGUAGE_CODE = request.user.language
        if user_id is not None:
            with client_scope(None, user_id=user_id):
                self._choose_membership(request)
        with client_scope(request.client.pk if request.client else None, user_id=user_id):
            if self._is_account_page(request):
                # Logging in, signing up, resetting a password, a second factor: these look
                # users up by email, so they see the identity tables (and no other client).
                with identity_scope():
                    return self.get_response(request)
            return self.get_response(request)

    @staticmethod
    def _choose_membership(request) -> None:
        request.memberships = memberships_for(user=request.user)
        chosen = request.session.get(SESSION_CLIENT_KEY)
        membership = next((m for m in request.memberships if m.client_id == chosen), None)
        if membership is None and len(request.memberships) == 1:
            membership = request.memberships[0]
            request.session[SESSION_CLIENT_KEY] = membership.client_id
        if membership is not None:
            request.membership, request.client = membership, membership.client
