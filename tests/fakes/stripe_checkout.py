"""The browser side of the local Stripe (tests/fakes/stripe.py): Stripe.js at /<release>/stripe.js,
the embedded checkout page that Stripe.js frames (/embedded/<session>?secret=...&locale=...&origin=...),
the hosted checkout page (/c/pay/<session>) and the iDEAL test bank (/ideal/<session>).

What they do follows Stripe's docs: test cards and messages from docs.stripe.com/testing (4242...
succeeds; 4000000000000002 is a generic decline; 4000002500003155 "requires authentication. Stripe
will trigger a modal asking for the customer to authenticate"; a failed authentication answers
"We are unable to authenticate your payment method. Please choose a different payment method and try
again."), test IBANs from docs.stripe.com/payments/sepa-debit/accept-a-payment, the redirect rules
of docs.stripe.com/payments/checkout/custom-redirect-behavior (return_url with {CHECKOUT_SESSION_ID};
a failed or canceled redirect payment comes back with the session still open), and the test pages
Stripe shows for 3-D Secure and bank redirects ("Complete/Fail authentication", "Authorize/Fail test
payment"; English only, as Stripe's are). The card number is only ever posted to this origin."""
from __future__ import annotations

import datetime
import html
import re
import secrets
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

ASSETS = Path(__file__).resolve().parent / "stripe_js"
# Stripe.js releases (docs.stripe.com/sdks/stripejs-versioning): https://js.stripe.com/<release>/stripe.js;
# before versioning it was https://js.stripe.com/v3/. One file serves all; it reads its release from its URL.
RELEASES = ("acacia", "basil", "clover", "dahlia", "endive")
ORIGIN_FORMAT = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")

SUCCEEDS, DECLINED, AUTHENTICATE = "succeeds", "declined", "authenticate"
TEST_CARDS = {  # number -> (outcome, decline message key); any other valid number succeeds
    "4000000000000002": (DECLINED, "card_declined"),
    "4000000000009995": (DECLINED, "insufficient_funds"),
    "4000000000000069": (DECLINED, "expired_card"),
    "4000000000000127": (DECLINED, "incorrect_cvc"),
    "4000002500003155": (AUTHENTICATE, None),
    "4000002760003184": (AUTHENTICATE, None),
    "4000000000003220": (AUTHENTICATE, None),
    "4000008260003178": (AUTHENTICATE, "insufficient_funds"),  # authenticates, then declined
}
TEST_IBANS = {  # documented outcome (succeeded?); "delayed" ones alike, the test says when
    "NL39RABO0300065264": True, "NL55RABO0300065267": True, "NL91ABNA0417164300": False,
    "NL28RABO0300065268": False, "AT611904300234573201": True, "AT321904300235473204": True,
    "AT861904300235473202": False, "AT051904300235473205": False, "DE89370400440532013000": True,
    "DE08370400440532013003": True, "DE62370400440532013001": False, "DE78370400440532013004": False,
    "BE62510007547061": True, "BE68539007547034": False,
}

