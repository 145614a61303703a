"""The pull adapter in the back office, as staff (logged in with their second factor), against the
local ERP: a pull connection added with its token shown masked, a Preview (a POST) that shows each
record of the first page mapped or why not, pulling refused until a preview mapped a record, Pull
now, the progress of a pull on the page, and a parked record replayed from its list."""
from __future__ import annotations

import json

import pytest
from django.urls import reverse

from integrations.erp.models import ErpFeed, ErpParked, ErpPull
from integrations.erp.tasks import PULL_JOB
from integrations.models import Connection
from invoices.models import Invoice
from portal import jobs
from portal.admin_base import mask_secret
from portal.models import AuditEvent, Brand, Job
from portal.rls import staff_scope
from tests.integrations.erp.pull_support import Entity, make_pull
from tests.portal.factories import BrandFactory

TOKEN = "erp-rest-token"


@pytest.fixture
def fake(erp_server):
    erp_server.reset()
    return erp_server


@pytest.fixture
def browser(client, staff):
    client.force_login(staff)
    return client


def _url(view: str, *args) -> str:
    return reverse(f"admin:integrations_erppull_{view}", args=args)


def _form(erp: ErpPull, **changes) -> dict:
    """The change form as the page sends it, with its feeds inline."""
    with staff_scope():
        feeds = list(ErpFeed.objects.filter(erp=erp).order_by("position", "pk"))
        link = Connection.objects.get(pk=erp.connection_id)
    data = {"name": link.name, "slug": link.slug, "brand": link.brand_id, "style": erp.style, "base_url": erp.base_url,
            "auth": erp.auth, "token": mask_secret(erp.credentials.get("token", "")), "paging": erp.paging,
            "page_size": erp.page_size, "poll_minutes": erp.poll_minutes, "push": erp.push,
            "push_request": json.dumps(erp.push_request), "token_auth_method": "client_secret_basic",
            "feeds-TOTAL_FORMS": len(feeds), "feeds-INITIAL_FORMS": len(feeds), "feeds-MIN_NUM_FORMS": 0,
            "feeds-MAX_NUM_FORMS": 1000}
    if erp.enabled:
        data["enabled"] = "on"
    for n, feed in enumerate(feeds):
        data.update({f"feeds-{n}-id": feed.pk, f"feeds-{n}-erp": erp.pk, f"feeds-{n}-entity": feed.entity,
                     f"feeds-{n}-position": feed.position, f"feeds-{n}-request": feed.request,
                     f"feeds-{n}-records": feed.records, f"feeds-{n}-next_cursor": feed.next_cursor,
                     f"feeds-{n}-key": feed.key, f"feeds-{n}-version": feed.version,
                     f"feeds-{n}-since_param": feed.since_param, f"feeds-{n}-mapping": json.dumps(feed.mapping)})
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def _reload(erp) -> ErpPull:
    with staff_scope():
        return ErpPull.objects.get(pk=erp.pk)


def test_staff_add_a_pull_connection_whose_token_is_encrypted_and_shown_masked(fake, committed, browser):
    brand = committed.create(lambda: BrandFactory(is_default=True))
    page = browser.get(_url("add"))
    assert page.status_code == 200 and "Payments told back" in page.text and 'name="push_request"' in page.text
    response = browser.post(_url("add"), {
        "name": "Eigen ERP", "slug": "eigen-erp", "brand": brand.pk, "style": "rest", "base_url": fake.rest_url,
        "auth": "bearer", "token": TOKEN, "paging": "link", "page_size": 50, "poll_minutes": 15, "push": "rest",
        "push_request": json.dumps({"method": "POST", "path": "portal-payments", "body": {"id": "message_id"}}),
        "token_auth_method": "client_secret_basic",
        "feeds-TOTAL_FORMS": 1, "feeds-INITIAL_FORMS": 0, "feeds-MIN_NUM_FORMS": 0, "feeds-MAX_NUM_FORMS": 1000,
        "feeds-0-entity": Entity.CLIENTS, "feeds-0-position": 0, "feeds-0-request": "customers",
        "feeds-0-records": "items", "feeds-0-key": "id", "feeds-0-version": "modified",
        "feeds-0-since_param": "modified_since", "feeds-0-next_cursor": "",
        "feeds-0-mapping": json.dumps({"external_id": "id", "name": "name", "billing_email": "email"})})
    assert response.status_code == 302, response.content.decode()[:3000]
    with staff_scope():
        erp = ErpPull.objects.select_related("connection").get()
    assert erp.connection.kind == Connection.Kind.ERP_PULL and erp.connection.slug == "eigen-erp"
    assert erp.credentials == {"token": TOKEN} and erp.push == "rest" and erp.push_request["path"] == "portal-payments"
    assert not erp.enabled
    page = browser.get(_url("change", erp.pk))
    assert TOKEN not in page.text and mask_secret(TOKEN) in page.text
    # Left masked, the token stays.
    assert browser.post(_url("change", erp.pk), _form(erp, page_size=100)).status_code == 302
    assert _reload(erp).credentials == {"token": TOKEN} and _reload(erp).page_size == 100


