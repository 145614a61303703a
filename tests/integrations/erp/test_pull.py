"""The pull adapter against the local ERP (tests/fakes/erp.py): a first pull of several pages in
each paging style (offset, Link header, GraphQL Relay, a cursor in the answer), an incremental
pull by the watermark, a record that does not map parked with its reason and replayed once the
mapping is fixed (the invoice in the portal once), OAuth2 client credentials with the token
fetched again after it expired, a 429 waited out, and the "erp.pull" job and its beat task. The
events go through the one accounting.event path (run by the worker stand-in)."""
from __future__ import annotations

import datetime
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from django.db import transaction
from django.utils import timezone

from integrations.erp import pull as erp_pull
from integrations.erp.client import ErpThrottled
from integrations.erp.models import ErpFeed, ErpParked, ErpPull
from integrations.erp.tasks import PULL_JOB, pull_enqueue, pull_erp_connections
from invoices.models import CreditNote, Invoice, Payment
from portal import jobs
from portal.models import Job, WebhookRequest
from portal.rls import staff_scope
from tests.integrations.erp.pull_support import Entity, make_pull

D = Decimal
Paging, Style = ErpPull.Paging, ErpPull.Style


@pytest.fixture
def fake(erp_server):
    erp_server.reset()
    return erp_server


@pytest.fixture
def run(worker):
    def run_all() -> int:
        total = 0
        while ran := worker.run():
            total += ran
        return total

    return run_all


def pull(erp) -> dict:
    """One pull now, in this process, as the erp.pull job does (in the back office's scope)."""
    with staff_scope():
        erp.refresh_from_db()
        counts, finished = erp_pull.pull(erp)
    assert finished
    return counts


def _books(fake, invoices=5):
    customers = [fake.add_customer("Jansen B.V."), fake.add_customer("Smit & Zn", language="en")]
    made = [fake.add_invoice(customers[n % 2]["id"], [("Advies", 2, "100.00", 21), ("Boeken", 3, "19.95", 9)])
            for n in range(invoices)]
    return customers, made


def _invoices(erp) -> dict[str, Invoice]:
    with staff_scope():
        return {i.external_id: i for i in Invoice.objects.filter(connection_id=erp.connection_id)
                .select_related("client").prefetch_related("lines")}


def _feed(erp, entity) -> ErpFeed:
    with staff_scope():
        return ErpFeed.objects.get(erp=erp, entity=entity)


def _api_calls(fake, path: str) -> list[dict]:
    return [r for r in fake.requests if r["path"] == path]


@pytest.mark.parametrize("style,paging", [(Style.REST, Paging.OFFSET), (Style.REST, Paging.LINK),
                                          (Style.GRAPHQL, Paging.RELAY), (Style.GRAPHQL, Paging.CURSOR)],
                         ids=["offset", "link", "relay", "cursor"])
def test_a_first_pull_reads_every_page_and_each_invoice_comes_in_with_its_lines_and_vat(
        fake, committed, run, style, paging):
    customers, made = _books(fake, invoices=5)
    erp = committed.create(lambda: make_pull(fake, style=style, paging=paging, page_size=2))

    counts = pull(erp)
    run()

    assert counts["records"] == 7 and counts["stored"] == 7 and counts["parked"] == 0
    invoices = _invoices(erp)
    assert sorted(invoices) == sorted(i["id"] for i in made)
    first = invoices[made[0]["id"]]
    # 2 × 100.00 at 21 % and 3 × 19.95 at 9 %: the ERP's totals, taken as the ledger computes them.
    assert (first.subtotal, first.tax_total, first.total) == (D("259.85"), D("47.39"), D("307.24"))
    assert sorted((line.description, line.quantity, line.unit_price) for line in first.lines.all()) == [
        ("Advies", D("2"), D("100.00")), ("Boeken", D("3"), D("19.95"))]
    assert first.client.name == "Jansen B.V." and first.issue_date == datetime.date.fromisoformat(made[0]["date"])
    assert first.due_date == datetime.date.fromisoformat(made[0]["due"])
    feed = _feed(erp, Entity.INVOICES)
    assert (feed.records_seen, feed.pages_read) == (5, 3)  # 2 + 2 + 1
    assert feed.watermark == made[-1]["modified"] and feed.pulled_at is not None
    assert feed.cursor == ""  # read to the end; the watermark is where the next pull starts
    if style == Style.REST:
        asked = [parse_qs(r["query"]) for r in _api_calls(fake, "/rest/invoices")]
        assert len(asked) == 3 and all(q["limit"] == ["2"] for q in asked)


