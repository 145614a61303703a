"""Paying without leaving the portal, Mollie's side, seen by the caller with no browser: a card
token from Mollie Components (made at the fake as Mollie.js makes one) is paid at once, declined
(said on the checkout page, the typed amounts kept, a new form key), sent through 3-D Secure, or
refused; SEPA direct debit is signed in the portal's own IBAN form through Mollie's Mandates API
and collected on at once (or, where the account may not make mandates, a first payment signs
one), and a mandate that collects all picks up the client's later invoices. Stripe's side:
test_embedded_checkout.py."""
import re
import time
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice, Payment
from payments.mandates import collections_run
from payments.models import CheckoutAttempt, GatewayAccount, Mandate
from portal.models import Notification, NotificationKind
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice
from tests.payments.conftest import API_KEY
from tests.payments.test_embedded_checkout import PortalServer, _origin
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal
PROFILE_ID = "pfl_QkEhN94Ba"
CREDITOR_ID = "NL57ZZZ999999999999"  # python-stdnum's eu.at_02 accepts it
IBAN_TYPED, IBAN = "nl91 abna 0417 1643 00", "NL91ABNA0417164300"
PAID_AT_ONCE, THREE_D_SECURE, DECLINED = "4543474002249996", "2223000010479399", "4000000000000002"


@pytest.fixture
def shop(committed, worker, mollie, settings):
    with PortalServer() as server:
        settings.SITE_URL = server.url  # Mollie's webhook calls reach the portal's own webhook view

        def build():
            brand = BrandFactory(is_default=True, name="Northwind Services B.V.")
            gateway = GatewayAccount.objects.create(
                brand=brand, provider="mollie", api_key=API_KEY, ideal=True, card=True, sepa_direct_debit=True,
                checkout_mode="embedded", profile_id=PROFILE_ID, creditor_id=CREDITOR_ID, allow_partial=True,
                partial_minimum=D("10.00"))
            alpha = ClientFactory(brand=brand, name="Alpha B.V.")
            owner = MembershipFactory(client=alpha, user__language="en").user
            invoice = make_invoice(alpha, number="M-1", lines=[line(unit_price="100.00")])  # 121.00
            return {"gateway": gateway, "alpha": alpha, "owner": owner, "invoice": invoice, "worker": worker}

        yield committed.create(build)


def _card_token(mollie, number: str, *, testmode: bool = True) -> str:
    """What Mollie.js does in the browser: the iframes hand in the fields, the page asks for a token."""
    session = uuid.uuid4().hex
    for kind, value in (("cardHolder", "T. Tester"), ("cardNumber", number), ("expiryDate", "12/30"),
                        ("verificationCode", "123")):
        mollie.store_component_field(session, kind, value)
    status, answer = mollie.create_token(session, testmode, "en_US")
    assert status == 201, answer
    return answer["token"]


def _pay(client, shop, *, method="card", amount="121.00", key=None, **fields):
    invoice = shop["invoice"]
    data = {"idempotency_key": key or str(uuid.uuid4()), "method": method, "invoice": [invoice.pk],
            f"amount_{invoice.pk}": amount, **fields}
    return client.post(f"{reverse('payments:checkout')}?invoice={invoice.pk}", data)


def _sign(client, shop, **changes):
    fields = {"account_holder": "A. Holder", "iban": IBAN_TYPED, "mandate_consent": "on", **changes}
    return _pay(client, shop, method="sepa_direct_debit", **{k: v for k, v in fields.items() if v is not None})


def _attempt() -> CheckoutAttempt:
    with staff_scope():
        return CheckoutAttempt.objects.get()


def _invoice(invoice) -> Invoice:
    with staff_scope():
        return Invoice.objects.get(pk=invoice.pk)


def _payments() -> int:
    with staff_scope():
        return Payment.objects.count()


def _posts(mollie) -> list[str]:
    return [path for method, path in mollie.requests if method == "POST"]


def _debits(mollie) -> list[dict]:
    return [p for p in mollie.payments.values() if p["sequenceType"] == "recurring"]


