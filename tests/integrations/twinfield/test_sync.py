"""Twinfield in, by polling, against the local Twinfield: the first load of customers and sales
invoices (period by period), an incremental poll that reads only what changed, an invoice matched
in Twinfield becoming paid in the portal (in part, then in full), once, and a repeat poll that
changes nothing. The events go through the one accounting.event path (run by the worker here)."""
from decimal import Decimal

import pytest

from integrations.models import ClientLink
from integrations.twinfield.models import TwinfieldCursor
from integrations.twinfield import sync
from invoices.models import Invoice, Payment
from portal.models import WebhookRequest
from portal.rls import staff_scope
from tests.integrations.twinfield.test_client import OFFICE, fake, twinfield  # noqa: F401 - fixtures

D = Decimal


@pytest.fixture
def run(worker):
    def run_all() -> int:
        total = 0
        while True:
            ran = worker.run()
            total += ran
            if not ran:
                return total

    return run_all


def poll(twinfield) -> dict:
    """One poll now, in this process, as the twinfield.poll job does (in the back office's scope)."""
    with staff_scope():
        return sync.poll(twinfield)


def _customer(fake, name="Bakkerij De Vries B.V."):
    return fake.add_customer(OFFICE, name, email=f"administratie@{name.split()[1].lower()}.test",
                             street="Keizersgracht 1", postcode="1015 CJ", city="Amsterdam")


def _invoice(number) -> Invoice:
    with staff_scope():
        return Invoice.objects.select_related("client").prefetch_related("lines").get(number=str(number))


def test_the_first_load_brings_every_customer_and_sales_invoice_with_lines_and_vat(fake, twinfield, run):
    customers = [_customer(fake, f"Klant {name} B.V.") for name in ("Alfa", "Bravo", "Charlie")]
    made = [fake.add_sales_invoice(OFFICE, customers[n % 3]["code"], [("Advies", "100.00", "VH"),
                                                                       ("Boeken", "10.00", "VL")])
            for n in range(4)]

    counts = poll(twinfield)
    run()

    assert counts["customers"] == 3 and counts["invoices"] == 4 and counts["refused"] == 0
    with staff_scope():
        assert ClientLink.objects.filter(connection=twinfield.connection_id).count() == 3
    invoice = _invoice(made[0]["invoicenumber"])
    assert invoice.client.name == "Klant Alfa B.V." and invoice.client.billing_email == "administratie@alfa.test"
    assert invoice.subtotal == D("110.00") and invoice.tax_total == D("21.90") and invoice.total == D("131.90")
    assert sorted(line.description for line in invoice.lines.all()) == ["Advies", "Boeken"]
    assert invoice.open_balance == D("131.90") and invoice.due_date > invoice.issue_date
    with staff_scope():
        cursor = TwinfieldCursor.objects.get(twinfield=twinfield, entity=TwinfieldCursor.Entity.TRANSACTIONS)
    assert len(cursor.position) == 14 and cursor.polled_at  # Twinfield's moment, YYYYMMDDHHMMSS


def test_a_later_poll_reads_only_what_changed_and_a_repeat_changes_nothing(fake, twinfield, run):
    customer = _customer(fake)
    fake.add_sales_invoice(OFFICE, customer["code"], [("Brood", "50.00", "VL")])
    poll(twinfield)
    run()
    credits = fake.credits_used

    fake.advance(60)
    newer = fake.add_sales_invoice(OFFICE, customer["code"], [("Taart", "30.00", "VL")])
    counts = poll(twinfield)
    run()

    # Only the new invoice is stored (the last one read before, at the cursor's second, again is a
    # duplicate); the customer is known already.
    assert counts["stored"] == 1 and counts["customers"] == 0
    assert _invoice(newer["invoicenumber"]).total == D("32.70")
    assert fake.credits_used - credits <= 4  # a browse, the transaction, its VAT code: not the history again
    with staff_scope():
        stored = WebhookRequest.objects.filter(source="twinfield-poll").count()
    fake.advance(60)
    again = poll(twinfield)
    with staff_scope():
        assert WebhookRequest.objects.filter(source="twinfield-poll").count() == stored
    assert again["stored"] == 0


