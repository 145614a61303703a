"""Back to the ERP (issue 16, point 3): a custom ERP the portal pulls from is told of portal payments,
refunds and chargebacks by a REST call or a GraphQL mutation built from the outbox message by
JMESPath, against the local ERP (tests/fakes/erp.py): in order, once (the message id as the
Idempotency-Key and messageId), retried, dead with the ERP's answer, replayed by staff; or by the
signed webhook, as before."""
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations import outbox
from integrations.erp import push
from integrations.erp.models import ErpPull
from integrations.models import ClientLink, Connection, OutboxMessage
from integrations.signing import generate_secret
from invoices import services
from invoices.models import PaymentAllocation
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.accounting import FakeAccounting
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory

D = Decimal
State = Job.State

REST_PUSH = {"method": "POST", "path": "portal-payments", "body": {
    "message": "id", "kind": "kind", "customer": "data.client_external_id", "amount": "data.amount",
    "currency": "data.currency", "paid_at": "data.received_at", "reference": "data.reference",
    "invoices": "data.allocations[].invoice_number", "source": "'portal'"}}
MUTATION = ("mutation Tell($input: PortalPaymentInput!) {\n"
            "  recordPortalPayment(input: $input) { id duplicate }\n}")
GRAPHQL_PUSH = {"mutation": MUTATION, "variables": {"input": {
    "messageId": "id", "kind": "kind", "customerId": "data.client_external_id", "amount": "data.amount",
    "currency": "data.currency", "paidAt": "data.received_at", "reference": "data.reference",
    "invoiceNumbers": "data.allocations[].invoice_number"}}}


@pytest.fixture
def local_erp(erp_server):
    erp_server.reset()
    return erp_server


def _erp_fields(fake, flavour: str) -> dict:
    if flavour == "rest":
        return {"style": ErpPull.Style.REST, "base_url": fake.rest_url, "auth": ErpPull.Auth.BEARER,
                "credentials": {"token": fake.rest_token}, "push": ErpPull.Push.REST, "push_request": REST_PUSH}
    return {"style": ErpPull.Style.GRAPHQL, "base_url": fake.graphql_url, "auth": ErpPull.Auth.OAUTH2,
            "credentials": {"token_url": fake.token_url, "client_id": fake.client_id,
                            "client_secret": fake.client_secret, "scope": "read write"},
            "push": ErpPull.Push.GRAPHQL, "push_request": GRAPHQL_PUSH}


def _world(fake, **erp_fields) -> dict:
    brand = BrandFactory(is_default=True)
    client = ClientFactory(brand=brand)
    connection = Connection.objects.create(name="In-house ERP", slug="erp", brand=brand, kind=Connection.Kind.ERP_PULL,
                                           signing_secrets=erp_fields.pop("signing_secrets", generate_secret()),
                                           outbound_url=erp_fields.pop("outbound_url", ""))
    erp = ErpPull.objects.create(connection=connection, **erp_fields)
    ClientLink.objects.create(connection=connection, external_id="C001", client=client)
    invoice = make_invoice(client, number="2026-0001", connection=connection, external_id="INV-1001",
                           lines=[line(unit_price="200.00")])
    return {"fake": fake, "client": client, "invoice": invoice, "connection": connection, "erp": erp}


@pytest.fixture(params=["rest", "graphql"])
def world(request, local_erp, committed, worker):
    flavour = request.param
    built = committed.create(lambda: _world(local_erp, **_erp_fields(local_erp, flavour)))
    return {**built, "flavour": flavour}


def _messages():
    with staff_scope():
        return list(OutboxMessage.objects.order_by("id"))


def _job(message: OutboxMessage) -> Job:
    with staff_scope():
        return Job.objects.get(key=message.job_key)


def _set_push_request(world, push_request: dict) -> None:
    with staff_scope():
        ErpPull.objects.filter(pk=world["erp"].pk).update(push_request=push_request)


def _what_the_erp_recorded(fake, flavour: str) -> list[tuple]:
    """(key, kind, amount, customer, invoices) of each payment the ERP recorded, in order."""
    if flavour == "rest":
        return [(r["key"], r["body"]["kind"], r["body"]["amount"], r["body"]["customer"], r["body"]["invoices"])
                for r in fake.received]
    return [(r["key"], r["body"]["kind"], r["body"]["amount"], r["body"]["customerId"], r["body"]["invoiceNumbers"])
            for r in fake.received]


