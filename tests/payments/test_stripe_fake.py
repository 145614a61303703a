"""The local Stripe (tests/fakes/stripe.py, stripe_checkout.py, stripe_js/) as Stripe's docs describe
it: Checkout Sessions through the stripe SDK with the version pinned per request (ui_mode renamed in
2026-03-25.dahlia, return_url for the embedded page, retrieve, expire, idempotency, faults), and in
Chromium the embedded checkout that its Stripe.js mounts in a page of ours: card (declined inline,
3-D Secure inside the frame), iDEAL through the test bank, SEPA Direct Debit processing, each ending
at return_url with a signed event at our webhook."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
import stripe

from tests.fakes.base import JsonHandler, LocalServer
from tests.fakes.stripe import DEFAULT_VERSION, FakeStripe
from tests.fakes.stripe_checkout import stripe_js_url

API_KEY, SECRET = "sk_test_51Hfake0000000000000000", "whsec_test_fake_secret_0000"
DAHLIA, BASIL = "2026-03-25.dahlia", "2025-03-31.basil"


class Portal(LocalServer):
    """Stands in for our app: a page that mounts the embedded checkout with the fake Stripe.js
    (the session's client secret in ?cs=, none: fetchClientSecret fails), a return page, and the
    webhook endpoint, which keeps what it was sent."""

    def __init__(self, stripe_js: str):
        self.stripe_js = stripe_js
        self.received: list[tuple[bytes, str]] = []
        self.arrived = threading.Condition()
        super().__init__()

    def wait_for(self, kind: str, timeout: float = 10.0) -> tuple[dict, bytes, str]:
        def found():
            return next(((json.loads(p), p, s) for p, s in self.received if json.loads(p)["type"] == kind), None)

        with self.arrived:
            assert self.arrived.wait_for(found, timeout), f"no {kind} at the webhook; got {self.received}"
            return found()

    def _handler(self):
        portal = self

        class Handler(JsonHandler):
            def _html(self, body: str) -> None:
                payload = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if self.path.startswith("/return"):
                    return self._html("<!doctype html><title>Back</title><h1>Back in the portal</h1>")
                self._html(HOST_PAGE.replace("STRIPE_JS", portal.stripe_js))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with portal.arrived:
                    portal.received.append((body, self.headers.get("Stripe-Signature")))
                    portal.arrived.notify_all()
                self.send_json(200, {"received": True})

        return Handler


HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Pay invoice</title>
<script src="STRIPE_JS"></script></head><body><main><h1>Pay invoice</h1><p id="error" role="alert"></p>
<div id="checkout"></div></main><script>
const params = new URLSearchParams(location.search);
const stripe = Stripe('pk_test_fake0000', {locale: params.get('locale') || 'en'});
stripe.createEmbeddedCheckoutPage({
  fetchClientSecret: () => params.get('cs') ? Promise.resolve(params.get('cs'))
                                             : Promise.reject(new Error('the portal answered 500')),
  onComplete: () => { document.body.dataset.completed = 'yes'; },
}).then((checkout) => { window.checkout = checkout; checkout.mount('#checkout'); },
        (error) => { document.getElementById('error').textContent = error.name + ': ' + error.message; });
</script></body></html>"""


def _line_items(cents: int = 1050) -> list[dict]:
    return [{"price_data": {"currency": "eur", "unit_amount": cents, "product_data": {"name": "Invoice S-1"}},
             "quantity": 1}]


@pytest.fixture
def fake():
    with FakeStripe(API_KEY, SECRET) as fake:
        yield fake


@pytest.fixture
def client(fake):
    return stripe.StripeClient(API_KEY, base_addresses={"api": fake.url}, stripe_version=DAHLIA,
                               max_network_retries=0)


def _embedded(client, portal=None, method="card", **extra):
    return_url = (portal.url if portal else "https://portal.test") + "/return?session_id={CHECKOUT_SESSION_ID}"
    return client.v1.checkout.sessions.create(params={
        "mode": "payment", "ui_mode": "embedded_page", "return_url": return_url, "line_items": _line_items(),
        "payment_method_types": [method], **extra})


# --- The API ----------------------------------------------------------------------------------------

def test_an_embedded_page_session_answers_a_client_secret_and_no_url_and_the_pinned_version_is_recorded(
        fake, client):
    session = _embedded(client)
    assert session.client_secret.startswith(f"{session.id}_secret_") and session.id.startswith("cs_test_")
    assert session.url is None and session.ui_mode == "embedded_page"
    assert session.redirect_on_completion == "always" and session.return_url.endswith("{CHECKOUT_SESSION_ID}")
    hosted = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": _line_items(), "success_url": "https://portal.test/done"})
    assert hosted.ui_mode == "hosted_page" and hosted.url == f"{fake.url}/c/pay/{hosted.id}"
    assert hosted.client_secret is None
    assert fake.versions == [DAHLIA, DAHLIA]


def test_without_a_stripe_version_header_the_account_default_is_used(fake):
    request = urllib.request.Request(f"{fake.url}/v1/checkout/sessions", data=b"mode=payment", method="POST",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # no line items: refused, but heard
        urllib.request.urlopen(request)
    assert refused.value.code == 400 and fake.versions == [DEFAULT_VERSION]


@pytest.mark.parametrize("old", ["hosted", "embedded", "custom"])
def test_the_old_ui_mode_values_are_refused_from_dahlia_on(client, old):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _embedded(client, ui_mode=old)
    assert refused.value.http_status == 400 and refused.value.param == "ui_mode"
    assert refused.value.user_message == "Invalid ui_mode: must be one of hosted_page, embedded_page, or elements"


def test_before_dahlia_the_old_values_hold_and_the_new_ones_are_refused(fake):
    basil = stripe.StripeClient(API_KEY, base_addresses={"api": fake.url}, stripe_version=BASIL)
    with pytest.raises(stripe.InvalidRequestError):
        _embedded(basil)
    session = _embedded(basil, ui_mode="embedded")
    assert session.ui_mode == "embedded"
    dahlia = stripe.StripeClient(API_KEY, base_addresses={"api": fake.url}, stripe_version=DAHLIA)
    assert dahlia.v1.checkout.sessions.retrieve(session.id).ui_mode == "embedded_page"  # each version's words


@pytest.mark.parametrize("params, param, message", [
    ({"return_url": ""}, "return_url", "Missing required param: return_url."),
    ({"success_url": "https://portal.test/ok", "cancel_url": "https://portal.test/no"}, "cancel_url",
     "The following parameters are not supported with 'ui_mode: embedded_page': cancel_url, success_url."),
    ({"redirect_on_completion": "sometimes"}, "redirect_on_completion",
     "Invalid redirect_on_completion: must be one of always, if_required, or never"),
    ({"redirect_on_completion": "never"}, "return_url",
     "You cannot specify `return_url` when `redirect_on_completion` is `never`."),
])
def test_an_embedded_page_takes_return_url_and_not_the_hosted_urls(client, fake, params, param, message):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _embedded(client, **params)
    assert (refused.value.param, refused.value.user_message) == (param, message)
    assert fake.sessions == {}


def test_redirect_on_completion_never_needs_no_return_url_and_if_required_is_kept(client):
    never = client.v1.checkout.sessions.create(params={
        "mode": "payment", "ui_mode": "embedded_page", "redirect_on_completion": "never",
        "line_items": _line_items()})
    assert (never.redirect_on_completion, never.return_url) == ("never", None)
    assert _embedded(client, redirect_on_completion="if_required").redirect_on_completion == "if_required"


def test_retrieve_and_expire_an_open_session_and_the_expired_event_reaches_the_webhook(fake, client):
    with Portal(stripe_js_url(fake)) as portal:
        fake.webhook_url = f"{portal.url}/webhook"
        session = _embedded(client)
        assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
        expired = client.v1.checkout.sessions.expire(session.id)
        assert (expired.status, expired.payment_status) == ("expired", "unpaid")
        event, payload, signature = portal.wait_for("checkout.session.expired")
        stripe.WebhookSignature.verify_header(payload.decode(), signature, SECRET, 300)
        assert event["data"]["object"]["id"] == session.id
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.checkout.sessions.expire(session.id)
    assert again.value.user_message == ('Only Checkout Sessions with a status in ["open"] can be expired. '
                                        "This Checkout Session has a status of `expired`.")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_nothing")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_a_completed_session_cannot_be_expired(fake, client):
    session = _embedded(client)
    fake.complete(session.id)
    retrieved = client.v1.checkout.sessions.retrieve(session.id)
    assert (retrieved.status, retrieved.payment_status) == ("complete", "paid")
    with pytest.raises(stripe.InvalidRequestError, match="has a status of `complete`"):
        client.v1.checkout.sessions.expire(session.id)


def test_an_idempotency_key_replays_the_first_answer_and_refuses_other_parameters(fake, client):
    params = {"mode": "payment", "ui_mode": "embedded_page", "return_url": "https://portal.test/r",
              "line_items": _line_items()}
    first = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-1"})
    again = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-1"})
    assert again.id == first.id and len(fake.sessions) == 1
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params={**params, "line_items": _line_items(999)},
                                           options={"idempotency_key": "k-1"})


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_hosted_page_takes_a_card_and_sends_the_browser_to_success_url(fake, client):
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": _line_items(), "payment_method_types": ["card"],
        "success_url": "https://portal.test/done?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.test/invoice"})
    with urllib.request.urlopen(session.url) as page:
        assert "Card number" in page.read().decode()
    form = urllib.parse.urlencode({"locale": "en", "number": "4242424242424242", "expiry": "12/34", "cvc": "123",
                                   "name": "A. Client"}).encode()
    opener = urllib.request.build_opener(_NoRedirects)
    with pytest.raises(urllib.error.HTTPError) as moved:
        opener.open(urllib.request.Request(f"{session.url}/card", data=form))
    assert moved.value.code == 303
    assert moved.value.headers["Location"] == f"https://portal.test/done?session_id={session.id}"
    assert fake.sessions[session.id]["payment_status"] == "paid"
    with pytest.raises(stripe.InvalidRequestError, match="return_url"):  # not for the hosted page
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": _line_items(),
                                                   "return_url": "https://portal.test/r"})


