"""The local Mollie (tests/fakes/mollie.py) through mollie-api-python, the way our gateway talks to
it: its faults (failures, slowness, forgotten idempotency keys), Idempotency-Key replays as
docs.mollie.com/overview/api-idempotency describes them, and listing a customer's payments to
find one made earlier by its metadata."""
import datetime
import logging
import threading
import time
import uuid

import pytest
import time_machine
from mollie.api.client import Client
from mollie.api.error import BadRequestError, ConflictError, RequestError, ResponseError

from tests.fakes.mollie import FakeMollie

API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"


@pytest.fixture
def mollie():
    with FakeMollie(API_KEY) as fake:
        yield fake


@pytest.fixture
def client(mollie):
    client = Client(api_endpoint=mollie.url, timeout=5)
    client.set_api_key(API_KEY)
    return client


def _payment_data(checkout: str, **extra) -> dict:
    return {"amount": {"currency": "EUR", "value": "121.00"}, "description": "Invoice M-1",
            "redirectUrl": "https://portal.test/pay/return", "method": "ideal",
            "metadata": {"checkout": checkout, "client": 7}, **extra}


def _wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_fail_next_answers_with_mollies_error_body_and_executes_nothing(mollie, client):
    mollie.fail_next(2, status=503)
    key = str(uuid.uuid4())
    for _ in range(2):
        with pytest.raises(ResponseError) as failed:
            client.payments.create(_payment_data("c-1"), idempotency_key=key)
        assert failed.value.status == 503 and "not executed" in str(failed.value)
    assert mollie.payments == {}
    # Not executed, so the key was not stored: the retry with it is the first real create.
    payment = client.payments.create(_payment_data("c-1"), idempotency_key=key)
    assert list(mollie.payments) == [payment.id]


def test_fail_next_defaults_to_500_and_counts_every_api_request(mollie, client):
    payment = client.payments.create(_payment_data("c-1"))
    mollie.fail_next(1)
    with pytest.raises(ResponseError) as failed:
        client.payments.get(payment.id)
    assert failed.value.status == 500
    assert client.payments.get(payment.id).id == payment.id


