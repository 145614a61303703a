"""Logging in: email and password, one-time code by email, verification, reset, TOTP, throttling."""
import re

import pytest
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value, \
    yield_hotp_counters_from_time
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.models import AuditEvent
from portal.rls import staff_scope
from tests.portal.factories import PASSWORD, UserFactory


def _login(client, email, password=PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def _audit(action):
    with staff_scope():
        return list(AuditEvent.objects.filter(action=action))


def test_client_user_lands_in_the_portal(tenants, client):
    response = _login(client, "owner@alpha.test")
    assert response.status_code == 302 and response.url == reverse("portal:home")
    assert "Welcome, Alpha B.V." in client.get(response.url).text


def test_a_sign_in_writes_its_session_once_and_says_so_without_reading_the_brand(tenants, client):
    # The sign-ins of the first of the month come by the hundred (bench/README.md, "200 concurrent
    # clients"): a new session is inserted once, with the signed-in user in it (not inserted at the
    # key's cycle and updated at the end), and "Signed in as" needs no page context.
    client.get(reverse("account_login"))
    anonymous_key = client.cookies["sessionid"].value if "sessionid" in client.cookies else None
    with CaptureQueriesContext(connection) as queries:
        response = _login(client, "owner@alpha.test")
    assert response.status_code == 302
    statements = [query["sql"] for query in queries.captured_queries]
    session_writes = [sql for sql in statements if "django_session" in sql]
    assert len(session_writes) == 1 and session_writes[0].startswith("INSERT"), session_writes
    assert not [sql for sql in statements if "portal_brand" in sql or "portal_membership" in sql], statements
    assert len(statements) <= 12, statements
    key = client.cookies["sessionid"].value
    assert key != anonymous_key
    with staff_scope():
        assert Session.objects.get(session_key=key).get_decoded()["_auth_user_id"]
        assert not Session.objects.filter(session_key=anonymous_key).exists()
    assert "Successfully signed in as owner@alpha.test." in client.get(response.url).text


def test_staff_user_lands_in_admin(db, client):
    UserFactory(email="staff@portal.test", is_staff=True)
    response = _login(client, "staff@portal.test")
    assert response.status_code == 302 and response.url == reverse("admin:index")


def test_deep_link_survives_login(tenants, client):
    target = reverse("portal:client_detail", args=[tenants.client_a.pk])
    response = client.post(f"{reverse('account_login')}?next={target}",
                           {"login": "owner@alpha.test", "password": PASSWORD, "next": target})
    assert response.url == target
    assert client.get(target).status_code == 200


def test_login_is_by_email_case_insensitively(tenants, client):
    assert _login(client, "OWNER@Alpha.test").status_code == 302


def test_unverified_email_must_be_confirmed_first(db, client):
    UserFactory(email="new@client.test", verified=False)
    response = _login(client, "new@client.test")
    assert response.status_code == 302 and "confirm" in response.url
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new@client.test"]
    assert client.get(reverse("portal:home")).status_code == 302  # not logged in


def test_login_by_one_time_code_sent_by_email(tenants, client):
    client.post(reverse("account_request_login_code"), {"email": "owner@alpha.test"})
    assert len(mail.outbox) == 1
    code = re.search(r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4})\s*$", mail.outbox[0].body, re.M).group(1)
    response = client.post(reverse("account_confirm_login_code"), {"code": code})
    assert response.status_code == 302 and response.url == reverse("portal:home")
    assert "Welcome, Alpha B.V." in client.get("/").text


def test_password_reset_mails_a_link_that_sets_a_new_password(tenants, client):
    client.post(reverse("account_reset_password"), {"email": "owner@alpha.test"})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body).group(1)
    form_url = client.get(link).url
    new_password = "a fresh and long passphrase"
    response = client.post(form_url, {"password1": new_password, "password2": new_password})
    assert response.status_code == 302
    assert _login(client, "owner@alpha.test", new_password).status_code == 302


def test_signup_is_closed_and_not_offered(db, client):
    assert "Sign Up Closed" in client.get(reverse("account_signup")).text
    assert reverse("account_signup") not in client.get(reverse("account_login")).text


def test_totp_second_factor_is_asked_after_the_password(tenants, client):
    secret = generate_totp_secret()
    with staff_scope():
        TOTP.activate(tenants.owner_a, secret)
    response = _login(client, "owner@alpha.test")
    assert response.url == reverse("mfa_authenticate")
    assert client.get(reverse("portal:home")).status_code == 302  # not yet in
    counter = next(iter(yield_hotp_counters_from_time()))
    code = format_hotp_value(hotp_value(secret, counter))
    response = client.post(reverse("mfa_authenticate"), {"code": code})
    assert response.status_code == 302 and response.url == reverse("portal:home")


def test_failed_logins_are_throttled_and_audited(tenants, client):
    for _ in range(5):
        response = _login(client, "owner@alpha.test", "wrong password")
        assert response.status_code == 200
    assert "Too many failed login attempts" in _login(client, "owner@alpha.test", PASSWORD).text
    failed = _audit(AuditEvent.Action.LOGIN_FAILED)
    assert len(failed) == 5 and {e.actor_email for e in failed} == {"owner@alpha.test"}
    assert failed[0].ip_address == "127.0.0.1"


def test_login_and_logout_are_audited(tenants, client):
    _login(client, "owner@alpha.test")
    client.post(reverse("account_logout"))
    [login] = _audit(AuditEvent.Action.LOGIN)
    [logout] = _audit(AuditEvent.Action.LOGOUT)
    assert login.actor_id == tenants.owner_a.pk and logout.actor_id == tenants.owner_a.pk
    assert login.ip_address == "127.0.0.1"


@pytest.mark.parametrize("language, text", [("nl", "Aanmelden"), ("en", "Sign In")])
def test_login_page_speaks_dutch_and_english(db, client, language, text):
    response = client.get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE=language)
    assert text in response.text


def test_a_password_stored_by_an_earlier_hasher_signs_in_and_is_stored_again_as_argon2id(tenants, client, settings):
    # The production hashers (the test settings use a fast one; tests/portal/test_settings.py
    # checks production's): Argon2id at OWASP's parameters first (portal/passwords.py), then scrypt, which stored the portal's passwords before.
    from django.contrib.auth.hashers import make_password

    from portal.models import User

    settings.PASSWORD_HASHERS = ["portal.passwords.Argon2idPasswordHasher",
                                 "django.contrib.auth.hashers.ScryptPasswordHasher",
                                 "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    with staff_scope():
        User.objects.filter(email="owner@alpha.test").update(password=make_password(PASSWORD, hasher="scrypt"))
    response = _login(client, "owner@alpha.test")
    assert response.status_code == 302 and response.url == reverse("portal:home")
    with staff_scope():
        stored = User.objects.get(email="owner@alpha.test").password
    assert stored.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert _login(Client(), "owner@alpha.test", "not the password").status_code == 200
