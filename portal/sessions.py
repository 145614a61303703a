"""Database sessions under row-level security: each request reads and writes its own session row only.

`django_session` is under a policy that shows a row only to a scope carrying a hash of that
row's key (portal/rls.py `session_scope`), so SQL run for one request cannot read another
visitor's session key, which would be enough to take the session over. Back office (staff
scope, e.g. `clearsessions`) sees all.
"""
from __future__ import annotations

from django.contrib.sessions.backends import db

from portal.rls import session_scope, staff_scope


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        with session_scope(self.session_key):
            return super()._get_session_from_db()

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
