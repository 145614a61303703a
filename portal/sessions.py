"""Database sessions under row-level security: each request reads and writes its own session row only.

`django_session` is under a policy that shows a row only to a scope carrying a hash of that
row's key (portal/rls.py `session_scope`), so SQL run for one request cannot read another
visitor's session key, which would be enough to take the session over. Back office (staff
scope, e.g. `clearsessions`) sees all.
"""
from __future__ import annotations

import datetime

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.models import Session
from django.utils import timezone
from django.utils.crypto import get_random_string

from portal.compiled import CompiledQuery
from portal.rls import session_scope, staff_scope


# Every request with a session cookie reads its row: compiled once (portal.compiled).
_SESSION = CompiledQuery(
    lambda session_key, now: Session.objects.filter(session_key=session_key, expire_date__gt=now),
    single=True, session_key=str, now=datetime.datetime)


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        # Django's, with the query compiled once.
        with session_scope(self.session_key):
            session = _SESSION.get_or_none(session_key=self.session_key, now=timezone.now())
        if session is None:
            self._session_key = None
        return session

    def _get_new_session_key(self):
        # Django asks the database whether a new random key is taken before create() inserts it,
        # and create() inserts with must_create, which refuses a taken key and tries another
        # anyway: the question is a round trip for a one-in-10^49 chance.
        return get_random_string(32, VALID_KEY_CHARS)

    def cycle_key(self):
        """A new key for the same data (a sign-in, a company switch), the old row deleted. Django's
        inserts the new row at once, and the request saves it again at its end with what it put
        in after the cycle (the signed-in user): here the row is made once, by that save."""
        data = self._session
        key = self.session_key
        self._session_key = None
        self._session_cache = data
        self.modified = True
        if key:
            self.delete(key)

    def exists(self, session_key):
        with session_scope(session_key):
            return super().exists(session_key)

    def save(self, must_create=False):
        if self.session_key is None:
            return self.create()
        with session_scope(self.session_key):
            return super().save(must_create=must_create)

    def delete(self, session_key=None):
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        with session_scope(key):
            return super().delete(key)

    @classmethod
    def clear_expired(cls):
        with staff_scope():
            return super().clear_expired()
