"""Paying inside our own page, at the fake Mollie (tests/fakes/mollie.py): Mollie Components (a fake
Mollie.js and its card-field iframes, card tokens), card payments made with a `cardToken` and their
3-D Secure page, iDEAL's bank page, and creating SEPA mandates through the Mandates API. FakeMollie
takes all of it in through `ComponentsMixin` and calls `route()` for the pages a browser opens.

What follows Mollie's documentation (docs.mollie.com):
- Mollie.js at /v1/mollie.js: `Mollie(profileId, {locale, testmode})`, `createComponent(type)` for
  `cardHolder`, `cardNumber`, `expiryDate`, `verificationCode`, `component.mount/unmount/
  addEventListener('change'|'blur'|'focus')`, `createToken()` resolving `{token}` or `{error}`
  (reference/mollie-object, reference/component-object); a test token ends in `test`
  ("tkn_123abctest"); a token is valid for one hour (docs/mollie-components); errors are localized
  to the locale given; the container div gets `mollie-component`, `mollie-component--<type>`,
  `is-touched`, `is-valid`, `is-invalid`, `has-focus` (components/styling).
- Create payment with `cardToken` and `method: "creditcard"`; then the customer goes to
  `_links.checkout` for 3-D Secure; a failed card payment has `details.failureReason` (one of
  Mollie's codes) and a localized `details.failureMessage`; a completed one `details.cardHolder`,
  `cardNumber` (last four), `cardLabel`, `cardSecurity`... (reference/v2/payments-api/get-payment,
  components/handling-errors). Mollie's magic amounts pick the failure reason of a card payment
  that fails: EUR 1001.00 invalid_card_number ... 1011.00 card_declined (overview/testing).
- Create mandate: POST /v2/customers/{id}/mandates with method directdebit, consumerName,
  consumerAccount (IBAN), optional consumerBic, signatureDate (YYYY-MM-DD), mandateReference; 201
  with the mandate, status valid (reference/v2/mandates-api/create-mandate); errors in Mollie's
  error body, 422 with `field` for a bad value (overview/handling-errors).

The fake's own conventions, where Mollie leaves the outcome to its test checkout screen:
- Card outcomes by number. Mollie's three test cards (overview/testing): VISA 4543 4740 0224 9996
  and American Express 3782 822463 10005 are paid at once, without 3-D Secure (answered `paid`, no
  `_links.checkout`); Mastercard 2223 0000 1047 9399 needs 3-D Secure (answered `open`, with
  `_links.checkout` to /checkout/3ds/{id}). 4000 0000 0000 0002 (not a Mollie number) is declined
  (answered `failed`, failureReason card_declined). Any other valid number needs 3-D Secure, as
  Mollie sends every card payment through its checkout. A magic amount makes the payment fail
  with that reason wherever it is decided; failing authentication is `authentication_failed`.
- Refusals whose wording Mollie does not publish: a cardToken with another method is a 422 on
  `method`; an unknown, used or expired token a 422 on `cardToken`; an invalid IBAN a 422 on
  `consumerAccount`. With `mandates_api_allowed = False` (an account Mollie has not enabled for
  creating mandates through the API) a create is 403 Forbidden, Mollie's code for "You do not have
  access to the requested resource", in the same error body.
- Mollie calls the webhook with `id=...` whenever a payment reaches a final status: after the 3-D
  Secure and bank pages (before redirecting the browser, 303, to the redirectUrl) and, a moment
  after the create answer, for a card paid or declined at once. Every call is noted in
  `webhook_calls`.
- A first payment (sequenceType first) paid by card signs a card mandate (method creditcard,
  details cardHolder, cardNumber, cardLabel, cardExpiryDate), as Mollie's recurring guide has it."""
from __future__ import annotations

import calendar
import html
import json
import re
import secrets
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit
from urllib.request import Request, urlopen

JS_DIR = Path(__file__).with_name("mollie_js")
TOKEN_LIFETIME = 3600  # seconds: "The cardToken is valid for 1 hour."
COMPONENT_TYPES = ("cardHolder", "cardNumber", "expiryDate", "verificationCode")
TEST_CARDS = {"4543474002249996": "paid", "378282246310005": "paid", "2223000010479399": "3ds",
              "4000000000000002": "declined"}
