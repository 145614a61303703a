"""Auto-pay by mandate with Mollie: a first payment signs a mandate (recorded by a job of its
own); recurring and opted-in invoices are announced a few days ahead and collected on their due
date exactly once, whatever crashes, however many runs at once; revocable."""
import datetime
import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from invoices import services as ledger
from invoices.models import Invoice
from payments import mandates
from payments.gateways import idempotency_key_for
from payments.gateways.mollie import MollieGateway
from payments.mandates import collection_opt_in, collections_run
from payments.models import CheckoutAttempt, GatewayAccount, Mandate, MandateCollection
from portal import jobs
from portal.formatting import format_day
from portal.models import Job, Notification, NotificationKind
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice
from tests.payments.conftest import API_KEY
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


class WorkerKilled(BaseException):
    """The worker's process ends here (a kill, an OOM): nothing after this line runs, nothing is recorded."""


@pytest.fixture
def setup(committed, worker, mollie, client):
    def build():
        brand = BrandFactory(is_default=True)
        gateway = GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=API_KEY,
                                                ideal=True, card=False, sepa_direct_debit=True)
        alpha = ClientFactory(brand=brand, billing_email="ap@alpha.test")
        owner = MembershipFactory(client=alpha, user__language="en").user
        first = make_invoice(alpha, number="M-FIRST", lines=[line(unit_price="100.00")])
        return {"gateway": gateway, "alpha": alpha, "owner": owner, "first": first}

    data = committed.create(build)
    client.force_login(data["owner"])
    return data


def _webhook(client, setup, payment_id):
    return client.post(reverse("payments:webhook", args=["mollie", setup["gateway"].pk]), data=f"id={payment_id}",
                       content_type="application/x-www-form-urlencoded")


def _process(client, setup, worker, payment_id):
    assert _webhook(client, setup, payment_id).json()["status"] == "accepted"
    worker.run()


def _start_first_payment(client, setup, mollie) -> str:
    invoice = setup["first"]
    response = client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", {
        "idempotency_key": str(uuid.uuid4()), "method": "ideal", "invoice": [invoice.pk],
        f"amount_{invoice.pk}": "121.00", "wants_mandate": "on"})
    assert response.status_code == 302
    [payment_id] = mollie.payments
    assert mollie.payments[payment_id]["sequenceType"] == "first" and mollie.payments[payment_id]["customerId"]
    mollie.set_status(payment_id, "paid")
    return payment_id


def _sign_mandate(client, setup, mollie, worker) -> Mandate:
    _process(client, setup, worker, _start_first_payment(client, setup, mollie))
    with staff_scope():
        return Mandate.objects.get(status="valid")


def _opted_in(setup, *numbers: str, unit_price="10.00") -> list[Invoice]:
    invoices = []
    for number in numbers:
        invoice = make_invoice(setup["alpha"], number=number, lines=[line(unit_price=unit_price)])
        with staff_scope():
            collection_opt_in(invoice=invoice, user=setup["owner"])
        invoices.append(invoice)
    return invoices


def _debits(mollie) -> list[dict]:
    return [p for p in mollie.payments.values() if p["sequenceType"] == "recurring"]


def _collection_attempts() -> list[CheckoutAttempt]:
    with staff_scope():
        return list(CheckoutAttempt.objects.filter(method="sepa_direct_debit").order_by("id"))


def test_a_first_payment_by_ideal_signs_a_mandate_visible_in_the_portal(setup, mollie, client, worker):
    mandate = _sign_mandate(client, setup, mollie, worker)
    assert (mandate.status, mandate.masked_account) == ("valid", "NL55 •••• 0000")
    with staff_scope():
        assert Invoice.objects.get(pk=setup["first"].pk).status == "paid"
        attempt = CheckoutAttempt.objects.get(wants_mandate=True)
    [sync] = worker.jobs(kind="mandate.sync")
    assert (sync.key, sync.state, sync.result) == (f"mandate.sync:{attempt.pk}", "done",
                                                   f"{mandate.provider_mandate_id}: valid")
    page = client.get(reverse("payments:mandates"))
    assert "NL55 •••• 0000" in page.text and "Revoke" in page.text


def test_the_payment_counts_at_once_and_the_mandate_follows_when_mollie_answers_again(setup, mollie, client, worker):
    payment_id = _start_first_payment(client, setup, mollie)
    _webhook(client, setup, payment_id)
    assert jobs.jobs_drain(kind="gateway.event") == 1  # the payment is applied ...
    mollie.fail_next(1, status=503)  # ... and Mollie fails when asked for the mandate
    worker.run()
    [sync] = worker.jobs(kind="mandate.sync")
    assert sync.state == "retrying"
    with staff_scope():
        assert Invoice.objects.get(pk=setup["first"].pk).status == "paid" and not Mandate.objects.exists()
    worker.make_due(pk=sync.pk)
    worker.run()
    with staff_scope():
        assert Mandate.objects.get().status == "valid"


