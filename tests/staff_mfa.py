"""Staff and their second factor in tests: enrol a TOTP device, and log in as one who used it.

Back-office pages need a second factor used in the session (portal/staff_mfa.py). Tests that are
about something else log staff in with `client.force_login(staff)`; tests/conftest.py makes that
shortcut stand for a complete login, second factor included (`force_login_with_mfa`). Tests of
the requirement itself use `force_login_without_mfa`.
"""
from __future__ import annotations

import time

from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.account.internal.flows.login import _AUTHENTICATION_METHODS_USER_SESSION_KEY
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.db import transaction
from django.test import Client
from django.test.client import ClientMixin

from portal.rls import staff_scope

# ClientMixin holds the original; tests/conftest.py replaces Client.force_login only.
force_login_without_mfa = ClientMixin.force_login


def enrol_totp(user, secret: str | None = None) -> str:
    """Give `user` a TOTP authenticator; returns its secret (to compute codes with `totp_code`)."""
    secret = secret or generate_totp_secret()
    with transaction.atomic(), staff_scope():
        TOTP.activate(user, secret)
    return secret


def totp_code(secret: str, *, at: float | None = None) -> str:
    """The code of the 30-second window of `at` (now: of a window with at least 3 s left, so that
    the server, which takes no earlier window, checks it in the same one; a loaded machine took
    longer than the rest of a window once)."""
    if at is None:
        left = 30 - time.time() % 30
        if left < 3:
            time.sleep(left + 0.05)
        at = time.time()
    return format_hotp_value(hotp_value(secret, int(at) // 30))


def force_login_with_mfa(client: Client, user, backend=None) -> None:
    force_login_without_mfa(client, user, backend)
    if not user.is_staff:
        return
    with transaction.atomic(), staff_scope():
        authenticator = Authenticator.objects.filter(user_id=user.pk, type=Authenticator.Type.TOTP).first()
    if authenticator is None:
        enrol_totp(user)
        with transaction.atomic(), staff_scope():
            authenticator = Authenticator.objects.get(user_id=user.pk, type=Authenticator.Type.TOTP)
    # What allauth records when a TOTP code is accepted (allauth.mfa.base.internal.flows).
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "password", "at": time.time()},
        {"method": "mfa", "at": time.time(), "id": authenticator.pk, "type": authenticator.type},
    ]
    session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()