MAGIC_AMOUNTS = {"1001.00": "invalid_card_number", "1002.00": "invalid_cvv", "1003.00": "invalid_card_holder_name",
                 "1004.00": "card_expired", "1005.00": "invalid_card_type", "1006.00": "refused_by_issuer",
                 "1007.00": "insufficient_funds", "1008.00": "inactive_card", "1009.00": "possible_fraud",
                 "1010.00": "authentication_failed", "1011.00": "card_declined"}
FAILURE_MESSAGES = {  # (en, nl): what the customer may be shown
    "invalid_card_number": ("The card number is invalid.", "Het kaartnummer is ongeldig."),
    "invalid_cvv": ("The CVC is invalid.", "De CVC is ongeldig."),
    "invalid_card_holder_name": ("The card holder's name is invalid.", "De naam van de kaarthouder is ongeldig."),
    "card_expired": ("The card has expired. Please use another card.", "De kaart is verlopen. Gebruik een andere kaart."),
    "invalid_card_type": ("This type of card is not accepted.", "Dit type kaart wordt niet geaccepteerd."),
    "refused_by_issuer": ("Your bank refused the payment.", "Uw bank heeft de betaling geweigerd."),
    "insufficient_funds": ("The balance of your card is insufficient. Please use another card.",
                           "Het saldo van uw kaart is onvoldoende. Gebruik een andere kaart."),
    "inactive_card": ("The card is not active. Please use another card.",
                      "De kaart is niet actief. Gebruik een andere kaart."),
    "possible_fraud": ("The payment was refused. Please use another card.",
                       "De betaling is geweigerd. Gebruik een andere kaart."),
    "authentication_failed": ("The 3-D Secure authentication failed.", "De 3-D Secure-verificatie is mislukt."),
    "card_declined": ("The card was declined. Please use another card.",
                      "De kaart is geweigerd. Gebruik een andere kaart."),
}
TOKEN_REFUSED = {"en": "Please check your card details.", "nl": "Controleer uw kaartgegevens."}
FIELD_TITLES = {  # component type -> (en, nl): the field's label and its iframe's title
    "cardHolder": ("Card holder", "Kaarthouder"), "cardNumber": ("Card number", "Kaartnummer"),
    "expiryDate": ("Expiry date", "Vervaldatum"), "verificationCode": ("CVC", "CVC"),
}
FIELD_INPUTS = {  # component type -> (autocomplete, inputmode, placeholder)
    "cardHolder": ("cc-name", "text", ""), "cardNumber": ("cc-number", "numeric", "1234 5678 9012 3456"),
    "expiryDate": ("cc-exp", "numeric", "MM / YY"), "verificationCode": ("cc-csc", "numeric", "123"),
}


def error_body(status: int, title: str, detail: str, field: str | None = None) -> dict:
    """Mollie's error body (overview/handling-errors)."""
    body = {"status": status, "title": title, "detail": detail,
            "_links": {"documentation": {"href": "https://docs.mollie.com/overview/handling-errors",
                                         "type": "text/html"}}}
    if field:
        body["field"] = field
    return body


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def language(locale: str | None) -> str:
    return "nl" if (locale or "").lower().startswith("nl") else "en"


def luhn_valid(number: str) -> bool:
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(number)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_field_valid(kind: str, value: str, today: date | None = None) -> bool:
    """The same checks as the iframes make (mollie_js/component.js), made again at the token."""
    value = (value or "").strip()
    if kind == "cardHolder":
        return bool(value)
    if kind == "cardNumber":
        digits = value.replace(" ", "")
        return bool(re.fullmatch(r"\d{12,19}", digits)) and luhn_valid(digits)
    if kind == "verificationCode":
        return bool(re.fullmatch(r"\d{3,4}", value))
    expiry = re.fullmatch(r"(\d{2})\s*/?\s*(\d{2})", value)
    if not expiry or not 1 <= int(expiry.group(1)) <= 12:
        return False
    today = today or date.today()
    return (2000 + int(expiry.group(2)), int(expiry.group(1))) >= (today.year, today.month)