def test_recurring_invoices_are_announced_then_collected_once_on_the_due_date(setup, mollie, client, worker):
    _sign_mandate(client, setup, mollie, worker)
    with staff_scope():
        schedule = ledger.recurring_create(client=setup["alpha"], brand=setup["alpha"].brand, name="Hosting",
                                           lines=[line(unit_price="50.00")], next_date=TODAY, payment_terms_days=14)
        ledger.recurring_generate_due(today=TODAY)
        invoice = Invoice.objects.get(recurring_schedule=schedule)
        due = invoice.due_date
        assert collections_run(today=due - datetime.timedelta(days=5)) == {"prenotified": 0, "queued": 0}
        assert collections_run(today=due - datetime.timedelta(days=3)) == {"prenotified": 1, "queued": 0}
        assert collections_run(today=due - datetime.timedelta(days=2)) == {"prenotified": 0, "queued": 0}
        told = Notification.objects.get(kind=NotificationKind.COLLECTION_UPCOMING)
        assert "NL55 •••• 0000" in told.text and format_day(due, language="en") in told.text
        assert collections_run(today=due) == {"prenotified": 0, "queued": 1}
        assert collections_run(today=due) == {"prenotified": 0, "queued": 0}  # never twice
    [job] = worker.jobs(kind="mandate.collect")
    assert (job.key, job.payload) == (f"collect:{invoice.pk}:{due.isoformat()}", {"invoice": invoice.pk})
    assert not _debits(mollie)  # the run only wrote the job: Mollie is called by it
    worker.run()
    [attempt] = _collection_attempts()
    [debit] = _debits(mollie)
    assert (debit["id"], debit["status"], debit["amount"]["value"]) == (attempt.provider_payment_id, "pending", "60.50")
    assert attempt.idempotency_key == idempotency_key_for(job.key)
    assert debit["metadata"]["checkout"] == str(attempt.idempotency_key)
    with staff_scope():
        assert collections_run(today=due) == {"prenotified": 0, "queued": 0}
    _process(client, setup, worker, attempt.provider_payment_id)
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).status == "open"  # a pending debit is not money
    mollie.set_status(attempt.provider_payment_id, "paid")
    _process(client, setup, worker, attempt.provider_payment_id)
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).status == "paid"


def test_an_invoice_the_client_opts_in_is_collected_and_revoking_stops_it(setup, mollie, client, worker):
    mandate = _sign_mandate(client, setup, mollie, worker)
    other = make_invoice(setup["alpha"], number="M-OPT", lines=[line(unit_price="10.00")])
    detail = client.get(reverse("invoices:detail", args=[other.pk]))
    assert "Collect by direct debit on the due date" in detail.text
    client.post(reverse("payments:collect_on_due_date", args=[other.pk]))
    assert "Collected by direct debit from NL55 •••• 0000" in client.get(
        reverse("invoices:detail", args=[other.pk])).text
    page = client.post(reverse("payments:mandate_revoke", args=[mandate.pk]), follow=True)
    assert "The mandate is revoked" in page.text
    with staff_scope():
        assert Mandate.objects.get().status == "revoked"
        assert collections_run(today=other.due_date) == {"prenotified": 0, "queued": 0}
    assert ("DELETE", f"/v2/customers/{mandate.provider_customer_id}/mandates/{mandate.provider_mandate_id}") \
        in mollie.requests


def test_when_mollie_cannot_revoke_the_mandate_nothing_changes_and_the_client_is_told(setup, mollie, client, worker):
    mandate = _sign_mandate(client, setup, mollie, worker)
    mollie.fail_next(1, status=503)
    page = client.post(reverse("payments:mandate_revoke", args=[mandate.pk]), follow=True)
    assert "could not be revoked" in page.text
    with staff_scope():
        assert Mandate.objects.get().status == "valid"
    client.post(reverse("payments:mandate_revoke", args=[mandate.pk]))
    with staff_scope():
        assert Mandate.objects.get().status == "revoked"


def test_a_mandate_revoked_after_the_collection_was_written_collects_nothing(setup, mollie, client, worker):
    mandate = _sign_mandate(client, setup, mollie, worker)
    [invoice] = _opted_in(setup, "M-LATE")
    with staff_scope():
        assert collections_run(today=invoice.due_date)["queued"] == 1
    client.post(reverse("payments:mandate_revoke", args=[mandate.pk]))
    worker.run()
    [job] = worker.jobs(kind="mandate.collect")
    assert (job.state, job.result) == ("done", "no collection planned (the mandate was revoked)")
    assert _debits(mollie) == [] and _collection_attempts() == []


