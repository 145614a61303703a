"""Paying without leaving the portal, at the local Mollie (tests/fakes/mollie_components.py): card
tokens paid by the card they carry (Mollie's test cards), 3-D Secure and iDEAL's bank page, and the
Mandates API's create; then, in Chromium at phone width, the fake Mollie.js on a page of ours:
field errors, a token, 3-D Secure, back at the redirectUrl with the webhook called."""
import json
import re
import time
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from mollie.api.client import Client
from mollie.api.error import BadRequestError, NotFoundError, ResponseError, UnprocessableEntityError

from tests.fakes.base import LocalServer
from tests.fakes.mollie import FakeMollie

API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"
VISA, AMEX, MASTERCARD, DECLINED = "4543474002249996", "378282246310005", "2223000010479399", "4000000000000002"


class Shop(LocalServer):
    """The merchant: a checkout page that mounts the fake Mollie.js (GET /), a return page (GET
    /return) and a webhook (POST /webhook). Every request it gets is kept in `heard`."""

    def __init__(self, mollie_url: str = "", locale: str = "en_US"):
        self.mollie_url, self.locale = mollie_url, locale
        self.heard: list[tuple[str, str, str]] = []  # (method, path, body)
        super().__init__()

    def webhooks(self) -> list[str]:
        return [body for method, path, body in self.heard if (method, path) == ("POST", "/webhook")]

    def _handler(self):
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, page: str) -> None:
                payload = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                shop.heard.append(("GET", self.path, ""))
                self._answer(CHECKOUT_PAGE.replace("MOLLIE", shop.mollie_url).replace("LOCALE", shop.locale)
                             if self.path == "/" else "<!DOCTYPE html><title>Shop</title><h1>Back at the shop</h1>")

            def do_POST(self):
                shop.heard.append(("POST", self.path, self.rfile.read(int(self.headers["Content-Length"])).decode()))
                self._answer("")

        return Handler


