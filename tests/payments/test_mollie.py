"""Mollie through mollie-api-python against the local fake (tests/fakes/mollie.py)."""
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from mollie.api.error import UnauthorizedError

from invoices.models import Invoice, Payment
from payments import services
from payments.models import CheckoutAttempt, GatewayAccount, GatewayEvent
from portal.rls import staff_scope
from tests.fakes.mollie import FakeMollie
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal
API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"


@pytest.fixture
def mollie(settings):
    with FakeMollie(API_KEY) as fake:
        settings.MOLLIE_API_ENDPOINT = fake.url
        yield fake


@pytest.fixture
def setup(db, mollie):
    brand = BrandFactory(is_default=True)
    with staff_scope():
        GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=API_KEY, webhook_secret="",
                                      ideal=True, card=True, sepa_direct_debit=False)
    alpha = ClientFactory(brand=brand)
    owner = MembershipFactory(client=alpha).user
    invoice = make_invoice(alpha, number="M-1", lines=[line(unit_price="100.00")])
    return {"alpha": alpha, "owner": owner, "invoice": invoice}


def _pay(client, setup, method="ideal", key=None):
    invoice = setup["invoice"]
    return client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", {
        "idempotency_key": key or str(uuid.uuid4()), "method": method, "invoice": [invoice.pk],
        f"amount_{invoice.pk}": "121.00"})


def _webhook(client, payment_id):
    with staff_scope():
        gateway = GatewayAccount.objects.get(provider="mollie")
    response = client.post(reverse("payments:webhook", args=[gateway.pk]), data=f"id={payment_id}",
                           content_type="application/x-www-form-urlencoded")
    with staff_scope():
        for event in GatewayEvent.objects.filter(status=GatewayEvent.Status.PENDING):
            services.gateway_event_process(event_id=event.pk)
    return response


def test_checkout_creates_a_mollie_payment_and_redirects_to_its_checkout(setup, mollie, client):
    client.force_login(setup["owner"])
    response = _pay(client, setup)
    [payment] = mollie.payments.values()
    assert response.status_code == 302 and response.url == payment["_links"]["checkout"]["href"]
    assert payment["amount"] == {"currency": "EUR", "value": "121.00"} and payment["method"] == "ideal"
    with staff_scope():
        gateway = GatewayAccount.objects.get(provider="mollie")
    assert payment["webhookUrl"] == "http://localhost:8000" + reverse("payments:webhook", args=[gateway.pk])
    assert payment["redirectUrl"].startswith("http://localhost:8000/pay/")
    assert payment["metadata"]["client"] == setup["alpha"].pk


def test_the_webhook_fetches_the_payment_and_only_paid_is_money(setup, mollie, client):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    for status in ("pending", "authorized"):
        mollie.set_status(payment_id, status)
        assert _webhook(client, payment_id).status_code == 200
        with staff_scope():
            assert Invoice.objects.get().status == "open" and not Payment.objects.exists()
    mollie.set_status(payment_id, "paid")
    _webhook(client, payment_id)
    _webhook(client, payment_id)  # Mollie calls again: nothing changes
    with staff_scope():
        assert Invoice.objects.get().status == "paid"
        [recorded] = Payment.objects.all()
        assert recorded.gateway_payment_id.startswith("mollie:") and recorded.gateway_payment_id.endswith(payment_id)
    assert ("GET", f"/v2/payments/{payment_id}") in mollie.requests


@pytest.mark.parametrize("status, shown", [("failed", "failed"), ("canceled", "canceled"), ("expired", "expired")])
def test_failed_cancelled_and_expired_map_to_the_attempt(setup, mollie, client, status, shown):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, status)
    _webhook(client, payment_id)
    with staff_scope():
        assert CheckoutAttempt.objects.get().status == shown and Invoice.objects.get().status == "open"


def test_a_retried_create_is_the_same_mollie_payment(setup, mollie, client):
    client.force_login(setup["owner"])
    key = str(uuid.uuid4())
    _pay(client, setup, key=key)
    _pay(client, setup, key=key)
    assert len(mollie.payments) == 1


def test_a_wrong_api_key_is_a_clear_error(setup, mollie):
    with staff_scope():
        GatewayAccount.objects.update(api_key="test_wrongwrongwrongwrongwrongwrong")
        from payments.gateways.mollie import MollieGateway

        with pytest.raises(UnauthorizedError, match="failed to authenticate"):
            MollieGateway(GatewayAccount.objects.get()).fetch("tr_unknown")


def test_unknown_webhook_gateway_is_404(db, client):
    assert client.post(reverse("payments:webhook", args=[999]), data="id=tr_x",
                       content_type="application/x-www-form-urlencoded").status_code == 404


def test_refunds_and_chargebacks_on_the_mollie_payment_reopen_the_balance_once(setup, mollie, client):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    _webhook(client, payment_id)
    mollie.refund(payment_id, "21.00")
    _webhook(client, payment_id)
    _webhook(client, payment_id)  # the same news again: reversed once
    with staff_scope():
        invoice = Invoice.objects.get()
        assert (invoice.status, invoice.open_balance) == ("partially_paid", D("21.00"))
    mollie.chargeback(payment_id, "100.00")
    _webhook(client, payment_id)
    with staff_scope():
        invoice = Invoice.objects.get()
        assert (invoice.status, invoice.open_balance, invoice.amount_paid) == ("open", D("121.00"), D("0.00"))
        kinds = sorted(Payment.objects.get().allocations.values_list("kind", "amount"))
    assert kinds == [("allocation", D("121.00")), ("chargeback", D("-100.00")), ("refund", D("-21.00"))]