TEXTS = {
    "en": {
        "title": "Payment details", "card": "Card", "ideal": "iDEAL", "sepa_debit": "SEPA Direct Debit",
        "card_number": "Card number", "expiry": "Expiry", "cvc": "CVC", "card_name": "Name on card",
        "iban": "IBAN", "name": "Name", "email": "Email", "pay": "Pay {amount}", "pay_ideal": "Pay with iDEAL",
        "mandate": "By providing your payment information and confirming this payment, you authorise (A) {business} "
                   "and Stripe, our payment service provider, to send instructions to your bank to debit your "
                   "account and (B) your bank to debit your account in accordance with those instructions. As part "
                   "of your rights, you are entitled to a refund from your bank under the terms and conditions of "
                   "your agreement with your bank. A refund must be claimed within 8 weeks starting from the date "
                   "on which your account was debited. Your rights are explained in a statement that you can obtain "
                   "from your bank. You agree to receive notifications for future debits up to 2 days before they "
                   "occur.",
        "paid": "Payment successful", "processing": "Your payment is processing.",
        "expired": "This checkout session has expired",
        "invalid": "Something went wrong. This checkout session could not be loaded.",
        "redirecting": "Redirecting to your bank…", "cancel": "Back",
        "number_incomplete": "Your card number is incomplete.", "number_invalid": "Your card number is invalid.",
        "expiry_incomplete": "Your card's expiration date is incomplete.",
        "expiry_month": "Your card's expiration month is invalid.",
        "expiry_year_past": "Your card's expiration year is in the past.",
        "expiry_past": "Your card's expiration date is in the past.",
        "cvc_incomplete": "Your card's security code is incomplete.", "required": "This field is required.",
        "iban_incomplete": "Your IBAN is incomplete.", "iban_invalid": "Your IBAN is invalid.",
        "email_invalid": "Your email address is invalid.",
        "card_declined": "Your card was declined.", "insufficient_funds": "Your card has insufficient funds.",
        "expired_card": "Your card has expired.", "incorrect_cvc": "Your card's security code is incorrect.",
        "authentication_failed": "We are unable to authenticate your payment method. Please choose a different "
                                 "payment method and try again.",
    },
    "nl": {
        "title": "Betaalgegevens", "card": "Kaart", "ideal": "iDEAL", "sepa_debit": "SEPA-incasso",
        "card_number": "Kaartnummer", "expiry": "Vervaldatum", "cvc": "CVC", "card_name": "Naam op kaart",
        "iban": "IBAN", "name": "Naam", "email": "E-mail", "pay": "Betaal {amount}",
        "pay_ideal": "Betalen met iDEAL",
        "mandate": "Door uw betaalgegevens te verstrekken en deze betaling te bevestigen, machtigt u (A) {business} "
                   "en Stripe, onze betaaldienstverlener, om uw bank opdracht te geven uw rekening te debiteren en (B) "
                   "uw bank om uw rekening overeenkomstig die opdracht te debiteren. Als onderdeel van uw rechten "
                   "heeft u recht op terugbetaling door uw bank volgens de voorwaarden van uw overeenkomst met uw "
                   "bank. Een terugbetaling moet binnen 8 weken na de datum waarop uw rekening is gedebiteerd worden "
                   "aangevraagd. Uw rechten worden uitgelegd in een verklaring die u bij uw bank kunt opvragen. U "
                   "gaat ermee akkoord berichten over toekomstige afschrijvingen tot 2 dagen vooraf te ontvangen.",
        "paid": "Betaling geslaagd", "processing": "Uw betaling wordt verwerkt.",
        "expired": "Deze betaalsessie is verlopen",
        "invalid": "Er is iets misgegaan. Deze betaalsessie kon niet worden geladen.",
        "redirecting": "U wordt doorgestuurd naar uw bank…", "cancel": "Terug",
        "number_incomplete": "Uw kaartnummer is onvolledig.", "number_invalid": "Uw kaartnummer is ongeldig.",
        "expiry_incomplete": "De vervaldatum van uw kaart is onvolledig.",
        "expiry_month": "De vervalmaand van uw kaart is ongeldig.",
        "expiry_year_past": "Het vervaljaar van uw kaart ligt in het verleden.",
        "expiry_past": "De vervaldatum van uw kaart ligt in het verleden.",
        "cvc_incomplete": "De beveiligingscode van uw kaart is onvolledig.", "required": "Dit veld is verplicht.",
        "iban_incomplete": "Uw IBAN is onvolledig.", "iban_invalid": "Uw IBAN is ongeldig.",
        "email_invalid": "Uw e-mailadres is ongeldig.",
        "card_declined": "Uw kaart is geweigerd.", "insufficient_funds": "Uw kaart heeft onvoldoende saldo.",
        "expired_card": "Uw kaart is verlopen.", "incorrect_cvc": "De beveiligingscode van uw kaart is onjuist.",
        "authentication_failed": "We kunnen uw betaalmethode niet verifiëren. Kies een andere betaalmethode en "
                                 "probeer het opnieuw.",
    },
}
SYMBOLS = {"eur": "€", "usd": "$", "gbp": "£"}


def language(locale: str | None) -> str:
    return "nl" if (locale or "").lower().startswith("nl") else "en"


def money(cents: int, currency: str, lang: str) -> str:
    """€10.50 in English, € 10,50 in Dutch (as Stripe's checkout shows amounts per locale)."""
    amount = f"{Decimal(cents) / 100:,.2f}"
    symbol = SYMBOLS.get(currency.lower(), currency.upper() + " ")
    if lang == "nl":
        return f"{symbol} " + amount.translate(str.maketrans(",.", ".,"))
    return symbol + amount


