"""Payments, refunds and chargebacks flow back to the accounting system through the outbox: a
message and its delivery job written with the change, posted signed by the job with no
transaction open, retried, dead, replayed, and in the order written per payment or invoice."""
import datetime
import socket
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from integrations import outbox
from integrations.models import ClientLink, Connection, OutboxMessage
from integrations.signing import generate_secret
from invoices import services
from invoices.models import Payment, PaymentAllocation
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.accounting import FakeAccounting
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory

D = Decimal
State = Job.State


@pytest.fixture
def erp(committed, worker):
    secret = generate_secret()
    with FakeAccounting(secret) as fake:
        def build():
            brand = BrandFactory(is_default=True)
            client = ClientFactory(brand=brand)
            connection = Connection.objects.create(name="ERP", slug="erp", brand=brand, signing_secrets=secret,
                                                   outbound_url=fake.url)
            ClientLink.objects.create(connection=connection, external_id="C-100", client=client)
            invoice = make_invoice(client, number="INV-9", connection=connection, external_id="ERP-INV-9",
                                   lines=[line(unit_price="100.00")])
            return {"fake": fake, "client": client, "invoice": invoice, "connection": connection}

        yield committed.create(build)


def _messages():
    with staff_scope():
        return list(OutboxMessage.objects.order_by("id"))


def _job(message: OutboxMessage) -> Job:
    with staff_scope():
        return Job.objects.get(key=message.job_key)


def test_a_gateway_payment_is_written_with_its_job_and_delivered_signed(erp, worker):
    payment = pay(erp["client"], [(erp["invoice"], "121.00")], method=Payment.Method.IDEAL)
    [message] = _messages()
    job = _job(message)
    assert (message.event_type, message.delivered_at) == ("payment.recorded", None)
    assert (job.kind, job.key, job.subject, job.state) == (
        "outbox.deliver", f"outbox:{message.message_id}", f"outbox:payment:{payment.pk}", State.PENDING)
    assert worker.rung_for(job)  # once the payment committed

    assert worker.run() == 1
    [received] = erp["fake"].received
    assert received["type"] == "payment.recorded" and received["id"] == message.message_id
    assert received["data"]["client_external_id"] == "C-100" and received["data"]["amount"] == "121.00"
    assert received["data"]["allocations"] == [
        {"invoice_external_id": "ERP-INV-9", "invoice_number": "INV-9", "amount": "121.00"}]
    [message] = _messages()
    assert message.response_status == 200 and message.delivered_at is not None
    assert (_job(message).state, _job(message).result) == (State.DONE, "HTTP 200")
    assert erp["fake"].rejected == []


def test_refunds_and_chargebacks_go_back_too_but_accounting_payments_do_not_echo(erp, worker):
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
    worker.run()
    assert [(r["type"], r["data"]["amount"]) for r in erp["fake"].received] == [
        ("payment.recorded", "121.00"), ("payment.refunded", "21.00"), ("payment.charged_back", "100.00")]


def test_a_failed_delivery_is_retried_with_backoff_then_dead_then_replayed_under_the_same_id(erp, worker, client,
                                                                                             staff):
    pay(erp["client"], [(erp["invoice"], "121.00")])
    [message] = _messages()
    max_attempts = jobs.handler_for("outbox.deliver").max_attempts
    erp["fake"].fail_next(max_attempts, status=500)
    waits = []
    for _ in range(max_attempts):
        worker.make_due(_job(message))
        worker.run()
        job = _job(message)
        if job.state == State.RETRYING:
            waits.append((job.run_after - timezone.now()).total_seconds())
    dead = _job(message)
    assert (dead.state, dead.attempts) == (State.DEAD, max_attempts)
    assert dead.last_error.startswith("HTTP 500") and "server error" in dead.last_error
    assert waits == sorted(waits) and len(waits) == max_attempts - 1
    assert (_messages()[0].response_status, _messages()[0].delivered_at) == (500, None)
    with staff_scope():
        assert worker.run() == 0 and dead.pk not in dict(jobs.jobs_due())  # dead until staff say otherwise

    client.force_login(staff)
    page = client.post("/admin/portal/job/", {"action": "replay_dead_jobs", "_selected_action": [dead.pk]},
                       follow=True)
    assert b"1 replayed; 0 skipped" in page.content
    worker.run()
    assert _job(message).state == State.DONE and _messages()[0].response_status == 200
    # Every attempt carried the message id as webhook-id: the receiver can tell it is one message.
    attempts = erp["fake"].attempts(message.message_id)
    assert [a["status"] for a in attempts] == [500] * max_attempts + [200]
    assert len(erp["fake"].deliveries) == len(attempts) and erp["fake"].booked(message.message_id) == 1


