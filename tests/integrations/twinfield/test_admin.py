"""Twinfield in the back office, against the local Twinfield: staff add a connection (secret
encrypted, shown masked), press Connect and go through Wolters Kluwer's consent (with a nonce),
come back to a page that waits for the connect job (code exchanged, cluster discovered, offices
listed), choose the office and its bank daybook, and see how the connection stands."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.urls import reverse

from integrations.models import Connection
from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.portal.factories import BrandFactory

CLIENT_ID, CLIENT_SECRET = "portal-twinfield-app", "Tw1nf13ldS3cr3tValue"


@pytest.fixture
def fake(settings):
    from integrations.twinfield.connect import redirect_uri
    from tests.fakes.twinfield import FakeTwinfield

    with FakeTwinfield(CLIENT_ID, CLIENT_SECRET, redirect_uri=redirect_uri()) as fake:
        fake.add_office("NLA001", "Bakkerij De Vries B.V.")
        fake.add_office("NLA002", "De Vries Holding B.V.")
        settings.TWINFIELD_LOGIN_URL = fake.base_url
        yield fake


@pytest.fixture
def twinfield(committed):
    def build():
        link = Connection.objects.create(name="De Vries", slug="devries-twinfield", kind=Connection.Kind.TWINFIELD,
                                         brand=BrandFactory(is_default=True), signing_secrets="whsec_unused")
        return TwinfieldConnection.objects.create(connection=link, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    return committed.create(build)


def _url(view: str, *args) -> str:
    return reverse(f"admin:integrations_twinfieldconnection_{view}", args=args)


def _reload(twinfield) -> TwinfieldConnection:
    with staff_scope():
        return TwinfieldConnection.objects.select_related("connection").get(pk=twinfield.pk)


def test_staff_add_a_twinfield_connection_whose_secret_is_encrypted_and_shown_masked(committed, client, staff):
    brand = committed.create(lambda: BrandFactory(is_default=True))
    client.force_login(staff)
    page = client.get(_url("add"))
    assert "offline_access" in page.text and "/admin/integrations/twinfieldconnection/callback/" in page.text
    response = client.post(_url("add"), {"name": "Bakkerij", "slug": "bakkerij-twinfield", "brand": brand.pk,
                                         "enabled": "on", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                         "poll_minutes": "10"})
    assert response.status_code == 302, response.content[:2000]
    with staff_scope():
        made = TwinfieldConnection.objects.select_related("connection").get()
    assert made.connection.kind == Connection.Kind.TWINFIELD and made.connection.slug == "bakkerij-twinfield"
    assert made.client_secret == CLIENT_SECRET and made.poll_minutes == 10
    page = client.get(_url("change", made.pk)).text
    assert CLIENT_SECRET not in page and "Not connected yet" in page


def test_connect_journey_to_an_office_and_daybook(fake, twinfield, client, staff, worker):
    client.force_login(staff)
    consent = client.post(_url("connect", twinfield.pk)).url
    query = {key: values[0] for key, values in parse_qs(urlsplit(consent).query).items()}
    assert consent.startswith(f"{fake.base_url}/auth/authentication/connect/authorize?")
    assert query["nonce"] == _reload(twinfield).oauth_nonce and query["state"] == _reload(twinfield).oauth_state
    assert "offline_access" in query["scope"].split() and "twf.organisation" in query["scope"].split()
    # The user authorises at Wolters Kluwer; the browser comes back to the callback.
    assert requests.get(consent, timeout=5).status_code == 200
    back = requests.post(consent, data={"decision": "accept"}, allow_redirects=False, timeout=5).headers["Location"]
    parts = urlsplit(back)
    waiting = client.get(f"{parts.path}?{parts.query}")
    assert waiting.url == _url("connecting", twinfield.pk)
    assert "reading the offices you can reach" in client.get(waiting.url).text

    assert jobs.jobs_drain(kind="twinfield.connect", seconds=30) == 1
    with staff_scope():
        job = Job.objects.get(kind="twinfield.connect")
    assert job.state == Job.State.DONE, job.last_error
    connected = _reload(twinfield)
    assert connected.state == TwinfieldConnection.State.CONNECTED and connected.oauth_code == ""
    assert connected.cluster_url == fake.cluster_url and connected.organisation == fake.organisation
    assert [o["code"] for o in connected.offices] == ["NLA001", "NLA002"]
    assert client.get(waiting.url).url == _url("office", twinfield.pk)  # on to choosing the office

    page = client.post(_url("office", twinfield.pk), {"office": "NLA001"}, follow=True)
    assert _reload(twinfield).office == "NLA001" and "BNK" in page.text
    done = client.post(_url("office", twinfield.pk), {"daybook": "BNK"}, follow=True)
    assert "Twinfield is connected: office NLA001, daybook BNK." in done.text
    status = client.get(_url("change", twinfield.pk)).text
    assert "Connected" in status and fake.organisation in status and "Credits this minute" in status
    assert "Connect again" in status


def test_an_office_the_user_cannot_reach_is_refused(fake, twinfield, client, staff):
    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(
            state=TwinfieldConnection.State.CONNECTED, offices=[{"code": "NLA001", "name": "Bakkerij"}])
    client.force_login(staff)
    page = client.post(_url("office", twinfield.pk), {"office": "NLA999"})
    assert page.status_code == 200 and _reload(twinfield).office == ""
    assert "Select a valid choice" in page.text


def test_the_callback_refuses_a_wrong_state(fake, twinfield, client, staff, worker):
    client.force_login(staff)
    client.post(_url("connect", twinfield.pk))
    page = client.get(_url("callback"), {"code": "stolen", "state": f"{twinfield.pk}.wrong"})
    assert page.status_code == 400 and "This answer from Twinfield does not belong to a Connect started here" in \
        page.text
    with staff_scope():
        assert not Job.objects.filter(kind="twinfield.connect").exists()


def test_the_status_page_shows_re_authorisation_and_poll_cursors(twinfield, committed, client, staff):
    from django.utils import timezone

    def stand():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(
            state=TwinfieldConnection.State.REAUTHORISE, state_reason="Twinfield refused the refresh token",
            state_changed_at=timezone.now(), office="NLA001", offices=[{"code": "NLA001", "name": "Bakkerij"}])
        TwinfieldCursor.objects.create(twinfield_id=twinfield.pk, entity=TwinfieldCursor.Entity.TRANSACTIONS,
                                       position="2026/11", polled_at=timezone.now())

    committed.create(stand)
    client.force_login(staff)
    page = client.get(_url("change", twinfield.pk)).text
    assert "Needs re-authorisation" in page and "Twinfield refused the refresh token" in page
    assert "2026/11" in page and "Sales transactions and payments" in page and "Press Connect again" in page