def test_an_invoice_matched_in_twinfield_is_paid_in_the_portal_in_part_then_in_full_once(fake, twinfield, run):
    customer = _customer(fake)
    made = fake.add_sales_invoice(OFFICE, customer["code"], [("Advies", "100.00", "VH")])  # 121.00
    poll(twinfield)
    run()

    fake.advance(60)
    fake.pay(OFFICE, made["invoicenumber"], "21.00")
    poll(twinfield)
    run()
    invoice = _invoice(made["invoicenumber"])
    assert invoice.open_balance == D("100.00") and invoice.status == Invoice.Status.PARTIALLY_PAID

    fake.advance(60)
    poll(twinfield)  # nothing new: no second payment of the same 21.00
    run()
    with staff_scope():
        assert [p.amount for p in Payment.objects.filter(client=invoice.client)] == [D("21.00")]

    fake.advance(60)
    fake.pay(OFFICE, made["invoicenumber"], "100.00")
    poll(twinfield)
    run()
    invoice = _invoice(made["invoicenumber"])
    assert invoice.open_balance == D("0.00") and invoice.status == Invoice.Status.PAID
    with staff_scope():
        assert sorted(p.amount for p in Payment.objects.filter(client=invoice.client)) == [D("21.00"), D("100.00")]


def test_a_poll_before_the_last_ones_payment_is_applied_does_not_count_it_twice(fake, twinfield, run):
    customer = _customer(fake)
    made = fake.add_sales_invoice(OFFICE, customer["code"], [("Advies", "100.00", "VH")])  # 121.00
    poll(twinfield)
    run()

    fake.advance(60)
    fake.pay(OFFICE, made["invoicenumber"], "21.00")
    poll(twinfield)  # stores a payment of 21.00; its job has not run yet
    fake.advance(60)
    fake.pay(OFFICE, made["invoicenumber"], "100.00")
    poll(twinfield)  # Twinfield now says 121.00 paid: 100.00 more, not 121.00
    run()

    invoice = _invoice(made["invoicenumber"])
    assert invoice.status == Invoice.Status.PAID and invoice.open_balance == D("0.00")
    with staff_scope():
        assert sorted(p.amount for p in Payment.objects.filter(client=invoice.client)) == [D("21.00"), D("100.00")]


def test_an_invoice_reversed_in_twinfield_is_voided_not_paid(fake, twinfield, run):
    customer = _customer(fake)
    made = fake.add_sales_invoice(OFFICE, customer["code"], [("Vergissing", "80.00", "VH")])
    poll(twinfield)
    run()

    fake.advance(60)
    fake.reverse(OFFICE, made["code"], made["number"])  # a mirrored transaction, matched with it
    counts = poll(twinfield)
    run()

    invoice = _invoice(made["invoicenumber"])
    assert invoice.status == Invoice.Status.VOID and counts["payments"] == 0
    with staff_scope():
        assert not Payment.objects.filter(client=invoice.client).exists()


def test_a_first_load_cut_off_goes_on_where_it_stopped(fake, twinfield, run, monkeypatch):
    import datetime

    from django.utils import timezone

    from integrations.twinfield import client as twinfield_client
    from integrations.twinfield.client import Throttled
    from integrations.twinfield.models import TwinfieldConnection

    monkeypatch.setattr(twinfield_client, "WAIT_IN_CALL", 0)  # give Twinfield's "wait" back at once
    customer = _customer(fake)
    made = fake.add_sales_invoice(OFFICE, customer["code"], [("Jaarwerk", "900.00", "VH")],
                                  date=timezone.localdate() - datetime.timedelta(days=300))
    fake.credit_limit_per_minute = 15  # the customers (2), then 13 of the 25 periods
    with pytest.raises(Throttled):
        poll(twinfield)
    with staff_scope():
        cursor = TwinfieldCursor.objects.get(twinfield=twinfield, entity=TwinfieldCursor.Entity.TRANSACTIONS)
    assert cursor.position.startswith("first:")  # the periods done so far are kept

    fake.credit_limit_per_minute = 1000
    fake.advance(60)
    with staff_scope():  # Twinfield's minute is over
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(throttled_until=None)
    poll(twinfield)
    run()

    browses = [r for r in fake.requests if r["action"] == "columns" and r["status"] == 200]
    assert len(browses) == 25  # every period once: 13, then the other 12
    assert _invoice(made["invoicenumber"]).total == D("1089.00")
    with staff_scope():
        cursor.refresh_from_db()
    assert len(cursor.position) == 14  # the first load is over: the moment it began


def test_a_provisional_invoice_comes_in_only_once_it_is_final(fake, twinfield, run):
    customer = _customer(fake)
    draft = fake.add_sales_invoice(OFFICE, customer["code"], [("Concept", "10.00", "VH")], destiny="temporary")
    final = fake.add_sales_invoice(OFFICE, customer["code"], [("Advies", "100.00", "VH")])

    poll(twinfield)
    run()

    with staff_scope():
        assert list(Invoice.objects.values_list("number", flat=True)) == [final["invoicenumber"]]
    fake.delete_provisional(OFFICE, draft["code"], draft["number"])  # gone in Twinfield: nothing to void here
