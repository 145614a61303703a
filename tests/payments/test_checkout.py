"""Paying through the built-in sandbox gateway: once per click, the truth on the return page,
exactly one payment however often the webhook arrives, mismatches flagged, partial payments;
the gateway's webhook goes through the one intake and is applied by a job."""
import threading
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice, Payment
from payments import services
from payments.models import CheckoutAttempt, GatewayAccount, SandboxPayment
from portal.models import AuditEvent, Job, Membership, WebhookRequest
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def shop(committed, worker):
    def build():
        brand = BrandFactory(is_default=True)
        alpha = ClientFactory(brand=brand, name="Alpha B.V.")
        owner = MembershipFactory(client=alpha, user__email="owner@alpha.test").user
        viewer = MembershipFactory(client=alpha, role=Membership.Role.VIEWER, user__email="viewer@alpha.test").user
        first = make_invoice(alpha, number="A-1", lines=[line(unit_price="100.00")])   # 121.00
        second = make_invoice(alpha, number="A-2", lines=[line(unit_price="50.00")])   # 60.50
        return {"alpha": alpha, "owner": owner, "viewer": viewer, "first": first, "second": second}

    return committed.create(build)


def _checkout(client, invoices, method="ideal", key=None, amounts=None):
    key = key or str(uuid.uuid4())
    data = {"idempotency_key": key, "method": method, "invoice": [i.pk for i in invoices]}
    for invoice in invoices:
        data[f"amount_{invoice.pk}"] = (amounts or {}).get(invoice.pk, str(invoice.open_balance))
    return client.post(reverse("payments:checkout") + "?" + "&".join(f"invoice={i.pk}" for i in invoices), data)


def _sandbox_webhook(client, attempt):
    """The sandbox gateway calls our webhook again (it only names the payment)."""
    return client.post(reverse("payments:webhook", args=["sandbox", attempt.gateway_id]),
                       data=f"id={attempt.provider_payment_id}", content_type="application/x-www-form-urlencoded")


def _invoice(invoice):
    with staff_scope():
        return Invoice.objects.get(pk=invoice.pk)


def test_pay_two_invoices_in_one_checkout_through_the_sandbox(shop, client, worker):
    client.force_login(shop["owner"])
    response = _checkout(client, [shop["first"], shop["second"]])
    assert response.status_code == 302 and response.url.startswith("/sandbox-gateway/sb_")
    gateway_page = client.get(response.url)
    assert "€181.50" in gateway_page.text
    back = client.post(response.url, {"outcome": "paid"})
    assert back.url.startswith("/pay/")
    worker.run()
    assert (_invoice(shop["first"]).status, _invoice(shop["second"]).status) == ("paid", "paid")
    page = client.get(back.url)
    assert "Paid. Thank you!" in page.text
    with staff_scope():
        [payment] = Payment.objects.all()
        assert (payment.amount, payment.source, payment.method) == (D("181.50"), "gateway", "ideal")
        assert AuditEvent.objects.filter(action=AuditEvent.Action.CHECKOUT_STARTED).count() == 1


def test_a_second_click_never_creates_a_second_charge(shop, client):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    first = _checkout(client, [shop["first"]], key=key)
    second = _checkout(client, [shop["first"]], key=key)
    assert first.url == second.url
    with staff_scope():
        assert CheckoutAttempt.objects.count() == 1 and SandboxPayment.objects.count() == 1


def test_pending_is_never_paid_and_the_return_page_keeps_asking(shop, client, worker):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]], method="sepa_direct_debit").url
    back = client.post(gateway_url, {"outcome": "pending"}).url
    worker.run()
    invoice = _invoice(shop["first"])
    assert (invoice.status, invoice.open_balance, invoice.amount_pending, invoice.payable_balance) == (
        "open", D("121.00"), D("121.00"), D("0.00"))
    assert (invoice.pending_method, invoice.display_status) == ("sepa_direct_debit", "payment_pending")
    page = client.get(back)
    assert "Payment pending" in page.text and 'hx-trigger="every 2s"' in page.text
    # The pending part cannot be paid a second time: the checkout sends the client back, saying why.
    again = client.get(reverse("payments:checkout"), {"invoice": shop["first"].pk}, follow=True)
    assert again.redirect_chain[-1][0] == reverse("invoices:list")
    assert "A payment for the chosen invoices is pending" in again.text
    refused = _checkout(client, [shop["first"]])
    assert refused.status_code == 302 and refused.url == reverse("invoices:list")
    with staff_scope():
        SandboxPayment.objects.update(status="paid")
        attempt = CheckoutAttempt.objects.get()
    assert _sandbox_webhook(client, attempt).json()["status"] == "accepted"
    worker.run()
    invoice = _invoice(shop["first"])
    assert (invoice.status, invoice.amount_pending, invoice.pending_method) == ("paid", D("0.00"), "")
    assert "Paid. Thank you!" in client.get(back, HTTP_HX_REQUEST="true").text