def test_a_payment_a_refund_and_a_chargeback_are_each_told_once_in_order(world, worker):
    payment = pay(world["client"], [(world["invoice"], "242.00")])
    with staff_scope():
        services.payment_reverse(payment=payment, invoice=world["invoice"], amount=D("42.00"))
        services.payment_reverse(payment=payment, invoice=world["invoice"], amount=D("200.00"),
                                 kind=PaymentAllocation.Kind.CHARGEBACK)
    recorded, refunded, charged_back = _messages()
    assert [m.event_type for m in (recorded, refunded, charged_back)] == [
        "payment.recorded", "payment.refunded", "payment.charged_back"]

    worker.run()
    fake = world["fake"]
    assert _what_the_erp_recorded(fake, world["flavour"]) == [
        (recorded.message_id, "payment", "242.00", "C001", ["2026-0001"]),
        (refunded.message_id, "refund", "42.00", "C001", ["2026-0001"]),
        (charged_back.message_id, "chargeback", "200.00", "C001", ["2026-0001"])]
    for message, received in zip(_messages(), fake.received):
        headers = {k.lower(): v for k, v in received["headers"].items()}
        assert headers["idempotency-key"] == message.message_id
        assert headers["content-type"] == "application/json"  # (recorded only when the credentials held)
        assert message.delivered_at is not None and message.response_status in (200, 201)
        assert _job(message).state == State.DONE and received["id"] in _job(message).result
        assert fake.booked(message.message_id) == 1
    if world["flavour"] == "rest":
        assert fake.received[0]["body"]["source"] == "portal"  # a constant, as a JMESPath literal
        assert fake.received[0]["body"]["paid_at"] == "2026-11-25T12:00:00+00:00"
    else:
        assert len(fake.token_calls) == 1  # one access token, kept for the next messages


def test_a_failed_attempt_is_retried_and_the_erp_records_the_payment_once(world, worker):
    pay(world["client"], [(world["invoice"], "242.00")])
    [message] = _messages()
    world["fake"].fail_next(1, status=500)
    worker.run()
    job = _job(message)
    assert job.state == State.RETRYING and job.last_error.startswith("the ERP answered 500")
    assert (_messages()[0].response_status, _messages()[0].delivered_at) == (500, None)

    worker.make_due(job)
    worker.run()
    assert _job(message).state == State.DONE
    attempts = [d for d in world["fake"].deliveries if d["key"] == message.message_id]
    assert len(attempts) == 1  # the 500 came before the ERP looked at it
    assert world["fake"].booked(message.message_id) == 1



def test_a_refund_waits_while_the_payment_it_reverses_is_retried(world, worker):
    payment = pay(world["client"], [(world["invoice"], "242.00")])
    with staff_scope():
        services.payment_reverse(payment=payment, invoice=world["invoice"], amount=D("42.00"))
    recorded, refunded = _messages()
    world["fake"].fail_next(1, status=502)
    worker.run()
    assert [_job(m).state for m in (recorded, refunded)] == [State.RETRYING, State.PENDING]
    assert world["fake"].received == []

    worker.make_due(_job(recorded))
    worker.run()
    assert [r["key"] for r in world["fake"].received] == [recorded.message_id, refunded.message_id]

def test_an_answer_lost_on_the_way_is_retried_under_the_same_key_and_recorded_once(world, worker, monkeypatch):
    monkeypatch.setattr(push, "TIMEOUT", (3, 0.5))
    world["fake"].delay_next(1, seconds=1.5)  # records it, then answers too late
    pay(world["client"], [(world["invoice"], "242.00")])
    worker.run()
    [message] = _messages()
    assert _job(message).state == State.RETRYING and "ReadTimeout" in _job(message).last_error

    worker.make_due(_job(message))
    worker.run()
    assert _job(message).state == State.DONE
    attempts = [d for d in world["fake"].deliveries if d["key"] == message.message_id]
    assert len(attempts) == 2 and world["fake"].booked(message.message_id) == 1
    assert len(world["fake"].received) == 1