def iban_valid(iban: str) -> bool:
    """ISO 13616: country, check digits, then the account; the mod-97 remainder is 1."""
    iban = re.sub(r"\s", "", iban or "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def card_label(number: str) -> str | None:
    if number.startswith("4"):
        return "Visa"
    if number[:2] in ("34", "37"):
        return "American Express"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "Mastercard"
    return None


class ComponentsMixin:
    """FakeMollie's share: card tokens, card payments, the browser pages and creating mandates."""

    mandates_api_allowed = True  # False: Mollie has not enabled this account for Create mandate

    def __init__(self, *args, **kwargs):
        self.card_tokens: dict[str, dict] = {}  # token -> {"card", "testmode", "created", "used"}
        self.component_fields: dict[str, dict[str, str]] = {}  # Mollie.js session -> type -> value
        self.card_payments: dict[str, dict] = {}  # payment id -> {"card", "token"}
        self.webhook_calls: list[dict] = []  # {"id", "url", "answer"}: Mollie's calls to webhooks
        super().__init__(*args, **kwargs)

    # Mollie.js: the card fields' values arrive from the iframes, the token request from the page.
    def store_component_field(self, session: str, kind: str, value: str) -> None:
        with self.lock:
            self.component_fields.setdefault(session, {})[kind] = value

    def create_token(self, session: str, testmode: bool, locale: str | None) -> tuple[int, dict]:
        with self.lock:
            fields = self.component_fields.get(session, {})
            if not all(card_field_valid(kind, fields.get(kind, "")) for kind in COMPONENT_TYPES):
                return 422, {"error": {"message": TOKEN_REFUSED[language(locale)]}}
            expiry = re.fullmatch(r"(\d{2})\s*/?\s*(\d{2})", fields["expiryDate"].strip())
            token = "tkn_" + secrets.token_hex(5) + ("test" if testmode else "")
            # The CVC is checked, not kept: a token carries the card's holder, number and expiry.
            self.card_tokens[token] = {
                "card": {"holder": fields["cardHolder"].strip(), "number": fields["cardNumber"].replace(" ", ""),
                         "expiry": f"{expiry.group(1)}/{expiry.group(2)}"},
                "testmode": testmode, "created": time.time(), "used": False}
            del self.component_fields[session]
            return 201, {"token": token}

    # Card payments (Create payment with cardToken).
    def create_card_payment(self, body: dict) -> tuple[int, dict]:
        if body.get("method") != "creditcard":
            return 422, error_body(422, "Unprocessable Entity", "A card token can only be used with the creditcard "
                                                                "method", "method")
        token = body.get("cardToken")
        with self.lock:
            held = self.card_tokens.get(token) if isinstance(token, str) else None
            if (not held or held["used"] or time.time() - held["created"] >= TOKEN_LIFETIME
                    or held["testmode"] != self.api_key.startswith("test_")):
                return 422, error_body(422, "Unprocessable Entity", "The card token is invalid, expired or already "
                                                                    "used", "cardToken")
            held["used"] = True
            payment = self._payment(body)
            payment.update(locale=body.get("locale"), details={"cardToken": token})
            self.payments[payment["id"]] = payment
            self.card_payments[payment["id"]] = {"card": held["card"], "token": token}
            outcome = TEST_CARDS.get(held["card"]["number"], "3ds")
            if outcome == "3ds":
                payment["_links"]["checkout"] = {"href": f"{self.url}/checkout/3ds/{payment['id']}", "type": "text/html"}
        if outcome != "3ds":
            reason = MAGIC_AMOUNTS.get(payment["amount"]["value"])
            self.settle_card_payment(payment["id"], reason or ("card_declined" if outcome == "declined" else None),
                                     security="normal")
            threading.Thread(target=self._call_webhook_soon, args=(payment["id"],), daemon=True).start()
        with self.lock:
            return 201, json.loads(json.dumps(payment))  # the answer as it was at this moment

    def settle_card_payment(self, payment_id: str, failure_reason: str | None, *, security: str) -> None:
        """The card payment's end: paid, or failed for that reason; details as Mollie gives them."""
        self.set_status(payment_id, "failed" if failure_reason else "paid")
        with self.lock:
            payment, held = self.payments[payment_id], self.card_payments[payment_id]
            number = held["card"]["number"]
            details = {"cardToken": held["token"], "cardHolder": held["card"]["holder"], "cardNumber": number[-4:],
                       "cardLabel": card_label(number), "cardFingerprint": secrets.token_hex(8),
                       "cardAudience": "consumer", "cardCountryCode": "NL", "cardSecurity": security,
                       "feeRegion": "american-express" if card_label(number) == "American Express" else "intra-eu"}
            if failure_reason:
                details["failureReason"] = failure_reason
                details["failureMessage"] = FAILURE_MESSAGES[failure_reason][language(payment.get("locale")) == "nl"]
                payment["failedAt"] = now()
            payment["details"] = details
            payment["_links"].pop("checkout", None)
            customer_mandates = self.mandates.get(payment.get("customerId"), {})
            if not failure_reason and payment.get("mandateId") in customer_mandates:
                # A first payment by card signs a card mandate (set_status made a SEPA one).
                month, year = (int(part) for part in held["card"]["expiry"].split("/"))
                last_day = calendar.monthrange(2000 + year, month)[1]
                customer_mandates[payment["mandateId"]].update(method="creditcard", details={
                    "cardHolder": details["cardHolder"], "cardNumber": details["cardNumber"],
                    "cardLabel": details["cardLabel"], "cardFingerprint": details["cardFingerprint"],
                    "cardExpiryDate": f"{2000 + year}-{month:02d}-{last_day:02d}"})

    # Mandates API.
    def create_mandate(self, customer_id: str, body: dict) -> tuple[int, dict]:
        def invalid(detail, field):
            return 422, error_body(422, "Unprocessable Entity", detail, field)

        if customer_id not in self.customers:
            return 404, error_body(404, "Not Found", f"No customer exists with token {customer_id}.")
        if not self.mandates_api_allowed:
            return 403, error_body(403, "Forbidden", "Creating mandates through the API is not enabled for this account")
        if body.get("method") != "directdebit":  # Mollie also takes paypal; the fake has direct debit only
            return invalid("The payment method is invalid", "method")
        if not str(body.get("consumerName") or "").strip():
            return invalid("The consumer name is missing", "consumerName")
        if not iban_valid(str(body.get("consumerAccount") or "")):
            return invalid("The consumer account is not a valid IBAN", "consumerAccount")
        bic = body.get("consumerBic")
        if bic is not None and not re.fullmatch(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?", str(bic)):
            return invalid("The consumer BIC is invalid", "consumerBic")
        signed = body.get("signatureDate")
        if signed is not None and not _is_date(str(signed)):
            return invalid("The signature date must be a date in YYYY-MM-DD format", "signatureDate")
        mandate_id = "mdt_" + secrets.token_hex(5)
        base = f"{self.url}/v2/customers/{customer_id}"
        mandate = {
            "resource": "mandate", "id": mandate_id, "mode": "test", "status": "valid", "method": "directdebit",
            "details": {"consumerName": body["consumerName"],
                        "consumerAccount": re.sub(r"\s", "", body["consumerAccount"]).upper(),
                        "consumerBic": bic},
            "mandateReference": body.get("mandateReference"), "signatureDate": signed or now()[:10],
            "createdAt": now(),
            "_links": {"self": {"href": f"{base}/mandates/{mandate_id}", "type": "application/hal+json"},
                       "customer": {"href": base, "type": "application/hal+json"},
                       "documentation": {"href": "https://docs.mollie.com/reference/v2/mandates-api/create-mandate",
                                         "type": "text/html"}}}
        with self.lock:
            self.mandates.setdefault(customer_id, {})[mandate_id] = mandate
            return 201, json.loads(json.dumps(mandate))

    # Mollie calling the merchant.
    def call_webhook(self, payment_id: str) -> None:
        """Mollie's webhook call: a form POST of only the payment's id."""
        with self.lock:
            url = self.payments[payment_id].get("webhookUrl")
        if not url:
            return
        try:
            with urlopen(Request(url, data=f"id={payment_id}".encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}), timeout=10) as answer:
                outcome: int | str = answer.status
        except OSError as exc:  # the merchant failed to answer: Mollie notes it (and would retry later)
            outcome = getattr(exc, "code", None) or repr(exc)
        with self.lock:
            self.webhook_calls.append({"id": payment_id, "url": url, "answer": outcome})

    def _call_webhook_soon(self, payment_id: str) -> None:
        time.sleep(0.2)  # after the create's answer, as Mollie calls from its own queue
        self.call_webhook(payment_id)


def route(handler, fake, method: str) -> bool:
    """The browser's side of the fake (no API key): Mollie.js, the component iframes, the token
    request, the 3-D Secure and iDEAL bank pages. True when the request was answered here."""
    path = urlsplit(handler.path).path
    if method == "OPTIONS":
        if path != "/v1/tokens":
            return False
        _raw(handler, 204, b"", "text/plain", cors=True)
        return True
    if method == "GET" and path in ("/v1/mollie.js", "/v1/component.js"):
        _raw(handler, 200, (JS_DIR / path.rsplit("/", 1)[1]).read_bytes(), "text/javascript; charset=utf-8")
        return True
    component = re.fullmatch(r"/components/(\w+)", path)
    if method == "GET" and component:
        _component_page(handler, component.group(1), parse_qs(urlsplit(handler.path).query))
        return True
    field = re.fullmatch(r"/components/([\w-]{8,64})/(\w+)", path)
    if method == "POST" and field:
        if field.group(2) not in COMPONENT_TYPES:
            _raw(handler, 404, b"", "text/plain")
        else:
            fake.store_component_field(field.group(1), field.group(2), _json(handler).get("value", ""))
            _raw(handler, 204, b"", "text/plain")
        return True
    if method == "POST" and path == "/v1/tokens":
        asked = _json(handler)
        status, answer = fake.create_token(str(asked.get("session", "")), bool(asked.get("testmode")), asked.get("locale"))
        _raw(handler, status, json.dumps(answer).encode(), "application/json", cors=True)
        return True
    page = re.fullmatch(r"/checkout/(3ds|ideal)/(tr_\w+)", path)
    if not page:
        return False
    kind, payment_id = page.groups()
    with fake.lock:
        payment = fake.payments.get(payment_id)
        ours = payment is not None and (payment_id in fake.card_payments if kind == "3ds"
                                        else payment.get("method") == "ideal")
        payment = json.loads(json.dumps(payment)) if ours else None
    if payment is None:
        _raw(handler, 404, b"Not found", "text/plain")
    elif payment["status"] != "open":  # done already: the browser goes back to the merchant
        _redirect(handler, payment["redirectUrl"])
    elif method == "GET":
        _raw(handler, 200, (_three_d_secure_page if kind == "3ds" else _bank_page)(payment).encode(),
             "text/html; charset=utf-8")
    else:
        outcome = dict(parse_qsl(handler.rfile.read(int(handler.headers.get("Content-Length", 0))).decode()))
        _finish(fake, kind, payment, outcome.get("outcome"))
        _redirect(handler, payment["redirectUrl"])
    return True


def _finish(fake, kind: str, payment: dict, outcome: str | None) -> None:
    if kind == "3ds":
        reason = MAGIC_AMOUNTS.get(payment["amount"]["value"])
        if outcome != "complete":
            reason = reason or "authentication_failed"
        fake.settle_card_payment(payment["id"], reason, security="3dsecure")
    else:
        fake.set_status(payment["id"], "paid" if outcome == "approve" else "canceled")
        if outcome == "approve":  # iDEAL's details: who paid, from which account
            with fake.lock:
                fake.payments[payment["id"]]["details"] = {"consumerName": "T. Tester",
                                                           "consumerAccount": "NL55INGB0000000000",
                                                           "consumerBic": "INGBNL2A"}
    fake.call_webhook(payment["id"])


def _json(handler) -> dict:
    try:
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))) or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _raw(handler, status: int, payload: bytes, content_type: str, *, cors: bool = False) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    handler.send_header("Cache-Control", "no-store")
    if cors:  # the token request comes from the merchant's page, another origin
        handler.send_header("Access-Control-Allow-Origin", "*")
        handler.send_header("Access-Control-Allow-Methods", "POST")
        handler.send_header("Access-Control-Allow-Headers", "Content-Type")
    handler.end_headers()
    handler.wfile.write(payload)


