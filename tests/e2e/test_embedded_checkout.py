"""Paying without leaving the portal, in Chromium on a phone in Dutch and a desktop in English (375 and
1280 px), against the local Mollie and Stripe with their scripts (tests/fakes):

- Mollie Components: the four card fields in the portal's page; a declined card said inline, then
  a card paid at once; a card that needs 3-D Secure goes to the issuer's step and comes straight
  back to the portal's status page; iDEAL through the bank and back; a SEPA mandate signed in the
  portal's IBAN form and collected on.
- Stripe's embedded Checkout mounted in the page: a decline and a 3-D Secure step inside its frame,
  then paid; iDEAL through the bank and back; SEPA direct debit, pending, then settled.

Each ends with the invoice paid (or pending) in the portal, the payment in the accounting
system's outbox once, the top-level page on the portal's origin (but for the bank and the
issuer's step), and no card number ever sent to the portal."""
import re
import time
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from integrations.models import ClientLink, Connection
from integrations.signing import generate_secret
from invoices.models import Invoice
from payments.models import CheckoutAttempt, GatewayAccount, Mandate
from portal.rls import staff_scope
from tests.conftest import MOLLIE_TEST_KEY, STRIPE_TEST_KEY, STRIPE_TEST_WEBHOOK_SECRET
from tests.e2e.support import SCREEN_IDS, SCREENS, check_page, log_in
from tests.fakes.accounting import FakeAccounting
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e
EMAIL = "alice@northwind.test"
CREDITOR_ID = "NL57ZZZ999999999999"
WORDS = {
    "en": {"card": "Card", "ideal": "iDEAL", "sepa": "SEPA direct debit", "pay": "Pay €121.00",
           "paid": "Paid. Thank you!", "pending": "Payment pending", "declined": "Your card was declined",
           "holder": "Account holder", "consent": "I authorise this direct debit",
           "all": "Also collect my future invoices with this mandate on their due date",
           "status_paid": "Paid", "mandate_text": "creditor identifier",
           "unreachable": "The payment provider could not be reached. Please try again in a moment.",
           "expired": "This checkout session has expired", "change": "Change the amounts or the way to pay"},
    "nl": {"card": "Kaart", "ideal": "iDEAL", "sepa": "SEPA-incasso", "pay": "Betaal €\u00a0121,00",
           "paid": "Betaald. Dank u wel!", "pending": "Betaling in behandeling", "declined": "Uw kaart is geweigerd",
           "holder": "Rekeninghouder", "consent": "Ik geef toestemming voor deze incasso",
           "all": "Incasseer ook mijn toekomstige facturen met deze machtiging op hun vervaldatum",
           "status_paid": "Betaald", "mandate_text": "incassant-ID",
           "unreachable": "De betaalprovider is niet bereikbaar. Probeer het over een moment opnieuw.",
           "expired": "Deze betaalsessie is verlopen", "change": "Bedragen of betaalwijze wijzigen"},
}
# Each flow runs on two of the four screens: a phone in Dutch (the narrowest screen with the longest
# words) and a desktop in English, so every page of it is fitted and checked with axe at both widths
# and in both languages. The checkout's own page, where the client chooses what to pay, is on all four
# (tests/e2e/test_layout.py). Four screens each took about 50 s more of the suite.
TWO_SCREENS = pytest.mark.parametrize("screen", [SCREENS[1], SCREENS[2]], ids=[SCREEN_IDS[1], SCREEN_IDS[2]],
                                      indirect=True)
MOLLIE_CARDS = {"paid": "4543474002249996", "3ds": "2223000010479399", "declined": "4000000000000002"}
STRIPE_CARDS = {"paid": "4242424242424242", "declined": "4000000000000002", "3ds": "4000002500003155"}


@pytest.fixture
def accounting():
    with FakeAccounting(generate_secret()) as fake:
        yield fake