def test_payments_told_by_signed_webhook_are_set_on_the_same_page(fake, committed, browser):
    from integrations.signing import generate_secret

    erp = committed.create(lambda: make_pull(fake, enabled=False))
    refused = browser.post(_url("change", erp.pk), _form(erp, push="webhook", signing_secret="not-a-secret"))
    assert refused.status_code == 200
    assert "Needed to tell the ERP by signed webhook." in refused.text
    assert "A signing secret is whsec_ followed by base64" in refused.text
    secret = generate_secret()
    saved = browser.post(_url("change", erp.pk), _form(erp, push="webhook", outbound_url="https://erp.example/hook",
                                                       signing_secret=secret))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    with staff_scope():
        link = Connection.objects.get(pk=erp.connection_id)
    assert (link.outbound_url, link.secrets()) == ("https://erp.example/hook", [secret])
    page = browser.get(_url("change", erp.pk)).text
    assert secret not in page and mask_secret(secret) in page
    # Left masked, the secret stays.
    kept = browser.post(_url("change", erp.pk), _form(_reload(erp), outbound_url="https://erp.example/hook",
                                                      signing_secret=mask_secret(secret)))
    assert kept.status_code == 302
    with staff_scope():
        assert Connection.objects.get(pk=erp.connection_id).secrets() == [secret]


def test_a_feed_whose_mapping_does_not_compile_is_refused_with_the_reason(fake, committed, browser):
    erp = committed.create(lambda: make_pull(fake, enabled=False))
    page = browser.post(_url("change", erp.pk), _form(erp, **{"feeds-1-mapping": json.dumps({"total": "totals.[x"})}))
    assert page.status_code == 200 and "is not JMESPath" in page.text


def test_pulling_is_turned_on_only_after_a_preview_that_mapped_a_record(fake, committed, browser):
    customers = [fake.add_customer("Jansen B.V."), fake.add_customer("Smit & Zn", email="geen-adres")]
    fake.add_invoice(customers[0]["id"], [("Advies", 2, "100.00", 21)])
    erp = committed.create(lambda: make_pull(fake, enabled=False, page_size=10))

    page = browser.post(_url("change", erp.pk), _form(erp, enabled="on"))
    assert page.status_code == 200 and "Press Preview first" in page.text
    assert not _reload(erp).enabled

    assert browser.get(_url("preview", erp.pk)).status_code == 302  # a GET calls nobody: back to the page
    assert fake.requests == []
    page = browser.post(_url("preview", erp.pk))

    assert page.status_code == 200
    assert "2 records mapped. Nothing was stored." in page.text  # a customer and the invoice
    assert '&quot;external_id&quot;: &quot;C001&quot;' in page.text and '&quot;total&quot;: &quot;242.00&quot;' in page.text
    assert "Does not map: /data/billing_email: an email address, up to 254 characters" in page.text  # Smit & Zn's
    with staff_scope():
        assert not Invoice.objects.exists() and not Job.objects.filter(kind="accounting.event").exists()
        assert AuditEvent.objects.filter(action=AuditEvent.Action.ADMIN_CHANGED,
                                         details__change__startswith="preview: 2").exists()
    assert _reload(erp).previewed_at is not None

    assert browser.post(_url("change", erp.pk), _form(erp, enabled="on")).status_code == 302
    assert _reload(erp).enabled


