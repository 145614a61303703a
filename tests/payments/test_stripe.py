"""Stripe through the `stripe` SDK against the local fake: Checkout Sessions, signed webhooks
through the one intake (verified on the raw bytes, once per event id, one payment's events in
order), async SEPA results, refunds and disputes."""
import json
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices.models import Invoice, Payment
from payments.models import CheckoutAttempt, GatewayAccount
from portal.models import WebhookRequest
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
def setup(committed, worker, stripe_fake):
    def build():
        brand = BrandFactory(is_default=True)
        gateway = GatewayAccount.objects.create(brand=brand, provider="stripe", api_key=API_KEY,
                                                webhook_secret=SECRET, ideal=True, card=True, sepa_direct_debit=True)
        alpha = ClientFactory(brand=brand)
        owner = MembershipFactory(client=alpha).user
        invoice = make_invoice(alpha, number="S-1", lines=[line(unit_price="100.00")])
        return {"gateway": gateway, "owner": owner, "invoice": invoice, "worker": worker}

    return committed.create(build)


def _pay(client, setup, method="card", key=None):
    invoice = setup["invoice"]
    return client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", {
        "idempotency_key": key or str(uuid.uuid4()), "method": method, "invoice": [invoice.pk],
        f"amount_{invoice.pk}": "121.00"})


def _deliver(client, setup, signed):
    payload, signature = signed
    response = client.post(reverse("payments:webhook", args=["stripe", setup["gateway"].pk]), data=payload,
                           content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    setup["worker"].run()
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
        [stored] = WebhookRequest.objects.filter(source="stripe")
        assert stored.natural_key == json.loads(completed[0])["id"]


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
    assert forged.status_code == 401 and "signature" in forged.json()["error"]
    assert old.status_code == 401 and "tolerance" in old.json()["error"].lower()
    with staff_scope():
        kept = WebhookRequest.objects.filter(source="stripe", status="rejected")
        assert kept.count() == 2 and all(r.headers.get("stripe-signature") for r in kept)
    assert _invoice().status == "open"


def test_the_same_click_twice_is_one_checkout_session(setup, stripe_fake, client):
    client.force_login(setup["owner"])
    key = str(uuid.uuid4())
    _pay(client, setup, key=key)
    _pay(client, setup, key=key)
    assert len(stripe_fake.sessions) == 1


def test_one_payments_events_are_applied_in_the_order_stripe_sent_them(setup, stripe_fake, client):
    """A refund that arrives while the payment's completion still waits for its turn is applied
    after it, not lost: both events have the PaymentIntent as their subject."""
    client.force_login(setup["owner"])
    _pay(client, setup)
    [session] = stripe_fake.sessions.values()
    completed, refunded = stripe_fake.complete(session["id"]), stripe_fake.refund(session["id"], 2100)
    url = reverse("payments:webhook", args=["stripe", setup["gateway"].pk])
    for payload, signature in (completed, refunded):  # both arrive before the worker gets to them
        assert client.post(url, data=payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=signature).json()["status"] == "accepted"
    first, second = setup["worker"].jobs(kind="gateway.event")
    assert first.subject == second.subject == f"stripe:{json.loads(refunded[0])['data']['object']['payment_intent']}"
    from portal import jobs

    assert jobs.job_run(second.pk) is None  # waits for the earlier news of its payment
    setup["worker"].run()
    assert (_invoice().status, _invoice().open_balance) == ("partially_paid", D("21.00"))


def test_a_signed_event_about_a_session_not_ours_is_applied_as_nothing_and_stripe_is_never_asked(
        setup, stripe_fake, client):
    """Stripe's events carry what happened: no job calls Stripe back, so even a made-up session
    (signed, as only Stripe can) costs no call, and the same event again is a duplicate."""
    made_up = stripe_fake.event("checkout.session.completed", {
        "id": "cs_test_madeup", "object": "checkout.session", "amount_total": 12100, "currency": "eur",
        "payment_status": "paid", "payment_intent": "pi_madeup", "client_reference_id": None})
    answers = [_deliver(client, setup, made_up).json()["status"] for _ in range(3)]
    assert answers == ["accepted", "duplicate", "duplicate"]
    [job] = setup["worker"].jobs(kind="gateway.event")
    assert (job.state, job.result) == ("done", "cs_test_madeup: no checkout of ours")
    assert stripe_fake.sessions == {}  # nothing was created or asked for at the fake Stripe
    assert _invoice().status == "open"


def _post_signed(client, setup, payload: bytes):
    return client.post(reverse("payments:webhook", args=["stripe", setup["gateway"].pk]), data=payload,
                       content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(payload, SECRET))


@pytest.mark.parametrize("payload, status, error", [
    (b"{not json", 400, "malformed JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    (b"[" * 5000 + b"]" * 5000, 400, "malformed JSON: nested more than 32 deep"),
    (json.dumps({"id": "evt_" + "x" * 200, "type": "charge.refunded", "data": {"object": {}}}).encode(), 422,
     "not a Stripe event: /id: must be an event id of 1 to 200 letters, digits, _ or -"),
    (json.dumps({"id": "evt_1\u0001", "type": "charge.refunded", "data": {"object": {}}}).encode(), 422,
     "not a Stripe event: /id: must be an event id of 1 to 200 letters, digits, _ or -"),
    (json.dumps({"id": "evt_1", "type": "charge.refunded", "data": []}).encode(), 422,
     "not a Stripe event: /data/object: must be an object"),
    (json.dumps({"id": "evt_1", "type": "charge.refunded",
                 "data": {"object": {"payment_intent": "pi\u0000x"}}}).encode(), 400,
     "malformed JSON: a string holds NUL or a lone surrogate"),
    (json.dumps({"id": "evt_1", "type": "charge.refunded", "data": {"object": {"payment_intent": 7}}}).encode(),
     422, "not a Stripe event: /data/object/payment_intent: must be an id of 1 to 100 letters, digits, _ or -"),
])
def test_a_signed_body_that_is_no_stripe_event_is_refused_with_the_reason_never_500(
        setup, stripe_fake, client, payload, status, error):
    response = _post_signed(client, setup, payload)
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert setup["worker"].jobs(kind="gateway.event") == []


def test_a_stripe_body_over_the_limit_is_413_and_not_kept(setup, stripe_fake, client, settings):
    payload = json.dumps({"id": "evt_big", "pad": "x" * settings.WEBHOOK_MAX_BODY_BYTES}).encode()
    response = _post_signed(client, setup, payload)
    assert response.status_code == 413
    with staff_scope():
        assert WebhookRequest.objects.get().body == ""