def test_a_failed_request_is_not_executed_and_its_key_is_free_for_the_retry(fake, client):
    fake.fail_next(1, status=500)
    with pytest.raises(stripe.APIError) as failed:
        _embedded(client, client_reference_id="c-1")
    assert failed.value.http_status == 500 and fake.sessions == {}
    fake.delay_next(1, seconds=0.3)
    assert _embedded(client).status == "open"


# --- The browser ------------------------------------------------------------------------------------

@pytest.fixture
def portal(fake):
    with Portal(stripe_js_url(fake)) as portal:
        fake.webhook_url = f"{portal.url}/webhook"
        yield portal


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def _mount(page, portal, session, locale="en"):
    page.goto(f"{portal.url}/?cs={session.client_secret}&locale={locale}")
    frame = page.frame_locator("iframe[name^='embedded-checkout']")
    frame.get_by_test_id("submit").first.wait_for()
    return frame


def _fill_card(frame, number, name="A. Client"):
    labels = ("Card number", "Expiry", "CVC", "Name on card")
    for label, value in zip(labels, (number, "12 / 34", "123", name)):
        frame.get_by_label(label, exact=True).fill(value)


def _returned_to(session, portal) -> str:
    return f"{portal.url}/return?session_id={session.id}"


@pytest.mark.e2e
def test_a_card_payment_brings_the_top_window_to_return_url_and_a_signed_completed_event_to_the_webhook(
        fake, client, portal, phone):
    session = _embedded(client, portal)
    frame = _mount(phone, portal, session)
    iframe = phone.locator("iframe[name^='embedded-checkout']")
    assert iframe.get_attribute("title") == "Secure payment"
    assert iframe.evaluate("f => f.getBoundingClientRect().width") <= 375
    inside = next(f for f in phone.frames if f.name.startswith("embedded-checkout"))
    assert inside.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert phone.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    content = inside.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
    phone.wait_for_function("h => Math.abs(document.querySelector('iframe').getBoundingClientRect().height - h) < 2",
                            arg=content)  # the frame is as tall as its page: no inner scrolling
    assert frame.get_by_test_id("submit").inner_text() == "Pay €10.50"
    _fill_card(frame, "4242 4242 4242 4242")
    frame.get_by_test_id("submit").click()
    phone.wait_for_url(_returned_to(session, portal))
    event, payload, signature = portal.wait_for("checkout.session.completed")
    stripe.WebhookSignature.verify_header(payload.decode(), signature, SECRET, 300)
    assert event["data"]["object"]["id"] == session.id and event["data"]["object"]["payment_status"] == "paid"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"


