"""Exact Online out: a payment (refund, chargeback) recorded in the portal is booked once in the local
Exact (tests/fakes/exact.py) as a bank entry on the connection's journal, against the customer and
naming the invoice, also when Exact booked it but its answer never came; and the entry, coming back
through the sync, is not recorded in the portal a second time."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from integrations.exact import client as exact_client
from integrations.exact.models import ExactCursor
from integrations.models import OutboxMessage
from invoices import services
from invoices.models import Invoice, Payment
from portal.models import Job
from portal.rls import staff_scope
from tests.integrations.exact.world import (  # noqa: F401 - fixtures
    BANK_JOURNAL, exact, fake_exact, invoice, run, sync)
from tests.invoices.factories import pay

D = Decimal
E = ExactCursor.Entity


@pytest.fixture
def synced(fake_exact, exact, run):
    """A customer with an invoice of 1,210.00 in Exact, synced into the portal."""
    customer = fake_exact.add_account("Northwind Traders B.V.", email="finance@northwind.test")
    made = fake_exact.add_invoice(customer, [("Advies", 10, "100.00", "2")])
    sync(exact, E.ACCOUNTS, E.SALES_INVOICES, E.TRANSACTION_LINES, E.DELETED)
    run()
    return {"customer": customer, "exact_invoice": made, "invoice": invoice(made["InvoiceNumber"])}


def _posts(fake) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "POST" and r["endpoint"] == "financialtransaction/BankEntries"]


def _delivery_jobs() -> list[Job]:
    with staff_scope():
        return list(Job.objects.filter(kind="outbox.deliver").order_by("pk"))


def test_a_portal_payment_is_booked_once_in_exact_against_the_customer_and_its_invoice(fake_exact, synced, run):
    paid = synced["invoice"]
    pay(paid.client, [(paid, "500.00")])
    run()

    [entry] = fake_exact.bank_entries
    assert entry["JournalCode"] == BANK_JOURNAL
    [line] = entry["BankEntryLines"]
    assert line["Account"] == synced["customer"]["ID"]
    assert line["AmountFC"] == D("-500.00")  # money received: a credit on the customer
    assert line["OurRef"] == synced["exact_invoice"]["InvoiceNumber"]  # so Exact matches it
    receivable = fake_exact.receivable(synced["exact_invoice"])
    assert receivable["_settled"] == D("500.00") and not receivable["IsFullyPaid"]
    [job] = _delivery_jobs()
    assert job.state == Job.State.DONE and len(_posts(fake_exact)) == 1
    with staff_scope():
        assert OutboxMessage.objects.get().delivered_at is not None


def test_a_booking_whose_answer_timed_out_is_found_by_its_reference_and_not_booked_again(
        fake_exact, synced, run, monkeypatch):
    monkeypatch.setattr(exact_client, "TIMEOUT", (2, 0.5))
    fake_exact.delay_next(1, 1.5)  # Exact books the entry, its answer comes after the client gave up
    paid = synced["invoice"]
    pay(paid.client, [(paid, "1210.00")])
    run()
    [job] = _delivery_jobs()
    assert job.state == Job.State.RETRYING and "did not answer" in job.last_error
    assert len(fake_exact.bank_entries) == 1  # booked all the same

    with staff_scope():
        Job.objects.filter(pk=job.pk).update(run_after=job.created_at)  # the backoff is over
    run()

    [job] = _delivery_jobs()
    assert job.state == Job.State.DONE and job.result.startswith("booked before")
    assert len(fake_exact.bank_entries) == 1 and len(_posts(fake_exact)) == 1
    assert fake_exact.receivable(synced["exact_invoice"])["IsFullyPaid"]


def test_the_sync_recognises_the_portals_own_entry_and_records_the_payment_once(fake_exact, exact, synced, run):
    paid = synced["invoice"]
    pay(paid.client, [(paid, "1210.00")])
    run()
    counts = sync(exact, E.TRANSACTION_LINES)[0]
    run()
    assert counts["own"] == 1 and counts["stored"] == 0
    with staff_scope():
        assert Payment.objects.filter(client=paid.client).count() == 1
        assert Invoice.objects.get(pk=paid.pk).status == Invoice.Status.PAID


def test_a_refund_follows_its_payment_into_exact_in_order(fake_exact, synced, run):
    paid = synced["invoice"]
    payment = pay(paid.client, [(paid, "1210.00")])
    with staff_scope(), transaction.atomic():
        services.payment_reverse(payment=payment, invoice=Invoice.objects.get(pk=paid.pk), amount=D("210.00"))
    run()
    received, refunded = fake_exact.bank_entries
    assert received["BankEntryLines"][0]["AmountFC"] == D("-1210.00")
    assert refunded["BankEntryLines"][0]["AmountFC"] == D("210.00")
    assert refunded["BankEntryLines"][0]["OurRef"] == synced["exact_invoice"]["InvoiceNumber"]
    assert fake_exact.receivable(synced["exact_invoice"])["_settled"] == D("1000.00")


def test_a_payment_waits_while_exact_needs_a_new_consent_and_is_booked_after_reconnecting(
        fake_exact, exact, synced, run):
    from integrations.exact.tasks import exact_resume
    from integrations.exact.models import ExactConnection

    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(state=ExactConnection.State.REAUTHORISE,
                                                           state_reason="Old refresh token used.")
    paid = synced["invoice"]
    pay(paid.client, [(paid, "100.00")])
    run()
    [job] = _delivery_jobs()
    assert job.state == Job.State.DEAD and "re-authorisation" in job.last_error
    assert fake_exact.bank_entries == []

    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(state=ExactConnection.State.CONNECTED, state_reason="")
        exact.refresh_from_db()
        with transaction.atomic():
            exact_resume(exact=exact)
    run()
    assert len(fake_exact.bank_entries) == 1