def _redirect(handler, url: str) -> None:
    handler.send_response(303)
    handler.send_header("Location", url)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


PAGE_STYLE = ("*{box-sizing:border-box}body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;padding:1rem;"
              "max-width:28rem;color:#1a1a1a}h1{font-size:1.4rem}p{overflow-wrap:anywhere}"
              "button{display:block;width:100%;min-height:44px;margin-top:.75rem;font:inherit;border-radius:6px;"
              "border:2px solid #1a1a1a;background:#fff;cursor:pointer}button.primary{background:#1a1a1a;color:#fff}"
              "button:focus-visible{outline:3px solid #0a58ca;outline-offset:2px}")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body><main>{body}</main></body></html>")


def _summary(payment: dict) -> str:
    return (f"<p>{html.escape(payment['description'])}</p>"
            f"<p><strong>{html.escape(payment['amount']['currency'])} {html.escape(payment['amount']['value'])}</strong></p>")


def _three_d_secure_page(payment: dict) -> str:
    return _page("3-D Secure — Test issuer", (
        "<h1>Confirm your payment</h1><p>Your card issuer asks you to confirm this payment (3-D Secure).</p>"
        f"{_summary(payment)}<form method='post'>"
        "<button class='primary' name='outcome' value='complete' data-testid='3ds-complete'>Complete authentication"
        "</button><button name='outcome' value='fail' data-testid='3ds-fail'>Fail authentication</button></form>"))