@pytest.mark.e2e
def test_a_declined_card_is_said_inline_in_dutch_and_the_same_frame_takes_another(fake, client, portal, phone):
    session = _embedded(client, portal)
    frame = _mount(phone, portal, session, locale="nl")
    assert frame.get_by_test_id("submit").inner_text() == "Betaal € 10,50"
    labels = ("Kaartnummer", "Vervaldatum", "CVC", "Naam op kaart")
    for label, value in zip(labels, ("4242 4242 4242 4241", "12 / 34", "123", "A. Klant")):
        frame.get_by_label(label, exact=True).fill(value)
    frame.get_by_test_id("submit").click()
    assert frame.locator("#number-error").inner_text() == "Uw kaartnummer is ongeldig."  # Luhn, nothing charged
    frame.get_by_label("Kaartnummer").fill("4000 0000 0000 0002")
    frame.get_by_label("CVC").fill("123")
    frame.get_by_test_id("submit").click()
    assert frame.get_by_role("alert").inner_text() == "Uw kaart is geweigerd."
    assert fake.sessions[session.id]["status"] == "open" and phone.url.startswith(portal.url + "/?")
    frame.get_by_label("Kaartnummer").fill("4242 4242 4242 4242")
    frame.get_by_label("CVC").fill("123")
    frame.get_by_test_id("submit").click()
    phone.wait_for_url(_returned_to(session, portal))


