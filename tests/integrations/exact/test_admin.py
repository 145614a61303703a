"""Exact Online in the back office: staff add a connection (secrets encrypted, shown masked), press
Connect and go through Exact's consent, come back to a page that waits for the connect job, choose
the division and journal, and see how the connection stands with buttons to sync and subscribe."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db
from django.urls import reverse
from django.utils import timezone

from integrations.exact.models import ExactConnection, ExactCursor
from integrations.models import Connection
from portal import jobs
from portal.admin_base import mask_secret
from portal.models import Job
from portal.rls import staff_scope
from tests.portal.factories import BrandFactory, UserFactory

CLIENT_ID = "3f1e6a52-8c1b-4f53-9d0e-5a1c2b3d4e5f"
CLIENT_SECRET = "Xq7pL2mN9rT4vW8yZ1aB"
WEBHOOK_SECRET = "Hk3JdP0sQe6RtY9uIo2W"


@pytest.fixture
def exact(committed):
    def build():
        link = Connection.objects.create(name="Acme books", slug="acme-exact", kind=Connection.Kind.EXACT_ONLINE,
                                         brand=BrandFactory(is_default=True), signing_secrets="whsec_unused")
        return ExactConnection.objects.create(connection=link, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                              webhook_secret=WEBHOOK_SECRET)

    return committed.create(build)


@pytest.fixture
def exact_site(settings):
    """Exact's site as the portal sees it (tests/fakes/exact.py serves the same paths)."""
    settings.EXACT_BASE_URL = "https://start.exactonline.test"
    return settings.EXACT_BASE_URL


def _url(view: str, *args) -> str:
    return reverse(f"admin:integrations_exactconnection_{view}", args=args)


def _reload(exact: ExactConnection) -> ExactConnection:
    with staff_scope():
        return ExactConnection.objects.select_related("connection").get(pk=exact.pk)


def _connect(client, exact) -> dict:
    """Press Connect; returns the consent link's query."""
    response = client.post(_url("connect", exact.pk))
    assert response.status_code == 302
    return {key: values[0] for key, values in parse_qs(urlsplit(response.url).query).items()}


# --- The connection and its secrets ------------------------------------------------------------

def test_staff_add_an_exact_connection_whose_secrets_are_encrypted_and_shown_masked(committed, client, staff):
    brand = committed.create(lambda: BrandFactory(is_default=True))
    client.force_login(staff)
    response = client.post(_url("add"), {
        "name": "Acme books", "slug": "acme-exact", "brand": brand.pk, "enabled": "on", "country": "nl",
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "webhook_secret": WEBHOOK_SECRET})
    assert response.status_code == 302, response.content
    with staff_scope():
        exact = ExactConnection.objects.select_related("connection").get()
        with db.cursor() as cursor:
            cursor.execute("SELECT client_secret, webhook_secret FROM integrations_exactconnection")
            stored = cursor.fetchone()
    assert exact.connection.kind == Connection.Kind.EXACT_ONLINE and exact.connection.slug == "acme-exact"
    assert exact.client_secret == CLIENT_SECRET and exact.webhook_secret == WEBHOOK_SECRET
    assert CLIENT_SECRET not in stored[0] and WEBHOOK_SECRET not in stored[1]  # encrypted at rest

    page = client.get(_url("change", exact.pk)).text
    assert mask_secret(CLIENT_SECRET) in page and mask_secret(WEBHOOK_SECRET) in page
    assert CLIENT_SECRET not in page and WEBHOOK_SECRET not in page
    # What staff register in Exact's App Center, on the page.
    assert "http://testserver" not in page and "/admin/integrations/exactconnection/callback/" in page
    assert "/webhooks/exact/acme-exact/" in page


def test_a_secret_left_masked_is_kept_and_a_typed_one_replaces_it(exact, client, staff):
    client.force_login(staff)
    form = {"name": "Acme books", "slug": "acme-exact", "brand": exact.connection.brand_id, "enabled": "on",
            "country": "be", "client_id": CLIENT_ID, "client_secret": mask_secret(CLIENT_SECRET),
            "webhook_secret": "NewWebhookSecret0987"}
    assert client.post(_url("change", exact.pk), form).status_code == 302
    exact = _reload(exact)
    assert exact.client_secret == CLIENT_SECRET and exact.webhook_secret == "NewWebhookSecret0987"
    assert exact.country == "be"