def test_a_rate_limit_waits_as_long_as_the_erp_asks(world, worker):
    world["fake"].rate_limit_next(1, retry_after=120)
    pay(world["client"], [(world["invoice"], "242.00")])
    worker.run()
    job = _job(_messages()[0])
    assert job.state == State.RETRYING and job.last_error.startswith("the ERP answered 429")
    wait = (job.run_after - timezone.now()).total_seconds()
    assert 110 <= wait <= 151  # Retry-After: 120, spread by up to a quarter, never shortened


def test_a_refused_request_is_dead_with_the_erps_answer_and_told_once_after_the_mapping_is_fixed(world, worker,
                                                                                             client, staff):
    good = REST_PUSH if world["flavour"] == "rest" else GRAPHQL_PUSH
    if world["flavour"] == "rest":
        broken = {**REST_PUSH, "path": "portal-payment"}  # a typo: the ERP has no such resource
    else:
        no_amount = {**GRAPHQL_PUSH["variables"]["input"], "amount": "data.total"}  # no such field: null
        broken = {**GRAPHQL_PUSH, "variables": {"input": no_amount}}
    _set_push_request(world, broken)
    pay(world["client"], [(world["invoice"], "242.00")])
    [message] = _messages()
    worker.run()
    dead = _job(message)
    assert dead.state == State.DEAD and dead.attempts == 1  # another try would be refused again
    assert "fix the mapping, then replay this job" in dead.last_error
    if world["flavour"] == "rest":
        assert dead.last_error.startswith("the ERP answered 404 on POST /rest/portal-payment:")
    else:
        assert "GraphQL errors" in dead.last_error and "amount" in dead.last_error
    assert world["fake"].received == []

    _set_push_request(world, good)
    client.force_login(staff)
    page = client.post("/admin/portal/job/", {"action": "replay_dead_jobs", "_selected_action": [dead.pk]},
                       follow=True)
    assert b"1 replayed; 0 skipped" in page.content
    worker.run()
    assert _job(message).state == State.DONE and _messages()[0].delivered_at is not None
    assert world["fake"].booked(message.message_id) == 1 and len(world["fake"].received) == 1


def test_a_message_dead_after_its_last_try_is_replayed_and_recorded_once(world, worker, client, staff):
    pay(world["client"], [(world["invoice"], "242.00")])
    [message] = _messages()
    max_attempts = jobs.handler_for("outbox.deliver").max_attempts
    world["fake"].fail_next(max_attempts, status=503)
    for _ in range(max_attempts):
        worker.make_due(_job(message))
        worker.run()
    dead = _job(message)
    assert (dead.state, dead.attempts) == (State.DEAD, max_attempts) and dead.last_error.startswith("the ERP answered 503")

    client.force_login(staff)
    client.post("/admin/portal/job/", {"action": "replay_dead_jobs", "_selected_action": [dead.pk]})
    worker.run()
    assert _job(message).state == State.DONE
    assert world["fake"].booked(message.message_id) == 1


def test_an_invoice_the_portal_issued_is_not_told_by_the_payments_mapping(world, worker):
    with staff_scope():
        message = outbox.outbox_write(connection=world["connection"], event_type="invoice.created",
                                      data={"external_id": "portal-invoice-1"}, subject="outbox:invoice:1")
    worker.run()
    job = _job(message)
    assert job.state == State.DONE and "not told" in job.result
    assert world["fake"].deliveries == [] and _messages()[0].delivered_at is not None


@pytest.mark.parametrize("world", ["graphql"], indirect=True)
def test_an_access_token_refused_before_its_time_is_fetched_again_once(world, worker):
    pay(world["client"], [(world["invoice"], "100.00")])
    worker.run()
    world["fake"].expire_tokens()  # the ERP forgets it; the portal still thinks it good for an hour
    pay(world["client"], [(world["invoice"], "142.00")])
    worker.run()
    assert [m.delivered_at is not None for m in _messages()] == [True, True]
    assert len(world["fake"].token_calls) == 2 and len(world["fake"].received) == 2


@pytest.mark.parametrize("world", ["graphql"], indirect=True)
def test_credentials_the_erp_refuses_leave_the_message_dead_with_the_reason(world, worker):
    with staff_scope():
        ErpPull.objects.filter(pk=world["erp"].pk).update(
            credentials={**world["erp"].credentials, "client_secret": "wrong"})
    pay(world["client"], [(world["invoice"], "242.00")])
    worker.run()
    job = _job(_messages()[0])
    assert job.state == State.DEAD and "invalid_client" in job.last_error and "fix the credentials" in job.last_error