def _shop(language: str, accounting, provider: str):
    """A brand whose gateway embeds its checkout, a client contact in `language`, one invoice
    of € 121.00 from the accounting system (so the payment goes back to it)."""
    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
        if provider == "mollie":
            GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=MOLLIE_TEST_KEY,
                                          profile_id="pfl_QkEhN94Ba", creditor_id=CREDITOR_ID, ideal=True,
                                          card=True, sepa_direct_debit=True)
        else:
            GatewayAccount.objects.create(brand=brand, provider="stripe", api_key=STRIPE_TEST_KEY,
                                          webhook_secret=STRIPE_TEST_WEBHOOK_SECRET,
                                          publishable_key="pk_test_51PortalE2e", ideal=True, card=True,
                                          sepa_direct_debit=True)
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale=language)
        MembershipFactory(client=client, user__email=EMAIL, user__language=language)
        erp = Connection.objects.create(name="ERP", slug="erp", brand=brand, signing_secrets=accounting.secret,
                                        outbound_url=accounting.url)
        ClientLink.objects.create(connection=erp, external_id="NW", client=client)
        return make_invoice(client, number="NW-EMB-1", lines=[line("Bookkeeping", unit_price="100.00")],
                            connection=erp, external_id="ERP-NW-EMB-1")

    return build


class Watch:
    """What the browser does that the test checks afterwards: every top-level address it showed,
    and every request body it sent to the portal."""

    def __init__(self, page, live_url):
        self.live_url, self.top, self.sent = live_url, [], []
        page.on("framenavigated", lambda frame: self.top.append(frame.url) if frame == page.main_frame else None)
        page.on("request", lambda request: self.sent.append(request.post_data or "")
                if request.url.startswith(live_url) else None)
        # Chromium reports whatever the Content-Security-Policy blocked ("Refused to load ...").
        self.refused = []
        page.on("console", lambda message: self.refused.append(message.text)
                if "Refused to" in message.text or "Content Security Policy" in message.text else None)

    def stayed_in_the_portal(self) -> bool:
        return all(url.startswith(self.live_url) for url in self.top)

    def card_numbers_sent(self) -> list[str]:
        return [body for body in self.sent if any(number in re.sub(r"\D", "", body)
                                                  for number in (*MOLLIE_CARDS.values(), *STRIPE_CARDS.values()))]


def _checkout(screen, live_url, invoice, method_label) -> Watch:
    watch = Watch(screen, live_url)
    log_in(screen, f"{live_url}/pay/?invoice={invoice.pk}", EMAIL)
    screen.get_by_label(method_label, exact=True).check()
    return watch


def _booked_once(accounting, amount: str) -> None:
    """The accounting system was told of the payment, once (the worker's outbound job)."""
    deadline = time.monotonic() + 20
    while not accounting.received and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # a second (wrong) delivery would arrive about now
    booked = [event for event in accounting.received if event["type"] == "payment.recorded"]
    assert len(booked) == 1, accounting.received
    assert booked[0]["data"]["amount"] == amount


def _invoice_paid(screen, invoice, words) -> None:
    expect(screen.get_by_role("heading", name=words["paid"])).to_be_visible(timeout=20_000)
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    screen.goto(screen.url.split("/pay/")[0] + f"/invoices/{invoice.pk}/")
    expect(screen.get_by_role("heading", level=1)).to_contain_text(words["status_paid"])


# --- Mollie Components ------------------------------------------------------------------------

def _mollie_card(screen, number: str, holder: str = "T. Tester") -> None:
    for kind, value in (("cardHolder", holder), ("cardNumber", number), ("expiryDate", "12/39"),
                        ("verificationCode", "123")):
        field = screen.frame_locator(f"iframe[name=mollie-component-{kind}]").locator("input")
        field.fill("")
        field.fill(value)


@TWO_SCREENS
def test_mollie_card_declined_inline_then_paid_without_leaving_the_portal(
        committed, celery_worker_process, accounting, live_url, screen):
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "mollie"))
    watch = _checkout(screen, live_url, invoice, words["card"])
    expect(screen.frame_locator("iframe[name=mollie-component-cardNumber]").locator("input")).to_be_visible()
    expect(screen.get_by_text("NW-EMB-1").first).to_be_visible()  # what is paid, beside how
    expect(screen.get_by_test_id("pay-button")).to_have_text(words["pay"])  # the total, as the client writes money
    check_page(screen, "checkout-mollie-card")

    _mollie_card(screen, MOLLIE_CARDS["declined"])
    screen.get_by_test_id("pay-button").click()
    expect(screen.get_by_test_id("checkout-error")).to_contain_text(words["declined"])  # inline, in the page
    expect(screen.get_by_label(words["card"], exact=True)).to_be_checked()  # the choice kept: try again here

    _mollie_card(screen, MOLLIE_CARDS["paid"])
    screen.get_by_test_id("pay-button").click()
    _invoice_paid(screen, invoice, words)
    assert watch.stayed_in_the_portal(), watch.top
    assert watch.card_numbers_sent() == []
    assert watch.refused == []  # the gateway's script and frames are allowed on the checkout page
    _booked_once(accounting, "121.00")
    with staff_scope():
        assert [a.status for a in CheckoutAttempt.objects.order_by("created_at")] == ["failed", "paid"]


