"""Paying without leaving the portal, Stripe's side, seen by the caller with no browser: the
checkout page allows Stripe's script and frames (and nothing of Mollie's) on that page alone, the
page's script gets the embedded session's client secret as JSON (once per form key, for this
client only, never stored in plain text or logged), the session is made as Stripe documents an
embedded page (ui_mode embedded_page, return_url with {CHECKOUT_SESSION_ID}, the API version
pinned on every request), and the payment is recorded once when Stripe's event arrives. Hosted
checkout stays the fallback; the return page tells an unfinished session from the normal wait;
going back expires the session at Stripe. Mollie Components and SEPA signed in the portal:
test_embedded_checkout_mollie.py."""
import json
import logging
import threading
import uuid
from urllib.parse import urlsplit

import pytest
from django.core.servers.basehttp import ThreadedWSGIServer
from django.core.wsgi import get_wsgi_application
from django.db import connection
from django.test.testcases import QuietWSGIRequestHandler
from django.urls import reverse

from integrations.models import ClientLink, Connection, OutboxMessage
from integrations.signing import generate_secret
from invoices.models import Invoice, Payment
from payments.models import CheckoutAttempt, GatewayAccount
from portal import txguard
from portal.rls import staff_scope
from tests.fakes.stripe import FakeStripe
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

API_KEY, SECRET = "sk_test_51Hembedded000000000000", "whsec_test_embedded_secret_00"
PUBLISHABLE_KEY = "pk_test_51Hembedded000000000000"
# Not the fake's default version (2026-10-28.endive): a request that did not name ours would show.
PINNED_VERSION = "2026-03-25.dahlia"


class PortalServer:
    """The portal's own WSGI application on a local port, in this process, so that the fake
    gateways' webhook calls reach the real webhook view (its rows are committed, like ours)."""

    def __enter__(self):
        self.server = ThreadedWSGIServer(("127.0.0.1", 0), QuietWSGIRequestHandler)
        self.server.set_app(get_wsgi_application())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def portal_server():
    with PortalServer() as server:
        yield server


@pytest.fixture
def stripe_fake(settings):
    with FakeStripe(API_KEY, SECRET) as fake:
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_API_VERSION = PINNED_VERSION
        yield fake


@pytest.fixture
def shop(committed, worker, stripe_fake):
    def build():
        brand = BrandFactory(is_default=True)
        gateway = GatewayAccount.objects.create(
            brand=brand, provider="stripe", api_key=API_KEY, webhook_secret=SECRET, ideal=True, card=True,
            sepa_direct_debit=True, checkout_mode="embedded", publishable_key=PUBLISHABLE_KEY)
        # The accounting system the client's payments go back to (integrations.receivers).
        erp = Connection.objects.create(name="ERP", slug="erp", brand=brand, signing_secrets=generate_secret(),
                                        outbound_url="http://127.0.0.1:9/erp")
        alpha = ClientFactory(brand=brand, name="Alpha B.V.")
        ClientLink.objects.create(connection=erp, external_id="C-ALPHA", client=alpha)
        owner = MembershipFactory(client=alpha, user__language="en").user
        invoice = make_invoice(alpha, number="S-1", lines=[line(unit_price="100.00")])  # 121.00
        beta = ClientFactory(brand=brand, name="Beta B.V.")
        outsider = MembershipFactory(client=beta, user__language="en").user
        beta_invoice = make_invoice(beta, number="B-1", lines=[line(unit_price="10.00")])
        return {"gateway": gateway, "owner": owner, "invoice": invoice, "outsider": outsider,
                "beta_invoice": beta_invoice, "worker": worker}

    return committed.create(build)


def _form(invoice, *, key=None, embedded=True, method="card") -> dict:
    data = {"idempotency_key": key or str(uuid.uuid4()), "method": method, "invoice": [invoice.pk],
            f"amount_{invoice.pk}": str(invoice.open_balance)}
    if embedded:
        data["embedded"] = "1"  # what checkout.js sets once Stripe's script has loaded
    return data


def _checkout_url(invoice) -> str:
    return f"{reverse('payments:checkout')}?invoice={invoice.pk}"