CHECKOUT_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Pay invoice</title>
<style>body{font-family:sans-serif;margin:0;padding:1rem}.mollie-component{border:1px solid #767676;border-radius:4px}
.mollie-component.is-invalid{border-color:#b00020}</style></head><body><form id="pay">
<p id="card-holder-label">Card holder</p><div id="card-holder"></div><p id="card-holder-error"></p>
<p>Card number</p><div id="card-number"></div><p id="card-number-error"></p>
<p>Expiry date</p><div id="expiry-date"></div><p id="expiry-date-error"></p>
<p>CVC</p><div id="verification-code"></div><p id="verification-code-error"></p>
<button type="submit">Pay</button></form><output id="result"></output>
<script src="MOLLIE/v1/mollie.js"></script>
<script>
var mollie = Mollie('pfl_QkEhN94Ba', {locale: 'LOCALE', testmode: true});
var places = {cardHolder: 'card-holder', cardNumber: 'card-number', expiryDate: 'expiry-date',
              verificationCode: 'verification-code'};
Object.keys(places).forEach(function (type) {
  var component = mollie.createComponent(type);
  component.mount('#' + places[type]);
  var shown = document.getElementById(places[type] + '-error');
  component.addEventListener('change', function (e) { shown.textContent = e.error && e.touched ? e.error : ''; });
});
document.getElementById('pay').addEventListener('submit', async function (e) {
  e.preventDefault();
  var result = await mollie.createToken();
  document.getElementById('result').textContent = result.token ? 'token ' + result.token : 'error ' + result.error.message;
});
</script></body></html>"""


@pytest.fixture
def mollie():
    with FakeMollie(API_KEY) as fake:
        yield fake


@pytest.fixture
def client(mollie):
    client = Client(api_endpoint=mollie.url, timeout=5)
    client.set_api_key(API_KEY)
    return client


@pytest.fixture
def shop():
    with Shop() as shop:
        yield shop


def _token(mollie, number: str, *, expiry="12/39", cvc="123", testmode=True, locale="en_US") -> requests.Response:
    """What the four iframes and Mollie.js send: each field's value under the session, then the token request."""
    session = uuid.uuid4().hex
    for kind, value in (("cardHolder", "T. Tester"), ("cardNumber", number), ("expiryDate", expiry),
                        ("verificationCode", cvc)):
        requests.post(f"{mollie.url}/components/{session}/{kind}", json={"value": value}, timeout=5)
    return requests.post(f"{mollie.url}/v1/tokens", timeout=5, data=json.dumps(
        {"session": session, "profileId": "pfl_QkEhN94Ba", "testmode": testmode, "locale": locale}))


def _card_payment(client, mollie, shop, number: str, value="121.00", **extra):
    return client.payments.create({
        "amount": {"currency": "EUR", "value": value}, "description": "Invoice M-1", "method": "creditcard",
        "redirectUrl": f"{shop.url}/return", "webhookUrl": f"{shop.url}/webhook",
        "cardToken": _token(mollie, number).json()["token"], **extra})


def _wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("number,label", [(VISA, "Visa"), (AMEX, "American Express")])
def test_mollies_visa_and_amex_test_cards_are_paid_at_once_without_3d_secure(client, mollie, shop, number, label):
    payment = _card_payment(client, mollie, shop, number)
    assert payment.status == "paid" and payment.checkout_url is None and payment.method == "creditcard"
    details = payment.details
    assert (details["cardNumber"], details["cardLabel"], details["cardHolder"]) == (number[-4:], label, "T. Tester")
    assert details["cardSecurity"] == "normal" and details["cardToken"].endswith("test")
    _wait_for(lambda: shop.webhooks() == [f"id={payment.id}"])  # a final status: Mollie calls the webhook


def test_mollies_mastercard_test_card_needs_3d_secure_on_the_checkout_link(client, mollie, shop):
    payment = _card_payment(client, mollie, shop, MASTERCARD)
    assert payment.status == "open" and payment.checkout_url == f"{mollie.url}/checkout/3ds/{payment.id}"
    assert set(payment.details) == {"cardToken"}  # the card's details come once the payment is completed


def test_the_declined_card_fails_with_mollies_failure_reason_and_a_message_in_the_payments_locale(
        client, mollie, shop):
    payment = _card_payment(client, mollie, shop, DECLINED)
    assert payment.status == "failed" and payment.checkout_url is None
    assert payment.details["failureReason"] == "card_declined"
    assert payment.details["failureMessage"] == "The card was declined. Please use another card."
    dutch = _card_payment(client, mollie, shop, DECLINED, locale="nl_NL")
    assert dutch.details["failureMessage"] == "De kaart is geweigerd. Gebruik een andere kaart."


def test_a_magic_amount_fails_a_card_payment_with_its_reason(client, mollie, shop):
    payment = _card_payment(client, mollie, shop, VISA, value="1007.00")
    assert payment.status == "failed" and payment.details["failureReason"] == "insufficient_funds"


def test_a_token_is_refused_when_unknown_used_or_sent_with_another_method(client, mollie, shop):
    data = {"amount": {"currency": "EUR", "value": "10.00"}, "description": "Invoice M-2",
            "redirectUrl": f"{shop.url}/return"}
    with pytest.raises(UnprocessableEntityError) as unknown:
        client.payments.create({**data, "method": "creditcard", "cardToken": "tkn_madeuptest"})
    assert unknown.value.field == "cardToken"
    token = _token(mollie, VISA).json()["token"]
    with pytest.raises(UnprocessableEntityError) as other_method:
        client.payments.create({**data, "method": "ideal", "cardToken": token})
    assert other_method.value.field == "method"
    client.payments.create({**data, "method": "creditcard", "cardToken": token})
    with pytest.raises(UnprocessableEntityError) as used:
        client.payments.create({**data, "method": "creditcard", "cardToken": token})
    assert used.value.field == "cardToken"
    live = _token(mollie, VISA, testmode=False).json()["token"]
    assert not live.endswith("test")
    with pytest.raises(UnprocessableEntityError):  # a live token does not go with a test key
        client.payments.create({**data, "method": "creditcard", "cardToken": live})


@pytest.mark.parametrize("field", ["number", "expiry", "cvc"])
def test_no_token_for_a_card_with_an_invalid_field(mollie, field):
    bad = {"number": {"number": "4543474002249997"}, "expiry": {"expiry": "01/20"}, "cvc": {"cvc": "12"}}[field]
    answer = _token(mollie, **{"number": VISA, **bad})
    assert answer.status_code == 422 and answer.json() == {"error": {"message": "Please check your card details."}}
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert _token(mollie, "1234", locale="nl_NL").json()["error"]["message"] == "Controleer uw kaartgegevens."


def test_failing_3d_secure_fails_the_payment_calls_the_webhook_and_returns_to_the_shop(client, mollie, shop):
    payment = _card_payment(client, mollie, shop, MASTERCARD)
    page = requests.get(payment.checkout_url, timeout=5)
    assert 'data-testid=\'3ds-fail\'' in page.text and "Complete authentication" in page.text
    answer = requests.post(payment.checkout_url, data={"outcome": "fail"}, allow_redirects=False, timeout=5)
    assert answer.status_code == 303 and answer.headers["Location"] == f"{shop.url}/return"
    assert shop.webhooks() == [f"id={payment.id}"]  # called before the browser is sent back
    failed = client.payments.get(payment.id)
    assert failed.status == "failed" and failed.details["failureReason"] == "authentication_failed"
    assert failed.details["cardSecurity"] == "3dsecure" and failed.details["cardNumber"] == "9399"
    again = requests.get(payment.checkout_url, allow_redirects=False, timeout=5)  # done: back to the shop
    assert again.status_code == 303 and len(shop.webhooks()) == 1


def test_an_ideal_payment_goes_to_the_banks_page_where_approve_pays_and_cancel_cancels(client, mollie, shop):
    data = {"amount": {"currency": "EUR", "value": "121.00"}, "description": "Invoice M-3", "method": "ideal",
            "redirectUrl": f"{shop.url}/return", "webhookUrl": f"{shop.url}/webhook"}
    approved, canceled = client.payments.create(data), client.payments.create(data)
    assert approved.checkout_url == f"{mollie.url}/checkout/ideal/{approved.id}"
    page = requests.get(approved.checkout_url, timeout=5).text
    assert "<title>Test bank — iDEAL</title>" in page and "data-testid='bank-approve'" in page
    for payment, outcome in ((approved, "approve"), (canceled, "cancel")):
        answer = requests.post(payment.checkout_url, data={"outcome": outcome}, allow_redirects=False, timeout=5)
        assert answer.status_code == 303 and answer.headers["Location"] == f"{shop.url}/return"
    assert client.payments.get(approved.id).status == "paid" and client.payments.get(canceled.id).status == "canceled"
    assert shop.webhooks() == [f"id={approved.id}", f"id={canceled.id}"]
    method_less = client.payments.create({**data, "method": None})
    assert "/checkout/select-method/" in method_less.checkout_url


MANDATE = {"method": "directdebit", "consumerName": "Northwind Traders B.V.", "consumerAccount": "NL91 ABNA 0417 1643 00",
           "consumerBic": "ABNANL2A", "signatureDate": "2026-11-01", "mandateReference": "PORTAL-MD-7"}


def test_a_mandate_created_through_the_api_is_valid_and_can_be_fetched_and_collected_on(client, mollie):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    mandate = customer.mandates.create(MANDATE, idempotency_key="mandate-1")
    assert (mandate.status, mandate.method, mandate.signature_date, mandate.mandate_reference) == (
        "valid", "directdebit", "2026-11-01", "PORTAL-MD-7")
    assert mandate.details == {"consumerName": "Northwind Traders B.V.", "consumerAccount": "NL91ABNA0417164300",
                               "consumerBic": "ABNANL2A"}
    assert customer.mandates.get(mandate.id).id == mandate.id
    assert [m.id for m in customer.mandates.list()] == [mandate.id]
    collected = customer.payments.create({"amount": {"currency": "EUR", "value": "60.50"}, "description": "Invoice M-4",
                                          "sequenceType": "recurring", "mandateId": mandate.id})
    assert (collected.status, collected.method, collected.mandate_id) == ("pending", "directdebit", mandate.id)
    customer.mandates.delete(mandate.id)
    assert customer.mandates.get(mandate.id).status == "invalid"
    with pytest.raises(UnprocessableEntityError):  # revoked: no more collections on it
        customer.payments.create({"amount": {"currency": "EUR", "value": "60.50"}, "description": "Invoice M-5",
                                  "sequenceType": "recurring", "mandateId": mandate.id})


def test_a_repeated_mandate_create_with_its_key_is_replayed_not_made_twice(client, mollie):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    first = customer.mandates.create(MANDATE, idempotency_key="mandate-1")
    assert customer.mandates.create(MANDATE, idempotency_key="mandate-1").id == first.id
    with pytest.raises(BadRequestError):  # the same key for another mandate
        customer.mandates.create({**MANDATE, "mandateReference": "PORTAL-MD-8"}, idempotency_key="mandate-1")
    assert list(mollie.mandates[customer.id]) == [first.id]


@pytest.mark.parametrize("change,field", [
    ({"consumerAccount": "NL91ABNA0417164301"}, "consumerAccount"),  # one digit off: the checksum fails
    ({"consumerAccount": ""}, "consumerAccount"), ({"consumerName": ""}, "consumerName"),
    ({"signatureDate": "01-11-2026"}, "signatureDate"), ({"method": "creditcard"}, "method"),
])
def test_a_mandate_with_an_invalid_field_is_refused_on_that_field(client, change, field):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    with pytest.raises(UnprocessableEntityError) as refused:
        customer.mandates.create({**MANDATE, **change})
    assert refused.value.field == field


def test_an_account_not_enabled_for_the_mandates_api_is_refused_with_403(client, mollie):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    mollie.mandates_api_allowed = False
    with pytest.raises(ResponseError) as refused:
        customer.mandates.create(MANDATE)
    assert refused.value.status == 403 and mollie.mandates == {}
    answer = requests.post(f"{mollie.url}/v2/customers/{customer.id}/mandates", json=MANDATE, timeout=5,
                           headers={"Authorization": f"Bearer {API_KEY}"})
    body = answer.json()
    assert (answer.status_code, body["status"], body["title"]) == (403, 403, "Forbidden") and "field" not in body
    assert body["detail"] and body["_links"]["documentation"]["type"] == "text/html"
    with pytest.raises(NotFoundError):
        customer.mandates.get("mdt_unknown00")


# In Chromium, at phone width: the fake Mollie.js mounted on a page of ours (another origin).
@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="en-GB")
    yield context.new_page()
    context.close()


def _field(page, title: str, name: str):
    return page.frame_locator(f"iframe[title='{title}']").locator(f"input[name='{name}']")


def _no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


@pytest.mark.e2e
def test_card_fields_show_their_errors_a_valid_card_becomes_a_token_and_3d_secure_brings_the_payer_back(
        mollie, client, phone):
    from playwright.sync_api import expect

    with Shop(mollie.url) as shop:
        sent = []  # (frame url, body) of every request the browser sends with a body
        phone.on("request", lambda request: sent.append((request.frame.url, request.post_data or "")))
        phone.goto(shop.url)
        number = _field(phone, "Card number", "cardNumber")
        number.fill("4111 1111 1111 1112")  # one digit off: Luhn fails
        expect(phone.locator("#card-number-error")).to_have_text("Card number is invalid")
        container = phone.locator(".mollie-component--cardNumber")  # Mollie's state classes, for styling
        expect(container).to_have_class(re.compile(r"^(?=.*\bis-touched\b)(?=.*\bis-invalid\b)(?!.*is-loading)"))
        number.fill("2223 0000 1047 9399")
        expect(phone.locator("#card-number-error")).to_have_text("")
        _field(phone, "Card holder", "cardHolder").fill("T. Tester")
        _field(phone, "Expiry date", "expiryDate").fill("12/39")
        _field(phone, "CVC", "verificationCode").fill("12")
        expect(phone.locator("#verification-code-error")).to_have_text("CVC is invalid")
        phone.get_by_role("button", name="Pay").click()
        expect(phone.locator("#result")).to_have_text("error Please check your card details.")
        _field(phone, "CVC", "verificationCode").fill("123")
        phone.get_by_role("button", name="Pay").click()
        expect(phone.locator("#result")).to_have_text(re.compile(r"token tkn_\w+test"))
        _no_sideways_scroll(phone)
        token = phone.locator("#result").text_content().split()[1]

        # The card number went only from the iframes to Mollie's origin: never through our page or server.
        carried = [frame for frame, body in sent if "2223 0000 1047 9399" in body]
        assert carried and all(frame.startswith(f"{mollie.url}/components/cardNumber") for frame in carried)
        assert not any("2223" in f"{path} {body}" for _, path, body in shop.heard)

        payment = client.payments.create({
            "amount": {"currency": "EUR", "value": "121.00"}, "description": "Invoice M-1", "method": "creditcard",
            "cardToken": token, "redirectUrl": f"{shop.url}/return", "webhookUrl": f"{shop.url}/webhook"})
        phone.goto(payment.checkout_url)
        expect(phone.get_by_role("heading", name="Confirm your payment")).to_be_visible()
        _no_sideways_scroll(phone)
        phone.get_by_test_id("3ds-complete").click()
        expect(phone.get_by_role("heading", name="Back at the shop")).to_be_visible()
        assert phone.url == f"{shop.url}/return" and shop.webhooks() == [f"id={payment.id}"]
        paid = client.payments.get(payment.id)
        assert paid.status == "paid" and paid.details["cardNumber"] == "9399" and paid.details["cardLabel"] == "Mastercard"


@pytest.mark.e2e
def test_dutch_card_fields_speak_dutch_and_an_unknown_component_type_throws(mollie, phone):
    from playwright.sync_api import expect

    with Shop(mollie.url, locale="nl_NL") as shop:
        phone.goto(shop.url)
        number = _field(phone, "Kaartnummer", "cardNumber")
        expect(number).to_have_attribute("placeholder", "1234 5678 9012 3456")
        expect(_field(phone, "Kaarthouder", "cardHolder")).to_be_visible()
        number.fill("1234")
        expect(phone.locator("#card-number-error")).to_have_text("Kaartnummer is ongeldig")
        phone.get_by_role("button", name="Pay").click()  # the untouched fields show their errors too
        expect(phone.locator("#expiry-date-error")).to_have_text("Vul een vervaldatum in")
        expect(phone.locator("#result")).to_have_text("error Controleer uw kaartgegevens.")
        thrown = phone.evaluate("() => { try { Mollie('pfl_QkEhN94Ba').createComponent('cardPin'); }"
                                " catch (e) { return e.message; } }")
        assert "invalid component type" in thrown and "cardNumber" in thrown


@pytest.mark.e2e
def test_the_ideal_bank_page_fits_a_phone_and_approving_returns_to_the_shop(mollie, client, shop, phone):
    from playwright.sync_api import expect

    payment = client.payments.create({
        "amount": {"currency": "EUR", "value": "121.00"}, "description": "Invoice M-3 for Northwind Traders B.V.",
        "method": "ideal", "redirectUrl": f"{shop.url}/return", "webhookUrl": f"{shop.url}/webhook"})
    phone.goto(payment.checkout_url)
    expect(phone).to_have_title("Test bank — iDEAL")
    _no_sideways_scroll(phone)
    phone.get_by_test_id("bank-approve").click()
    expect(phone.get_by_role("heading", name="Back at the shop")).to_be_visible()
    assert shop.webhooks() == [f"id={payment.id}"] and client.payments.get(payment.id).status == "paid"


def test_a_first_payment_by_card_signs_a_card_mandate_that_recurring_payments_charge(client, mollie, shop):
    customer = client.customers.get(client.customers.create({"name": "Northwind"}).id)
    first = _card_payment(client, mollie, shop, VISA, sequenceType="first", customerId=customer.id)
    assert first.status == "paid" and first.mandate_id
    mandate = customer.mandates.get(first.mandate_id)
    assert (mandate.method, mandate.details["cardNumber"], mandate.details["cardExpiryDate"]) == (
        "creditcard", "9996", "2039-12-31")
    later = customer.payments.create({"amount": {"currency": "EUR", "value": "60.50"}, "description": "Invoice M-6",
                                      "sequenceType": "recurring", "mandateId": mandate.id})
    assert later.method == "creditcard"
