"""Authentication backends that look users up under row-level security.

`portal_user` shows a row only to that user, to the account pages (identity scope) and to
back office. Loading the user a session names, and checking a password, therefore run in
the scope that may see it (portal/rls.py)."""
from __future__ import annotations

from allauth.account.auth_backends import AuthenticationBackend as AllauthBackend
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.db.models import Exists, OuterRef

from portal.compiled import CompiledQuery
from portal.rls import current_scope, identity_scope, user_scope


def _user_with_second_factor(user_id):
    from portal.staff_mfa import SECOND_FACTORS

    second_factor = Authenticator.objects.filter(user_id=OuterRef("pk"), type__in=SECOND_FACTORS)
    return get_user_model()._default_manager.annotate(has_second_factor=Exists(second_factor)).filter(pk=user_id)


_USER = CompiledQuery(_user_with_second_factor, single=True, user_id=int)


class _Scoped:
    def get_user(self, user_id):
        # The session says which user it is for (django.contrib.auth has parsed the id already);
        # only that user's row is made visible. A request's scope already names this user (the
        # portal's middleware scopes it from the session): read it there, with no scope change.
        if current_scope()[1] == str(user_id) and current_scope()[2] == "":
            return self._load(user_id)
        with user_scope(user_id):
            return self._load(user_id)

    def _load(self, user_id):
        # Django's get_user, with whether the user holds a second factor read in the same query
        # (the back office asks on every request: portal/staff_mfa.py); the user's own
        # authenticators are visible in the scope that shows the user.
        # Every request reads it: compiled once (portal.compiled).
        user = _USER.get_or_none(user_id=int(user_id))
        return user if user is not None and self.user_can_authenticate(user) else None

    def authenticate(self, request, **credentials):
        with identity_scope():
            return super().authenticate(request, **credentials)


class ModelBackend(_Scoped, DjangoModelBackend):
    pass


class AuthenticationBackend(_Scoped, AllauthBackend):
    pass