@TWO_SCREENS
def test_mollie_card_with_3d_secure_goes_to_the_issuer_and_straight_back(
        committed, celery_worker_process, mollie_server, accounting, live_url, screen):
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "mollie"))
    watch = _checkout(screen, live_url, invoice, words["card"])
    _mollie_card(screen, MOLLIE_CARDS["3ds"])
    screen.get_by_test_id("pay-button").click()

    screen.get_by_test_id("3ds-complete").click()  # the issuer's step, on Mollie's side
    assert any(url.startswith(mollie_server.base_url) for url in watch.top)
    expect(screen).to_have_url(re.compile(rf"^{re.escape(live_url)}/pay/[0-9a-f-]+/$"))  # the status page
    _invoice_paid(screen, invoice, words)
    assert watch.card_numbers_sent() == []
    _booked_once(accounting, "121.00")


@TWO_SCREENS
def test_mollie_ideal_goes_through_the_bank_and_straight_back(
        committed, celery_worker_process, mollie_server, accounting, live_url, screen):
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "mollie"))
    _checkout(screen, live_url, invoice, words["ideal"])
    screen.get_by_test_id("pay-button").click()
    expect(screen).to_have_url(re.compile(rf"^{re.escape(mollie_server.base_url)}/checkout/ideal/"))
    assert screen.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # the bank on a phone
    screen.get_by_test_id("bank-approve").click()
    _invoice_paid(screen, invoice, words)
    _booked_once(accounting, "121.00")


@TWO_SCREENS
def test_mollie_sepa_mandate_signed_in_the_portal_pays_this_invoice_and_later_ones(
        committed, celery_worker_process, mollie_server, accounting, live_url, screen):
    words = WORDS[screen.language]
    mollie_server.forget_idempotency_keys()  # ids start again in every test's database; Mollie's keys would not
    invoice = committed.create(_shop(screen.language, accounting, "mollie"))
    watch = _checkout(screen, live_url, invoice, words["sepa"])
    asked_before = len(mollie_server.requests)
    expect(screen.get_by_test_id("mandate-text")).to_contain_text(CREDITOR_ID)
    expect(screen.get_by_test_id("mandate-text")).to_contain_text("Acme Accounting B.V.")
    expect(screen.get_by_test_id("mandate-text")).to_contain_text(words["mandate_text"])  # in the client's language
    screen.get_by_label(words["holder"]).fill("Northwind Traders B.V.")
    screen.get_by_label("IBAN").fill("NL91 ABNA 0417 1643 01")  # one digit off: the check digits say so
    screen.get_by_label(words["consent"]).check()
    screen.get_by_label(words["all"]).check()
    screen.get_by_test_id("pay-button").click()
    expect(screen.locator(".field-error")).to_have_count(1)  # the IBAN, said at the field
    assert not [path for method, path in mollie_server.requests[asked_before:]  # no mandate was asked for
                if method == "POST" and path.endswith("/mandates")]
    check_page(screen, "checkout-mollie-sepa-error")

    screen.get_by_label("IBAN").fill("NL91 ABNA 0417 1643 00")
    screen.get_by_label(words["consent"]).check()
    screen.get_by_test_id("pay-button").click()
    expect(screen.get_by_role("heading", name=words["pending"])).to_be_visible(timeout=20_000)
    assert watch.stayed_in_the_portal(), watch.top
    with staff_scope():
        mandate = Mandate.objects.get()
        attempt = CheckoutAttempt.objects.get()
        assert (mandate.status, mandate.consumer_account, mandate.collects_all) == ("valid", "NL91ABNA0417164300", True)
        assert (attempt.status, attempt.mandate_id) == ("pending", mandate.pk)
        assert Invoice.objects.get(pk=invoice.pk).amount_pending == Decimal("121.00")

    # The bank collects: Mollie reports it paid (its webhook), and the accounting system hears once.
    mollie_server.set_status(attempt.provider_payment_id, "paid")
    mollie_server.call_webhook(attempt.provider_payment_id)
    _invoice_paid(screen, invoice, words)
    _booked_once(accounting, "121.00")


