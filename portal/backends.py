"""Authentication backends that look users up under row-level security.

`portal_user` shows a row only to that user, to the account pages (identity scope) and to
back office. Loading the user a session names, and checking a password, therefore run in
the scope that may see it (portal/rls.py)."""
from __future__ import annotations

from allauth.account.auth_backends import AuthenticationBackend as AllauthBackend
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend

from portal.rls import identity_scope, user_scope


class _Scoped:
    def get_user(self, user_id):
        # The session says which user it is for (django.contrib.auth has parsed the id already);
        # only that user's row is made visible.
        with user_scope(user_id):
            return super().get_user(user_id)

    def authenticate(self, request, **credentials):
        with identity_scope():
            return super().authenticate(request, **credentials)


class ModelBackend(_Scoped, DjangoModelBackend):
    pass


class AuthenticationBackend(_Scoped, AllauthBackend):
    pass
