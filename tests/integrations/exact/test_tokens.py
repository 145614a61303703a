"""Exact Online's tokens against the local Exact (tests/fakes/exact.py), which keeps Exact's rules:
access tokens of 600 s, no new one before 570 s, single-use rotating refresh tokens ("Old refresh
token used."), 30 days idle, 200 token calls a day. Committed for real: a refresh calls out with no
transaction open, and ten workers need ten database sessions."""
import datetime
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection as db_connection
from django.utils import timezone

from integrations.exact import tokens
from integrations.exact.client import ExactClient, ExactError, ExactRefused, NeedsReauthorisation, RateLimited
from integrations.exact.models import ExactConnection
from portal.rls import staff_scope
from tests.integrations.exact.test_client import (CLIENT_ID, CLIENT_SECRET, DIVISION, clock, exact,  # noqa: F401
                                                  fake, fake_exact, stored)

REDIRECT_URI = "http://127.0.0.1/exact/callback"


def refreshes(fake) -> list[dict]:
    return [call for call in fake.token_calls if call["grant_type"] == "refresh_token"]


def test_the_access_token_is_kept_until_570_seconds_then_refreshed_once(fake, exact, clock):
    first = exact.access_token
    clock.shift(569)

    assert tokens.access_token(exact) == first
    assert refreshes(fake) == []

    clock.shift(2)
    second = tokens.access_token(exact)

    assert second != first
    assert [call["status"] for call in refreshes(fake)] == [200]
    row = stored(exact)
    assert row.access_token == second
    assert row.refresh_token == fake.oauth.chains[row.refresh_token].refresh_token  # the current one at Exact
    assert row.token_calls == 1 and row.token_calls_on == timezone.localdate()
    assert tokens.access_token(exact) == second and len(refreshes(fake)) == 1


def test_each_refresh_uses_the_refresh_token_the_last_one_gave(fake, exact, clock):
    seen = set()
    for _ in range(4):
        clock.shift(571)
        seen.add(tokens.access_token(exact))
        # The client's calls work with it.
        assert ExactClient(exact).get_all("vat/VATCodes", select=["Code"])

    assert len(seen) == 4
    assert [call["status"] for call in refreshes(fake)] == [200] * 4


def test_ten_workers_at_once_refresh_once_and_all_get_the_new_token(fake, exact, clock):
    clock.shift(575)
    workers = 10
    start = threading.Barrier(workers)
    got, failed = [], []

    def worker():
        try:
            with staff_scope():
                mine = ExactConnection.objects.get(pk=exact.pk)  # each worker its own row and session
            start.wait(timeout=10)
            got.append(tokens.access_token(mine))
        except Exception as exc:  # reported below
            failed.append(repr(exc))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failed == []
    assert len(got) == workers and len(set(got)) == 1
    assert [call["status"] for call in fake.token_calls] == [200]  # one refresh, no "Old refresh token used"
    row = stored(exact)
    assert row.access_token == got[0] and row.state == ExactConnection.State.CONNECTED
    assert row.token_calls == 1


def test_old_refresh_token_used_asks_staff_for_a_new_consent_once_and_stops_calling(
        fake, exact, clock, staff, mailoutbox):
    # Something else used our refresh token (a restored backup, a second installation): Exact
    # rotated it, so the one we hold is old.
    clock.shift(571)
    answer = requests.post(f"{fake.url}/api/oauth2/token", timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": exact.refresh_token, "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET})
    assert answer.status_code == 200
    clock.shift(10)

    with pytest.raises(NeedsReauthorisation, match="Old refresh token used"):
        tokens.access_token(exact)

    row = stored(exact)
    assert row.state == ExactConnection.State.REAUTHORISE
    assert "Old refresh token used." in row.state_reason and row.state_changed_at is not None
    assert row.refresh_token == "" and row.access_token == ""
    [email] = mailoutbox
    assert email.to == ["staff@portal.test"]
    assert "Exact Online" in email.subject and "needs a new consent" in email.subject
    assert "Old refresh token used." in email.body and "/admin/" in email.body

    token_calls, api_calls = len(fake.token_calls), len(fake.requests)
    with pytest.raises(NeedsReauthorisation):
        ExactClient(exact).get_all("vat/VATCodes", select=["Code"])
    with pytest.raises(NeedsReauthorisation):
        tokens.access_token(exact)
    assert tokens.keep_alive(exact) is False
    assert (len(fake.token_calls), len(fake.requests)) == (token_calls, api_calls)
    assert len(mailoutbox) == 1  # told once


def test_a_refresh_token_unused_for_30_days_asks_for_a_new_consent(fake, exact, clock, staff, mailoutbox):
    clock.shift(datetime.timedelta(days=31))

    with pytest.raises(NeedsReauthorisation, match="expired"):
        ExactClient(exact).get_all("vat/VATCodes", select=["Code"])

    assert stored(exact).state == ExactConnection.State.REAUTHORISE
    assert [call["status"] for call in fake.token_calls] == [400]
    assert len(mailoutbox) == 1
    assert fake.requests == []


def test_keep_alive_refreshes_an_idle_connection_well_inside_30_days(fake, exact, clock):
    clock.shift(datetime.timedelta(days=19))
    assert tokens.keep_alive(exact) is False
    assert fake.token_calls == []

    clock.shift(datetime.timedelta(days=1, seconds=1))
    assert tokens.keep_alive(exact) is True
    assert tokens.keep_alive(exact) is False  # done for another 20 days
    assert [call["status"] for call in refreshes(fake)] == [200]

    # 35 days after the consent, 15 after the keep-alive: still connected.
    clock.shift(datetime.timedelta(days=15))
    assert ExactClient(exact).get_all("vat/VATCodes", select=["Code"])
    assert stored(exact).state == ExactConnection.State.CONNECTED