def test_the_url_name_of_another_connection_is_refused(exact, committed, client, staff):
    other = committed.create(lambda: Connection.objects.create(name="ERP", slug="erp", brand=exact.connection.brand,
                                                               signing_secrets="whsec_x"))
    client.force_login(staff)
    page = client.post(_url("add"), {"name": "Second", "slug": other.slug, "brand": other.brand_id, "country": "nl",
                                      "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert page.status_code == 200 and "Another connection already has this URL name." in page.text


# --- Connect: Exact's consent and the callback --------------------------------------------------

def test_connect_sends_staff_to_exacts_consent_with_a_fresh_state(exact, exact_site, client, staff):
    client.force_login(staff)
    response = client.post(_url("connect", exact.pk))
    assert response.url.startswith(f"{exact_site}/api/oauth2/auth?")
    query = {key: values[0] for key, values in parse_qs(urlsplit(response.url).query).items()}
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["redirect_uri"].endswith("/admin/integrations/exactconnection/callback/")
    assert query["state"] == _reload(exact).oauth_state and len(query["state"]) > 30
    assert client.get(_url("connect", exact.pk)).status_code == 405  # a GET changes nothing
    # Browsers hold the POST's redirect to the page's form-action: the page allows Exact's site.
    policy = client.get(_url("change", exact.pk)).headers["Content-Security-Policy"]
    assert f"form-action 'self' {exact_site}" in policy


def test_the_callback_refuses_a_wrong_state_and_keeps_no_code(exact, exact_site, client, staff, worker):
    client.force_login(staff)
    state = _connect(client, exact)["state"]
    for wrong in (state[:-3] + "abc", "", f"{exact.pk + 1}.{state.partition('.')[2]}", "nonsense"):
        page = client.get(_url("callback"), {"code": "stolen-code", "state": wrong})
        assert page.status_code == 400, wrong
        assert "does not belong to a Connect started here" in page.text
    exact = _reload(exact)
    assert exact.oauth_code == "" and exact.oauth_state == state
    with staff_scope():
        assert not Job.objects.filter(kind="exact.connect").exists()


def test_the_callback_keeps_the_code_encrypted_and_a_job_exchanges_it(exact, exact_site, client, staff, worker):
    client.force_login(staff)
    state = _connect(client, exact)["state"]
    response = client.get(_url("callback"), {"code": "code-from-exact", "state": state})
    assert response.status_code == 302 and response.url == _url("connecting", exact.pk)
    exact = _reload(exact)
    assert exact.oauth_code == "code-from-exact" and exact.oauth_state == ""
    with staff_scope():
        [job] = Job.objects.filter(kind="exact.connect")
        with db.cursor() as cursor:
            cursor.execute("SELECT oauth_code FROM integrations_exactconnection")
            assert "code-from-exact" not in cursor.fetchone()[0]
    assert job.payload == {"app": exact.pk} and worker.rung_for(job)
    # The page staff land on waits for the job and reloads itself.
    page = client.get(response.url)
    assert page.status_code == 200 and '<meta http-equiv="refresh"' in page.text
    assert "reading the divisions you can reach" in page.text
    # The same answer again is refused: a state is used once.
    assert client.get(_url("callback"), {"code": "code-from-exact", "state": state}).status_code == 400


def test_exact_refusing_consent_tells_staff_and_writes_no_job(exact, exact_site, client, staff, worker):
    client.force_login(staff)
    state = _connect(client, exact)["state"]
    page = client.get(_url("callback"), {"state": state, "error": "access_denied"})
    assert page.status_code == 400 and "Exact did not give access: access_denied" in page.text
    with staff_scope():
        assert not Job.objects.filter(kind="exact.connect").exists()
    assert _reload(exact).oauth_state == ""


def test_clients_cannot_reach_the_callback(exact, committed, client):
    outsider = committed.create(lambda: UserFactory(email="owner@client.test"))
    client.force_login(outsider)
    response = client.get(_url("callback"), {"code": "x", "state": "1.x"})
    assert response.status_code == 302 and "login" in response.url


# --- How the connection stands -------------------------------------------------------------------

def test_the_connection_page_shows_state_budget_and_last_sync_per_entity(exact, committed, client, staff):
    now = timezone.now()

    def stand():
        ExactConnection.objects.filter(pk=exact.pk).update(
            state=ExactConnection.State.REAUTHORISE, state_reason="Old refresh token used.", state_changed_at=now,
            division=1234567, divisions=[{"code": 1234567, "name": "Acme Holding"}], journal="20",
            day_remaining=3750, day_resets_at=now + timezone.timedelta(hours=5),
            rate_limited_until=now + timezone.timedelta(seconds=40))
        ExactCursor.objects.create(exact=exact, entity=ExactCursor.Entity.SALES_INVOICES, timestamp=987654321,
                                   synced_at=now)

    committed.create(stand)
    client.force_login(staff)
    page = client.get(_url("change", exact.pk)).text
    assert "Needs re-authorisation" in page and "Old refresh token used." in page
    assert "1,250 of 5,000" in page  # calls used today against the day's budget
    assert "Rate-limited until" in page
    assert "987654321" in page and "Sales invoices" in page and "Customers" in page
    assert "1234567 Acme Holding" in page
    assert "Connect again" in page and "Press Connect again" in page
    assert 'data-testid="exact-sync-now"' not in page  # nothing to sync with until reconnected


def test_sync_now_writes_one_sync_job_per_entity_once(exact, committed, client, staff, worker):
    pytest.importorskip("integrations.exact.tasks")  # the "exact.sync" handler (helper "sync")
    committed.create(lambda: ExactConnection.objects.filter(pk=exact.pk).update(
        state=ExactConnection.State.CONNECTED, division=1234567, journal="20"))
    client.force_login(staff)
    assert 'data-testid="exact-sync-now"' in client.get(_url("change", exact.pk)).text
    response = client.post(_url("sync", exact.pk), follow=True)
    assert "Sync started for 4 entities." in response.text
    with staff_scope():
        synced = sorted(job.payload["entity"] for job in Job.objects.filter(kind="exact.sync"))
    assert synced == sorted(ExactCursor.Entity.values)
    # Pressed again before the worker ran: nothing written twice.
    assert "already waiting" in client.post(_url("sync", exact.pk), follow=True).text
    with staff_scope():
        assert Job.objects.filter(kind="exact.sync").count() == 4


def test_sync_now_refused_until_connected(exact, client, staff, worker):
    client.force_login(staff)
    response = client.post(_url("sync", exact.pk), follow=True)
    assert "Connect and choose a division before syncing." in response.text
    with staff_scope():
        assert not Job.objects.filter(kind="exact.sync").exists()


# --- Against the fake Exact: the connect job, the division and the journal ----------------------

@pytest.fixture
def fake_exact(settings):
    from integrations.exact.connect import redirect_uri
    from tests.fakes.exact import FakeExact

    with FakeExact(CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET, redirect_uri=redirect_uri()) as fake:
        fake.add_division(1234567, "Acme Holding B.V.")
        fake.add_division(7654321, "Acme Services B.V.")
        settings.EXACT_BASE_URL = fake.url
        yield fake


def _consent(client, exact, *, accept: bool = True) -> str:
    """Connect, then the user's decision on the fake's consent page; returns where Exact sends the browser."""
    import requests

    consent = client.post(_url("connect", exact.pk)).url
    assert "Authorize" in requests.get(consent, timeout=5).text
    answer = requests.post(consent, data={"decision": "accept" if accept else "deny"}, allow_redirects=False,
                           timeout=5)
    assert answer.status_code == 302
    return answer.headers["Location"]


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_the_connect_job_stores_the_tokens_and_the_divisions_the_user_can_reach(exact, fake_exact, client, staff,
                                                                               worker):
    client.force_login(staff)
    back = client.get(_path_of(_consent(client, exact)))
    assert back.url == _url("connecting", exact.pk)
    assert jobs.jobs_drain(kind="exact.connect", seconds=30) == 1
    with staff_scope():
        job = Job.objects.get(kind="exact.connect")
    assert job.state == Job.State.DONE, job.last_error
    exact = _reload(exact)
    assert exact.state == ExactConnection.State.CONNECTED
    assert exact.refresh_token and exact.access_token and exact.oauth_code == ""  # the code is used once
    assert [d["code"] for d in exact.divisions] == [1234567, 7654321]
    assert {"code": 1234567, "name": "Acme Holding B.V."} in exact.divisions
    assert [call["grant_type"] for call in fake_exact.token_calls] == ["authorization_code"]
    # The waiting page now goes on to choosing the division.
    assert client.get(back.url).url == _url("division", exact.pk)


def test_an_expired_code_kills_the_connect_job_with_a_reason_staff_see(exact, fake_exact, client, staff, worker):
    client.force_login(staff)
    client.get(_path_of(_consent(client, exact)))
    committed_code_at = timezone.now() - timezone.timedelta(minutes=30)
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(oauth_code_at=committed_code_at)
    jobs.jobs_drain(kind="exact.connect", seconds=30)
    page = client.get(_url("connecting", exact.pk))
    assert "Connecting failed: The code from Exact&#x27;s consent has expired." in page.text
    assert '<meta http-equiv="refresh"' not in page.text and 'data-testid="exact-connect"' in page.text
    assert fake_exact.token_calls == [] and _reload(exact).oauth_code == ""


def test_a_connect_job_over_exacts_minute_budget_waits_for_it_with_its_tokens_kept(exact, fake_exact, client, staff,
                                                                                  worker):
    client.force_login(staff)
    client.get(_path_of(_consent(client, exact)))
    fake_exact.minute_limit = 0  # the division's calls of this minute are spent (by other connections)
    jobs.jobs_drain(kind="exact.connect", seconds=30)
    with staff_scope():
        job = Job.objects.get(kind="exact.connect")
    assert job.state == Job.State.RETRYING and "429" in job.last_error
    # It waits for Exact's minute to end (the reset Exact announced; never sooner), not a fixed backoff.
    reset = fake_exact.now() // 60 * 60 + 60
    assert reset <= job.run_after.timestamp() <= fake_exact.now() + 1.25 * (reset - fake_exact.now()) + 1
    assert _reload(exact).refresh_token and _reload(exact).oauth_code == ""  # the code was exchanged, once

    fake_exact.minute_limit = 60
    with staff_scope():  # the minute passes
        Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
        ExactConnection.objects.filter(pk=exact.pk).update(rate_limited_until=timezone.now(),
                                                           minute_resets_at=timezone.now())
    jobs.jobs_drain(kind="exact.connect", seconds=30)
    with staff_scope():
        assert Job.objects.get(pk=job.pk).state == Job.State.DONE
    assert [d["code"] for d in _reload(exact).divisions] == [1234567, 7654321]
    assert [call["grant_type"] for call in fake_exact.token_calls] == ["authorization_code"]


def test_a_code_exchange_over_exacts_token_calls_of_the_day_says_so_and_when_to_connect_again(
        exact, fake_exact, client, staff, worker):
    client.force_login(staff)
    client.get(_path_of(_consent(client, exact)))
    fake_exact.token_day_limit = 0  # the user's 200 token calls of today are spent
    jobs.jobs_drain(kind="exact.connect", seconds=30)
    with staff_scope():
        job = Job.objects.get(kind="exact.connect")
    assert job.state == Job.State.DEAD and job.attempts == 1
    assert "Exact allows no more token requests today" in job.last_error and "Press Connect again after" in \
        job.last_error
    page = client.get(_url("connecting", exact.pk))
    assert "Exact allows no more token requests today" in page.text
    assert _reload(exact).oauth_code == "" and _reload(exact).state == ExactConnection.State.NEW


def test_staff_choose_a_division_then_one_of_its_bank_journals(exact, fake_exact, client, staff, worker):
    client.force_login(staff)
    client.get(_path_of(_consent(client, exact)))
    jobs.jobs_drain(kind="exact.connect", seconds=30)
    page = client.get(_url("division", exact.pk)).text
    assert "1234567 – Acme Holding B.V." in page and "7654321 – Acme Services B.V." in page
    assert 'name="journal"' not in page  # the journals are read once the division is known

    # A division the user cannot reach is refused.
    assert "Select a valid choice" in client.post(_url("division", exact.pk), {"division": "999"}).text
    assert client.post(_url("division", exact.pk), {"division": "7654321"}).status_code == 302
    exact = _reload(exact)
    assert exact.division == 7654321
    # Bank (12) and payment-service (16) journals only: not the sales journal 70.
    assert [(j["code"], j["type"]) for j in exact.journals] == [("20", 12), ("25", 16)]
    page = client.get(_url("division", exact.pk)).text
    assert "20 – Bank (bank)" in page and "25 – Mollie (payment service)" in page and "Verkoopboek" not in page

    assert "Select a valid choice" in client.post(_url("division", exact.pk), {"journal": "70"}).text
    done = client.post(_url("division", exact.pk), {"journal": "20"}, follow=True)
    assert "Exact Online is connected: division 7654321, journal 20." in done.text
    assert _reload(exact).journal == "20"
    assert 'data-testid="exact-sync-now"' in done.text and 'data-testid="exact-subscribe-webhooks"' in done.text



def test_connecting_again_after_re_authorisation_resumes_the_syncs(exact, fake_exact, committed, client, staff,
                                                                  worker):
    committed.create(lambda: ExactConnection.objects.filter(pk=exact.pk).update(
        state=ExactConnection.State.REAUTHORISE, state_reason="Old refresh token used.", division=1234567,
        divisions=[{"code": 1234567, "name": "Acme Holding B.V."}], journal="20"))
    client.force_login(staff)
    page = client.get(_url("change", exact.pk)).text
    assert "Needs re-authorisation" in page and "Connect again" in page
    client.get(_path_of(_consent(client, exact)))
    jobs.jobs_drain(kind="exact.connect", seconds=30)
    exact = _reload(exact)
    assert exact.state == ExactConnection.State.CONNECTED and exact.state_reason == ""
    assert exact.division == 1234567 and exact.journal == "20"  # kept across the new consent
    with staff_scope():
        synced = sorted(job.payload["entity"] for job in Job.objects.filter(kind="exact.sync"))
    assert synced == sorted(ExactCursor.Entity.values)  # every entity from its cursor
    # Already connected with a division: the waiting page goes back to the connection's page flow.
    assert client.get(_url("connecting", exact.pk)).url == _url("division", exact.pk)
