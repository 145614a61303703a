"""The Twinfield client and tokens against the local Twinfield (tests/fakes/twinfield.py): the
consent and code exchange with the cluster discovered, ProcessXmlString and Finder's Search with
Twinfield's errors, credits and 429, a token that expired, a refused refresh, and one action at a
time per organisation across workers. Committed for real: threads need their own sessions."""
import datetime
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.utils import timezone

from integrations.models import Connection
from integrations.twinfield import tokens
from integrations.twinfield.client import NeedsReauthorisation, Throttled, TwinfieldClient, TwinfieldRefused
from integrations.twinfield.models import TwinfieldConnection
from portal.rls import staff_scope
from tests.fakes.twinfield import FakeTwinfield
from tests.portal.factories import BrandFactory

CLIENT_ID, CLIENT_SECRET = "portal-twinfield-app", "twinfield-secret"
REDIRECT_URI = "http://127.0.0.1/twinfield/callback"
OFFICE = "NLA001"


@pytest.fixture
def fake(settings):
    with FakeTwinfield(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI) as fake:
        fake.add_office(OFFICE, "Boekhouding B.V.")
        fake.add_office("NLA002", "Holding B.V.")
        settings.TWINFIELD_LOGIN_URL = fake.base_url
        yield fake


@pytest.fixture
def twinfield(committed, fake):
    """Connected as a consent leaves it (tokens from the local Twinfield, cluster discovered), office chosen."""
    granted = fake.grant()
    now = timezone.now()

    def build():
        link = Connection.objects.create(name="Boekhouding", slug="twinfield-boekhouding",
                                         kind=Connection.Kind.TWINFIELD, brand=BrandFactory(is_default=True),
                                         signing_secrets="whsec_unused")
        return TwinfieldConnection.objects.create(
            connection=link, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, state=TwinfieldConnection.State.CONNECTED,
            state_changed_at=now, access_token=granted["access_token"], refresh_token=granted["refresh_token"],
            access_expires_at=now + datetime.timedelta(seconds=int(granted["expires_in"])), refreshed_at=now,
            cluster_url=fake.cluster_url, organisation=fake.organisation, office=OFFICE)

    return committed.create(build)


def stored(twinfield) -> TwinfieldConnection:
    with staff_scope():
        return TwinfieldConnection.objects.get(pk=twinfield.pk)


def test_consent_and_code_exchange_connect_and_discover_the_cluster(fake, twinfield):
    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(
            state=TwinfieldConnection.State.NEW, access_token="", refresh_token="", cluster_url="", organisation="")
    url = tokens.authorise_url(twinfield, redirect_uri=REDIRECT_URI, state="s3cr3t", nonce="n0nce")
    assert url.startswith(f"{fake.base_url}/auth/authentication/connect/authorize?")
    assert "Authorize" in requests.get(url, timeout=5).text or requests.get(url, timeout=5).status_code == 200
    back = parse_qs(urlsplit(requests.post(url, data={"decision": "accept"}, allow_redirects=False,
                                           timeout=5).headers["Location"]).query)
    assert back["state"] == ["s3cr3t"]

    tokens.exchange_code(twinfield, code=back["code"][0], redirect_uri=REDIRECT_URI)

    row = stored(twinfield)
    assert row.state == TwinfieldConnection.State.CONNECTED and row.refresh_token and row.access_token
    # Discovered, not configured: the SOAP services are on the cluster the token names.
    assert row.cluster_url == fake.cluster_url != fake.base_url and row.organisation == fake.organisation
    with pytest.raises(tokens.TwinfieldRefused):  # a code is used once
        tokens.exchange_code(twinfield, code=back["code"][0], redirect_uri=REDIRECT_URI)


def test_process_xml_answers_and_spends_one_credit_for_a_query(fake, twinfield):
    offices = TwinfieldClient(twinfield).process("<list><type>offices</type></list>")

    assert sorted(o.text for o in offices.iter("office")) == ["NLA001", "NLA002"]
    assert fake.credits_used == 1 and stored(twinfield).credits_this_minute == 1