@pytest.mark.parametrize("outcome, title", [("failed", "The payment failed."), ("canceled", "The payment was cancelled.")])
def test_failed_or_cancelled_says_so_and_offers_to_try_again(shop, client, worker, outcome, title):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    back = client.post(gateway_url, {"outcome": outcome}).url
    worker.run()
    page = client.get(back)
    assert title in page.text and "Try again" in page.text
    assert _invoice(shop["first"]).status == "open"


def test_duplicate_and_out_of_order_webhooks_record_one_payment(shop, client, worker):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    client.post(gateway_url, {"outcome": "paid"})
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
    # The sandbox's own call left a job that has not asked yet: more calls add nothing to it.
    for _ in range(3):
        assert _sandbox_webhook(client, attempt).json()["status"] == "duplicate"
    assert worker.run() == 1
    # Once it has asked, a new call is news again: kept, with a job (no event id to tell them apart).
    for _ in range(2):
        assert _sandbox_webhook(client, attempt).json()["status"] == "accepted"
        assert worker.run() == 1
    with staff_scope():
        assert Payment.objects.count() == 1
        results = list(Job.objects.filter(kind="gateway.event").order_by("id").values_list("state", "result"))
        assert results == [("done", f"{attempt.provider_payment_id}: paid")] * 3
        # News that the payment is pending again (out of order) changes nothing.
        from payments.gateways import GatewayPayment

        services.checkout_apply(gateway=attempt.gateway, reported=GatewayPayment(
            attempt.provider_payment_id, CheckoutAttempt.Status.PENDING, D("121.00"), "EUR"))
        assert CheckoutAttempt.objects.get().status == "paid" and Payment.objects.count() == 1


def test_a_mismatched_amount_is_flagged_not_applied(shop, client, worker):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    with staff_scope():
        SandboxPayment.objects.update(amount=D("1.00"))
    client.post(gateway_url, {"outcome": "paid"})
    worker.run()
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
        assert "EUR 1.00" in attempt.flagged and not Payment.objects.exists()
    assert _invoice(shop["first"]).status == "open"


def test_partial_payment_respects_the_brands_rules(shop, client, worker):
    client.force_login(shop["owner"])
    with staff_scope():
        services.gateway_for_brand(shop["alpha"].brand)
        GatewayAccount.objects.update(partial_minimum=D("25.00"))
    too_small = _checkout(client, [shop["first"]], amounts={shop["first"].pk: "5.00"})
    assert too_small.status_code == 200 and "A part payment is at least €25.00" in too_small.text
    gateway_url = _checkout(client, [shop["first"]], amounts={shop["first"].pk: "50.00"}).url
    client.post(gateway_url, {"outcome": "paid"})
    worker.run()
    invoice = _invoice(shop["first"])
    assert (invoice.status, invoice.open_balance) == ("partially_paid", D("71.00"))
    with staff_scope():
        GatewayAccount.objects.update(allow_partial=False)
    full_only = client.get(reverse("payments:checkout"), {"invoice": shop["first"].pk})
    assert 'disabled' in full_only.text


def test_a_viewer_cannot_pay_and_nobody_pays_another_clients_invoice(shop, client):
    other = make_invoice(ClientFactory(brand=shop["alpha"].brand), number="B-1")
    client.force_login(shop["viewer"])
    assert client.get(reverse("payments:checkout"), {"invoice": shop["first"].pk}).status_code == 403
    client.force_login(shop["owner"])
    # Another client's invoice is nothing this client can pay: back to its own list, nothing started.
    refused = client.get(reverse("payments:checkout"), {"invoice": other.pk})
    assert (refused.status_code, refused.url) == (302, reverse("invoices:list"))
    with staff_scope():
        assert not CheckoutAttempt.objects.exists()