def _open_embedded(client, invoice, **kwargs):
    """The page's script posting the form for the client secret."""
    return client.post(_checkout_url(invoice), _form(invoice, **kwargs), HTTP_ACCEPT="application/json")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def _deliver(client, shop, signed):
    """Stripe's delivery of an event, then the worker doing the job it left."""
    payload, signature = signed
    response = client.post(reverse("payments:webhook", args=["stripe", shop["gateway"].pk]), data=payload,
                           content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    shop["worker"].run()
    return response


def _attempt() -> CheckoutAttempt:
    with staff_scope():
        return CheckoutAttempt.objects.get()


def test_the_checkout_page_alone_allows_stripes_script_and_frames_and_nothing_of_mollies(shop, client, settings):
    client.force_login(shop["owner"])
    page = client.get(reverse("payments:checkout"), {"invoice": shop["invoice"].pk})
    assert page.status_code == 200
    policy, stripe, mollie = _policy(page), settings.PAYMENT_EMBED_SOURCES["stripe"], \
        settings.PAYMENT_EMBED_SOURCES["mollie"]
    assert [v for v in policy["script-src"] if v.startswith("http")] == [_origin(settings.STRIPE_JS_URL)]
    assert _origin(settings.STRIPE_JS_URL) in policy["frame-src"]
    for directive in ("script-src", "frame-src"):
        assert [v for v in policy[directive] if v.startswith("http")] == stripe[directive], directive
        assert _origin(settings.MOLLIE_JS_URL) not in policy[directive], directive
        assert not set(mollie[directive]) & set(policy[directive]), directive
    assert "'unsafe-inline'" not in policy["script-src"]
    # Stripe's frame may offer the browser's wallets on this page, and only there.
    allowed = " ".join(f'"{origin}"' for origin in stripe["frame-src"])
    assert f"payment=(self {allowed})" in page.headers["Permissions-Policy"]
    assert "payment=()" in client.get(reverse("invoices:list")).headers["Permissions-Policy"]
    assert f'data-embed-key="{PUBLISHABLE_KEY}"' in page.text and settings.STRIPE_JS_URL in page.text
    listing = _policy(client.get(reverse("invoices:list")))
    for directive in ("script-src", "frame-src"):
        for origin in stripe[directive] + mollie[directive]:
            assert origin not in listing.get(directive, []), (directive, origin)


def test_the_embedded_session_answers_its_client_secret_and_is_paid_once_by_stripes_event(
        shop, stripe_fake, client, worker, settings):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    answer = _open_embedded(client, shop["invoice"], key=key)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    assert "no-store" in answer["Cache-Control"]
    [session] = stripe_fake.sessions.values()
    assert answer.json() == {"client_secret": session["client_secret"],
                             "abandon_url": reverse("payments:abandon", args=[key])}
    assert session["ui_mode"] == "embedded_page" and session["success_url"] is None
    assert session["return_url"] == f"{settings.SITE_URL}/pay/{key}/?session_id={{CHECKOUT_SESSION_ID}}"
    assert (session["amount_total"], session["payment_method_types"]) == (12100, ["card"])

    again = _open_embedded(client, shop["invoice"], key=key)  # the same click twice
    assert again.json() == answer.json() and len(stripe_fake.sessions) == 1
    assert stripe_fake.versions and set(stripe_fake.versions) == {PINNED_VERSION}

    secret = session["client_secret"]
    with staff_scope(), connection.cursor() as cursor:
        cursor.execute("SELECT client_secret::text FROM payments_checkoutattempt")
        [(stored,)] = cursor.fetchall()
    assert stored and secret not in stored and session["id"] not in stored  # encrypted at rest
    assert _attempt().client_secret == secret

    completed = stripe_fake.complete(session["id"])
    assert _deliver(client, shop, completed).json()["status"] == "accepted"
    with staff_scope():
        assert Invoice.objects.get(pk=shop["invoice"].pk).status == "paid"
    assert _deliver(client, shop, completed).json()["status"] == "duplicate"  # Stripe retries the delivery
    assert _deliver(client, shop, stripe_fake.complete(session["id"])).json()["status"] == "accepted"  # news again
    with staff_scope():
        assert Payment.objects.count() == 1
        [message] = OutboxMessage.objects.all()
        assert (message.event_type, message.payload["data"]["amount"]) == ("payment.recorded", "121.00")
    assert "Paid. Thank you!" in client.get(reverse("payments:return", args=[key])).text


def test_the_client_secret_is_never_logged_even_at_debug(shop, stripe_fake, client, worker, caplog):
    """The SDK logs Stripe's answers at DEBUG, the embedded session's secret with them."""
    caplog.set_level(logging.DEBUG)
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    secret = _open_embedded(client, shop["invoice"], key=key).json()["client_secret"]
    _open_embedded(client, shop["invoice"], key=key)
    _deliver(client, shop, stripe_fake.complete(stripe_fake.sessions[secret.split("_secret_")[0]]["id"]))
    assert caplog.records and secret.split("_secret_")[1] not in caplog.text


def test_the_client_secret_is_for_its_own_client_alone(shop, stripe_fake, client):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    secret = _open_embedded(client, shop["invoice"], key=key).json()["client_secret"]
    client.force_login(shop["outsider"])
    # Another client posting the same form key (with an invoice of its own) gets no secret.
    stolen = _open_embedded(client, shop["beta_invoice"], key=key)
    assert stolen.status_code == 409 and secret not in stolen.text and "client_secret" not in stolen.json()
    # Nor alpha's invoice, nor alpha's status page, nor can it expire or look up alpha's session.
    assert _open_embedded(client, shop["invoice"]).status_code == 409
    assert client.get(reverse("payments:return", args=[key])).status_code == 404
    assert client.post(reverse("payments:abandon", args=[key])).status_code == 404
    assert client.post(reverse("payments:return_check", args=[key])).status_code == 404
    [session] = stripe_fake.sessions.values()
    assert session["status"] == "open" and len(stripe_fake.sessions) == 1


@pytest.mark.parametrize("change", ["hosted mode", "no publishable key", "no script"])
def test_the_hosted_page_takes_the_payment_when_the_page_cannot_embed(shop, stripe_fake, client, settings, change):
    with staff_scope():
        if change == "hosted mode":
            GatewayAccount.objects.update(checkout_mode="hosted")
        elif change == "no publishable key":
            GatewayAccount.objects.update(publishable_key="")
    client.force_login(shop["owner"])
    if change != "no script":
        page = client.get(reverse("payments:checkout"), {"invoice": shop["invoice"].pk})
        assert "data-embed-provider" not in page.text
        assert not set(settings.PAYMENT_EMBED_SOURCES["stripe"]["script-src"]) & set(_policy(page)["script-src"])
    key = str(uuid.uuid4())
    response = client.post(_checkout_url(shop["invoice"]), _form(shop["invoice"], key=key,
                                                                 embedded=change != "no script"))
    [session] = stripe_fake.sessions.values()
    assert response.status_code == 302 and response.url == session["url"] and session["url"]
    assert session["ui_mode"] == "hosted_page" and session["return_url"] is None
    assert session["success_url"] == f"{settings.SITE_URL}/pay/{key}/"
    assert not _attempt().embedded and _attempt().client_secret == ""


def test_coming_back_with_the_session_still_open_says_it_was_not_completed(shop, stripe_fake, client):
    """Stripe sends the client back to return_url with the session id. The page (a GET, in the
    request's read transaction) does not call Stripe itself; it asks the portal (a POST) to look."""
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    _open_embedded(client, shop["invoice"], key=key)
    [session] = stripe_fake.sessions.values()
    asked = len(stripe_fake.requests)
    back = client.get(reverse("payments:return", args=[key]), {"session_id": session["id"]})
    assert back.status_code == 200 and "Your payment is being processed." in back.text
    assert txguard.take_violations() == [], "Stripe was called with a transaction open"
    check_url = reverse("payments:return_check", args=[key])
    assert f'hx-post="{check_url}"' in back.text and 'hx-trigger="load"' in back.text
    answer = client.post(check_url, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    assert "The payment was not completed." in answer.text and "Try again" in answer.text
    assert f'href="{reverse("payments:checkout")}?invoice={shop["invoice"].pk}"' in answer.text
    assert 'hx-trigger="every 2s"' not in answer.text  # nothing to wait for
    assert stripe_fake.requests[asked:] == [("GET", f"/v1/checkout/sessions/{session['id']}", PINNED_VERSION)]
    # Once Stripe says the session is complete, the check says nothing of the kind.
    stripe_fake.complete(session["id"])
    assert "The payment was not completed." not in client.post(check_url, HTTP_HX_REQUEST="true").text


def test_a_session_id_that_is_not_the_attempts_shows_the_normal_wait(shop, stripe_fake, client):
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    _open_embedded(client, shop["invoice"], key=key)
    wrong = client.get(reverse("payments:return", args=[key]), {"session_id": "cs_test_somebodyelses"})
    assert wrong.status_code == 200
    assert "The payment was not completed." not in wrong.text
    assert "Your payment is being processed." in wrong.text and 'hx-trigger="every 2s"' in wrong.text
    assert reverse("payments:return_check", args=[key]) not in wrong.text


def test_going_back_expires_the_session_at_stripe_and_its_event_closes_the_attempt(
        shop, stripe_fake, client, portal_server):
    stripe_fake.webhook_url = portal_server.url + reverse("payments:webhook", args=["stripe", shop["gateway"].pk])
    client.force_login(shop["owner"])
    key = str(uuid.uuid4())
    abandon_url = _open_embedded(client, shop["invoice"], key=key).json()["abandon_url"]
    [session] = stripe_fake.sessions.values()
    assert client.post(abandon_url).status_code == 204
    assert session["status"] == "expired"
    assert ("POST", f"/v1/checkout/sessions/{session['id']}/expire", PINNED_VERSION) in stripe_fake.requests
    delivered = stripe_fake.wait_for_event("checkout.session.expired")
    assert delivered["status"] == 200 and json.loads(delivered["payload"])["data"]["object"]["id"] == session["id"]
    shop["worker"].run()
    assert _attempt().status == "expired"
    page = client.get(reverse("payments:return", args=[key]))
    assert "The payment expired." in page.text and "Try again" in page.text
    # A new try is a new session; the expired one's secret is not handed out again.
    assert _open_embedded(client, shop["invoice"], key=key).json() == {
        "redirect": reverse("payments:return", args=[key])}
