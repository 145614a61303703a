"""Logins under attack: the client address behind the proxy, limits that lock out only the guesser,
logins while Redis is down, a new session key on a company switch, no 5xx from strange input."""
import logging
import socket

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from portal.http import client_ip
from portal.models import AuditEvent
from portal.rls import staff_scope
from portal.services import SESSION_CLIENT_KEY
from tests.portal.factories import PASSWORD, UserFactory

PROXY = "10.0.0.5"


def _login(client, email, password=PASSWORD, **headers):
    return client.post(reverse("account_login"), {"login": email, "password": password}, **headers)


def _via_proxy(address: str) -> dict:
    """The request as gunicorn sees it behind nginx: the peer is the proxy, which appended the client."""
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": address}


def _refused(response) -> bool:
    return response.status_code == 429 or "Too many failed login attempts" in response.text


def _logged_in(response) -> bool:
    return response.status_code == 302 and response.url == reverse("portal:home")


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]


# --- The client address --------------------------------------------------------------------------

@pytest.mark.parametrize("proxies, remote, forwarded, expected", [
    # No trusted proxy: the peer is the client, whatever the headers say.
    ([], "198.51.100.7", "203.0.113.9", "198.51.100.7"),
    # A trusted proxy: the address it appended.
    (["10.0.0.0/24"], "10.0.0.5", "203.0.113.9", "203.0.113.9"),
    # What the client wrote itself (left of what our proxy appended) is never believed.
    (["10.0.0.0/24"], "10.0.0.5", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
    # Two of our proxies in a row are skipped, from the right.
    (["10.0.0.0/24", "192.0.2.10"], "10.0.0.5", "1.2.3.4, 203.0.113.9, 192.0.2.10", "203.0.113.9"),
    # A peer that is not a trusted proxy: its X-Forwarded-For is ignored.
    (["10.0.0.0/24"], "198.51.100.7", "203.0.113.9", "198.51.100.7"),
    # A trusted proxy without the header: the proxy itself.
    (["10.0.0.0/24"], "10.0.0.5", "", "10.0.0.5"),
    # Malformed entries stop the walk at the last address a trusted proxy vouched for.
    (["10.0.0.0/24"], "10.0.0.5", "not-an-ip", "10.0.0.5"),
    (["10.0.0.0/24"], "10.0.0.5", "203.0.113.9, 10.0.0.7, \x00", "10.0.0.5"),
    (["10.0.0.0/24"], "10.0.0.5", "203.0.113.9, garbage, 10.0.0.7", "10.0.0.7"),
    (["10.0.0.0/24"], "10.0.0.5", "203.0.113.9:443", "10.0.0.5"),
    (["10.0.0.0/24"], "10.0.0.5", "9" * 100_000, "10.0.0.5"),
    # A header stuffed with our proxy's own address is read only so far.
    (["10.0.0.0/24"], "10.0.0.5", ",".join(["10.0.0.9"] * 5000), "10.0.0.9"),
    # IPv6, IPv4 written as IPv6, and a zone id PostgreSQL's inet would refuse.
    (["2001:db8::/32"], "2001:db8::1", "2001:db8:ffff::7, 2a00:1450::1", "2a00:1450::1"),
    (["10.0.0.0/24"], "::ffff:10.0.0.5", "203.0.113.9", "203.0.113.9"),
    ([], "fe80::1%eth0", "", "fe80::1"),
    # No usable peer address at all.
    ([], "", "203.0.113.9", None),
    ([], "garbage", "", None),
])
def test_client_address_comes_only_from_trusted_proxies(settings, proxies, remote, forwarded, expected):
    settings.TRUSTED_PROXIES = proxies
    meta = {"REMOTE_ADDR": remote, "HTTP_X_REAL_IP": "6.6.6.6"}
    if forwarded:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_ip(RequestFactory().get("/", **meta)) == expected


def test_a_wrong_trusted_proxy_setting_fails_loudly(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.TRUSTED_PROXIES = ["10.0.0.0/33"]
    with pytest.raises(ImproperlyConfigured):
        client_ip(RequestFactory().get("/", REMOTE_ADDR="10.0.0.5"))


@pytest.mark.parametrize("header", ["HTTP_X_REAL_IP", "HTTP_X_FORWARDED_FOR"])
@pytest.mark.parametrize("value", ["6.6.6.6", "not an address", "1.2.3.4\x00", "x" * 10_000])
def test_the_audit_log_records_the_peer_not_an_address_the_client_chose(tenants, client, header, value):
    response = _login(client, "owner@alpha.test", "wrong password", **{header: value})
    assert response.status_code == 200
    with staff_scope():
        [failed] = AuditEvent.objects.filter(action=AuditEvent.Action.LOGIN_FAILED)
    assert failed.ip_address == "127.0.0.1"


def test_the_audit_log_records_the_client_behind_the_trusted_proxy(tenants, client, behind_proxy):
    assert _logged_in(_login(client, "owner@alpha.test", **_via_proxy("6.6.6.6, 203.0.113.9")))
    with staff_scope():
        [login] = AuditEvent.objects.filter(action=AuditEvent.Action.LOGIN)
    assert login.ip_address == "203.0.113.9"


# --- Rate limits that lock out only the guesser ----------------------------------------------------

def test_failures_for_unknown_emails_behind_the_proxy_do_not_lock_out_another_client(tenants, client, behind_proxy):
    # The scenario of the issue: before, every client behind nginx shared the proxy's address.
    for n in range(6):
        assert _login(client, f"nobody{n}@example.test", "guess", **_via_proxy("203.0.113.9")).status_code == 200
    assert _logged_in(_login(Client(), "owner@alpha.test", **_via_proxy("198.51.100.20")))


def test_failures_for_unknown_emails_do_not_lock_out_another_user_at_the_same_address(tenants, client):
    for n in range(6):
        assert _login(client, f"nobody{n}@example.test", "guess").status_code == 200
    assert _logged_in(_login(Client(), "owner@alpha.test"))


def test_guessing_a_victims_password_locks_out_the_guesser_not_the_victim(tenants, behind_proxy):
    attacker = Client()
    for _ in range(8):
        _login(attacker, "owner@alpha.test", "guess", **_via_proxy("203.0.113.66"))
    assert _refused(_login(attacker, "owner@alpha.test", **_via_proxy("203.0.113.66")))  # even the right one
    assert _logged_in(_login(Client(), "owner@alpha.test", **_via_proxy("198.51.100.20")))


def test_one_address_spraying_many_accounts_is_stopped(tenants, client, settings, behind_proxy):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed_address": "8/10m/ip"}
    for n in range(8):
        assert _login(client, f"user{n}@example.test", "Summer2026!", **_via_proxy("203.0.113.66")).status_code == 200
    assert _refused(_login(client, "owner@alpha.test", "Summer2026!", **_via_proxy("203.0.113.66")))
    assert _logged_in(_login(Client(), "owner@alpha.test", **_via_proxy("198.51.100.20")))


def test_the_per_address_limit_is_generous_by_default(tenants, client, behind_proxy):
    # An office behind one NAT: a morning's worth of mistyped emails does not lock the others out.
    for n in range(20):
        _login(Client(), f"typo{n}@alpha.tset", "whatever", **_via_proxy("203.0.113.9"))
    assert _logged_in(_login(client, "owner@alpha.test", **_via_proxy("203.0.113.9")))


def test_many_addresses_guessing_one_account_reach_its_own_limit(tenants, settings, behind_proxy):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed_account": "6/h/key"}
    for n in range(6):
        _login(Client(), "owner@alpha.test", "guess", **_via_proxy(f"203.0.113.{n + 1}"))
    assert _refused(_login(Client(), "owner@alpha.test", **_via_proxy("198.51.100.20")))
    assert _logged_in(_login(Client(), "both@alpha.test", **_via_proxy("198.51.100.20")))


def test_a_correct_password_spends_nothing(tenants, client):
    for _ in range(10):
        assert _logged_in(_login(Client(), "owner@alpha.test"))
    for _ in range(4):
        _login(client, "owner@alpha.test", "guess")
    assert _logged_in(_login(Client(), "owner@alpha.test"))


def test_a_password_reset_gives_the_account_its_budget_back(tenants, client):
    import re

    from django.core import mail

    for _ in range(5):
        _login(client, "owner@alpha.test", "guess")
    assert _refused(_login(client, "owner@alpha.test"))
    client.post(reverse("account_reset_password"), {"email": "owner@alpha.test"})
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body).group(1)
    new_password = "a fresh and long passphrase"
    client.post(client.get(link).url, {"password1": new_password, "password2": new_password})
    assert _logged_in(_login(Client(), "owner@alpha.test", new_password))


# --- Redis down -----------------------------------------------------------------------------------

@pytest.fixture
def redis_down(settings):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"}}
    return port


def test_login_works_while_redis_is_down_and_says_so_once(tenants, redis_down, caplog):
    with caplog.at_level(logging.WARNING, logger="portal.cache"):
        assert _logged_in(_login(Client(), "owner@alpha.test"))
        assert _logged_in(_login(Client(), "both@alpha.test"))
        assert _login(Client(), "owner@alpha.test", "guess").status_code == 200
    warnings = [r for r in caplog.records if r.name == "portal.cache"]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()


def test_failed_logins_are_still_limited_while_redis_is_down(tenants, client, redis_down):
    for _ in range(5):
        assert _login(client, "owner@alpha.test", "guess").status_code == 200
    assert _refused(_login(client, "owner@alpha.test"))


def test_login_by_code_and_totp_work_while_redis_is_down(tenants, client, redis_down):
    import re

    from django.core import mail

    from tests.staff_mfa import enrol_totp, totp_code

    secret = enrol_totp(tenants.owner_a)
    client.post(reverse("account_request_login_code"), {"email": "owner@alpha.test"})
    code = re.search(r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4})\s*$", mail.outbox[0].body, re.M).group(1)
    assert client.post(reverse("account_confirm_login_code"), {"code": code}).url == reverse("mfa_authenticate")
    assert _logged_in(client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)}))