def test_ten_concurrent_deliveries_of_the_same_news_make_one_payment(committed):
    def build():
        alpha = ClientFactory(brand=BrandFactory())
        user = MembershipFactory(client=alpha).user
        return alpha, user, make_invoice(alpha, lines=[line(unit_price="100.00")])

    alpha, user, invoice = committed.create(build)
    with staff_scope():
        attempt = services.checkout_start(client=alpha, user=user, requested=[(invoice, D("121.00"))],
                                          method="ideal", idempotency_key=uuid.uuid4())
        SandboxPayment.objects.update(status="paid")
    from django.db import connection

    from payments.gateways.sandbox import SandboxGateway

    with staff_scope():
        reported = SandboxGateway(attempt.gateway).fetch(attempt.provider_payment_id)
    barrier, errors = threading.Barrier(10), []

    def deliver():
        barrier.wait()
        try:
            with staff_scope():
                services.checkout_apply(gateway=attempt.gateway, reported=reported)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    with staff_scope():
        assert Payment.objects.count() == 1
        assert Invoice.objects.get().status == "paid"


def test_reconciliation_page_shows_payments_per_day_and_flagged_attempts(shop, client, worker, staff_user):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    client.post(gateway_url, {"outcome": "paid"})
    flagged_url = _checkout(client, [shop["second"]]).url
    with staff_scope():
        SandboxPayment.objects.filter(amount=D("60.50")).update(amount=D("6.05"))
    client.post(flagged_url, {"outcome": "paid"})
    worker.run()
    client.force_login(staff_user)
    page = client.get(reverse("admin:payments_reconciliation"))
    assert page.status_code == 200
    assert "€121.00" in page.text and "A-1" in page.text
    assert "the gateway reports EUR 6.05" in page.text


def test_a_gateway_payment_for_an_invoice_meanwhile_paid_by_transfer_becomes_client_credit(shop, client, worker):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    with staff_scope():  # the bank transfer arrives first, through accounting
        from invoices.services import payment_record

        payment_record(client=shop["alpha"], amount=D("100.00"), currency="EUR", source=Payment.Source.ACCOUNTING,
                       method=Payment.Method.BANK_TRANSFER, received_at=timezone.now(),
                       allocations=[(shop["first"], D("100.00"))])
    client.post(gateway_url, {"outcome": "paid"})
    worker.run()
    from invoices.selectors import client_credit_balance

    with staff_scope():
        assert Invoice.objects.get(pk=shop["first"].pk).status == "paid"
        assert client_credit_balance(client=shop["alpha"], currency="EUR") == D("100.00")


def test_a_webhook_while_redis_is_down_is_answered_kept_and_applied_when_the_sweep_rings(shop, client, worker):
    from portal import jobs

    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    worker.broker_down()
    back = client.post(gateway_url, {"outcome": "paid"})  # the sandbox calls our webhook: no bell can ring
    assert back.status_code == 302
    with staff_scope():
        [webhook] = WebhookRequest.objects.filter(source="sandbox")
        [job] = Job.objects.filter(kind="gateway.event")
        assert (webhook.status, job.state, job.key) == ("accepted", "pending", f"webhook:{webhook.pk}")
    assert _invoice(shop["first"]).status == "open"
    worker.broker_down(False)
    jobs.jobs_sweep()  # beat, every 30 seconds: rings for every job that is due
    assert ("portal.tasks.run_job", [job.pk], None) in worker.bells
    worker.run()
    assert _invoice(shop["first"]).status == "paid"
    assert "Paid. Thank you!" in client.get(back.url).text


def test_a_webhook_that_names_no_payment_is_refused_and_one_for_an_unknown_payment_changes_nothing(
        shop, client, worker):
    with staff_scope():
        gateway = services.gateway_for_brand(shop["alpha"].brand)
    url = reverse("payments:webhook", args=["sandbox", gateway.pk])
    refused = client.post(url, data="payment=nothing", content_type="application/x-www-form-urlencoded")
    assert refused.status_code == 400 and refused.json()["status"] == "rejected"
    unknown = client.post(url, data="id=sb_nobodyknowsme", content_type="application/x-www-form-urlencoded")
    assert (unknown.status_code, unknown.json()) == (
        200, {"status": "ignored", "reason": "the payment it names is not one of ours"})
    worker.run()
    assert worker.jobs(kind="gateway.event") == []
    with staff_scope():
        assert not Payment.objects.exists()
        assert WebhookRequest.objects.filter(status="rejected").count() == 1
        assert WebhookRequest.objects.filter(status="ignored").count() == 1