def test_an_injected_failure_has_mollies_error_shape(mollie):
    import requests

    mollie.fail_next(1, status=502)
    response = requests.get(f"{mollie.url}/v2/payments", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    body = response.json()
    assert response.status_code == 502 and response.headers["Content-Type"] == "application/hal+json"
    assert (body["status"], body["title"]) == (502, "Bad Gateway") and body["detail"]
    assert body["_links"]["documentation"]["type"] == "text/html" and "field" not in body


def test_a_replay_returns_the_identical_earlier_response_marked_replayed(mollie, client, caplog):
    key = str(uuid.uuid4())
    first = client.payments.create(_payment_data("c-1"), idempotency_key=key)
    mollie.set_status(first.id, "paid")
    with caplog.at_level(logging.WARNING):
        again = client.payments.create(_payment_data("c-1"), idempotency_key=key)
    assert dict(again) == dict(first) and again.status == "open"  # the cached response, not today's state
    assert "Idempotent-Replayed" in caplog.text  # the SDK saw the header and says so
    assert len(mollie.payments) == 1


def test_the_same_key_for_other_parameters_is_a_bad_request(mollie, client):
    key = str(uuid.uuid4())
    client.payments.create(_payment_data("c-1"), idempotency_key=key)
    with pytest.raises(BadRequestError):
        client.payments.create(_payment_data("c-2"), idempotency_key=key)
    with pytest.raises(BadRequestError):  # or for another endpoint
        client.customers.create({"name": "Northwind"}, idempotency_key=key)
    assert len(mollie.payments) == 1 and mollie.customers == {}


def test_a_slow_answer_times_out_yet_the_create_was_executed_and_a_retry_meanwhile_conflicts(mollie, client):
    mollie.delay_next(1, seconds=1.0)
    client.set_timeout(0.3)
    key = str(uuid.uuid4())
    with pytest.raises(RequestError, match="timed out"):
        client.payments.create(_payment_data("c-1"), idempotency_key=key)
    [made] = mollie.payments  # heard and executed, only the answer is late
    with pytest.raises(ConflictError):  # "still being processed" until the answer has left
        client.payments.create(_payment_data("c-1"), idempotency_key=key)
    _wait_for(lambda: key not in mollie.in_progress)
    client.set_timeout(5)
    assert client.payments.create(_payment_data("c-1"), idempotency_key=key).id == made
    assert list(mollie.payments) == [made]


def test_delay_next_delays_only_the_next_requests(mollie, client):
    mollie.delay_next(2, seconds=0.3)
    started = time.monotonic()
    customers = [client.customers.create({"name": f"C{i}"}) for i in range(3)]
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 2.0 and len(mollie.customers) == 3 and len({c.id for c in customers}) == 3


def test_after_the_key_is_forgotten_a_retry_is_a_second_payment_found_by_its_metadata(mollie, client):
    key = str(uuid.uuid4())
    first = client.payments.create(_payment_data("c-1"), idempotency_key=key)
    client.payments.create(_payment_data("c-other"))
    mollie.forget_idempotency_keys()
    second = client.payments.create(_payment_data("c-1"), idempotency_key=key)
    assert second.id != first.id
    assert [p["id"] for p in mollie.payments_for_metadata("checkout", "c-1")] == [first.id, second.id]
    assert mollie.payments_for_metadata("client", 7) and mollie.payments_for_metadata("checkout", "nope") == []


def test_keys_expire_after_24_hours(mollie, client):
    key = str(uuid.uuid4())
    first = client.payments.create(_payment_data("c-1"), idempotency_key=key)
    now = datetime.datetime.now(datetime.timezone.utc)
    with time_machine.travel(now + datetime.timedelta(hours=23, minutes=59), tick=True):
        assert client.payments.create(_payment_data("c-1"), idempotency_key=key).id == first.id
    with time_machine.travel(now + datetime.timedelta(hours=24, seconds=1), tick=True):
        assert client.payments.create(_payment_data("c-1"), idempotency_key=key).id != first.id


def test_listing_a_customers_payments_pages_newest_first_and_finds_one_by_metadata(mollie, client):
    customer_id = client.customers.create({"name": "Northwind", "email": "ap@northwind.test"}).id
    other_id = client.customers.create({"name": "Globex"}).id
    made = [client.payments.create(_payment_data(f"c-{i}", customerId=customer_id)).id for i in range(5)]
    client.payments.create(_payment_data("c-globex", customerId=other_id))
    client.payments.create(_payment_data("c-anonymous"))

    customer = client.customers.get(customer_id)
    page = customer.payments.list(limit=2)
    assert page.count == 2 and [p.id for p in page] == [made[4], made[3]]
    assert page.has_next() and not page.has_previous()
    assert page["_links"]["documentation"]["href"].endswith("/customers-api/list-customer-payments")
    second = page.get_next()
    assert [p.id for p in second] == [made[2], made[1]] and second.has_previous()
    last = second.get_next()
    assert [p.id for p in last] == [made[0]] and not last.has_next()
    assert [p.id for p in last.get_previous()] == [made[2], made[1]]

    # `from` starts the page at that payment, itself included; the default page holds them all.
    assert [p.id for p in customer.payments.list(**{"from": made[2]})] == [made[2], made[1], made[0]]
    assert customer.payments.list().count == 5

    # What a client does when it lost track of a create: look for its own metadata.
    def find(checkout):
        page = customer.payments.list(limit=2)
        while page is not None:
            for payment in page:
                if (payment.metadata or {}).get("checkout") == checkout:
                    return payment.id
            page = page.get_next()
        return None

    assert find("c-1") == made[1] and find("c-globex") is None and find("c-anonymous") is None


def test_listing_rejects_a_limit_over_250_and_an_unknown_customer(mollie, client):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    with pytest.raises(BadRequestError):
        customer.payments.list(limit=251)
    from mollie.api.error import NotFoundError
    from mollie.api.resources.payments import CustomerPayments

    with pytest.raises(NotFoundError):
        CustomerPayments(client, type(customer)({"id": "cst_unknown00"}, client)).list()


def test_a_customer_payment_created_through_the_customer_is_listed_for_it(mollie, client):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    payment = customer.payments.create(_payment_data("c-1"))
    assert payment.customer_id == customer.id
    assert [p.id for p in customer.payments.list()] == [payment.id]


def test_concurrent_creates_with_one_key_make_one_payment(mollie, client):
    mollie.delay_next(1, seconds=0.3)
    key = str(uuid.uuid4())
    outcomes = []

    def create():
        try:
            outcomes.append(client.payments.create(_payment_data("c-1"), idempotency_key=key).id)
        except ConflictError:
            outcomes.append("409")

    first = threading.Thread(target=create)
    first.start()
    _wait_for(lambda: key in mollie.in_progress)
    create()
    first.join()
    assert sorted(outcomes, key=len) == ["409", *mollie.payments] and len(mollie.payments) == 1