def test_an_incremental_pull_asks_only_for_what_changed_since_the_watermark(fake, committed, run):
    customers, made = _books(fake, invoices=3)
    erp = committed.create(lambda: make_pull(fake, paging=Paging.LINK, page_size=2))
    pull(erp)
    run()
    watermark = _feed(erp, Entity.INVOICES).watermark

    fake.advance(60)
    changed = fake.update("invoices", made[1]["id"], reference="PO-NEW", due="2027-03-01")
    newer = fake.add_invoice(customers[0]["id"], [("Taart", 1, "30.00", 9)])
    fake.requests.clear()
    counts = pull(erp)
    run()

    invoice_calls = _api_calls(fake, "/rest/invoices")
    assert len(invoice_calls) == 1 and parse_qs(invoice_calls[0]["query"])["modified_since"] == [watermark]
    assert counts["records"] == 2 and counts["stored"] == 2  # the changed one and the new one, nothing else
    invoices = _invoices(erp)
    assert len(invoices) == 4 and invoices[newer["id"]].total == D("32.70")
    assert invoices[changed["id"]].purchase_order == "PO-NEW"
    assert invoices[changed["id"]].due_date == datetime.date(2027, 3, 1)
    assert _feed(erp, Entity.INVOICES).watermark == newer["modified"]

    assert pull(erp)["records"] == 0  # nothing changed since: nothing read


def test_a_relay_feed_without_a_since_variable_goes_on_after_its_last_cursor(fake, committed, run):
    customers, made = _books(fake, invoices=3)
    erp = committed.create(lambda: make_pull(fake, style=Style.GRAPHQL, paging=Paging.RELAY, incremental=False))
    pull(erp)
    cursor = _feed(erp, Entity.INVOICES).cursor
    assert cursor

    fake.advance(60)
    newer = fake.add_invoice(customers[1]["id"], [("Taart", 1, "30.00", 9)])
    counts = pull(erp)
    run()

    assert counts["records"] == 1  # the new invoice only: both feeds went on after their last cursors
    assert newer["id"] in _invoices(erp) and len(_invoices(erp)) == 4


def test_a_record_that_does_not_map_is_parked_with_its_reason_and_comes_in_once_after_the_fix(
        fake, committed, run):
    customers, made = _books(fake, invoices=2)
    # The developer mistyped the total's place: the event would have no total.
    erp = committed.create(lambda: make_pull(fake, mapping_changes={Entity.INVOICES: {"total": "totals.grand"}}))

    counts = pull(erp)
    run()

    assert counts["parked"] == 2 and counts["stored"] == 2  # the customers
    assert _invoices(erp) == {}
    with staff_scope():
        parked = list(ErpParked.objects.filter(feed__erp=erp).order_by("record_key"))
    assert [p.record_key for p in parked] == [m["id"] for m in made]
    assert parked[0].reason.startswith("/data/total: is required") and parked[0].resolved_at is None
    assert erp_pull.parked_record(parked[0])["totals"]["gross"] == D(made[0]["totals"]["gross"])  # as sent

    # Pulled again unchanged: still parked, nothing more.
    assert pull(erp)["parked"] == 0  # the watermark moved past them
    with staff_scope():
        feed = ErpFeed.objects.get(erp=erp, entity=Entity.INVOICES)
        feed.mapping = {**feed.mapping, "total": "totals.gross"}
        feed.save()
        outcomes = [erp_pull.parked_replay(p) for p in parked]
    run()

    assert outcomes == ["stored", "stored"]
    with staff_scope():
        assert ErpParked.objects.filter(feed__erp=erp, resolved_at__isnull=True).count() == 0
    invoices = _invoices(erp)
    assert sorted(invoices) == sorted(m["id"] for m in made) and invoices[made[0]["id"]].total == D("307.24")
    # Replayed again, or read again by a full pull: the same event, a duplicate; the invoice is there once.
    with staff_scope():
        assert [erp_pull.parked_replay(p) for p in parked] == ["duplicates", "duplicates"]
        ErpFeed.objects.filter(erp=erp).update(watermark="")
    pull(erp)
    run()
    with staff_scope():
        assert Invoice.objects.filter(connection_id=erp.connection_id, external_id=made[0]["id"]).count() == 1