def test_a_crash_between_mollies_answer_and_recording_it_is_recovered_without_a_second_debit(
        setup, mollie, client, worker, monkeypatch):
    _sign_mandate(client, setup, mollie, worker)
    [invoice] = _opted_in(setup, "M-CRASH")
    with staff_scope():
        collections_run(today=invoice.due_date)
    record = mandates.checkout_apply

    def crash(**kwargs):
        raise RuntimeError("the worker crashed before it recorded Mollie's answer")

    monkeypatch.setattr(mandates, "checkout_apply", crash)
    worker.run()
    [job] = worker.jobs(kind="mandate.collect")
    assert job.state == "retrying" and "crashed" in job.last_error
    [debit] = _debits(mollie)
    [attempt] = _collection_attempts()
    assert (attempt.status, attempt.provider_payment_id) == ("created", "")  # committed before Mollie was called

    monkeypatch.setattr(mandates, "checkout_apply", record)
    mollie.forget_idempotency_keys()  # a day later: the key alone would no longer stop a second debit
    worker.make_due(pk=job.pk)
    worker.run()
    [job] = worker.jobs(kind="mandate.collect")
    assert (job.state, job.attempts) == ("done", 2)
    assert [d["id"] for d in _debits(mollie)] == [debit["id"]]
    [attempt] = _collection_attempts()
    assert (attempt.status, attempt.provider_payment_id) == ("pending", debit["id"])
    assert any(path.startswith(f"/v2/customers/{debit['customerId']}/payments") for method, path in mollie.requests
               if method == "GET")


@pytest.mark.parametrize("killed", ["after the attempt was committed", "after Mollie answered"])
def test_a_worker_killed_mid_collection_loses_nothing_and_debits_once(setup, mollie, client, worker, monkeypatch,
                                                                      killed):
    _sign_mandate(client, setup, mollie, worker)
    [invoice] = _opted_in(setup, "M-KILL", unit_price="40.00")
    with staff_scope():
        collections_run(today=invoice.due_date)
    [job] = worker.jobs(kind="mandate.collect")
    collect = MollieGateway.collect

    def dies(self, attempt, **kwargs):
        if killed == "after Mollie answered":
            collect(self, attempt, **kwargs)
        raise WorkerKilled()

    monkeypatch.setattr(MollieGateway, "collect", dies)
    with pytest.raises(WorkerKilled):
        jobs.job_run(job.pk)
    monkeypatch.setattr(MollieGateway, "collect", collect)
    [job] = worker.jobs(kind="mandate.collect")
    assert (job.state, job.attempts) == ("running", 1)
    assert jobs.job_run(job.pk) is None  # its lease still holds: nobody else takes it yet
    with staff_scope():  # the lease runs out: the sweep sees the job again
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
        assert (job.pk, "mandate.collect") in jobs.jobs_due()
    worker.run()
    [job] = worker.jobs(kind="mandate.collect")
    assert (job.state, job.attempts) == ("done", 2)
    [debit] = _debits(mollie)
    [attempt] = _collection_attempts()
    assert (attempt.provider_payment_id, debit["amount"]["value"]) == (debit["id"], "48.40")


def test_ten_concurrent_runs_debit_each_invoice_once(setup, mollie, client, worker):
    _sign_mandate(client, setup, mollie, worker)
    invoices = _opted_in(setup, "M-C1", "M-C2", "M-C3")
    due = invoices[0].due_date
    barrier, errors = threading.Barrier(10), []

    def daily_run_and_worker():
        try:
            barrier.wait()
            with staff_scope():
                collections_run(today=due)
            jobs.jobs_drain(kind="mandate.collect", seconds=20)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=daily_run_and_worker) for _ in range(10)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert errors == []
    debits = _debits(mollie)
    attempts = _collection_attempts()
    assert len(debits) == len(attempts) == 3
    assert sorted(d["metadata"]["checkout"] for d in debits) == sorted(str(a.idempotency_key) for a in attempts)
    assert {a.provider_payment_id for a in attempts} == {d["id"] for d in debits}
    with staff_scope():
        assert Notification.objects.filter(kind=NotificationKind.COLLECTION_UPCOMING).count() == 3  # told once each
        assert MandateCollection.objects.filter(attempt__isnull=False).count() == 3
    assert [job.state for job in worker.jobs(kind="mandate.collect")] == ["done"] * 3
