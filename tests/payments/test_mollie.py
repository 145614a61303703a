"""Mollie through mollie-api-python against the local fake (tests/fakes/mollie.py): checkout,
webhooks through the one intake (answered 200 at once, also for an id we do not know, as Mollie
asks), the payment fetched by a job with no transaction open and retried while Mollie is down."""
import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from mollie.api.error import UnauthorizedError

from invoices.models import Invoice, Payment
from payments.gateways import GatewayRefused
from payments.models import CheckoutAttempt, GatewayAccount
from portal.models import WebhookRequest
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice
from tests.payments.conftest import API_KEY
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def setup(committed, worker, mollie):
    def build():
        brand = BrandFactory(is_default=True)
        gateway = GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=API_KEY, webhook_secret="",
                                                ideal=True, card=True, sepa_direct_debit=False)
        alpha = ClientFactory(brand=brand)
        owner = MembershipFactory(client=alpha).user
        invoice = make_invoice(alpha, number="M-1", lines=[line(unit_price="100.00")])
        return {"alpha": alpha, "owner": owner, "invoice": invoice, "gateway": gateway}

    return committed.create(build)


def _pay(client, setup, method="ideal", key=None):
    invoice = setup["invoice"]
    return client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", {
        "idempotency_key": key or str(uuid.uuid4()), "method": method, "invoice": [invoice.pk],
        f"amount_{invoice.pk}": "121.00"})


def _post_webhook(client, gateway, body):
    return client.post(reverse("payments:webhook", args=["mollie", gateway.pk]), data=body,
                       content_type="application/x-www-form-urlencoded")


def _webhook(client, setup, worker, payment_id):
    """Mollie calls the webhook; the worker does the job it left."""
    response = _post_webhook(client, setup["gateway"], f"id={payment_id}")
    worker.run()
    return response


def test_checkout_creates_a_mollie_payment_and_redirects_to_its_checkout(setup, mollie, client, worker):
    client.force_login(setup["owner"])
    response = _pay(client, setup)
    [payment] = mollie.payments.values()
    assert response.status_code == 302 and response.url == payment["_links"]["checkout"]["href"]
    assert payment["amount"] == {"currency": "EUR", "value": "121.00"} and payment["method"] == "ideal"
    assert payment["webhookUrl"] == settings.SITE_URL + reverse("payments:webhook",
                                                                      args=["mollie", setup["gateway"].pk])
    assert payment["redirectUrl"].startswith(settings.SITE_URL + "/pay/")
    assert payment["metadata"]["client"] == setup["alpha"].pk


def test_the_webhook_fetches_the_payment_and_only_paid_is_money(setup, mollie, client, worker):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    for status in ("pending", "authorized"):
        mollie.set_status(payment_id, status)
        assert _webhook(client, setup, worker, payment_id).status_code == 200
        with staff_scope():
            assert Invoice.objects.get().status == "open" and not Payment.objects.exists()
    mollie.set_status(payment_id, "paid")
    _webhook(client, setup, worker, payment_id)
    _webhook(client, setup, worker, payment_id)  # Mollie calls again: nothing changes
    with staff_scope():
        assert Invoice.objects.get().status == "paid"
        [recorded] = Payment.objects.all()
        assert recorded.gateway_payment_id.startswith("mollie:") and recorded.gateway_payment_id.endswith(payment_id)
    assert ("GET", f"/v2/payments/{payment_id}") in mollie.requests


@pytest.mark.parametrize("status, shown", [("failed", "failed"), ("canceled", "canceled"), ("expired", "expired")])
def test_failed_cancelled_and_expired_map_to_the_attempt(setup, mollie, client, worker, status, shown):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, status)
    _webhook(client, setup, worker, payment_id)
    with staff_scope():
        assert CheckoutAttempt.objects.get().status == shown and Invoice.objects.get().status == "open"


def test_a_retried_create_is_the_same_mollie_payment(setup, mollie, client, worker):
    client.force_login(setup["owner"])
    key = str(uuid.uuid4())
    _pay(client, setup, key=key)
    _pay(client, setup, key=key)
    assert len(mollie.payments) == 1