def test_a_preview_that_cannot_reach_the_erp_says_why_and_turns_nothing_on(fake, committed, browser):
    erp = committed.create(lambda: make_pull(fake, enabled=False))
    with staff_scope():
        ErpPull.objects.filter(pk=erp.pk).update(credentials={"token": "wrong"})
    page = browser.post(_url("preview", erp.pk))
    assert "0 records mapped" in page.text and "The first page could not be read" in page.text
    assert "refused the credentials (401)" in page.text
    assert _reload(erp).previewed_at is None


def test_pull_now_writes_a_pull_and_the_page_shows_how_far_it_got(fake, committed, browser, worker):
    customers = [fake.add_customer("Jansen B.V.")]
    for _ in range(5):
        fake.add_invoice(customers[0]["id"], [("Advies", 1, "10.00", 21)])
    erp = committed.create(lambda: make_pull(fake, page_size=2))

    assert browser.post(_url("pull", erp.pk)).status_code == 302
    page = browser.get(_url("change", erp.pk))
    assert 'data-testid="erp-running"' in page.text  # waiting to run
    jobs.jobs_drain(kind=PULL_JOB, seconds=30)

    page = browser.get(_url("change", erp.pk))
    assert page.status_code == 200 and 'data-testid="erp-running"' not in page.text
    assert '<td data-testid="erp-feed-records">5</td><td data-testid="erp-feed-pages">3</td>' in page.text
    assert '<td data-testid="erp-feed-records">1</td><td data-testid="erp-feed-pages">1</td>' in page.text


def test_a_parked_record_is_replayed_from_its_list_once_the_mapping_is_fixed(fake, committed, browser, worker):
    customer = fake.add_customer("Jansen B.V.")
    made = fake.add_invoice(customer["id"], [("Advies", 2, "100.00", 21)])
    erp = committed.create(lambda: make_pull(fake, mapping_changes={Entity.INVOICES: {"due_date": "vervaldatum"}}))
    with staff_scope():
        jobs.job_enqueue(kind=PULL_JOB, key="test-pull", payload={"erp": erp.pk}, subject=f"erp:{erp.pk}:pull")
    jobs.jobs_drain(kind=PULL_JOB, seconds=30)
    worker.run()
    with staff_scope():
        parked = ErpParked.objects.get()
    assert parked.record_key == made["id"] and parked.reason.startswith("/data/due_date: is required")

    listing = browser.get(reverse("admin:integrations_erpparked_changelist") + "?resolved=no")
    assert made["id"] in listing.text and "/data/due_date: is required" in listing.text
    detail = browser.get(reverse("admin:integrations_erpparked_change", args=[parked.pk]))
    assert "&quot;gross&quot;: 242.00" in detail.text  # the record as the ERP sent it
    page = browser.get(_url("change", erp.pk))
    assert f"?feed={parked.feed_id}&amp;resolved=no" in page.text

    # Replayed before the fix: still parked, with its reason.
    browser.post(reverse("admin:integrations_erpparked_changelist"), {"action": "replay", "_selected_action": [parked.pk]})
    with staff_scope():
        assert ErpParked.objects.get().resolved_at is None
    # Fixed in the feed's mapping, then replayed: the invoice comes in.
    with staff_scope():
        feed = ErpFeed.objects.get(erp=erp, entity=Entity.INVOICES)
        feed.mapping = {**feed.mapping, "due_date": "due"}
        feed.save()
    response = browser.post(reverse("admin:integrations_erpparked_changelist"),
                            {"action": "replay", "_selected_action": [parked.pk]}, follow=True)
    assert "1 record mapped and handed on." in response.text
    worker.run()
    with staff_scope():
        assert ErpParked.objects.get().resolved_at is not None
        assert Invoice.objects.filter(external_id=made["id"]).count() == 1
        assert AuditEvent.objects.filter(action=AuditEvent.Action.EVENT_REPLAYED).count() == 2
        assert not Brand.objects.filter(is_default=False).exists()
