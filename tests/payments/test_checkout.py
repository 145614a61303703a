"""Paying through the built-in sandbox gateway: once per click, the truth on the return page,
exactly one payment however often the webhook arrives, mismatches flagged, partial payments."""
import threading
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice, Payment
from payments import services
from payments.models import CheckoutAttempt, GatewayAccount, GatewayEvent, SandboxPayment
from portal.models import AuditEvent, Membership
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def shop(db):
    brand = BrandFactory(is_default=True)
    alpha = ClientFactory(brand=brand, name="Alpha B.V.")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test").user
    viewer = MembershipFactory(client=alpha, role=Membership.Role.VIEWER, user__email="viewer@alpha.test").user
    first = make_invoice(alpha, number="A-1", lines=[line(unit_price="100.00")])   # 121.00
    second = make_invoice(alpha, number="A-2", lines=[line(unit_price="50.00")])   # 60.50
    return {"alpha": alpha, "owner": owner, "viewer": viewer, "first": first, "second": second}


def _checkout(client, invoices, method="ideal", key=None, amounts=None):
    key = key or str(uuid.uuid4())
    data = {"idempotency_key": key, "method": method, "invoice": [i.pk for i in invoices]}
    for invoice in invoices:
        data[f"amount_{invoice.pk}"] = (amounts or {}).get(invoice.pk, str(invoice.open_balance))
    return client.post(reverse("payments:checkout") + "?" + "&".join(f"invoice={i.pk}" for i in invoices), data)


def _deliver_webhooks():
    """What the worker does with every stored gateway webhook."""
    with staff_scope():
        for event in GatewayEvent.objects.filter(status=GatewayEvent.Status.PENDING).order_by("id"):
            services.gateway_event_process(event_id=event.pk)


def _invoice(invoice):
    with staff_scope():
        return Invoice.objects.get(pk=invoice.pk)


def test_pay_two_invoices_in_one_checkout_through_the_sandbox(shop, client):
    client.force_login(shop["owner"])
    response = _checkout(client, [shop["first"], shop["second"]])
    assert response.status_code == 302 and response.url.startswith("/sandbox-gateway/sb_")
    gateway_page = client.get(response.url)
    assert "€ 181.50" in gateway_page.text
    back = client.post(response.url, {"outcome": "paid"})
    assert back.url.startswith("/pay/")
    _deliver_webhooks()
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


def test_pending_is_never_paid_and_the_return_page_keeps_asking(shop, client):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]], method="sepa_direct_debit").url
    back = client.post(gateway_url, {"outcome": "pending"}).url
    _deliver_webhooks()
    assert _invoice(shop["first"]).status == "open"
    page = client.get(back)
    assert "being processed" in page.text and 'hx-trigger="every 2s"' in page.text
    with staff_scope():
        SandboxPayment.objects.update(status="paid")
        attempt = CheckoutAttempt.objects.get()
        services.gateway_webhook_receive(gateway=attempt.gateway, body=f"id={attempt.provider_payment_id}")
    _deliver_webhooks()
    assert _invoice(shop["first"]).status == "paid"
    assert "Paid. Thank you!" in client.get(back, HTTP_HX_REQUEST="true").text


@pytest.mark.parametrize("outcome, title", [("failed", "The payment failed."), ("canceled", "The payment was cancelled.")])
def test_failed_or_cancelled_says_so_and_offers_to_try_again(shop, client, outcome, title):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    back = client.post(gateway_url, {"outcome": outcome}).url
    _deliver_webhooks()
    page = client.get(back)
    assert title in page.text and "Try again" in page.text
    assert _invoice(shop["first"]).status == "open"


def test_duplicate_and_out_of_order_webhooks_record_one_payment(shop, client):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    client.post(gateway_url, {"outcome": "paid"})
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
        for _ in range(3):
            services.gateway_webhook_receive(gateway=attempt.gateway, body=f"id={attempt.provider_payment_id}")
    _deliver_webhooks()
    with staff_scope():
        assert Payment.objects.count() == 1
        # News that the payment is pending again (out of order) changes nothing.
        from payments.gateways import GatewayPayment

        services.checkout_apply(gateway=attempt.gateway, reported=GatewayPayment(
            attempt.provider_payment_id, CheckoutAttempt.Status.PENDING, D("121.00"), "EUR"))
        assert CheckoutAttempt.objects.get().status == "paid" and Payment.objects.count() == 1


def test_a_mismatched_amount_is_flagged_not_applied(shop, client):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    with staff_scope():
        SandboxPayment.objects.update(amount=D("1.00"))
    client.post(gateway_url, {"outcome": "paid"})
    _deliver_webhooks()
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
        assert "EUR 1.00" in attempt.flagged and not Payment.objects.exists()
    assert _invoice(shop["first"]).status == "open"


def test_partial_payment_respects_the_brands_rules(shop, client):
    client.force_login(shop["owner"])
    with staff_scope():
        services.gateway_for_brand(shop["alpha"].brand)
        GatewayAccount.objects.update(partial_minimum=D("25.00"))
    too_small = _checkout(client, [shop["first"]], amounts={shop["first"].pk: "5.00"})
    assert too_small.status_code == 200 and "at least 25.00" in too_small.text
    gateway_url = _checkout(client, [shop["first"]], amounts={shop["first"].pk: "50.00"}).url
    client.post(gateway_url, {"outcome": "paid"})
    _deliver_webhooks()
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
    assert client.get(reverse("payments:checkout"), {"invoice": other.pk}).status_code == 404


def test_ten_concurrent_deliveries_of_the_same_news_make_one_payment(committed):
    def build():
        brand = BrandFactory()
        alpha = ClientFactory(brand=brand)
        user = MembershipFactory(client=alpha).user
        invoice = make_invoice(alpha, lines=[line(unit_price="100.00")])
        return services.checkout_start(client=alpha, user=user, requested=[(invoice, D("121.00"))], method="ideal",
                                       idempotency_key=uuid.uuid4())

    attempt = committed.create(build)
    with staff_scope():
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


def test_reconciliation_page_shows_payments_per_day_and_flagged_attempts(shop, client, staff):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    client.post(gateway_url, {"outcome": "paid"})
    flagged_url = _checkout(client, [shop["second"]]).url
    with staff_scope():
        SandboxPayment.objects.filter(amount=D("60.50")).update(amount=D("6.05"))
    client.post(flagged_url, {"outcome": "paid"})
    _deliver_webhooks()
    client.force_login(staff)
    page = client.get(reverse("admin:payments_reconciliation"))
    assert page.status_code == 200
    assert "EUR 121.00" in page.text and "A-1" in page.text
    assert "the gateway reports EUR 6.05" in page.text


def test_a_gateway_payment_for_an_invoice_meanwhile_paid_by_transfer_becomes_client_credit(shop, client):
    client.force_login(shop["owner"])
    gateway_url = _checkout(client, [shop["first"]]).url
    with staff_scope():  # the bank transfer arrives first, through accounting
        from invoices.services import payment_record

        payment_record(client=shop["alpha"], amount=D("100.00"), currency="EUR", source=Payment.Source.ACCOUNTING,
                       method=Payment.Method.BANK_TRANSFER, received_at=timezone.now(),
                       allocations=[(shop["first"], D("100.00"))])
    client.post(gateway_url, {"outcome": "paid"})
    _deliver_webhooks()
    from invoices.selectors import client_credit_balance

    with staff_scope():
        assert Invoice.objects.get(pk=shop["first"].pk).status == "paid"
        assert client_credit_balance(client=shop["alpha"], currency="EUR") == D("100.00")