def test_a_refusal_carries_twinfields_message(fake, twinfield):
    with pytest.raises(TwinfieldRefused) as refused:
        TwinfieldClient(twinfield).process(f"<read><type>dimensions</type><office>{OFFICE}</office>"
                                           "<dimtype>DEB</dimtype><code>9999</code></read>")
    assert refused.value.messages and all(refused.value.messages)


def test_finder_pages_the_customers(fake, twinfield):
    for n in range(30):
        fake.add_customer(OFFICE, f"Klant {n} B.V.")

    first = TwinfieldClient(twinfield).search("DIM", options={"dimtype": "DEB"}, first_row=1, max_rows=25)
    second = TwinfieldClient(twinfield).search("DIM", options={"dimtype": "DEB"}, first_row=26, max_rows=25)

    assert first.total == 30 and len(first.rows) == 25 and len(second.rows) == 5
    assert {row[0] for row in first.rows}.isdisjoint({row[0] for row in second.rows})


def test_a_short_429_is_waited_out_by_the_call_itself(fake, twinfield):
    fake.concurrency_limit = 0  # Twinfield says "one moment" (429, Retry-After: 1) until it recovers

    def recover():
        time.sleep(0.5)
        fake.concurrency_limit = 1

    threading.Thread(target=recover).start()
    offices = TwinfieldClient(twinfield).process("<list><type>offices</type></list>")
    assert offices.get("result") == "1"
    statuses = [r["status"] for r in fake.requests]
    assert 429 in statuses and statuses[-1] == 200  # refused first, then answered: no error reached the caller


def test_a_429_waits_for_retry_after_and_the_client_does_not_call_meanwhile(fake, twinfield, monkeypatch):
    from integrations.twinfield import client as twinfield_client

    monkeypatch.setattr(twinfield_client, "WAIT_IN_CALL", 0)  # a job's call gives the wait back as Throttled
    fake.credit_limit_per_minute = 0
    with pytest.raises(Throttled) as throttled:
        TwinfieldClient(twinfield).process("<list><type>offices</type></list>")
    assert timezone.now() < throttled.value.until <= timezone.now() + datetime.timedelta(seconds=61)
    assert stored(twinfield).throttled_until == throttled.value.until
    heard = len(fake.requests)

    fake.credit_limit_per_minute = 1000
    with pytest.raises(Throttled):  # until then, refused here, without a call
        TwinfieldClient(twinfield).process("<list><type>offices</type></list>")
    assert len(fake.requests) == heard


def test_an_expired_access_token_is_refreshed_once_then_the_call_goes_through(fake, twinfield):
    fake.advance(3600)
    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(access_expires_at=timezone.now())

    TwinfieldClient(twinfield).process("<list><type>offices</type></list>")

    assert [call["grant_type"] for call in fake.token_calls] == ["refresh_token"]
    assert stored(twinfield).token_calls == 1


def test_a_refused_refresh_needs_re_authorisation_and_tells_staff(fake, twinfield, mailoutbox, committed):
    from tests.portal.factories import UserFactory

    committed.create(lambda: UserFactory(email="staff@portal.test", is_staff=True))
    fake.revoke_refresh_tokens()
    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(access_expires_at=timezone.now())

    with pytest.raises(NeedsReauthorisation):
        TwinfieldClient(twinfield).process("<list><type>offices</type></list>")

    row = stored(twinfield)
    assert row.state == TwinfieldConnection.State.REAUTHORISE and "refresh token" in row.state_reason
    assert not row.refresh_token
    [email] = mailoutbox
    assert "Twinfield" in email.subject and "needs a new consent" in email.subject


def test_two_workers_never_act_on_one_organisation_at_once(fake, twinfield):
    fake.delay_next(2, seconds=0.3)  # each answer takes a while: a second worker would overlap it
    errors = []

    def worker():
        from django.db import connections

        try:
            TwinfieldClient(stored(twinfield)).process("<list><type>offices</type></list>")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert fake.max_concurrent[fake.organisation] == 1  # the database lock made them take turns