def test_credit_notes_payments_and_a_voided_invoice_come_in_through_their_feeds(fake, committed, run):
    books = fake.sample_books()
    erp = committed.create(lambda: make_pull(fake, page_size=50, entities=(
        Entity.CLIENTS, Entity.INVOICES, Entity.CREDIT_NOTES, Entity.PAYMENTS)))

    counts = pull(erp)
    run()

    # The void invoice was never in the portal: nothing to void.
    assert counts["skipped"] == 1 and counts["parked"] == 0
    first, second, void = books["invoices"]
    invoices = _invoices(erp)
    assert sorted(invoices) == sorted([first["id"], second["id"]])
    with staff_scope():
        credit = CreditNote.objects.get(connection_id=erp.connection_id)
        payment = Payment.objects.get(connection_id=erp.connection_id)
        assert credit.invoice.external_id == second["id"] and credit.reason == "Eén boek retour"
        assert payment.amount == D("300.00")
        assert Invoice.objects.get(pk=invoices[first["id"]].pk).open_balance == D("0.00")


def test_an_invoice_voided_in_the_erp_is_voided_in_the_portal(fake, committed, run):
    customers, made = _books(fake, invoices=2)
    erp = committed.create(lambda: make_pull(fake))
    pull(erp)
    run()

    fake.advance(60)
    fake.update("invoices", made[0]["id"], status="void")
    counts = pull(erp)
    run()

    assert counts["stored"] == 1
    invoices = _invoices(erp)
    assert invoices[made[0]["id"]].status == Invoice.Status.VOID
    assert invoices[made[1]["id"]].status == Invoice.Status.OPEN