def test_a_wrong_api_key_is_a_clear_error(setup, mollie):
    with staff_scope():
        GatewayAccount.objects.update(api_key="test_wrongwrongwrongwrongwrongwrong")
        from payments.gateways.mollie import MollieGateway

        with pytest.raises(GatewayRefused, match="failed to authenticate") as refused:
            MollieGateway(GatewayAccount.objects.get()).fetch("tr_unknown")
    assert isinstance(refused.value.__cause__, UnauthorizedError)


def test_unknown_webhook_gateway_is_404(setup, client):
    for provider, gateway_id in (("mollie", 999), ("stripe", setup["gateway"].pk), ("paypal", setup["gateway"].pk)):
        response = client.post(reverse("payments:webhook", args=[provider, gateway_id]), data="id=tr_x",
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 404 and response.json()["status"] == "rejected"


def test_refunds_and_chargebacks_on_the_mollie_payment_reopen_the_balance_once(setup, mollie, client, worker):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    _webhook(client, setup, worker, payment_id)
    mollie.refund(payment_id, "21.00")
    _webhook(client, setup, worker, payment_id)
    _webhook(client, setup, worker, payment_id)  # the same news again: reversed once
    with staff_scope():
        invoice = Invoice.objects.get()
        assert (invoice.status, invoice.open_balance) == ("partially_paid", D("21.00"))
    mollie.chargeback(payment_id, "100.00")
    _webhook(client, setup, worker, payment_id)
    with staff_scope():
        invoice = Invoice.objects.get()
        assert (invoice.status, invoice.open_balance, invoice.amount_paid) == ("open", D("121.00"), D("0.00"))
        kinds = sorted(Payment.objects.get().allocations.values_list("kind", "amount"))
    assert kinds == [("allocation", D("121.00")), ("chargeback", D("-100.00")), ("refund", D("-21.00"))]


def test_a_webhook_for_an_id_we_do_not_know_is_answered_200_and_changes_nothing(setup, mollie, client, worker):
    # docs.mollie.com (webhooks): answer 200 OK even for an unknown id, to leak nothing. It is
    # kept (within the flood bound) but leaves no job and costs no call to Mollie.
    from mollie.api.client import Client as MollieClient

    sdk = MollieClient(api_endpoint=mollie.url)
    sdk.set_api_key(API_KEY)
    foreign = sdk.payments.create({"amount": {"currency": "EUR", "value": "5.00"}, "description": "Elsewhere",
                                   "redirectUrl": "https://elsewhere.test/"}).id  # at Mollie, not one of ours
    asked_before = len(mollie.requests)
    for payment_id in ("tr_unknown0000", foreign):
        response = _post_webhook(client, setup["gateway"], f"id={payment_id}")
        assert (response.status_code, response.json()) == (
            200, {"status": "ignored", "reason": "the payment it names is not one of ours"})
    malformed = _post_webhook(client, setup["gateway"], "nothing=here")
    assert malformed.status_code == 400 and "does not name a payment" in malformed.json()["error"]
    worker.run()
    assert worker.jobs(kind="gateway.event") == [] and len(mollie.requests) == asked_before
    with staff_scope():
        assert not Payment.objects.exists() and Invoice.objects.get().status == "open"
        assert sorted(WebhookRequest.objects.values_list("status", flat=True)) == ["ignored", "ignored", "rejected"]
        [kept] = WebhookRequest.objects.filter(status="rejected")
        assert kept.source == "mollie" and kept.body == "nothing=here"


def test_a_flood_of_made_up_payment_ids_is_counted_not_stored(setup, client, worker):
    from portal.models import WebhookRejections
    from portal.webhooks import REJECTED_KEPT_PER_HOUR

    for n in range(REJECTED_KEPT_PER_HOUR + 20):
        assert _post_webhook(client, setup["gateway"], f"id=tr_madeup{n}").json()["status"] == "ignored"
    worker.run()
    assert worker.jobs(kind="gateway.event") == []
    with staff_scope():
        assert WebhookRequest.objects.count() == REJECTED_KEPT_PER_HOUR
        assert WebhookRejections.objects.get(source="mollie").count == REJECTED_KEPT_PER_HOUR + 20


def test_while_mollie_is_down_the_webhook_waits_and_is_applied_once_mollie_answers(setup, mollie, client, worker):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    mollie.fail_next(1, status=503)
    assert _webhook(client, setup, worker, payment_id).json()["status"] == "accepted"
    [job] = worker.jobs(kind="gateway.event")
    assert job.state == "retrying" and "not executed" in job.last_error and job.subject == f"mollie:{payment_id}"
    with staff_scope():
        assert Invoice.objects.get().status == "open"
    worker.make_due(pk=job.pk)  # time passes: the backoff is over
    worker.run()
    [job] = worker.jobs(kind="gateway.event")
    assert (job.state, job.attempts, job.result) == ("done", 2, f"{payment_id}: paid")
    with staff_scope():
        assert Invoice.objects.get().status == "paid" and Payment.objects.count() == 1


def test_a_webhook_mollie_refuses_to_answer_for_is_dead_at_once_not_asked_for_hours(setup, mollie, client, worker):
    """A 401 (say, the API key was revoked) cannot get better by asking again: the job is dead
    with Mollie's reason, for staff to fix the key and replay."""
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    mollie.fail_next(1, status=401)
    assert _webhook(client, setup, worker, payment_id).json()["status"] == "accepted"
    [job] = worker.jobs(kind="gateway.event")
    assert (job.state, job.attempts) == ("dead", 1) and "Mollie refused" in job.last_error
    with staff_scope():
        assert Invoice.objects.get().status == "open"


def test_when_mollie_cannot_be_reached_at_checkout_the_same_click_again_makes_one_payment(
        setup, mollie, client, worker):
    client.force_login(setup["owner"])
    key = str(uuid.uuid4())
    mollie.fail_next(1, status=503)
    failed = _pay(client, setup, key=key)
    assert failed.status_code == 200 and "could not be reached" in failed.text
    assert mollie.payments == {}
    with staff_scope():
        assert CheckoutAttempt.objects.get().status == "created"  # committed before Mollie was called
    again = _pay(client, setup, key=key)  # the form keeps its key: the same click
    [payment] = mollie.payments.values()
    assert again.status_code == 302 and again.url == payment["_links"]["checkout"]["href"]
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
        assert (attempt.status, attempt.provider_payment_id) == ("open", payment["id"])


def test_news_that_arrives_before_the_checkout_recorded_mollies_answer_finds_its_checkout(
        setup, mollie, client, worker, monkeypatch):
    """Mollie's answer to the create got lost (a timeout), but the payment exists and its webhook
    comes: the checkout is found by the key in the payment's metadata."""
    from payments.gateways.mollie import MollieGateway

    client.force_login(setup["owner"])
    original = MollieGateway.create

    def answer_lost(self, attempt, **kwargs):
        original(self, attempt, **kwargs)
        from payments.gateways import GatewayError

        raise GatewayError("Mollie: read timed out")

    monkeypatch.setattr(MollieGateway, "create", answer_lost)
    assert "could not be reached" in _pay(client, setup).text
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    _webhook(client, setup, worker, payment_id)
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
        assert (attempt.provider_payment_id, attempt.status) == (payment_id, "paid")
        assert Invoice.objects.get().status == "paid"


def test_news_that_could_not_be_fetched_in_time_is_dead_with_its_reason_and_applied_once_replayed(
        setup, mollie, client, worker, staff_user):
    from django.db.models import F

    from portal import jobs
    from portal.models import Job

    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    mollie.fail_next(1, status=502)
    _webhook(client, setup, worker, payment_id)
    [job] = worker.jobs(kind="gateway.event")
    with staff_scope():  # many hours and attempts later, Mollie still fails
        Job.objects.filter(pk=job.pk).update(attempts=F("max_attempts") - 1, run_after=timezone.now())
    mollie.fail_next(1, status=502)
    worker.run()
    [job] = worker.jobs(kind="gateway.event")
    assert job.state == "dead" and "not executed" in job.last_error
    with staff_scope():
        assert Invoice.objects.get().status == "open"
        assert jobs.job_replay(job=job, actor=staff_user) is True
    worker.run()
    with staff_scope():
        assert Invoice.objects.get().status == "paid" and Payment.objects.count() == 1


def test_accepting_a_mollie_webhook_takes_at_most_four_sql_statements(setup, mollie, client, worker):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tests.portal.test_webhooks import statements

    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    with CaptureQueriesContext(connection) as accepted:
        response = _post_webhook(Client(), setup["gateway"], f"id={payment_id}")
    assert response.json()["status"] == "accepted"
    # The scope, the gateway account (and whether the payment is ours), the request, its job.
    assert len(statements(accepted)) <= 4, statements(accepted)


def _asked_about(mollie, payment_id: str) -> int:
    return sum(1 for method, path in mollie.requests if method == "GET" and payment_id in path)


def test_a_made_up_id_while_a_checkout_awaits_its_answer_is_asked_about_once_however_often_it_is_posted(
        setup, mollie, client, worker):
    """A checkout whose create answer is lost makes any id possibly ours for a day; still, one
    id costs one question to Mollie: while its job waits, another call adds nothing, and once
    Mollie said it does not know it, it is ignored."""
    client.force_login(setup["owner"])
    mollie.fail_next(1, status=503)
    assert "could not be reached" in _pay(client, setup).text  # a checkout now awaits its answer
    answers = [_post_webhook(client, setup["gateway"], "id=tr_madeup1").json()["status"] for _ in range(5)]
    assert answers == ["accepted"] + ["duplicate"] * 4
    worker.run()
    [job] = worker.jobs(kind="gateway.event")
    assert (job.state, job.result) == ("done", "tr_madeup1: unknown to the gateway")
    answers = [_post_webhook(client, setup["gateway"], "id=tr_madeup1").json()["status"] for _ in range(5)]
    assert answers == ["ignored"] * 5
    worker.run()
    assert _asked_about(mollie, "tr_madeup1") == 1 and len(worker.jobs(kind="gateway.event")) == 1


def test_a_flood_of_calls_about_a_real_payment_waits_for_one_question(setup, mollie, client, worker):
    client.force_login(setup["owner"])
    _pay(client, setup)
    [payment_id] = mollie.payments
    mollie.set_status(payment_id, "paid")
    answers = [_post_webhook(client, setup["gateway"], f"id={payment_id}").json()["status"] for _ in range(20)]
    assert answers == ["accepted"] + ["duplicate"] * 19
    worker.run()
    assert _asked_about(mollie, payment_id) == 1
    with staff_scope():
        assert Invoice.objects.get().status == "paid" and Payment.objects.count() == 1


@pytest.mark.parametrize("body, status", [
    ("id=tr_" + "a" * 5000, 413),
    ("&".join(f"f{n}=1" for n in range(200)), 400),
    ("id=tr_abc&id=tr_def", 400),
    ("id=tr_abc%00", 400),
    ("id=" + "%ff" * 100, 400),
])
def test_a_mollie_body_that_is_too_big_or_names_no_single_payment_is_refused_never_500(
        setup, client, worker, body, status):
    response = _post_webhook(client, setup["gateway"], body)
    assert response.status_code == status and response.json()["status"] == "rejected"
    assert worker.jobs(kind="gateway.event") == []


@pytest.mark.parametrize("provider, gateway_id", [("mollie", "9" * 40), ("mollie", "0"), ("nobody", "1"),
                                                  ("stripe", "1" * 100)])
def test_a_webhook_url_naming_no_gateway_of_ours_is_404_never_500(setup, client, provider, gateway_id):
    response = client.post(f"/webhooks/payments/{provider}/{gateway_id}/", data="id=tr_abc",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 404 and response.json()["status"] == "rejected"
