"""What the ledger tells the client is true: a credit note alone is "Partly credited", a void
invoice says when and why, each payment has its own reference (PAY-<year>-<number>, per brand,
without gaps however many are recorded at once), and the payment notification leads to its receipt."""
import datetime
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import translation

from invoices import services
from invoices.models import Invoice, NumberSequence, Payment
from portal.models import Notification
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def alpha(db):
    client = ClientFactory(brand=BrandFactory(is_default=True), name="Alpha B.V.", locale="en")
    owner = MembershipFactory(client=client, user__email="owner@alpha.test", user__language="en").user
    return client, owner


def test_an_invoice_lowered_only_by_a_credit_note_is_partly_credited_not_partially_paid(alpha, client):
    alpha, owner = alpha
    invoice = make_invoice(alpha, number="A-CRED", lines=[line(unit_price="100.00")])
    with staff_scope():
        services.credit_note_create(invoice=invoice, number="A-CN", issue_date=TODAY, lines=[line(unit_price="10.00")])
        invoice = Invoice.objects.get(pk=invoice.pk)
    assert (invoice.status, invoice.display_status) == ("partially_paid", "partly_credited")
    with translation.override("nl"):
        assert str(invoice.display_status.label) == "Gedeeltelijk gecrediteerd"
    client.force_login(owner)
    page = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert "Partly credited" in page.text and "Partially paid" not in page.text
    pay(alpha, [(invoice, "10.00")])
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).display_status == "partially_paid"


def test_the_status_filter_names_them_as_the_list_does(alpha, client):
    alpha, owner = alpha
    credited = make_invoice(alpha, number="A-CRED", lines=[line(unit_price="100.00")])
    paid_part = make_invoice(alpha, number="A-PART", lines=[line(unit_price="100.00")])
    with staff_scope():
        services.credit_note_create(invoice=credited, number="A-CN", issue_date=TODAY, lines=[line(unit_price="10.00")])
    pay(alpha, [(paid_part, "20.00")])
    client.force_login(owner)

    def listed(status):
        page = client.get(reverse("invoices:list"), {"status": status}).content.decode()
        return [number for number in ("A-CRED", "A-PART") if number in page]

    assert listed("partially_paid") == ["A-PART"]
    assert listed("partly_credited") == ["A-CRED"]


def test_a_void_invoice_says_when_and_why(alpha, client):
    alpha, owner = alpha
    invoice = make_invoice(alpha, number="A-VOID")
    with staff_scope():
        services.invoice_void(invoice=invoice, reason="voided in accounting")
        invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.voided_at is not None and invoice.void_reason == "voided in accounting"
    client.force_login(owner)
    page = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert "Voided on " in page.text and "Voided in our accounting system." in page.text


def test_the_payments_list_on_an_invoice_shows_the_date_paid_and_the_reference(alpha, client):
    alpha, owner = alpha
    invoice = make_invoice(alpha, number="A-PAID")
    payment = pay(alpha, [(invoice, "50.00")])  # received 25 Nov 2026, recorded today
    assert payment.number == "PAY-2026-000001"
    client.force_login(owner)
    page = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert "25 Nov 2026" in page.text and "PAY-2026-000001" in page.text
    assert reverse("payments:receipt", args=[payment.pk]) in page.text


def test_payment_numbers_run_per_brand_and_year_and_a_duplicate_takes_none(alpha):
    alpha, _owner = alpha
    other = ClientFactory(brand=BrandFactory())
    invoice = make_invoice(alpha)
    first = pay(alpha, [(invoice, "1.00")], external_id="", gateway_payment_id="sandbox:1:sb_1")
    again = pay(alpha, [(invoice, "1.00")], gateway_payment_id="sandbox:1:sb_1")  # the same payment again
    second = pay(alpha, [(invoice, "1.00")])
    elsewhere = pay(other, [(make_invoice(other), "1.00")])
    with staff_scope():
        next_year = services.payment_record(
            client=alpha, amount=D("1.00"), currency="EUR", source=Payment.Source.MANUAL, method="bank_transfer",
            received_at=datetime.datetime(2027, 1, 2, 12, tzinfo=datetime.timezone.utc), allocations=[])[0]
    assert (first.number, again.pk, second.number) == ("PAY-2026-000001", first.pk, "PAY-2026-000002")
    assert (elsewhere.number, next_year.number) == ("PAY-2026-000001", "PAY-2027-000001")


def test_the_payment_notification_leads_to_the_receipt(alpha):
    alpha, owner = alpha
    invoice = make_invoice(alpha)
    payment = pay(alpha, [(invoice, "10.00")])
    with staff_scope():
        [notification] = Notification.objects.filter(user=owner, kind="payment_received")
    assert notification.url == reverse("payments:receipt", args=[payment.pk])


def test_payments_recorded_at_once_get_consecutive_numbers(committed):
    def build():
        client = ClientFactory(brand=BrandFactory())
        return client, [make_invoice(client, lines=[line(unit_price="10.00")]) for _ in range(6)]

    client, invoices = committed.create(build)
    barrier, errors = threading.Barrier(len(invoices)), []

    def record(invoice):
        barrier.wait()
        try:
            pay(client, [(invoice, "12.10")])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=record, args=(invoice,)) for invoice in invoices]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    with staff_scope():
        numbers = sorted(Payment.objects.filter(client=client).values_list("number", flat=True))
        assert numbers == [f"PAY-2026-{n:06d}" for n in range(1, 7)]
        assert NumberSequence.objects.get(brand=client.brand, prefix="PAY", year=2026).last == 6