def test_oauth2_client_credentials_token_is_kept_then_fetched_again_once_it_expired(fake, committed, run):
    _books(fake, invoices=1)
    erp = committed.create(lambda: make_pull(fake, style=Style.GRAPHQL, paging=Paging.RELAY))

    pull(erp)
    assert len(fake.token_calls) == 1
    with staff_scope():
        erp.refresh_from_db()
    token, expires = erp.access_token, erp.access_expires_at
    assert token and expires > timezone.now() + datetime.timedelta(minutes=50)

    pull(erp)
    assert len(fake.token_calls) == 1  # kept while it lasts

    with staff_scope(), transaction.atomic():
        ErpPull.objects.filter(pk=erp.pk).update(access_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    pull(erp)
    assert len(fake.token_calls) == 2  # expired: a new one before the call
    with staff_scope():
        erp.refresh_from_db()
    assert erp.access_token != token

    fake.expire_tokens()  # the ERP forgets it early: the call is refused once, with a new token it goes
    graphql_before = len(_api_calls(fake, "/graphql"))
    pull(erp)
    assert len(fake.token_calls) == 3
    statuses = [r["status"] for r in _api_calls(fake, "/graphql")[graphql_before:]]
    assert statuses[:2] == [401, 200]


def test_the_token_endpoint_refusing_the_client_stops_the_job_with_the_reason(fake, committed, worker):
    erp = committed.create(lambda: make_pull(fake, style=Style.GRAPHQL, paging=Paging.RELAY))
    with staff_scope(), transaction.atomic():
        ErpPull.objects.filter(pk=erp.pk).update(credentials={**erp.credentials, "client_secret": "wrong"})
        job_id = pull_enqueue(erp=erp)

    jobs.jobs_drain(kind=PULL_JOB, seconds=30)

    with staff_scope():
        job = Job.objects.get(pk=job_id)
        erp.refresh_from_db()
    assert job.state == Job.State.DEAD and "invalid_client" in job.last_error
    assert job.last_error.startswith("The ERP refused the credentials:") and "invalid_client" in erp.last_error


def test_a_429_is_waited_out_at_the_moment_the_erp_names(fake, committed, worker):
    _books(fake, invoices=1)
    erp = committed.create(lambda: make_pull(fake))
    fake.rate_limit_next(1, retry_after=120)
    with staff_scope():
        with pytest.raises(ErpThrottled):
            erp_pull.pull(erp)
        with transaction.atomic():
            job_id = pull_enqueue(erp=erp)
    fake.rate_limit_next(1, retry_after=120)
    jobs.jobs_drain(kind=PULL_JOB, seconds=30)

    with staff_scope():
        job = Job.objects.get(pk=job_id)
    assert job.state == Job.State.RETRYING and "429" in job.last_error
    assert job.run_after >= timezone.now() + datetime.timedelta(seconds=100)

    worker.make_due(job)
    jobs.jobs_drain(kind=PULL_JOB, seconds=30)
    with staff_scope():
        assert Job.objects.get(pk=job_id).state == Job.State.DONE


def test_the_beat_writes_a_pull_for_each_erp_that_is_due_and_the_job_brings_the_invoices(fake, committed, run):
    _books(fake, invoices=2)
    erp = committed.create(lambda: make_pull(fake))
    off = committed.create(lambda: make_pull(fake, slug="erp-off", enabled=False))

    assert pull_erp_connections() == 1
    assert pull_erp_connections() == 0  # one is waiting already
    jobs.jobs_drain(kind=PULL_JOB, seconds=30)
    run()

    with staff_scope():
        job = Job.objects.get(kind=PULL_JOB)
        erp.refresh_from_db()
        assert not Job.objects.filter(kind=PULL_JOB, payload__erp=off.pk).exists()
    assert job.state == Job.State.DONE and "stored 4" in job.result
    assert len(_invoices(erp)) == 2 and erp.last_pull_at is not None
    assert pull_erp_connections() == 0  # pulled just now: not due until its interval has passed


def test_a_pull_whose_time_runs_out_goes_on_where_it_stopped(fake, committed, run, monkeypatch):
    _books(fake, invoices=5)
    erp = committed.create(lambda: make_pull(fake, page_size=2))
    with staff_scope():
        counts, finished = erp_pull.pull(erp, seconds=0)  # a page of each feed it starts, then time is up
    assert not finished and counts["pages"] == 2  # the two customers (their one page) and two invoices
    assert _feed(erp, Entity.CLIENTS).cursor == ""
    invoices = _feed(erp, Entity.INVOICES)
    assert (invoices.cursor, invoices.pages_read, invoices.records_seen, invoices.watermark) == ("2", 1, 2, "")

    monkeypatch.setattr(erp_pull, "PULL_SECONDS", 0.0)
    with staff_scope(), transaction.atomic():
        pull_enqueue(erp=erp)
    jobs.jobs_drain(kind=PULL_JOB, seconds=30)
    run()

    with staff_scope():
        done = list(Job.objects.filter(kind=PULL_JOB).order_by("pk").values_list("state", "result"))
        stored = WebhookRequest.objects.filter(source="erp_pull", natural_key__startswith="invoice.updated:").count()
    # The first job read the next page and wrote the one that read the last.
    assert [state for state, _ in done] == [Job.State.DONE, Job.State.DONE]
    assert "goes on in the next pull" in done[0][1] and "goes on" not in done[1][1]
    assert len(_invoices(erp)) == 5 and stored == 5
    invoices = _feed(erp, Entity.INVOICES)
    assert (invoices.cursor, invoices.pages_read, invoices.records_seen) == ("", 3, 5)
