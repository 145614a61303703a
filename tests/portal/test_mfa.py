"""Two-factor authentication: secrets encrypted at rest, and staff reach admin only with a second factor."""
import base64
import io
import re

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from portal.adapters import MFA_TOKEN_PREFIX, MFAAdapter
from portal.crypto import DecryptionError, keyring
from portal.rls import staff_scope
from tests.portal.factories import PASSWORD, UserFactory
from tests.staff_mfa import enrol_totp, force_login_without_mfa, totp_code


def _login(client, email, password=PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def _stored_data(user) -> str:
    """Authenticator.data as the database holds it, read past the ORM."""
    with staff_scope(), connection.cursor() as cursor:
        cursor.execute("SELECT data::text FROM mfa_authenticator WHERE user_id = %s ORDER BY id", [user.pk])
        return " ".join(row[0] for row in cursor.fetchall())


# --- Secrets at rest ---------------------------------------------------------------------------

def test_totp_secret_is_stored_encrypted_and_still_verifies(tenants, client):
    secret = enrol_totp(tenants.owner_a)
    stored = _stored_data(tenants.owner_a)
    assert secret not in stored and secret.lower() not in stored
    assert '"secret": "enc1$' in stored
    response = _login(client, "owner@alpha.test")
    assert response.url == reverse("mfa_authenticate")
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302 and response.url == reverse("portal:home")


def test_a_wrong_code_is_refused_with_the_secret_encrypted(tenants, client):
    secret = enrol_totp(tenants.owner_a)
    _login(client, "owner@alpha.test")
    wrong = f"{(int(totp_code(secret)) + 1) % 1_000_000:06d}"
    response = client.post(reverse("mfa_authenticate"), {"code": wrong})
    assert response.status_code == 200 and "Incorrect code" in response.text
    assert client.get(reverse("portal:home")).status_code == 302  # still not in


def test_recovery_codes_are_stored_encrypted_and_still_work(tenants, client):
    enrol_totp(tenants.owner_a)
    with staff_scope():
        codes = RecoveryCodes.activate(tenants.owner_a).generate_codes()
    stored = _stored_data(tenants.owner_a)
    assert '"seed": "enc1$' in stored
    assert not any(code in stored for code in codes)
    _login(client, "owner@alpha.test")
    response = client.post(reverse("mfa_authenticate"), {"code": codes[0]})
    assert response.status_code == 302 and response.url == reverse("portal:home")


def test_secret_stored_in_clear_before_encryption_still_verifies_and_reencrypt_seals_it(tenants, client):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    with staff_scope():
        Authenticator.objects.create(user=tenants.owner_a, type=Authenticator.Type.TOTP, data={"secret": secret})
    _login(client, "owner@alpha.test")
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302 and response.url == reverse("portal:home")

    call_command("reencrypt", stdout=io.StringIO())
    assert secret not in _stored_data(tenants.owner_a)
    client.post(reverse("account_logout"))
    cache.clear()  # forget that this code was used a moment ago: the same code must verify again
    _login(client, "owner@alpha.test")
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302 and response.url == reverse("portal:home")


def test_a_secret_encrypted_for_another_purpose_does_not_decrypt_here(db):
    borrowed = MFA_TOKEN_PREFIX + base64.b64encode(keyring().encrypt(b"JBSWY3DPEHPK3PXP")).decode()
    with pytest.raises(DecryptionError):
        MFAAdapter().decrypt(borrowed)


# --- Staff and the back office -------------------------------------------------------------------

def _staff(email="sam@portal.test"):
    return UserFactory(email=email, is_staff=True, is_superuser=True)


def test_staff_without_an_authenticator_are_sent_to_enrol_one(db, client):
    force_login_without_mfa(client, _staff())
    for path in (reverse("admin:index"), reverse("admin:portal_client_changelist"), reverse("health")):
        response = client.get(path)
        assert response.status_code == 302 and response.url == reverse("mfa_activate_totp"), path


def test_staff_enrol_totp_and_then_reach_admin(db, client, django_capture_on_commit_callbacks):
    from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY

    _staff()
    response = _login(client, "sam@portal.test")
    assert client.get(response.url).url == reverse("mfa_activate_totp")
    # allauth asks for the password once more before a second factor is added.
    response = client.get(reverse("mfa_activate_totp"))
    assert response.url.startswith(reverse("account_reauthenticate"))
    response = client.post(response.url, {"password": PASSWORD})
    assert response.url == reverse("mfa_activate_totp")
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    with django_capture_on_commit_callbacks(execute=True):  # allauth announces the new device on commit
        response = client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_staff_with_totp_who_logged_in_without_it_must_use_it_first(db, client):
    staff = _staff()
    secret = enrol_totp(staff)
    # A session without a second factor: one from before the requirement, or a login path that skips it.
    force_login_without_mfa(client, staff)
    target = reverse("admin:portal_client_changelist")
    response = client.get(target)
    assert response.status_code == 302
    assert response.url == f"{reverse('mfa_reauthenticate')}?next={target.replace('/', '%2F')}"
    response = client.post(response.url, {"code": totp_code(secret), "next": target})
    assert response.status_code == 302 and response.url == target
    assert client.get(target).status_code == 200


def test_staff_logging_in_with_password_and_totp_reach_admin_directly(db, client):
    secret = enrol_totp(_staff())
    assert _login(client, "sam@portal.test").url == reverse("mfa_authenticate")
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.url == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200


def test_staff_logging_in_by_email_code_are_asked_for_totp_too(db, client):
    from django.core import mail

    secret = enrol_totp(_staff())
    client.post(reverse("account_request_login_code"), {"email": "sam@portal.test"})
    code = re.search(r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4})\s*$", mail.outbox[0].body, re.M).group(1)
    response = client.post(reverse("account_confirm_login_code"), {"code": code})
    assert response.url == reverse("mfa_authenticate")
    assert client.get(reverse("admin:index")).status_code == 302  # not in yet
    client.post(response.url, {"code": totp_code(secret)})
    assert client.get(reverse("admin:index")).status_code == 200


def test_recovery_codes_alone_do_not_count_as_enrolled(db, client):
    staff = _staff()
    with staff_scope():
        Authenticator.objects.create(user=staff, type=Authenticator.Type.RECOVERY_CODES,
                                     data={"seed": "00" * 40, "used_mask": 0})
    force_login_without_mfa(client, staff)
    assert client.get(reverse("admin:index")).url == reverse("mfa_activate_totp")


def test_clients_are_not_asked_for_a_second_factor(tenants, client):
    force_login_without_mfa(client, tenants.owner_a)
    assert client.get(reverse("portal:home")).status_code == 200


def test_staff_may_log_out_of_admin_without_a_second_factor(db, client):
    force_login_without_mfa(client, _staff())
    response = client.post(reverse("admin:logout"))
    assert response.status_code == 302 and response.url == reverse("account_login")
    assert client.get(reverse("admin:index")).status_code == 302
    assert "_auth_user_id" not in client.session