def test_a_connection_whose_erp_is_not_told_writes_no_message(local_erp, committed, worker):
    world = committed.create(lambda: _world(local_erp, base_url=local_erp.rest_url, push=ErpPull.Push.NONE))
    pay(world["client"], [(world["invoice"], "242.00")])
    assert _messages() == []
    assert not outbox.takes_payments_back(world["connection"])


def test_the_signed_webhook_push_is_unchanged(local_erp, committed, worker):
    secret = generate_secret()
    with FakeAccounting(secret) as receiver:
        world = committed.create(lambda: _world(local_erp, base_url=local_erp.rest_url, push=ErpPull.Push.WEBHOOK,
                                                signing_secrets=secret, outbound_url=receiver.url))
        payment = pay(world["client"], [(world["invoice"], "242.00")])
        with staff_scope():
            services.payment_reverse(payment=payment, invoice=world["invoice"], amount=D("42.00"))
        worker.run()
    recorded, refunded = _messages()
    assert [(r["id"], r["type"], r["data"]["amount"]) for r in receiver.received] == [
        (recorded.message_id, "payment.recorded", "242.00"), (refunded.message_id, "payment.refunded", "42.00")]
    assert receiver.rejected == [] and _job(recorded).result == "HTTP 200"
    assert local_erp.received == []


def test_push_preview_shows_the_request_without_secrets(local_erp):
    erp = ErpPull(base_url="https://erp.example.com/api/", auth=ErpPull.Auth.BEARER,
                  credentials={"token": "s3cret-token"}, push=ErpPull.Push.REST, push_request=REST_PUSH)
    preview = push.push_preview(erp, push.sample_payload("payment.refunded"))
    assert preview["method"] == "POST" and preview["url"] == "https://erp.example.com/api/portal-payments"
    assert preview["headers"]["Idempotency-Key"] == push.PREVIEW_ID
    assert preview["headers"]["Authorization"] == "Bearer (the configured token)"
    assert "s3cret-token" not in repr(preview)
    assert preview["body"] == {"message": push.PREVIEW_ID, "kind": "refund", "customer": "C001", "amount": "242.00",
                               "currency": "EUR", "paid_at": "2026-03-02T10:14:58+00:00", "reference": "INV-1001",
                               "invoices": ["2026-0001"], "source": "portal"}

    graphql = ErpPull(base_url="https://erp.example.com/graphql", auth=ErpPull.Auth.OAUTH2,
                      credentials={"client_secret": "sh"}, push=ErpPull.Push.GRAPHQL, push_request=GRAPHQL_PUSH)
    preview = push.push_preview(graphql, push.sample_payload())
    assert preview["url"] == "https://erp.example.com/graphql"
    assert preview["body"]["query"] == MUTATION
    assert preview["body"]["variables"]["input"]["kind"] == "payment"

    graphql.push_request = {"mutation": MUTATION, "variables": {"input": {"amount": "data.amount ||| x"}}}
    assert "variables.input.amount" in push.push_preview(graphql, push.sample_payload())["error"]
    graphql.push_request = {"variables": {}}
    assert "mutation" in push.push_preview(graphql, push.sample_payload())["error"]



def test_the_connections_page_shows_what_the_erp_would_be_told_before_a_payment_goes_out(world, client, staff):
    client.force_login(staff)
    page = client.get(f"/admin/integrations/erppull/{world['erp'].pk}/change/").content.decode()
    assert 'data-testid="erp-push-samples"' in page and "A payment" in page and "A refund" in page
    assert world["fake"].rest_token not in page and world["fake"].client_secret not in page
    assert ("POST " + (world["fake"].rest_url + "portal-payments" if world["flavour"] == "rest"
                       else world["fake"].graphql_url)) in page
    assert "242.00" in page  # the sample payment, mapped into the body
    _set_push_request(world, {"method": "POST", "path": "payments", "body": {"amount": "data.amount +"}}
                      if world["flavour"] == "rest" else {"mutation": "", "variables": {"x": "data.["}})
    broken = client.get(f"/admin/integrations/erppull/{world['erp'].pk}/change/").content.decode()
    assert 'data-testid="erp-push-error"' in broken