def luhn(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits)) % 10 == 0


def iban_valid(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return iban.isalnum() and int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def outcome_of_iban(iban: str) -> bool | None:
    return TEST_IBANS.get(iban)


def card_errors(form: dict, today: datetime.date) -> dict[str, str]:
    """Field -> text key, as Stripe's card fields validate before anything is sent."""
    errors = {}
    number = re.sub(r"[\s-]", "", form.get("number", ""))
    if len(number) < 13:
        errors["number"] = "number_incomplete"
    elif not number.isdigit() or not luhn(number):
        errors["number"] = "number_invalid"
    expiry = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", form.get("expiry", ""))
    if not expiry:
        errors["expiry"] = "expiry_incomplete"
    else:
        month, year = int(expiry.group(1)), int(expiry.group(2)[-2:]) + 2000
        if not 1 <= month <= 12:
            errors["expiry"] = "expiry_month"
        elif year < today.year:
            errors["expiry"] = "expiry_year_past"
        elif (year, month) < (today.year, today.month):
            errors["expiry"] = "expiry_past"
    cvc = form.get("cvc", "").strip()
    if not cvc.isdigit() or len(cvc) != (4 if number[:2] in ("34", "37") else 3):
        errors["cvc"] = "cvc_incomplete"
    if not form.get("name", "").strip():
        errors["name"] = "required"
    return errors


def sepa_errors(form: dict) -> dict[str, str]:
    errors = {}
    iban = re.sub(r"\s", "", form.get("iban", "")).upper()
    if len(iban) < 15:
        errors["iban"] = "iban_incomplete"
    elif not iban_valid(iban):
        errors["iban"] = "iban_invalid"
    if not form.get("name", "").strip():
        errors["name"] = "required"
    email = form.get("email", "").strip()
    if not email:
        errors["email"] = "required"
    elif not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        errors["email"] = "email_invalid"
    return errors


def with_session_id(url: str, session_id: str) -> str:
    return url.replace("{CHECKOUT_SESSION_ID}", session_id)


class View:
    """One request's checkout: the session, embedded (in Stripe.js's iframe) or hosted, its language."""

    def __init__(self, fake, session: dict, lang: str, *, parent_origin: str | None = None, secret: str = ""):
        self.fake, self.session, self.lang, self.t = fake, session, lang, TEXTS[lang]
        self.embedded = parent_origin is not None
        self.parent_origin, self.secret = parent_origin, secret
        self.base = f"/embedded/{session['id']}" if self.embedded else f"/c/pay/{session['id']}"
        self.amount = money(session["amount_total"], session["currency"], lang)

    def hidden(self) -> str:
        fields = {"locale": self.lang}
        if self.embedded:
            fields.update(secret=self.secret, origin=self.parent_origin)
        return "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())

    def page(self, body: str, **data: str | None) -> bytes:
        attributes = "".join(f' data-{k}="{html.escape(v)}"' for k, v in data.items() if v is not None)
        origin = f' data-parent-origin="{html.escape(self.parent_origin)}"' if self.embedded else ""
        return page(self.lang, self.t["title"], f"<body{origin}{attributes}><main>{body}</main>")

    def field(self, name: str, label: str, errors: dict, value: str = "", **attributes: str) -> str:
        error = errors.get(name)
        described = f' aria-invalid="true" aria-describedby="{name}-error"' if error else ""
        extra = "".join(f' {k.replace("_", "-")}="{html.escape(v)}"' for k, v in attributes.items())
        message = f'<p class="field-error" id="{name}-error">{html.escape(self.t[error])}</p>' if error else ""
        return (f'<div class="field"><label for="{name}">{html.escape(label)}</label>'
                f'<input id="{name}" name="{name}" value="{html.escape(value)}"{extra}{described}>{message}</div>')

    def form(self, errors: dict | None = None, values: dict | None = None, failure: str | None = None,
             method: str | None = None) -> bytes:
        errors, values, t = errors or {}, values or {}, self.t
        sections = []
        for kind in self.session["payment_method_types"]:
            mine = errors if kind == method else {}
            alert = (f'<p class="alert" role="alert">{html.escape(t[failure])}</p>'
                     if failure and kind == method else "")
            if kind == "card":
                fields = (self.field("number", t["card_number"], mine, autocomplete="cc-number", inputmode="numeric",
                                     placeholder="1234 1234 1234 1234")
                          + '<div class="row">'
                          + self.field("expiry", t["expiry"], mine, values.get("expiry", ""), autocomplete="cc-exp",
                                       inputmode="numeric", placeholder="MM / YY")
                          + self.field("cvc", t["cvc"], mine, autocomplete="cc-csc", inputmode="numeric",
                                       placeholder="CVC") + "</div>"
                          + self.field("name", t["card_name"], mine, values.get("name", ""), autocomplete="cc-name"))
                button = t["pay"].format(amount=self.amount)
            elif kind == "ideal":
                fields, button = "", t["pay_ideal"]
            else:
                business = self.fake.business_name
                fields = (self.field("iban", t["iban"], mine, values.get("iban", ""), autocomplete="off",
                                     placeholder="NL00 BANK 0123 4567 89")
                          + self.field("name", t["name"], mine, values.get("name", ""), autocomplete="name")
                          + self.field("email", t["email"], mine, values.get("email", ""), type="email",
                                       autocomplete="email")
                          + f'<p class="mandate">{html.escape(t["mandate"].format(business=business))}</p>')
                button = t["pay"].format(amount=self.amount)
            sections.append(
                f'<section data-method="{kind}" aria-labelledby="h-{kind}"><h2 id="h-{kind}">{t[kind]}</h2>'
                f'<form method="post" action="{self.base}/{kind}" novalidate>{self.hidden()}{alert}{fields}'
                f'<button type="submit" data-testid="submit">{html.escape(button)}</button></form></section>')
        cancel = (f'<p><a href="{html.escape(self.session["cancel_url"])}">{t["cancel"]}</a></p>'
                  if not self.embedded and self.session.get("cancel_url") else "")
        return self.page(f'<h1>{t["title"]}</h1><p class="amount">{html.escape(self.amount)}</p>'
                         + "".join(sections) + cancel)

    def challenge(self, attempt: str) -> bytes:
        """Stripe's 3-D Secure test page, inside the checkout (Stripe opens it in a modal)."""
        buttons = "".join(
            f'<button type="submit" name="outcome" value="{value}" data-testid="3ds-{value}">{label}</button>'
            for value, label in (("complete", "Complete authentication"), ("fail", "Fail authentication")))
        return self.page(
            f'<section aria-labelledby="h-3ds" class="challenge"><h1 id="h-3ds">3D Secure 2 Test Page</h1>'
            f'<p>This is a test authentication of a payment of {html.escape(self.amount)}. '
            f'Complete or fail it to see how your integration handles either.</p>'
            f'<form method="post" action="{self.base}/3ds">{self.hidden()}'
            f'<input type="hidden" name="attempt" value="{attempt}">{buttons}</form></section>')

    def done(self, processing: bool = False, signal: bool = True) -> bytes:
        """The completed checkout; embedded, it tells Stripe.js (once, when it happened) to go to
        return_url ("always") or to call onComplete ("if_required", "never")."""
        signal = signal and self.embedded
        redirect = None
        if signal and self.session.get("redirect_on_completion") == "always":
            redirect = with_session_id(self.session["return_url"], self.session["id"])
        text = self.t["processing"] if processing else self.t["paid"]
        return self.page(f'<h1 role="status">{html.escape(text)}</h1>',
                         complete="1" if signal else None, redirect=redirect)

    def notice(self, key: str) -> bytes:
        return self.page(f'<h1 role="alert">{html.escape(self.t[key])}</h1>')


def page(lang: str, title: str, body: str) -> bytes:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/assets/embedded.css"></head>'
            f'{body}<script src="/assets/embedded.js"></script></body></html>').encode()


