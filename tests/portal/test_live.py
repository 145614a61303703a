"""Live pages (portal/live.py): an open page learns of a committed change for its client, in its
reader's language, at the cost of one cache read when nothing changed."""
import re
import threading
import time

import pytest
from django.core.cache import cache
from django.urls import reverse

from invoices import services
import portal.cache
from portal.live import _version_key, live_bump, live_changes, live_version
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import ClientFactory, MembershipFactory

LIVE = reverse("portal:live")


@pytest.fixture
def contact(db):
    client = ClientFactory(name="Live B.V.")
    user = MembershipFactory(client=client, user__email="live@example.test", user__language="en").user
    return client, user


def _page_version(http, url) -> str:
    page = http.get(url)
    assert page.status_code == 200
    return re.search(r'data-live-version="(\d+)"', page.text).group(1)


def test_a_page_still_opens_when_the_fresh_version_is_gone_before_it_is_read(client, contact, monkeypatch):
    # Redis losing the key just made (evicted, flushed, restarted) gave the page a 500 under load
    # (bench/clients.py): the page starts from its own fresh version instead.
    customer, user = contact
    cache.delete(_version_key(customer.pk))
    made = cache.add

    def add_then_lose(key, *args, **kwargs):
        result = made(key, *args, **kwargs)
        cache.delete(key)
        return result

    monkeypatch.setattr(cache, "add", add_then_lose)
    client.force_login(user)
    assert int(_page_version(client, reverse("invoices:list"))) > 1_700_000_000_000  # ms since the epoch


def test_the_overview_list_and_detail_carry_a_version_and_live_regions(client, contact):
    customer, user = contact
    invoice = make_invoice(customer, number="LV-1")
    client.force_login(user)
    for url, region in ((reverse("portal:home"), "live-dashboard"), (reverse("invoices:list"), "results"),
                        (reverse("invoices:detail", args=[invoice.pk]), "live-invoice")):
        page = client.get(url).text
        assert f'data-live-url="{LIVE}"' in page and re.search(r'data-live-version="\d+"', page), url
        assert re.search(rf'id="{region}"[^>]*data-live', page), url
        assert 'role="status" aria-live="polite"' in page and "portal/live.js" in page


def test_an_idle_poll_is_204_and_costs_no_query_of_its_own(client, contact, django_assert_max_num_queries):
    customer, user = contact
    client.force_login(user)
    version = _page_version(client, reverse("portal:home"))
    client.get(LIVE, {"v": version})  # warm: the session and membership lookups of any page
    # What is left are the sign-in and scope lookups every portal request makes (session, user,
    # memberships, the scope settings); the check itself reads the cache only.
    with django_assert_max_num_queries(6):
        answer = client.get(LIVE, {"v": version})
    assert answer.status_code == 204


def test_a_new_invoice_and_a_payment_are_announced_after_commit(client, contact, django_capture_on_commit_callbacks):
    customer, user = contact
    client.force_login(user)
    version = _page_version(client, reverse("portal:home"))
    with django_capture_on_commit_callbacks(execute=True):
        invoice = make_invoice(customer, number="LV-12", lines=[line(unit_price="100.00")])
    answer = client.get(LIVE, {"v": version}).json()
    assert answer["version"] > int(version)
    assert answer["messages"] == ["New invoice LV-12"]

    with django_capture_on_commit_callbacks(execute=True):
        pay(customer, [(invoice, "50.00")])
    answer = client.get(LIVE, {"v": answer["version"]}).json()
    assert answer["messages"] == ["Payment received: €50.00", "Invoice LV-12: Partially paid"]
    assert client.get(LIVE, {"v": answer["version"]}).status_code == 204


def test_the_announcement_speaks_the_readers_language(client, contact, django_capture_on_commit_callbacks):
    customer, user = contact
    user.language = "nl"
    with staff_scope():
        user.save(update_fields=["language"])
    client.force_login(user)
    version = _page_version(client, reverse("portal:home"))
    with django_capture_on_commit_callbacks(execute=True):
        invoice = make_invoice(customer, number="LV-13")
        with staff_scope():
            services.invoice_void(invoice=invoice, reason="twice")
    assert client.get(LIVE, {"v": version}).json()["messages"] == ["Nieuwe factuur LV-13"]


def test_another_clients_change_is_not_seen(client, contact, django_capture_on_commit_callbacks):
    customer, user = contact
    client.force_login(user)
    version = _page_version(client, reverse("portal:home"))
    with django_capture_on_commit_callbacks(execute=True):
        make_invoice(ClientFactory(name="Other B.V."), number="OT-1")
    assert client.get(LIVE, {"v": version}).status_code == 204


def test_a_lost_counter_means_one_quiet_refresh_never_a_missed_change(client, contact):
    customer, user = contact
    client.force_login(user)
    version = _page_version(client, reverse("portal:home"))
    cache.delete(_version_key(customer.pk))
    answer = client.get(LIVE, {"v": version}).json()
    assert answer["version"] != int(version) and answer["messages"] == ["Your invoices were updated."]
    assert answer["version"] == live_version(client_id=customer.pk)


def test_many_changes_are_counted_not_read_out_one_by_one(client, contact, django_capture_on_commit_callbacks):
    customer, user = contact
    client.force_login(user)
    version = _page_version(client, reverse("portal:home"))
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(5):
            make_invoice(customer, number=f"LV-B{n}")
    messages = client.get(LIVE, {"v": version}).json()["messages"]
    assert messages == ["New invoice LV-B0", "New invoice LV-B1", "and 3 more changes"]


def test_the_check_needs_a_signed_in_member(client, contact):
    assert client.get(LIVE, {"v": "1"}).status_code == 302


def test_a_poll_at_any_moment_of_a_change_finds_its_words(db):
    # A page that polled between the count going up and the change's words being kept was told
    # only "Your invoices were updated." (seen in the browser test of a payment on a busy
    # machine). Pages poll here while another thread counts 300 changes.
    client_id = 987_654
    cache.delete(_version_key(client_id))
    since = live_version(client_id=client_id)
    done = threading.Event()
    unknown = []

    def bump():
        for n in range(300):
            live_bump(client_id=client_id, event={"kind": "payment", "amount": f"{n}.00", "currency": "EUR"})
        done.set()

    worker = threading.Thread(target=bump)
    worker.start()
    seen = 0
    deadline = time.monotonic() + 60  # a change lost for good fails the assertion below, not the run's clock
    while (not done.is_set() or seen < 300) and time.monotonic() < deadline:
        version = live_version(client_id=client_id)
        if version > since:
            if version - since <= 20 and live_changes(client_id=client_id, since=since, version=version) is None:
                unknown.append((since, version))
            seen += version - since
            since = version
    worker.join()
    assert seen == 300 and not unknown


def test_changes_are_still_counted_with_their_words_while_redis_is_down(db, monkeypatch):
    outage = portal.cache._outage_for(cache._location)
    monkeypatch.setattr(outage, "down_until", time.monotonic() + 60)
    client_id = 987_655
    since = live_version(client_id=client_id)
    live_bump(client_id=client_id, event={"kind": "payment", "amount": "5.00", "currency": "EUR"})
    live_bump(client_id=client_id, event={"kind": "payment", "amount": "6.00", "currency": "EUR"})
    version = live_version(client_id=client_id)
    assert version == since + 2
    assert [event["amount"] for event in live_changes(client_id=client_id, since=since, version=version)] \
        == ["5.00", "6.00"]