# --- Stripe's embedded Checkout ---------------------------------------------------------------

def _stripe_frame(screen):
    return screen.frame_locator("iframe[name^=embedded-checkout]")


def _stripe_card(frame, number: str) -> None:
    frame.locator("#number").fill(number)
    frame.locator("#expiry").fill("12 / 39")
    frame.locator("#cvc").fill("123")
    frame.locator("#name").fill("T. Tester")
    frame.get_by_test_id("submit").click()


@pytest.fixture
def stripe_webhooks(stripe_server, live_url):
    """Stripe's events for this test's gateway account go to the portal's webhook."""
    def to(invoice):
        with staff_scope():
            gateway = GatewayAccount.objects.get(brand=invoice.brand)
        stripe_server.webhook_url = f"{live_url}/webhooks/payments/stripe/{gateway.pk}/"

    yield to
    stripe_server.webhook_url = None


@TWO_SCREENS
def test_stripe_card_declined_then_3d_secure_then_paid_in_the_embedded_checkout(
        committed, celery_worker_process, stripe_server, stripe_webhooks, accounting, live_url, screen):
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "stripe"))
    stripe_webhooks(invoice)
    watch = _checkout(screen, live_url, invoice, words["card"])
    screen.get_by_test_id("pay-button").click()
    frame = _stripe_frame(screen)
    expect(frame.locator("#number")).to_be_visible()
    check_page(screen, "checkout-stripe-card")

    _stripe_card(frame, STRIPE_CARDS["declined"])
    expect(frame.get_by_role("alert")).to_contain_text(words["declined"])  # inline, in Stripe's form
    _stripe_card(frame, STRIPE_CARDS["3ds"])
    frame.get_by_test_id("3ds-complete").click()  # the challenge, inside the checkout

    _invoice_paid(screen, invoice, words)
    assert watch.stayed_in_the_portal(), watch.top
    assert watch.card_numbers_sent() == []
    assert watch.refused == []
    _booked_once(accounting, "121.00")
    assert set(stripe_server.versions) == {"2026-10-28.endive"}  # pinned on every request


@TWO_SCREENS
def test_stripe_unreachable_is_said_in_the_page_in_the_clients_words_and_pay_again_goes_on(
        committed, celery_worker_process, stripe_server, stripe_webhooks, accounting, live_url, screen):
    """No session could be made (Stripe answers 503 to every try the SDK makes): the portal's own
    sentence, in the client's language, shows in the page, not Stripe.js's English; the amounts and
    the way to pay stay, and the same Pay button opens the form once Stripe answers again."""
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "stripe"))
    stripe_webhooks(invoice)
    watch = _checkout(screen, live_url, invoice, words["card"])
    stripe_server.fail_next(3, 503)
    screen.get_by_test_id("pay-button").click()
    expect(screen.get_by_test_id("checkout-live-error")).to_have_text(words["unreachable"])
    with stripe_server.lock:
        stripe_server.failures.clear()  # whatever the SDK's retries left unused: Stripe is back
    expect(screen.locator("iframe[name^=embedded-checkout]")).to_have_count(0)
    expect(screen.get_by_label(words["card"], exact=True)).to_be_checked()
    expect(screen.get_by_test_id("pay-button")).to_have_text(words["pay"])
    expect(screen.locator(".checkout-change")).to_be_hidden()  # nothing to go back from
    check_page(screen, "checkout-stripe-unreachable")

    screen.get_by_test_id("pay-button").click()
    frame = _stripe_frame(screen)
    expect(frame.locator("#number")).to_be_visible()
    expect(screen.get_by_test_id("checkout-live-error")).to_be_hidden()  # the old error goes with the retry
    _stripe_card(frame, STRIPE_CARDS["paid"])
    _invoice_paid(screen, invoice, words)
    assert watch.stayed_in_the_portal(), watch.top
    _booked_once(accounting, "121.00")