def _webhook_call(mollie, payment_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in list(mollie.webhook_calls):
            if call["id"] == payment_id:
                return call
        time.sleep(0.05)
    raise TimeoutError(f"Mollie did not call the webhook for {payment_id}")


# --- Mollie Components: the card typed in the portal's page ---------------------------------------

def test_the_page_loads_mollies_script_and_allows_it_and_not_stripes(shop, client, settings):
    client.force_login(shop["owner"])
    page = client.get(reverse("payments:checkout"), {"invoice": shop["invoice"].pk})
    policy = {name: values for name, *values in
              (part.split() for part in page["Content-Security-Policy"].split(";") if part.strip())}
    mollie_origin = _origin(settings.MOLLIE_JS_URL)
    for directive in ("script-src", "frame-src"):
        assert [v for v in policy[directive] if v.startswith("http")] == [mollie_origin], directive
        assert settings.PAYMENT_EMBED_SOURCES["mollie"][directive] == [mollie_origin], directive
        assert _origin(settings.STRIPE_JS_URL) not in policy[directive], directive
    assert f'data-embed-key="{PROFILE_ID}"' in page.text and settings.MOLLIE_JS_URL in page.text


def test_a_card_paid_at_once_is_recorded_once_and_the_webhook_that_follows_changes_nothing(
        shop, mollie, client, worker):
    client.force_login(shop["owner"])
    token, key = _card_token(mollie, PAID_AT_ONCE), str(uuid.uuid4())
    response = _pay(client, shop, key=key, card_token=token)
    assert response.status_code == 302 and response.url == reverse("payments:return", args=[key])
    [payment] = mollie.payments.values()
    assert (payment["method"], payment["details"]["cardToken"]) == ("creditcard", token)
    assert payment["amount"] == {"currency": "EUR", "value": "121.00"} and payment["status"] == "paid"
    # Mollie calls the webhook a moment after its answer; the worker then records the payment.
    assert _webhook_call(mollie, payment["id"])["answer"] == 200
    worker.run()
    assert (_payments(), _invoice(shop["invoice"]).status, _attempt().status) == (1, "paid", "paid")
    assert "Paid. Thank you!" in client.get(response.url).text
    again = client.post(reverse("payments:webhook", args=["mollie", shop["gateway"].pk]), data=f"id={payment['id']}",
                        content_type="application/x-www-form-urlencoded")  # Mollie calls once more
    assert again.status_code == 200
    worker.run()
    assert all(job.state == "done" for job in worker.jobs(kind="gateway.event"))
    with staff_scope():
        assert Payment.objects.count() == 1 and Payment.objects.get().amount == D("121.00")


def test_a_declined_card_is_said_on_the_checkout_page_with_the_amounts_kept_and_a_new_key(
        shop, mollie, client, worker):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    page = _pay(client, shop, key=key, amount="50.00", card_token=_card_token(mollie, DECLINED))
    assert page.status_code == 200
    assert "Your card was declined. Please try another card or another way to pay." in page.text
    attempt = _attempt()
    assert (attempt.status, attempt.failure, attempt.amount) == ("failed", "card_declined", D("50.00"))
    assert f'name="amount_{shop["invoice"].pk}" id="id_amount_{shop["invoice"].pk}" value="50.00"' in page.text
    [new_key] = re.findall(r'name="idempotency_key" value="([0-9a-f-]+)"', page.text)
    assert new_key != key and uuid.UUID(new_key)
    assert not re.search(r'name="card_token" value="[^"]', page.text)  # the used token is not offered again
    assert _payments() == 0 and _invoice(shop["invoice"]).status == "open"
    # The client tries again with another card and the new key: a second, separate payment.
    paid = _pay(client, shop, key=new_key, amount="50.00", card_token=_card_token(mollie, PAID_AT_ONCE))
    assert paid.url == reverse("payments:return", args=[new_key])
    second = next(p for p in mollie.payments.values() if p["status"] == "paid")
    _webhook_call(mollie, second["id"])
    worker.run()
    assert (_invoice(shop["invoice"]).open_balance, _payments()) == (D("71.00"), 1)


def test_a_card_that_needs_3d_secure_goes_to_the_issuers_step(shop, mollie, client):
    client.force_login(shop["owner"])
    response = _pay(client, shop, card_token=_card_token(mollie, THREE_D_SECURE))
    [payment] = mollie.payments.values()
    assert response.status_code == 302 and response.url == payment["_links"]["checkout"]["href"]
    assert "/checkout/3ds/" in response.url and payment["method"] == "creditcard"
    assert _attempt().status == "open" and _payments() == 0


@pytest.mark.parametrize("token", ["tkn_neverissuedtest", "made in live mode"])
def test_a_card_token_mollie_refuses_asks_for_the_card_again(shop, mollie, client, token):
    client.force_login(shop["owner"])
    if token == "made in live mode":  # a live token with a test API key
        token = _card_token(mollie, PAID_AT_ONCE, testmode=False)
    page = _pay(client, shop, card_token=token)
    assert page.status_code == 200
    assert "Your card details could not be used. Please enter them again." in page.text
    attempt = _attempt()
    assert attempt.status == "failed" and "card token" in attempt.failure.lower()
    assert mollie.payments == {} and _payments() == 0


# --- SEPA direct debit signed in the portal's IBAN form -------------------------------------------

def test_the_page_shows_the_mandate_text_with_the_creditors_name_and_identifier(shop, client):
    client.force_login(shop["owner"])
    page = client.get(reverse("payments:checkout"), {"invoice": shop["invoice"].pk})
    [mandate_text] = re.findall(r'<div class="mandate-text" data-testid="mandate-text">(.*?)</div>', page.text,
                                re.S)
    assert "Northwind Services B.V." in mandate_text and f"creditor identifier {CREDITOR_ID}" in mandate_text
    assert 'name="iban"' in page.text and 'name="mandate_consent"' in page.text
    assert 'name="wants_mandate"' not in page.text  # the IBAN form replaces the first payment's box


@pytest.mark.parametrize("changes, field, error", [
    ({"iban": "NL91ABNA0417164301"}, "iban", "This is not a valid IBAN: please check the letters and digits."),
    ({"iban": "NL91ABNA041716430"}, "iban", "This is not a valid IBAN: please check the letters and digits."),
    ({"iban": ""}, "iban", "Enter the IBAN to collect from."),
    ({"mandate_consent": None}, "mandate_consent", "Please give your consent to sign the mandate."),
    ({"account_holder": "  "}, "account_holder", "Enter the name the account is held in."),
])
def test_a_mandate_form_with_a_mistake_is_a_field_error_and_mollie_is_not_called(
        shop, mollie, client, changes, field, error):
    client.force_login(shop["owner"])
    page = _sign(client, shop, **changes)
    assert page.status_code == 200
    assert page.context["form"].errors[field] == [error]
    # The error is the paragraph the field names as its description (read out with the field).
    described = re.search(rf'<[^>]*name="{field}"[^>]*aria-describedby="([^"]+)"', page.text).group(1)
    assert f'<p class="field-error" id="{described}">{error}</p>' in page.text.replace("&#x27;", "'")
    assert mollie.requests == []
    with staff_scope():
        assert not CheckoutAttempt.objects.exists() and not Mandate.objects.exists()


@pytest.mark.parametrize("collects_all", [True, False])
def test_a_mandate_signed_in_the_portal_is_collected_on_at_once(shop, mollie, client, worker, collects_all):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    response = _sign(client, shop, key=key, collects_all="on" if collects_all else None)
    assert response.status_code == 302 and response.url == reverse("payments:return", args=[key])
    [(customer_id, mandates)] = mollie.mandates.items()
    [signed] = mandates.values()
    assert signed["details"]["consumerName"] == "A. Holder" and signed["details"]["consumerAccount"] == IBAN
    assert signed["signatureDate"] == timezone.localdate().isoformat() and signed["status"] == "valid"
    with staff_scope():
        mandate = Mandate.objects.get()
    assert (mandate.provider_mandate_id, mandate.provider_customer_id, mandate.status) == (
        signed["id"], customer_id, "valid")
    assert (mandate.collects_all, mandate.masked_account) == (collects_all, "NL91 •••• 4300")
    [debit] = _debits(mollie)
    assert (debit["mandateId"], debit["customerId"], debit["amount"]["value"]) == (signed["id"], customer_id, "121.00")
    attempt = _attempt()
    assert (attempt.status, attempt.method, attempt.mandate_id, attempt.provider_payment_id) == (
        "pending", "sepa_direct_debit", mandate.pk, debit["id"])
    invoice = _invoice(shop["invoice"])
    assert (invoice.status, invoice.amount_pending, invoice.display_status) == ("open", D("121.00"), "payment_pending")
    status_page = client.get(response.url)
    assert "€121.00 will be collected from your account by direct debit." in status_page.text
    assert "Payment pending" in client.get(reverse("invoices:detail", args=[invoice.pk])).text
    assert _payments() == 0  # pending is not money yet

    later = make_invoice(shop["alpha"], number="M-2", lines=[line(unit_price="50.00")])  # 60.50
    with staff_scope():
        collections_run(today=later.due_date)
    worker.run()
    collected = [d for d in _debits(mollie) if d["id"] != debit["id"]]
    if collects_all:
        [second] = collected
        assert (second["mandateId"], second["amount"]["value"]) == (signed["id"], "60.50")
        assert "M-2" in second["description"]
    else:
        assert collected == []  # the client agreed to this invoice alone


def test_the_invoice_just_debited_is_not_announced_again_by_the_daily_run(shop, mollie, client, worker):
    client.force_login(shop["owner"])
    _sign(client, shop, collects_all="on")
    later = make_invoice(shop["alpha"], number="M-2", lines=[line(unit_price="50.00")])
    with staff_scope():
        assert collections_run(today=later.due_date) == {"prenotified": 1, "queued": 1}
        told = list(Notification.objects.filter(kind=NotificationKind.COLLECTION_UPCOMING))
    assert [n.url for n in told] == [reverse("invoices:detail", args=[later.pk])]


def test_the_same_mandate_form_posted_twice_signs_one_mandate_and_debits_once(shop, mollie, client):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    first, second = _sign(client, shop, key=key), _sign(client, shop, key=key)
    assert first.url == reverse("payments:return", args=[key])
    assert second.url == reverse("invoices:list")  # the invoice is pending now: nothing left to pay
    assert sum(len(m) for m in mollie.mandates.values()) == 1 and len(_debits(mollie)) == 1
    with staff_scope():
        assert Mandate.objects.count() == 1 and CheckoutAttempt.objects.count() == 1


def test_where_mollie_may_not_make_the_mandate_a_first_payment_by_ideal_signs_it(shop, mollie, client):
    mollie.mandates_api_allowed = False
    client.force_login(shop["owner"])
    response = _sign(client, shop)
    [payment] = mollie.payments.values()
    assert response.status_code == 302 and response.url == payment["_links"]["checkout"]["href"]
    assert (payment["method"], payment["sequenceType"]) == ("ideal", "first") and payment["customerId"]
    attempt = _attempt()
    assert (attempt.method, attempt.wants_mandate, attempt.mandate_id) == ("ideal", True, None)
    assert mollie.mandates == {} and _debits(mollie) == []
    with staff_scope():
        assert not Mandate.objects.exists()
    told = client.get(reverse("invoices:list")).text
    assert "Your bank confirms the mandate with this first payment" in told


# --- The creditor identifier the mandate text names -------------------------------------------------

def _creditor_errors(db_gateway: GatewayAccount, creditor_id: str) -> list[str]:
    db_gateway.creditor_id = creditor_id
    try:
        db_gateway.full_clean()
    except ValidationError as exc:
        return exc.message_dict.get("creditor_id", [])
    return []


@pytest.fixture
def unsaved_gateway(db):
    return GatewayAccount(brand=BrandFactory(), provider="mollie", api_key=API_KEY, profile_id=PROFILE_ID)


@pytest.mark.parametrize("creditor_id", ["NL00ZZZ999999999999", "NL57ZZZ99999999999X", "ZZZ999999999999", "NL57"])
def test_a_malformed_creditor_identifier_is_refused(unsaved_gateway, creditor_id):
    assert _creditor_errors(unsaved_gateway, creditor_id) == [
        "This is not a valid SEPA creditor identifier (e.g. NL57ZZZ999999999999)."]


@pytest.mark.parametrize("creditor_id", [CREDITOR_ID, "DE98ZZZ09999999999", ""])
def test_a_valid_creditor_identifier_or_none_is_accepted(unsaved_gateway, creditor_id):
    assert _creditor_errors(unsaved_gateway, creditor_id) == []


def test_the_example_the_error_message_gives_is_a_valid_creditor_identifier(unsaved_gateway):
    assert _creditor_errors(unsaved_gateway, "NL57ZZZ999999999999") == []