class CheckoutPages:
    """The fake's browser routes; the handler calls get()/post() for every path outside /v1/."""

    def __init__(self, fake):
        self.fake = fake

    # --- answers ---
    @staticmethod
    def send(handler, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
             headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Referrer-Policy", "same-origin")  # the client secret stays out of Referer
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def redirect(self, handler, location: str) -> None:
        self.send(handler, 303, b"", headers={"Location": location})

    def asset(self, handler, name: str, content_type: str) -> None:
        # Stripe.js is a classic cross-origin script: CORS matters only to a page that loads it with
        # the crossorigin attribute (for error details), so say it may.
        self.send(handler, 200, (ASSETS / name).read_bytes(), content_type,
                  {"Access-Control-Allow-Origin": "*", "Cross-Origin-Resource-Policy": "cross-origin"})

    # --- routes ---
    def get(self, handler) -> None:
        url = urlsplit(handler.path)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        release = path.strip("/").split("/")[0]
        if path in ("/v3", "/v3/") or (release in RELEASES and path == f"/{release}/stripe.js"):
            return self.asset(handler, "stripe.js", "text/javascript; charset=utf-8")
        if path == "/assets/embedded.js":
            return self.asset(handler, "embedded.js", "text/javascript; charset=utf-8")
        if path == "/assets/embedded.css":
            return self.asset(handler, "embedded.css", "text/css; charset=utf-8")
        if match := re.fullmatch(r"/(embedded|c/pay|ideal)/(cs_[A-Za-z0-9_]+)", path):
            where, session_id = match.groups()
            if where == "ideal":
                return self.bank_page(handler, session_id, query.get("t", ""))
            view = self.view(handler, session_id, query)
            if view is not None:
                failure = "authentication_failed" if query.get("failed") == "ideal" else None
                self.send(handler, 200, self.current(view, failure=failure, method="ideal" if failure else None))
            return
        self.send(handler, 404, page("en", "Not found", "<body><h1>Not found</h1>"))

    def post(self, handler, path: str, raw: bytes) -> None:
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        match = re.fullmatch(r"/(embedded|c/pay|ideal)/(cs_[A-Za-z0-9_]+)(?:/(card|3ds|ideal|sepa_debit))?", path)
        if not match:
            return self.send(handler, 404, page("en", "Not found", "<body><h1>Not found</h1>"))
        where, session_id, step = match.groups()
        if where == "ideal":
            return self.bank_answer(handler, session_id, form)
        view = self.view(handler, session_id, form)
        if view is None:
            return
        if view.session["status"] != "open" or step is None:
            return self.send(handler, 200, self.current(view))
        body = getattr(self, f"pay_{step.replace('3ds', 'challenge')}")(view, form)
        if not view.embedded:  # the hosted page moves the browser itself
            if step == "ideal":
                return self.redirect(handler, f"/ideal/{session_id}?t={view.session['_ideal']}")
            if view.session["status"] == "complete" and view.session.get("success_url"):
                return self.redirect(handler, with_session_id(view.session["success_url"], session_id))
        self.send(handler, 200, body)

    def view(self, handler, session_id: str, params: dict) -> View | None:
        """The checkout this request is for, or None when an error page was answered."""
        session = self.fake.sessions.get(session_id)
        chosen = (session or {}).get("locale")  # the session's locale, unless "auto", goes first
        chosen = chosen if chosen and chosen != "auto" else None
        if "secret" in params or "origin" in params:  # framed by Stripe.js, in the locale it was given
            lang = language(chosen or params.get("locale"))
            origin = params.get("origin", "")
            if (session is None or session["_kind"] != "embedded" or params.get("secret") != session["client_secret"]
                    or not ORIGIN_FORMAT.fullmatch(origin)):
                self.send(handler, 404, page(lang, TEXTS[lang]["title"],
                                             f'<body><main><h1 role="alert">{TEXTS[lang]["invalid"]}</h1></main>'))
                return None
            return View(self.fake, session, lang, parent_origin=origin, secret=params["secret"])
        lang = language(chosen or params.get("locale") or handler.headers.get("Accept-Language"))
        if session is None or session["_kind"] != "hosted":
            self.send(handler, 404, page(lang, TEXTS[lang]["title"],
                                         f'<body><main><h1 role="alert">{TEXTS[lang]["invalid"]}</h1></main>'))
            return None
        return View(self.fake, session, lang)

    def current(self, view: View, **form_args) -> bytes:
        status = view.session["status"]
        if status == "expired":
            return view.notice("expired")
        if status == "complete":
            return view.done(processing=view.session["payment_status"] != "paid", signal=False)
        return view.form(**form_args)

    # --- paying ---
    def completed(self, view: View, *, paid: bool) -> bytes:
        self.fake.complete(view.session["id"], paid=paid)
        return view.done(processing=not paid)

    def pay_card(self, view: View, form: dict) -> bytes:
        kept = {"expiry": form.get("expiry", ""), "name": form.get("name", "")}  # never the number or CVC
        errors = card_errors(form, datetime.date.today())
        if errors:
            return view.form(errors, kept, method="card")
        outcome, decline = TEST_CARDS.get(re.sub(r"[\s-]", "", form["number"]), (SUCCEEDS, None))
        if outcome == DECLINED:
            return view.form(values=kept, failure=decline, method="card")
        if outcome == AUTHENTICATE:
            attempt = secrets.token_urlsafe(12)
            view.session["_3ds"] = {"attempt": attempt, "then": decline, "kept": kept}
            return view.challenge(attempt)
        return self.completed(view, paid=True)

    def pay_challenge(self, view: View, form: dict) -> bytes:
        pending = view.session.pop("_3ds", None)
        if not pending or form.get("attempt") != pending["attempt"]:
            return view.form()
        if form.get("outcome") != "complete":
            return view.form(values=pending["kept"], failure="authentication_failed", method="card")
        if pending["then"]:
            return view.form(values=pending["kept"], failure=pending["then"], method="card")
        return self.completed(view, paid=True)

    def pay_ideal(self, view: View, form: dict) -> bytes:
        token = view.session["_ideal"] = secrets.token_urlsafe(12)
        bank = f"{self.fake.url}/ideal/{view.session['id']}?t={token}"
        # Embedded, Stripe.js in the parent page takes the top window to the bank (a framed page may not).
        return view.page(f'<h1 role="status">{html.escape(view.t["redirecting"])}</h1>', navigate=bank)

    def pay_sepa_debit(self, view: View, form: dict) -> bytes:
        values = {k: form.get(k, "") for k in ("iban", "name", "email")}
        errors = sepa_errors(form)
        if errors:
            return view.form(errors, values, method="sepa_debit")
        view.session["_iban"] = re.sub(r"\s", "", values["iban"]).upper()
        return self.completed(view, paid=False)  # SEPA is a delayed notification method: processing

    # --- the iDEAL test bank, top-level ---
    def bank_page(self, handler, session_id: str, token: str) -> None:
        session = self.fake.sessions.get(session_id)
        if session is None or not token or session.get("_ideal") != token:
            return self.send(handler, 404, page("en", "iDEAL", '<body><main><h1 role="alert">Unknown payment</h1>'))
        buttons = "".join(
            f'<button type="submit" name="outcome" value="{value}" data-testid="ideal-{value}">{label}</button>'
            for value, label in (("authorize", "Authorize test payment"), ("fail", "Fail test payment")))
        amount = money(session["amount_total"], session["currency"], "en")
        self.send(handler, 200, page("en", "iDEAL test payment", (
            f'<body><main><h1>iDEAL test payment</h1><p>{html.escape(amount)} to {html.escape(session["id"])}. '
            f'This is a test payment page: authorize or fail it.</p><form method="post" action="/ideal/{session_id}">'
            f'<input type="hidden" name="t" value="{token}">{buttons}</form></main>')))

    def bank_answer(self, handler, session_id: str, form: dict) -> None:
        session = self.fake.sessions.get(session_id)
        if session is None or session.get("_ideal") != form.get("t"):
            return self.send(handler, 404, page("en", "iDEAL", '<body><main><h1 role="alert">Unknown payment</h1>'))
        session.pop("_ideal")
        if form.get("outcome") == "authorize" and session["status"] == "open":
            self.fake.complete(session_id, paid=True)
        if session["_kind"] == "hosted":  # back to the hosted page on failure; to success_url when paid
            if session["status"] == "complete" and session.get("success_url"):
                return self.redirect(handler, with_session_id(session["success_url"], session_id))
            return self.redirect(handler, f"/c/pay/{session_id}" + ("" if session["status"] == "complete"
                                                                    else "?failed=ideal"))
        # Embedded: back to return_url either way; the session, still open after a failure, says which.
        self.redirect(handler, with_session_id(session["return_url"], session_id))


def stripe_js_url(fake, release: str = "dahlia") -> str:
    return f"{fake.url}/{quote(release)}/stripe.js"