@TWO_SCREENS
def test_an_expired_stripe_session_is_said_in_its_form_and_paying_again_keeps_the_amounts(
        committed, celery_worker_process, stripe_server, stripe_webhooks, accounting, live_url, screen):
    """The client left Stripe's form open until Stripe expired the session: Stripe's form says so
    in the client's language; going back to the amounts and pressing Pay opens a new session for
    the same invoice, which pays it once."""
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "stripe"))
    stripe_webhooks(invoice)
    watch = _checkout(screen, live_url, invoice, words["card"])
    screen.get_by_test_id("pay-button").click()
    frame = _stripe_frame(screen)
    expect(frame.locator("#number")).to_be_visible()
    with staff_scope():
        first = CheckoutAttempt.objects.get()
    stripe_server.expire(first.provider_payment_id)  # its expires_at passed while the client was away

    _stripe_card(frame, STRIPE_CARDS["paid"])
    expect(frame.get_by_role("alert")).to_have_text(words["expired"])
    screen.get_by_role("button", name=words["change"]).click()
    expect(screen.locator("iframe[name^=embedded-checkout]")).to_have_count(0)
    expect(screen.get_by_test_id("pay-button")).to_have_text(words["pay"])
    screen.get_by_test_id("pay-button").click()
    _stripe_card(_stripe_frame(screen), STRIPE_CARDS["paid"])

    _invoice_paid(screen, invoice, words)
    assert watch.stayed_in_the_portal(), watch.top
    _booked_once(accounting, "121.00")
    with staff_scope():
        assert [a.status for a in CheckoutAttempt.objects.order_by("created_at")] == ["expired", "paid"]


@TWO_SCREENS
def test_stripe_ideal_goes_through_the_bank_and_straight_back(
        committed, celery_worker_process, stripe_server, stripe_webhooks, accounting, live_url, screen):
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "stripe"))
    stripe_webhooks(invoice)
    _checkout(screen, live_url, invoice, words["ideal"])
    screen.get_by_test_id("pay-button").click()
    _stripe_frame(screen).get_by_test_id("submit").click()
    expect(screen).to_have_url(re.compile(rf"^{re.escape(stripe_server.base_url)}/ideal/"))
    screen.get_by_role("button", name=re.compile("Authori[sz]e")).click()
    _invoice_paid(screen, invoice, words)
    _booked_once(accounting, "121.00")


@TWO_SCREENS
def test_stripe_sepa_direct_debit_in_the_embedded_checkout_is_pending_then_paid(
        committed, celery_worker_process, stripe_server, stripe_webhooks, accounting, live_url, screen):
    words = WORDS[screen.language]
    invoice = committed.create(_shop(screen.language, accounting, "stripe"))
    stripe_webhooks(invoice)
    watch = _checkout(screen, live_url, invoice, words["sepa"])
    screen.get_by_test_id("pay-button").click()
    frame = _stripe_frame(screen)
    frame.locator("#iban").fill("NL39RABO0300065264")
    frame.locator("#name").fill("Northwind Traders B.V.")
    frame.locator("#email").fill("alice@northwind.test")
    frame.get_by_test_id("submit").click()

    expect(screen.get_by_role("heading", name=words["pending"])).to_be_visible(timeout=20_000)
    assert watch.stayed_in_the_portal(), watch.top
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
    stripe_server.async_result(attempt.provider_payment_id, succeeded=True)  # the bank settled it
    _invoice_paid(screen, invoice, words)
    _booked_once(accounting, "121.00")


# --- The hosted page, when the gateway's script cannot run ---------------------------------------

@pytest.mark.parametrize("provider", ["mollie", "stripe"])
def test_a_blocked_gateway_script_falls_back_to_the_gateways_own_page(
        committed, mollie_server, stripe_server, accounting, live_url, page, provider):
    """A privacy blocker (or a network) stops the gateway's script: the same Pay button then
    takes the client to the gateway's hosted page, and the payment goes on there."""
    invoice = committed.create(_shop("en", accounting, provider))
    server = mollie_server if provider == "mollie" else stripe_server
    page.route(re.compile(r".*/(v1/mollie|dahlia/stripe)\.js$"), lambda route: route.abort())
    _checkout(page, live_url, invoice, "Card")
    expect(page.locator("[data-method=card] [data-hosted-note]")).to_be_visible()  # said before paying
    page.get_by_test_id("pay-button").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(server.base_url)}/(checkout|c/pay)/"))
    with staff_scope():
        attempt = CheckoutAttempt.objects.get()
    assert not attempt.embedded and attempt.checkout_url.startswith(server.base_url)