@pytest.mark.e2e
def test_3d_secure_is_challenged_inside_the_frame_a_failure_can_be_retried_and_completing_pays(
        fake, client, portal, phone):
    session = _embedded(client, portal)
    frame = _mount(phone, portal, session)
    _fill_card(frame, "4000 0025 0000 3155")
    frame.get_by_test_id("submit").click()
    frame.get_by_test_id("3ds-fail").click()
    assert frame.get_by_role("alert").inner_text() == (
        "We are unable to authenticate your payment method. Please choose a different payment method and try again.")
    assert phone.url.startswith(portal.url + "/?") and fake.sessions[session.id]["status"] == "open"
    frame.get_by_label("Card number").fill("4000 0025 0000 3155")
    frame.get_by_label("CVC").fill("123")
    frame.get_by_test_id("submit").click()
    assert phone.url.startswith(portal.url + "/?")  # the challenge stays in the frame, on our page
    frame.get_by_test_id("3ds-complete").click()
    phone.wait_for_url(_returned_to(session, portal))
    assert portal.wait_for("checkout.session.completed")[0]["data"]["object"]["payment_status"] == "paid"


@pytest.mark.e2e
def test_ideal_goes_to_the_test_bank_and_back_paid_or_back_open_when_failed(fake, client, portal, phone):
    paid = _embedded(client, portal, method="ideal")
    frame = _mount(phone, portal, paid, locale="nl")
    frame.get_by_role("button", name="Betalen met iDEAL").click()
    phone.wait_for_url(f"{fake.url}/ideal/{paid.id}?*")
    phone.get_by_role("button", name="Authorize test payment").click()
    phone.wait_for_url(_returned_to(paid, portal))
    assert portal.wait_for("checkout.session.completed")[0]["data"]["object"]["id"] == paid.id
    failed = _embedded(client, portal, method="ideal")
    _mount(phone, portal, failed).get_by_role("button", name="Pay with iDEAL").click()
    phone.get_by_test_id("ideal-fail").click()
    phone.wait_for_url(_returned_to(failed, portal))
    assert client.v1.checkout.sessions.retrieve(failed.id).status == "open"  # remount to try again


@pytest.mark.e2e
def test_sepa_direct_debit_completes_as_processing_and_its_result_follows(fake, client, portal, phone):
    session = _embedded(client, portal, method="sepa_debit")
    frame = _mount(phone, portal, session)
    assert "you authorise (A)" in frame.locator(".mandate").inner_text()
    frame.get_by_label("IBAN").fill("NL39 RABO 0300 0652 64")
    frame.get_by_label("Name", exact=True).fill("A. Client")
    frame.get_by_label("Email").fill("client@example.test")
    frame.get_by_test_id("submit").click()
    phone.wait_for_url(_returned_to(session, portal))
    completed = portal.wait_for("checkout.session.completed")[0]["data"]["object"]
    assert (completed["status"], completed["payment_status"]) == ("complete", "unpaid")
    fake.async_result(session.id)  # NL39RABO0300065264: "processing to succeeded"
    assert portal.wait_for("checkout.session.async_payment_succeeded")[0]["data"]["object"]["payment_status"] == "paid"


@pytest.mark.e2e
def test_if_required_calls_on_complete_and_the_page_stays(fake, client, portal, phone):
    session = _embedded(client, portal, redirect_on_completion="if_required")
    frame = _mount(phone, portal, session)
    _fill_card(frame, "4242424242424242")
    frame.get_by_test_id("submit").click()
    phone.locator("body[data-completed='yes']").wait_for()
    assert phone.url.startswith(portal.url + "/?")


@pytest.mark.e2e
def test_an_expired_session_says_so_and_a_wrong_secret_loads_nothing(fake, client, portal, phone):
    session = _embedded(client, portal)
    client.v1.checkout.sessions.expire(session.id)
    phone.goto(f"{portal.url}/?cs={session.client_secret}")
    frame = phone.frame_locator("iframe[name^='embedded-checkout']")
    assert frame.get_by_role("alert").inner_text() == "This checkout session has expired"
    wrong = session.client_secret[:-4] + "XXXX"
    phone.goto(f"{fake.url}/embedded/{session.id}?secret={wrong}&locale=en&origin={portal.url}")
    assert "could not be loaded" in phone.get_by_role("alert").inner_text()


@pytest.mark.e2e
def test_stripe_js_refuses_the_old_name_and_a_failed_fetch_client_secret(fake, portal, phone):
    phone.goto(portal.url + "/")  # no ?cs=: fetchClientSecret rejects
    assert phone.locator("#error").inner_text() == "Error: fetchClientSecret failed: the portal answered 500"
    renamed = phone.evaluate("""() => { try { Stripe('pk_test_x1').initEmbeddedCheckout({}); }
                                       catch (e) { return [e.name, e.message]; } }""")
    assert renamed[0] == "IntegrationError" and "renamed to stripe.createEmbeddedCheckoutPage" in renamed[1]
