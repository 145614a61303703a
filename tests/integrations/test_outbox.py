"""Payments, refunds and chargebacks flow back to the accounting system through the outbox."""
import datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from integrations import outbox
from integrations.models import ClientLink, Connection, OutboxMessage
from integrations.signing import generate_secret
from invoices import services
from invoices.models import Payment, PaymentAllocation
from portal.rls import staff_scope
from tests.fakes.accounting import FakeAccounting
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory

D = Decimal
S = OutboxMessage.Status


@pytest.fixture
def erp(db):
    secret = generate_secret()
    with FakeAccounting(secret) as fake:
        brand = BrandFactory(is_default=True)
        client = ClientFactory(brand=brand)
        with staff_scope():
            connection = Connection.objects.create(name="ERP", slug="erp", brand=brand, signing_secrets=secret,
                                                   outbound_url=fake.url)
            ClientLink.objects.create(connection=connection, external_id="C-100", client=client)
        invoice = make_invoice(client, number="INV-9", connection=connection, external_id="ERP-INV-9",
                               lines=[line(unit_price="100.00")])
        yield {"fake": fake, "client": client, "invoice": invoice, "connection": connection}


def _deliver_all():
    with staff_scope():
        for pk in OutboxMessage.objects.filter(status__in=[S.PENDING, S.WAITING]).order_by("id").values_list("pk", flat=True):
            outbox.outbox_deliver(message_id=pk)


def _messages():
    with staff_scope():
        return list(OutboxMessage.objects.order_by("id"))


def test_a_gateway_payment_is_written_with_it_and_delivered_signed(erp):
    pay(erp["client"], [(erp["invoice"], "121.00")], method=Payment.Method.IDEAL)
    [message] = _messages()
    assert (message.event_type, message.status) == ("payment.recorded", S.PENDING)
    _deliver_all()
    [received] = erp["fake"].received
    assert received["type"] == "payment.recorded" and received["id"] == message.message_id
    assert received["data"]["client_external_id"] == "C-100" and received["data"]["amount"] == "121.00"
    assert received["data"]["allocations"] == [
        {"invoice_external_id": "ERP-INV-9", "invoice_number": "INV-9", "amount": "121.00"}]
    assert _messages()[0].status == S.DELIVERED and erp["fake"].rejected == []


def test_refunds_and_chargebacks_go_back_too_but_accounting_payments_do_not_echo(erp):
    payment = pay(erp["client"], [(erp["invoice"], "121.00")])
    with staff_scope():
        services.payment_reverse(payment=payment, invoice=erp["invoice"], amount=D("21.00"))
        services.payment_reverse(payment=payment, invoice=erp["invoice"], amount=D("100.00"),
                                 kind=PaymentAllocation.Kind.CHARGEBACK)
        services.payment_record(client=erp["client"], amount=D("121.00"), currency="EUR",
                                source=Payment.Source.ACCOUNTING, method=Payment.Method.BANK_TRANSFER,
                                received_at=datetime.datetime.now(datetime.timezone.utc),
                                allocations=[(erp["invoice"], D("121.00"))], connection=erp["connection"],
                                external_id="BANK-1")
    assert [m.event_type for m in _messages()] == ["payment.recorded", "payment.refunded", "payment.charged_back"]
    _deliver_all()
    assert [r["data"]["amount"] for r in erp["fake"].received] == ["121.00", "21.00", "100.00"]


def test_a_failed_delivery_is_retried_with_backoff_then_dead_then_replayed(erp, client, staff):
    pay(erp["client"], [(erp["invoice"], "121.00")])
    erp["fake"].fail_next = outbox.MAX_ATTEMPTS
    waits = []
    for _ in range(outbox.MAX_ATTEMPTS):
        _deliver_all()
        message = _messages()[0]
        if message.next_attempt_at:
            waits.append(message.next_attempt_at)
    dead = _messages()[0]
    assert dead.status == S.DEAD and dead.attempts == outbox.MAX_ATTEMPTS
    assert dead.last_error.startswith("HTTP 503") and dead.response_status == 503
    assert waits == sorted(waits)
    with staff_scope():
        assert outbox.outbox_due() == []
    client.force_login(staff)
    client.post(reverse("admin:integrations_outboxmessage_changelist"),
                {"action": "replay_dead_messages", "_selected_action": [dead.pk]})
    _deliver_all()
    assert _messages()[0].status == S.DELIVERED and len(erp["fake"].received) == 1


def test_nothing_is_written_when_the_change_rolls_back(erp):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        pay(erp["client"], [(erp["invoice"], "121.00")])
        raise RuntimeError("half-way")
    assert _messages() == []