def _bank_page(payment: dict) -> str:
    return _page("Test bank — iDEAL", (
        f"<h1>Test bank — iDEAL</h1><p>Approve this payment from your account.</p>{_summary(payment)}"
        "<form method='post'><button class='primary' name='outcome' value='approve' data-testid='bank-approve'>Approve"
        "</button><button name='outcome' value='cancel' data-testid='bank-cancel'>Cancel</button></form>"))


def _component_page(handler, kind: str, query: dict) -> None:
    """One card field, alone in its iframe on Mollie's origin: the merchant's page never reads it."""
    if kind not in COMPONENT_TYPES:
        return _raw(handler, 404, b"Not found", "text/plain")

    def asked(name):
        return html.escape(query.get(name, [""])[0], quote=True)

    lang = language(query.get("locale", [""])[0])
    title = FIELD_TITLES[kind][lang == "nl"]
    autocomplete, inputmode, placeholder = FIELD_INPUTS[kind]
    page = (f"<!DOCTYPE html><html lang='{lang}'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<style>html,body{margin:0;padding:0;height:100%;overflow:hidden;background:transparent}"
            "input{box-sizing:border-box;display:block;width:100%;height:44px;margin:0;border:0;padding:0 .6rem;"
            "font:16px system-ui,sans-serif;background:transparent;color:#1a1a1a}input:focus{outline:none}"
            ".visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}</style>"
            f"</head><body data-type='{kind}' data-session='{asked('session')}' data-locale='{lang}' "
            f"data-origin='{asked('origin')}'><label class='visually-hidden' for='field'>{title}</label>"
            f"<input id='field' name='{kind}' type='text' autocomplete='{autocomplete}' inputmode='{inputmode}' "
            f"placeholder='{placeholder or title}' spellcheck='false' aria-invalid='false'>"
            "<script src='/v1/component.js'></script></body></html>")
    _raw(handler, 200, page.encode(), "text/html; charset=utf-8")