def test_the_cache_goes_back_to_redis_when_it_answers_again(db, caplog):
    import portal.cache
    from django.core.cache import cache

    cache.set("probe", "in redis")
    outage = portal.cache._outage_for(cache._location)
    outage.down_until, outage.since = 0.0, 1.0  # as if Redis had been down until a moment ago
    with caplog.at_level(logging.WARNING, logger="portal.cache"):
        assert cache.get("probe") == "in redis"
    assert "reachable again" in caplog.text and outage.since is None


# --- A new session key on a company switch ----------------------------------------------------------

def test_switching_company_gives_a_new_session_key_and_retires_the_old_one(tenants, client):
    client.force_login(tenants.member_of_both)
    old_key = client.cookies["sessionid"].value
    response = client.post(reverse("portal:switch_client"), {"client_id": tenants.client_b.pk})
    assert response.status_code == 302
    new_key = client.cookies["sessionid"].value
    assert new_key != old_key
    assert client.session[SESSION_CLIENT_KEY] == tenants.client_b.pk
    assert client.get(reverse("portal:home")).status_code == 200  # still logged in, now for Bravo

    replay = Client()
    replay.cookies["sessionid"] = old_key
    response = replay.get(reverse("portal:home"))
    assert response.status_code == 302 and response.url.startswith(reverse("account_login"))


