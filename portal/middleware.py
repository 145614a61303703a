"""Sets each request's row-level-security scope. The scope is a context, not a transaction: a
request that changes something (POST and friends) gets no request-wide transaction, so a view
that calls a payment gateway never holds one open; its services open short ones. A request
that only reads (GET, HEAD, OPTIONS) runs in one transaction: one snapshot of the data, and the
scope applied once instead of around every query. Such views make no call outside the
process (the test suite's transaction guard fails any that would); a read that must (a file
from object storage, a PDF rendered and stored) is marked `outside_request_transaction` and
runs its queries in short transactions of their own, under the same scope."""
from __future__ import annotations

from contextlib import nullcontext
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import transaction
from django.urls import Resolver404, resolve, reverse
from django.utils import translation

from portal.rls import client_scope, identity_scope, staff_scope
from portal.selectors import memberships_for
from portal.services import SESSION_CLIENT_KEY


READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")


def outside_request_transaction(view):
    """A read-only view that reads stored files or renders one: no request-wide transaction, so
    none is open while it waits on object storage (S3 is a network call) or on a render, and no
    pooled connection (nor PgBouncer's server connection) is held through them."""
    view.request_transaction = False
    return view


def file_response(view):
    """A view that answers with a file, not a page (a PDF, a UBL): the request reads no more than
    it needs for who is asking (not the unread count every page's header shows)."""
    view.page_chrome = False
    return view


def _view(request):
    try:
        return resolve(request.path_info, getattr(request, "urlconf", None)).func
    except Resolver404:
        return None


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
            view = _view(request)
            request.page_chrome = getattr(view, "page_chrome", True)
            if getattr(view, "request_transaction", True):
                # No savepoint: this is the outermost transaction of a request (BEGIN ... COMMIT), and
                # nothing inside needs to roll back to its start; inside a test's transaction it would
                # add statements a real request never sends.
                with transaction.atomic(savepoint=False):
                    return self._scoped(request)
            # A view that waits on files or a render outside a transaction: who is asking (the
            # session, the user, the memberships) is still read in one short transaction, not one
            # each with its scope applied again.
            return self._scoped(request, identity_transaction=True)
        return self._scoped(request)

    def _scoped(self, request, *, identity_transaction: bool = False):
        request.client = request.membership = None
        request.memberships = []
        # The scope is applied once for the request: the session (read in its own scope, the one
        # row its key may see) names the user and the client it acts for, and the user, its
        # memberships and the page are all read in that client's scope. The client is the
        # session's only once the memberships confirm it; otherwise the scope narrows to the
        # user before anything of a client is read (a membership revoked, a first request).
        with transaction.atomic(savepoint=False) if identity_transaction else nullcontext():
            session_user = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
            with client_scope(request.session.get(SESSION_CLIENT_KEY) if session_user else None,
                              user_id=session_user):
                back_office = self._is_back_office(request)
                user_id = request.user.pk if request.user.is_authenticated else None
                if not back_office and user_id is not None:
                    if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
                        # No switch used in this browser: speak the contact's own language.
                        translation.activate(request.user.language)
                        request.LANGUAGE_CODE = request.user.language
                    self._choose_membership(request)
        if back_office:
            with staff_scope():
                return self.get_response(request)
        with client_scope(request.client.pk if request.client else None, user_id=user_id):
            if self._is_account_page(request):
                # Logging in, signing up, resetting a password, a second factor: these look
                # users up by email, so they see the identity tables (and no other client).
                with identity_scope():
                    return self.get_response(request)
            return self.get_response(request)

    @staticmethod
    def _choose_membership(request) -> None:
        request.memberships = memberships_for(user=request.user, with_unread=getattr(request, "page_chrome", True))
        chosen = request.session.get(SESSION_CLIENT_KEY)
        membership = next((m for m in request.memberships if m.client_id == chosen), None)
        if membership is None and len(request.memberships) == 1:
            membership = request.memberships[0]
            request.session[SESSION_CLIENT_KEY] = membership.client_id
        if membership is not None:
            request.membership, request.client = membership, membership.client
