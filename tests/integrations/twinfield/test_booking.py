"""Twinfield out: a payment recorded in the portal is booked once in the local Twinfield as a bank
transaction on the connection's daybook, against the customer, and matched with the invoice it
pays (in part: matchvalue), also when Twinfield booked it but its answer never came; and the
next poll does not record it in the portal a second time."""
from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.models import OutboxMessage
from integrations.twinfield import client as twinfield_client
from integrations.twinfield.models import TwinfieldConnection
from invoices.models import Invoice, Payment
from portal.models import Job
from portal.rls import staff_scope
from tests.integrations.twinfield.test_client import OFFICE, fake, twinfield  # noqa: F401 - fixtures
from tests.integrations.twinfield.test_sync import poll, run  # noqa: F401 - fixtures
from tests.invoices.factories import pay

D = Decimal


@pytest.fixture
def polled(fake, twinfield, run):
    """A customer with an invoice of 121.00 in Twinfield, polled into the portal; the daybook chosen."""
    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(daybook="BNK")
    twinfield.daybook = "BNK"
    customer = fake.add_customer(OFFICE, "Northwind Traders B.V.", email="finance@northwind.test")
    made = fake.add_sales_invoice(OFFICE, customer["code"], [("Advies", "100.00", "VH")])
    poll(twinfield)
    run()
    with staff_scope():
        invoice = Invoice.objects.select_related("client").get(number=made["invoicenumber"])
    return {"customer": customer, "made": made, "invoice": invoice}


def _bank(fake) -> list[dict]:
    return fake.transactions(OFFICE, "BNK")


def _deliveries() -> list[Job]:
    with staff_scope():
        return list(Job.objects.filter(kind="outbox.deliver").order_by("pk"))


def test_a_portal_payment_is_booked_once_and_matched_with_its_invoice(fake, twinfield, polled, run):
    paid = polled["invoice"]
    pay(paid.client, [(paid, "21.00")])
    run()

    [booked] = _bank(fake)
    [job] = _deliveries()
    assert job.state == Job.State.DONE and "1 invoice(s) matched" in job.result
    detail = next(line for line in booked["lines"] if line["type"] == "detail")
    assert detail["dim2"] == polled["customer"]["code"] and detail["invoicenumber"] == polled["made"]["invoicenumber"]
    with staff_scope():
        message = OutboxMessage.objects.get()
    assert message.message_id in detail["description"] and message.delivered_at is not None
    invoice_line = fake.transaction(OFFICE, polled["made"]["code"], polled["made"]["number"])["lines"][0]
    assert invoice_line["open"] == D("100.00")  # matched for 21.00 of 121.00

    fake.advance(60)
    poll(twinfield)  # Twinfield shows 21.00 paid: the portal has it already
    run()
    with staff_scope():
        assert [p.amount for p in Payment.objects.filter(client=paid.client)] == [D("21.00")]
        assert Invoice.objects.get(pk=paid.pk).open_balance == D("100.00")


def test_a_booking_whose_answer_timed_out_is_found_by_its_message_id_and_not_booked_again(
        fake, twinfield, polled, run, monkeypatch):
    monkeypatch.setattr(twinfield_client, "TIMEOUT", (2, 0.5))
    paid = polled["invoice"]
    credits = fake.credits_used
    fake.delay_next(1, 1.0)  # Twinfield books the transaction; its answer comes after the client gave up
    pay(paid.client, [(paid, "121.00")])
    run()
    [job] = _deliveries()
    assert job.state == Job.State.RETRYING and "did not answer" in job.last_error
    assert len(_bank(fake)) == 1 and fake.credits_used > credits  # booked all the same

    import time

    time.sleep(1.0)  # the answer Twinfield was still giving ends (one request of an organisation at a time)
    with staff_scope():
        Job.objects.filter(pk=job.pk).update(run_after=job.created_at)  # the backoff is over
    run()

    [job] = _deliveries()
    assert job.state == Job.State.DONE and job.result.startswith("booked before"), job.result
    assert len(_bank(fake)) == 1  # once
    invoice_line = fake.transaction(OFFICE, polled["made"]["code"], polled["made"]["number"])["lines"][0]
    assert invoice_line["open"] == D("0.00") and invoice_line["matchstatus"] == "matched"
    assert len(fake.match_sets(OFFICE)) == 1