def test_the_days_token_budget_is_respected(fake, exact, clock):
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(token_calls_on=timezone.localdate(),
                                                           token_calls=tokens.TOKEN_CALLS_PER_DAY)
    clock.shift(571)

    with pytest.raises(RateLimited) as limited:
        ExactClient(exact).get_all("vat/VATCodes", select=["Code"])

    assert fake.token_calls == [] and fake.requests == []
    assert limited.value.until == timezone.make_aware(
        datetime.datetime.combine(timezone.localdate() + datetime.timedelta(days=1), datetime.time()))
    assert stored(exact).state == ExactConnection.State.CONNECTED


def test_exacts_refusals_that_keep_the_refresh_token_do_not_ask_for_a_new_consent(fake, exact, clock, mailoutbox):
    # Our clock runs ahead of Exact's (by less than 570 s): Exact still thinks the token is new.
    fake.advance(-60)
    clock.shift(571)

    with pytest.raises(RateLimited, match="not expired"):
        tokens.access_token(exact)
    assert stored(exact).state == ExactConnection.State.CONNECTED

    # Its day's token calls spent on Exact's side (another installation of the same app key).
    clock.shift(120)
    fake.token_day_limit = 0
    with pytest.raises(RateLimited, match="per day"):
        tokens.access_token(exact)
    assert stored(exact).state == ExactConnection.State.CONNECTED

    fake.token_day_limit = 200
    assert tokens.access_token(exact) == stored(exact).access_token
    assert [call["status"] for call in refreshes(fake)] == [400, 400, 200]
    assert mailoutbox == []


def test_consent_and_code_exchange_connect_the_connection(fake, committed, exact, clock):
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(
            state=ExactConnection.State.NEW, access_token="", refresh_token="", refreshed_at=None)
        exact.refresh_from_db()

    url = tokens.authorise_url(exact, redirect_uri=REDIRECT_URI, state="s3cr3t-state")
    assert url.startswith(f"{fake.url}/api/oauth2/auth?")
    assert requests.get(url, timeout=5).status_code == 200  # Exact's consent page for this app
    consent = requests.post(url, data={"decision": "accept"}, allow_redirects=False, timeout=5)
    back = parse_qs(urlsplit(consent.headers["Location"]).query)
    assert back["state"] == ["s3cr3t-state"]

    tokens.exchange_code(exact, code=back["code"][0], redirect_uri=REDIRECT_URI)

    row = stored(exact)
    assert row.state == ExactConnection.State.CONNECTED and row.state_reason == ""
    assert row.access_token and row.refresh_token and row.token_calls == 1
    assert ExactClient(exact).me()["CurrentDivision"] == DIVISION

    with pytest.raises(ExactRefused) as refused:  # a code is used once
        tokens.exchange_code(exact, code=back["code"][0], redirect_uri=REDIRECT_URI)
    assert refused.value.status == 400
    assert stored(exact).state == ExactConnection.State.CONNECTED


def test_a_code_exchange_exact_fails_with_5xx_keeps_the_code_for_another_try(fake, committed, exact, clock):
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(
            state=ExactConnection.State.NEW, access_token="", refresh_token="", refreshed_at=None)
        exact.refresh_from_db()
    url = tokens.authorise_url(exact, redirect_uri=REDIRECT_URI, state="s")
    code = parse_qs(urlsplit(requests.post(url, data={"decision": "accept"}, allow_redirects=False,
                                           timeout=5).headers["Location"]).query)["code"][0]
    fake.fail_next(1, status=503)  # not executed: the code is still good

    with pytest.raises(ExactError) as failed:
        tokens.exchange_code(exact, code=code, redirect_uri=REDIRECT_URI)
    assert not isinstance(failed.value, ExactRefused) and "503" in str(failed.value)  # a retry, not "refused"
    assert stored(exact).state == ExactConnection.State.NEW

    tokens.exchange_code(exact, code=code, redirect_uri=REDIRECT_URI)
    assert stored(exact).state == ExactConnection.State.CONNECTED


def test_an_access_token_exact_no_longer_takes_is_replaced_as_soon_as_exact_allows(fake, exact, clock):
    fake.oauth.access_tokens.clear()  # Exact forgot it (revoked, restarted)
    client = ExactClient(exact)

    with pytest.raises(ExactRefused) as refused:
        client.get_all("vat/VATCodes", select=["Code"])
    assert refused.value.status == 401
    with pytest.raises(RateLimited) as limited:  # a new one only 570 s after the last
        client.get_all("vat/VATCodes", select=["Code"])
    assert limited.value.until == stored(exact).refreshed_at + datetime.timedelta(seconds=570)
    assert len(fake.requests) == 1 and fake.token_calls == []

    clock.shift(571)
    assert client.get_all("vat/VATCodes", select=["Code"])
    assert [call["status"] for call in refreshes(fake)] == [200]


def test_a_connection_never_connected_is_not_called(fake, committed, exact):
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(state=ExactConnection.State.NEW, refresh_token="")

    with pytest.raises(NeedsReauthorisation, match="not connected"):
        ExactClient(exact).get_all("vat/VATCodes", select=["Code"])
    assert fake.requests == [] and fake.token_calls == []