def test_staff_see_how_delivery_stands_in_the_outbox_admin(erp, worker, client, staff):
    pay(erp["client"], [(erp["invoice"], "121.00")])
    erp["fake"].fail_next(1, status=503)
    worker.run()
    [message] = _messages()
    client.force_login(staff)
    page = client.get("/admin/integrations/outboxmessage/")
    assert page.status_code == 200
    assert message.message_id.encode() in page.content and b"Waiting to retry" in page.content
    assert f"/admin/portal/job/{_job(message).pk}/change/".encode() in page.content


def test_a_network_error_is_a_failed_attempt_retried_later(erp, worker):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with staff_scope():
        Connection.objects.filter(pk=erp["connection"].pk).update(outbound_url=f"http://127.0.0.1:{port}/hook")
    pay(erp["client"], [(erp["invoice"], "121.00")])
    worker.run()
    [message] = _messages()
    job = _job(message)
    assert job.state == State.RETRYING and job.last_error.startswith("ConnectionError")
    assert (message.response_status, message.delivered_at) == (None, None)


def test_a_timeout_is_retried_under_the_same_message_id_for_the_receiver_to_dedupe(erp, worker, monkeypatch):
    monkeypatch.setattr(outbox, "TIMEOUT", (3, 0.5))
    erp["fake"].delay_next(1, seconds=1.5)  # books it, then answers too late
    pay(erp["client"], [(erp["invoice"], "121.00")])
    worker.run()
    [message] = _messages()
    assert _job(message).state == State.RETRYING and "ReadTimeout" in _job(message).last_error
    worker.make_due(_job(message))
    worker.run()
    assert _job(message).state == State.DONE
    assert [a["webhook_id"] for a in erp["fake"].attempts(message.message_id)] == [message.message_id] * 2


def test_messages_about_one_payment_are_delivered_in_the_order_written(erp, worker):
    first = pay(erp["client"], [(erp["invoice"], "100.00")])
    with staff_scope():
        services.payment_reverse(payment=first, invoice=erp["invoice"], amount=D("40.00"))
    other = pay(erp["client"], [(erp["invoice"], "21.00")])
    recorded, refunded, other_recorded = _messages()
    assert _job(recorded).subject == _job(refunded).subject == f"outbox:payment:{first.pk}"
    assert _job(other_recorded).subject == f"outbox:payment:{other.pk}"

    erp["fake"].fail_next(1, status=500)  # accounting refuses the first message once
    worker.run()
    # The refund waits while the payment it reverses is retrying; another payment goes ahead.
    assert [_job(m).state for m in (recorded, refunded, other_recorded)] == [State.RETRYING, State.PENDING,
                                                                            State.DONE]
    worker.make_due(_job(recorded))
    worker.run()
    assert [(d["webhook_id"], d["status"]) for d in erp["fake"].deliveries] == [
        (recorded.message_id, 500), (other_recorded.message_id, 200), (recorded.message_id, 200),
        (refunded.message_id, 200)]
    assert [r["type"] for r in erp["fake"].received] == ["payment.recorded", "payment.recorded", "payment.refunded"]


def test_nothing_is_written_when_the_change_rolls_back(erp, worker):
    rung_before = len(worker.bells)
    with pytest.raises(RuntimeError), transaction.atomic():
        pay(erp["client"], [(erp["invoice"], "121.00")])
        raise RuntimeError("half-way")
    assert _messages() == []
    with staff_scope():
        assert not Job.objects.filter(kind="outbox.deliver").exists()
    assert len(worker.bells) == rung_before  # nothing rung for what never committed


def test_a_connection_disabled_before_delivery_leaves_the_message_dead_with_the_reason(erp, worker):
    pay(erp["client"], [(erp["invoice"], "121.00")])
    with staff_scope():
        Connection.objects.filter(pk=erp["connection"].pk).update(enabled=False)
    worker.run()
    job = _job(_messages()[0])
    assert job.state == State.DEAD and job.last_error == "connection 'erp' is disabled or has no address for payments"
    assert erp["fake"].deliveries == []
