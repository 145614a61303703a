"""Auto-pay by mandate with Mollie: a first payment signs a mandate; recurring and opted-in
invoices are announced a few days ahead and collected on their due date; revocable."""
import datetime
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices import services as ledger
from invoices.models import Invoice
from payments import services
from payments.mandates import collections_run
from payments.models import CheckoutAttempt, GatewayAccount, GatewayEvent, Mandate
from portal.models import Notification, NotificationKind
from portal.rls import staff_scope
from tests.fakes.mollie import FakeMollie
from tests.invoices.factories import TODAY, line, make_invoice
from tests.payments.test_mollie import API_KEY
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def mollie(settings):
    with FakeMollie(API_KEY) as fake:
        settings.MOLLIE_API_ENDPOINT = fake.url
        yield fake


@pytest.fixture
def setup(db, mollie, client):
    brand = BrandFactory(is_default=True)
    with staff_scope():
        gateway = GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=API_KEY,
                                                ideal=True, card=False, sepa_direct_debit=True)
    alpha = ClientFactory(brand=brand, billing_email="ap@alpha.test")
    owner = MembershipFactory(client=alpha, user__language="en").user
    first = make_invoice(alpha, number="M-FIRST", lines=[line(unit_price="100.00")])
    client.force_login(owner)
    return {"gateway": gateway, "alpha": alpha, "owner": owner, "first": first}


def _process(client, gateway, payment_id):
    client.post(reverse("payments:webhook", args=[gateway.pk]), data=f"id={payment_id}",
                content_type="application/x-www-form-urlencoded")
    with staff_scope():
        for event in GatewayEvent.objects.filter(status=GatewayEvent.Status.PENDING):
            services.gateway_event_process(event_id=event.pk)


def _sign_mandate(client, setup, mollie):
    invoice = setup["first"]
    response = client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", {
        "idempotency_key": str(uuid.uuid4()), "method": "ideal", "invoice": [invoice.pk],
        f"amount_{invoice.pk}": "121.00", "wants_mandate": "on"})
    assert response.status_code == 302
    [payment_id] = mollie.payments
    assert mollie.payments[payment_id]["sequenceType"] == "first" and mollie.payments[payment_id]["customerId"]
    mollie.set_status(payment_id, "paid")
    _process(client, setup["gateway"], payment_id)


def test_a_first_payment_by_ideal_signs_a_mandate_visible_in_the_portal(setup, mollie, client):
    _sign_mandate(client, setup, mollie)
    with staff_scope():
        [mandate] = Mandate.objects.all()
        assert (mandate.status, mandate.masked_account) == ("valid", "NL55 •••• 0000")
        assert Invoice.objects.get(pk=setup["first"].pk).status == "paid"
    page = client.get(reverse("payments:mandates"))
    assert "NL55 •••• 0000" in page.text and "Revoke" in page.text


def test_recurring_invoices_are_announced_then_collected_once_on_the_due_date(setup, mollie, client):
    _sign_mandate(client, setup, mollie)
    with staff_scope():
        schedule = ledger.recurring_create(client=setup["alpha"], brand=setup["alpha"].brand, name="Hosting",
                                           lines=[line(unit_price="50.00")], next_date=TODAY, payment_terms_days=14)
        ledger.recurring_generate_due(today=TODAY)
        invoice = Invoice.objects.get(recurring_schedule=schedule)
        due = invoice.due_date
        assert collections_run(today=due - datetime.timedelta(days=5)) == {"prenotified": 0, "collected": 0}
        assert collections_run(today=due - datetime.timedelta(days=3)) == {"prenotified": 1, "collected": 0}
        assert collections_run(today=due - datetime.timedelta(days=2)) == {"prenotified": 0, "collected": 0}
        told = Notification.objects.get(kind=NotificationKind.COLLECTION_UPCOMING)
        assert "NL55 •••• 0000" in told.title and due.isoformat() in told.title
        assert collections_run(today=due) == {"prenotified": 0, "collected": 1}
        assert collections_run(today=due) == {"prenotified": 0, "collected": 0}  # never twice
        attempt = CheckoutAttempt.objects.get(method="sepa_direct_debit")
    recurring = mollie.payments[attempt.provider_payment_id]
    assert (recurring["sequenceType"], recurring["status"], recurring["amount"]["value"]) == (
        "recurring", "pending", "60.50")
    _process(client, setup["gateway"], attempt.provider_payment_id)
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).status == "open"  # a pending debit is not money
    mollie.set_status(attempt.provider_payment_id, "paid")
    _process(client, setup["gateway"], attempt.provider_payment_id)
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).status == "paid"


def test_an_invoice_the_client_opts_in_is_collected_and_revoking_stops_it(setup, mollie, client):
    _sign_mandate(client, setup, mollie)
    other = make_invoice(setup["alpha"], number="M-OPT", lines=[line(unit_price="10.00")])
    detail = client.get(reverse("invoices:detail", args=[other.pk]))
    assert "Collect by direct debit on the due date" in detail.text
    client.post(reverse("payments:collect_on_due_date", args=[other.pk]))
    assert "Collected by direct debit from NL55 •••• 0000" in client.get(
        reverse("invoices:detail", args=[other.pk])).text
    with staff_scope():
        [mandate] = Mandate.objects.all()
    client.post(reverse("payments:mandate_revoke", args=[mandate.pk]))
    with staff_scope():
        assert Mandate.objects.get().status == "revoked"
        assert collections_run(today=other.due_date) == {"prenotified": 0, "collected": 0}
    assert any(method == "DELETE" for method, _ in mollie.requests)