# --- Strange input --------------------------------------------------------------------------------

STRANGE = ["\x00", "owner@alpha.test\x00", "a\x00b" * 1000, "x" * 100_000, "\ud800".encode("utf-8", "surrogatepass"),
           "💸" * 5000, "' OR 1=1 --", "owner@alpha.test\r\nBcc: x@y.test", "9" * 5000]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@pytest.mark.parametrize("value", STRANGE)
def test_login_pages_answer_strange_input_without_a_5xx(tenants, client, value):
    value = _text(value)
    for url, data in [
        (reverse("account_login"), {"login": value, "password": value}),
        (reverse("account_login"), {"login": "owner@alpha.test", "password": value}),
        (reverse("account_request_login_code"), {"email": value}),
        (reverse("account_reset_password"), {"email": value}),
    ]:
        response = client.post(url, data)
        assert response.status_code < 500, url
    assert client.get(reverse("account_login"), {"next": value}).status_code < 500


@pytest.mark.parametrize("value", STRANGE)
def test_second_factor_page_answers_strange_input_without_a_5xx(tenants, client, value):
    from tests.staff_mfa import enrol_totp

    enrol_totp(tenants.owner_a)
    _login(client, "owner@alpha.test")
    assert client.post(reverse("mfa_authenticate"), {"code": _text(value)}).status_code == 200


@pytest.mark.parametrize("value", STRANGE + ["-1", "0", "1e9", " 1", str(2**63), "/\x00", "/a\r\nSet-Cookie: x=1",
                                   "//evil.test/", "/\\evil.test", "https://evil.test/", "/" + "a" * 100_000])
def test_company_switch_answers_strange_input_without_a_5xx(tenants, client, value):
    client.force_login(tenants.member_of_both)
    value = _text(value)
    response = client.post(reverse("portal:switch_client"), {"client_id": value})
    assert response.status_code == 404
    response = client.post(reverse("portal:switch_client"), {"client_id": tenants.client_b.pk, "next": value})
    assert response.status_code == 302 and not response.url.startswith(("http", "//"))
    assert client.get(reverse("portal:choose_client"), {"next": value}).status_code == 200


def test_a_form_body_with_a_nul_in_a_field_name_is_no_5xx(tenants, client):
    response = client.post(reverse("account_login"), "login\x00=a&password=b\x00&%00=%00",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code < 500


def test_login_with_no_usable_peer_address_is_refused_not_an_error(tenants, client):
    assert _login(client, "owner@alpha.test", REMOTE_ADDR="").status_code == 403


# --- The proxy in docker-compose ------------------------------------------------------------------

def test_the_proxy_forwards_the_client_address_and_web_trusts_only_private_networks():
    import ipaddress
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    nginx = (root / "deploy/nginx.conf").read_text()
    assert re.search(r"proxy_set_header X-Forwarded-For \$(remote_addr|proxy_add_x_forwarded_for);", nginx)
    assert "X-Real-IP" not in nginx
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    assert "ports" not in compose["services"]["web"]  # only the compose network reaches gunicorn
    setting = compose["services"]["web"]["environment"]["TRUSTED_PROXIES"]
    default = re.fullmatch(r"\$\{TRUSTED_PROXIES:-(.+)\}", setting).group(1)
    networks = [ipaddress.ip_network(item) for item in default.split(",")]
    assert networks and all(network.is_private for network in networks)
