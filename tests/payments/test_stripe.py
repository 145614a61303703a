"""Stripe through the `stripe` SDK against the local fake: Checkout Sessions, signed webhooks,
async SEPA results, refunds and disputes."""
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices.models import Invoice, Payment
from payments import services
from payments.models import CheckoutAttempt, GatewayAccount, GatewayEvent
from portal.rls import staff_scope
from tests.fakes.stripe import FakeStripe, sign
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal
API_KEY, SECRET = "sk_test_51Hfake0000000000000000", "whsec_test_fake_secret_0000"


@pytest.fixture
def stripe_fake(settings):
    with FakeStripe(API_KEY, SECRET) as fake:
        settings.STRIPE_API_BASE = fake.url
        yield fake


@pytest.fixture
def setup(db, stripe_fake):
    brand = BrandFactory(is_default=True)
    with staff_scope():
        gateway = GatewayAccount.objects.create(brand=brand, provider="stripe", api_key=API_KEY,
                                                webhook_secret=SECRET, ideal=True, card=True, sepa_direct_debit=True)
    alpha = ClientFactory(brand=brand)
    owner = MembershipFactory(client=alpha).user
    invoice = make_invoice(alpha, number="S-1", lines=[line(unit_price="100.00")])
    return {"gateway": gateway, "owner": owner, "invoice": invoice}


def _pay(client, setup, method="card", key=None):
    invoice = setup["invoice"]
    return client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", {
        "idempotency_key": key or str(uuid.uuid4()), "method": method, "invoice": [invoice.pk],
        f"amount_{invoice.pk}": "121.00"})


def _deliver(client, setup, signed):
    payload, signature = signed
    response = client.post(reverse("payments:webhook", args=[setup["gateway"].pk]), data=payload,
                           content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    with staff_scope():
        for event in GatewayEvent.objects.filter(status=GatewayEvent.Status.PENDING).order_by("id"):
            services.gateway_event_process(event_id=event.pk)
    return response


def _invoice():
    with staff_scope():
        return Invoice.objects.get()


def test_checkout_session_then_completed_event_pays(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    response = _pay(client, setup)
    [session] = stripe_fake.sessions.values()
    assert response.status_code == 302 and response.url == session["url"]
    assert session["amount_total"] == 12100 and session["currency"] == "eur"
    assert session["payment_method_types"] == ["card"] and session["metadata"]["client"]
    completed = stripe_fake.complete(session["id"])
    assert _deliver(client, setup, completed).status_code == 200
    assert _invoice().status == "paid"
    assert _deliver(client, setup, completed).json() == {"status": "duplicate"}  # the same event again
    with staff_scope():
        assert Payment.objects.count() == 1


def test_sepa_stays_pending_until_the_async_result(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    _pay(client, setup, method="sepa_direct_debit")
    [session] = stripe_fake.sessions.values()
    _deliver(client, setup, stripe_fake.complete(session["id"], paid=False))
    with staff_scope():
        assert CheckoutAttempt.objects.get().status == "pending"
    assert _invoice().status == "open"  # pending is never paid
    _deliver(client, setup, stripe_fake.async_result(session["id"], succeeded=True))
    assert _invoice().status == "paid"


def test_an_async_failure_fails_the_attempt(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    _pay(client, setup, method="sepa_direct_debit")
    [session] = stripe_fake.sessions.values()
    _deliver(client, setup, stripe_fake.complete(session["id"], paid=False))
    _deliver(client, setup, stripe_fake.async_result(session["id"], succeeded=False))
    with staff_scope():
        assert CheckoutAttempt.objects.get().status == "failed" and not Payment.objects.exists()


def test_refund_and_dispute_reopen_the_balance(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [session] = stripe_fake.sessions.values()
    _deliver(client, setup, stripe_fake.complete(session["id"]))
    _deliver(client, setup, stripe_fake.refund(session["id"], 2100))
    assert (_invoice().status, _invoice().open_balance) == ("partially_paid", D("21.00"))
    _deliver(client, setup, stripe_fake.dispute(session["id"], 10000))
    assert (_invoice().status, _invoice().open_balance) == ("open", D("121.00"))


def test_a_bad_or_old_signature_is_refused_and_kept(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [session] = stripe_fake.sessions.values()
    payload, _ = stripe_fake.complete(session["id"])
    forged = _deliver(client, setup, (payload, sign(payload, "whsec_wrong")))
    old = _deliver(client, setup, (payload, sign(payload, SECRET, timestamp=1_000_000_000)))
    assert forged.status_code == 400 and "signature" in forged.json()["error"]
    assert old.status_code == 400 and "tolerance" in old.json()["error"].lower()
    with staff_scope():
        assert GatewayEvent.objects.filter(status="rejected").count() == 2
    assert _invoice().status == "open"


def test_the_same_click_twice_is_one_checkout_session(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    key = str(uuid.uuid4())
    _pay(client, setup, key=key)
    _pay(client, setup, key=key)
    assert len(stripe_fake.sessions) == 1
