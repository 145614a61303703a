"""A local Stripe following docs.stripe.com for what we use. The API: POST /v1/checkout/sessions,
GET /v1/checkout/sessions/{id} and POST /v1/checkout/sessions/{id}/expire (form-encoded, Bearer
secret key, `Stripe-Version` per request, Idempotency-Key replays, {"error": {...}} bodies). The
browser side (Stripe.js, the embedded checkout iframe, the hosted page, the iDEAL test bank) lives
in tests/fakes/stripe_checkout.py. Events are signed with the Stripe-Signature scheme (t=...,
v1=HMAC-SHA256 of "t.payload" with the endpoint secret); the helpers below return (payload,
signature) for a test to post, and when a test sets `webhook_url` every event is also POSTed there,
in order, from a delivery thread (kept in `sent_events`).

Faults (tests/fakes/base.py): `fail_next(n, status)` answers the next n API requests with Stripe's
error body, unexecuted (so no idempotency key is stored: docs.stripe.com/idempotency "results are
only saved if an API endpoint started executing"); `delay_next(n, seconds)` executes at once and
answers late. Browser pages take no faults."""
from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import secrets
import threading
import time
from urllib.parse import parse_qsl, urlsplit
from urllib.request import Request, urlopen

from tests.fakes.base import Faults, JsonHandler, LocalServer
from tests.fakes.stripe_checkout import CheckoutPages, outcome_of_iban

METHOD_TYPES = {"card", "ideal", "sepa_debit"}
# The account's default API version, used when a request sends no Stripe-Version (the SDK 16.1.0 default).
DEFAULT_VERSION = "2026-10-28.endive"
# https://docs.stripe.com/changelog/dahlia/2026-03-25/updates-available-checkout-session-ui-modes:
# from 2026-03-25.dahlia the ui_mode values are renamed and the old ones fail.
DAHLIA = "2026-03-25"
UI_MODES_NEW = {"hosted_page": "hosted", "embedded_page": "embedded", "elements": "elements"}
UI_MODES_OLD = {"hosted": "hosted", "embedded": "embedded", "custom": "elements"}
# https://docs.stripe.com/payments/checkout/custom-redirect-behavior
REDIRECTS = ("always", "if_required", "never")
VERSION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?")
SESSION_PATH = re.compile(r"/v1/checkout/sessions/(cs_[A-Za-z0-9_]+)(/expire)?")


def _nested(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding (line_items[0][price_data][currency]=eur) back into JSON shape."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node):
        if isinstance(node, dict):
            if node and all(k.isdigit() for k in node):
                return [listify(node[k]) for k in sorted(node, key=int)]
            return {k: listify(v) for k, v in node.items()}
        return node

    return listify(root)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def is_dahlia_or_later(version: str) -> bool:
    return version[:10] >= DAHLIA


class ApiError(Exception):
    """A Stripe error answer: status and the body's "error" object."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error = {"type": kind, "message": message}
        if param:
            self.error["param"] = param
        if code:
            self.error["code"] = code


class FakeStripe(Faults, LocalServer):
    def __init__(self, api_key: str, webhook_secret: str, *, webhook_url: str | None = None):
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.webhook_url = webhook_url  # a test sets it; every event is then POSTed there
        self.event_api_version = DEFAULT_VERSION  # the webhook endpoint's version, for event bodies
        self.business_name = "Test Business"  # named in the SEPA mandate text
        self.sessions: dict[str, dict] = {}
        self.idempotency_keys: dict[str, dict] = {}  # key -> request signature, status, body
        self.versions: list[str] = []  # the Stripe-Version each API request used, in order
        self.requests: list[tuple[str, str, str]] = []  # (method, path, version) of each API request
        self.sent_events: list[dict] = []  # {"event", "payload", "signature", "status"} per delivery
        self._deliveries: queue.Queue = queue.Queue()
        self._delivered = threading.Condition()
        self._deliverer = threading.Thread(target=self._deliver_events, daemon=True)
        self.pages = CheckoutPages(self)
        super().__init__()

    def __enter__(self):
        self._deliverer.start()
        return super().__enter__()

    def __exit__(self, *exc):
        self._deliveries.put(None)
        self._deliverer.join(timeout=5)
        super().__exit__(*exc)

    # --- Sessions as the API shows them ---------------------------------------------------------
    def public(self, session: dict, version: str | None = None) -> dict:
        """The session object as Stripe answers it to `version` (ui_mode in that version's words)."""
        shown = {k: v for k, v in session.items() if not k.startswith("_")}
        names = UI_MODES_NEW if is_dahlia_or_later(version or DEFAULT_VERSION) else UI_MODES_OLD
        shown["ui_mode"] = next(name for name, kind in names.items() if kind == session["_kind"])
        return shown

    # --- Events, as Stripe would send them (payload bytes and the Stripe-Signature header) ----
    def event(self, kind: str, obj: dict) -> tuple[bytes, str]:
        body = {"id": f"evt_{secrets.token_hex(12)}", "object": "event", "api_version": self.event_api_version,
                "created": int(time.time()), "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None}, "type": kind}
        payload = json.dumps(body).encode()
        signed = payload, sign(payload, self.webhook_secret)
        if self.webhook_url:
            self._deliveries.put(signed)
        return signed

    def _session_event(self, kind: str, session_id: str) -> tuple[bytes, str]:
        return self.event(kind, self.public(self.sessions[session_id], self.event_api_version))

    def complete(self, session_id: str, *, paid: bool = True) -> tuple[bytes, str]:
        """The customer completed the session: paid, or (SEPA) authorised and still processing."""
        with self.lock:
            session = self.sessions[session_id]
            session.update(status="complete", payment_status="paid" if paid else "unpaid",
                           payment_intent=session["payment_intent"] or f"pi_{secrets.token_hex(12)}")
        return self._session_event("checkout.session.completed", session_id)

    def async_result(self, session_id: str, *, succeeded: bool | None = None) -> tuple[bytes, str]:
        """A delayed payment method's result. Without `succeeded`, the one the test IBAN entered in
        the browser stands for (docs.stripe.com/payments/sepa-debit/accept-a-payment, Test IBANs)."""
        with self.lock:
            session = self.sessions[session_id]
            if succeeded is None:
                succeeded = outcome_of_iban(session.get("_iban", ""))
                if succeeded is None:
                    raise ValueError(f"{session_id}: no test IBAN with a documented outcome was entered")
            session["payment_status"] = "paid" if succeeded else "unpaid"
        kind = "succeeded" if succeeded else "failed"
        return self._session_event(f"checkout.session.async_payment_{kind}", session_id)

    def expire(self, session_id: str) -> tuple[bytes, str]:
        """The session's expires_at passing (or POST .../expire): open -> expired."""
        with self.lock:
            self.sessions[session_id].update(status="expired", url=None)
        return self._session_event("checkout.session.expired", session_id)

    def _charge(self, session: dict, refunded: int = 0) -> dict:
        return {"id": f"ch_{session['id'][-12:]}", "object": "charge", "amount": session["amount_total"],
                "amount_refunded": refunded, "currency": session["currency"], "paid": True,
                "payment_intent": session["payment_intent"], "refunded": refunded >= session["amount_total"],
                "status": "succeeded"}

    def refund(self, session_id: str, cents: int) -> tuple[bytes, str]:
        session = self.sessions[session_id]
        session["_refunded"] = session.get("_refunded", 0) + cents
        return self.event("charge.refunded", self._charge(session, session["_refunded"]))

    def dispute(self, session_id: str, cents: int) -> tuple[bytes, str]:
        session = self.sessions[session_id]
        return self.event("charge.dispute.created", {
            "id": f"dp_{secrets.token_hex(12)}", "object": "dispute", "amount": cents,
            "charge": self._charge(session)["id"], "currency": session["currency"],
            "payment_intent": session["payment_intent"], "reason": "fraudulent", "status": "needs_response"})

    # --- Webhook delivery: one thread, so one account's events arrive in the order they happened ---
    def _deliver_events(self) -> None:
        while (signed := self._deliveries.get()) is not None:
            payload, signature = signed
            record = {"event": json.loads(payload), "payload": payload, "signature": signature, "status": None}
            try:
                request = Request(self.webhook_url, data=payload, method="POST", headers={
                    "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
                with urlopen(request, timeout=10) as answer:
                    record["status"] = answer.status
            except OSError as exc:  # an HTTPError is an OSError too, and carries the status
                record["status"] = getattr(exc, "code", None) or repr(exc)
            with self._delivered:
                self.sent_events.append(record)
                self._delivered.notify_all()

    def wait_for_event(self, kind: str, *, timeout: float = 10.0) -> dict:
        """The first delivered event of that type (waits for its delivery to be answered)."""
        deadline = time.monotonic() + timeout
        with self._delivered:
            while True:
                for record in self.sent_events:
                    if record["event"]["type"] == kind:
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {kind} delivered to {self.webhook_url} within {timeout}s")
                self._delivered.wait(left)

    # --- The API ----------------------------------------------------------------------------------
    def _create_session(self, params: dict, version: str) -> dict:
        """POST /v1/checkout/sessions, after validation; https://docs.stripe.com/api/checkout/sessions/create."""
        if params.get("mode") != "payment":
            raise ApiError(400, "Missing required param: mode.", "mode", code="parameter_missing")
        items = params.get("line_items") or []
        if not items:
            raise ApiError(400, "Missing required param: line_items.", "line_items", code="parameter_missing")
        methods = params.get("payment_method_types") or ["card"]
        for n, method in enumerate(methods):
            if method not in METHOD_TYPES:
                raise ApiError(400, f"Invalid payment_method_types[{n}]: must be one of {', '.join(sorted(METHOD_TYPES))}",
                               f"payment_method_types[{n}]")
        kind, ui_mode = self._ui_mode(params, version)
        redirect = self._redirect_rules(params, kind, ui_mode, methods)
        total = sum(int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items)
        session_id = f"cs_test_{secrets.token_urlsafe(40).replace('-', 'A').replace('_', 'b')}"
        embedded = kind != "hosted"
        return {
            "id": session_id, "object": "checkout.session", "amount_subtotal": total, "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "client_secret": f"{session_id}_secret_{secrets.token_urlsafe(18).replace('-', 'c').replace('_', 'D')}"
            if embedded else None,
            "created": int(time.time()), "currency": items[0]["price_data"]["currency"],
            "expires_at": int(time.time()) + 86400, "livemode": False, "locale": params.get("locale"),
            "metadata": params.get("metadata", {}), "mode": "payment", "payment_intent": None,
            "payment_method_types": methods, "payment_status": "unpaid",
            "redirect_on_completion": redirect, "return_url": params.get("return_url"), "status": "open",
            "success_url": params.get("success_url"), "ui_mode": ui_mode,
            "url": None if embedded else f"{self.url}/c/pay/{session_id}",
            "_kind": kind,
        }

    @staticmethod
    def _ui_mode(params: dict, version: str) -> tuple[str, str]:
        names = UI_MODES_NEW if is_dahlia_or_later(version) else UI_MODES_OLD
        ui_mode = params.get("ui_mode") or next(iter(names))
        if ui_mode not in names:
            # Stripe's enum error ("Invalid <param>: must be one of a, b, or c").
            choices = list(names)
            raise ApiError(400, f"Invalid ui_mode: must be one of {', '.join(choices[:-1])}, or {choices[-1]}",
                           "ui_mode")
        return names[ui_mode], ui_mode

    @staticmethod
    def _redirect_rules(params: dict, kind: str, ui_mode: str, methods: list[str]) -> str | None:
        """success_url/cancel_url belong to the hosted page, return_url to the embedded ones
        (docs.stripe.com/payments/checkout/custom-redirect-behavior: "If you've integrated with a
        Stripe-hosted payment page, you can't use the return_url parameter")."""
        if kind == "hosted":
            if params.get("return_url"):
                raise ApiError(400, f"You can only specify `return_url` when `ui_mode` is not `{ui_mode}`.",
                               "return_url")
            return None
        unsupported = [name for name in ("cancel_url", "success_url") if params.get(name)]
        if unsupported:  # the wording Stripe answers for these (seen in laravel/cashier-stripe#1815)
            raise ApiError(400, f"The following parameters are not supported with 'ui_mode: {ui_mode}': "
                                f"{', '.join(unsupported)}.", unsupported[0])
        redirect = params.get("redirect_on_completion") or "always"
        if redirect not in REDIRECTS:
            raise ApiError(400, "Invalid redirect_on_completion: must be one of always, if_required, or never",
                           "redirect_on_completion")
        if redirect == "never":
            if params.get("return_url"):  # laravel/cashier-stripe#1629: Stripe refuses return_url with never
                raise ApiError(400, "You cannot specify `return_url` when `redirect_on_completion` is `never`.",
                               "return_url")
            if "ideal" in methods:  # "Not use a return page and disable redirect-based payment methods"
                raise ApiError(400, "`redirect_on_completion: never` cannot be used with redirect-based payment "
                                    "methods: ideal.", "payment_method_types")
        elif not params.get("return_url"):
            raise ApiError(400, "Missing required param: return_url.", "return_url", code="parameter_missing")
        return redirect

    def _expire_session(self, session_id: str) -> dict:
        """https://docs.stripe.com/api/checkout/sessions/expire: only an open session; the error
        text is Stripe's own (as integrations match it, e.g. "... has a status of `complete`.")."""
        session = self.sessions[session_id]  # with self.lock held
        if session["status"] != "open":
            raise ApiError(400, 'Only Checkout Sessions with a status in ["open"] can be expired. '
                                f"This Checkout Session has a status of `{session['status']}`.")
        session.update(status="expired", url=None)
        self._session_event("checkout.session.expired", session_id)
        return session

    def _handler(self):
        return make_handler(self)


def make_handler(fake: FakeStripe):
    class Handler(JsonHandler):
        def send_json(self, status: int, body: dict, replayed: bool = False) -> None:
            self.extra_headers = {"Request-Id": f"req_{secrets.token_hex(7)}",
                                  "Stripe-Version": getattr(self, "version", DEFAULT_VERSION)}
            if replayed:
                self.extra_headers["Idempotent-Replayed"] = "true"
            try:
                super().send_json(status, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (delay_next): Stripe has done the work all the same

        def _fail(self, error: ApiError) -> None:
            self.send_json(error.status, {"error": error.error})

        def _api_request(self, method: str) -> bool:
            """Authentication, version and faults for an API request (True: go on)."""
            if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                self._fail(ApiError(401, "Invalid API Key provided: sk_test_****"))
                return False
            self.version = self.headers.get("Stripe-Version") or DEFAULT_VERSION
            with fake.lock:
                fake.versions.append(self.version)
                fake.requests.append((method, urlsplit(self.path).path, self.version))
                self.failure, self.delay = fake.pop_fault()
            if not VERSION_FORMAT.fullmatch(self.version):
                self._fail(ApiError(400, f"Invalid Stripe API version: {self.version}"))
                return False
            if self.failure is not None:  # unexecuted, answered (late, if told to) with Stripe's error body
                time.sleep(self.delay)
                self._fail(ApiError(self.failure, "An error occurred with our connection to Stripe. "
                                                  "The request was not executed.", kind="api_error"))
                return False
            return True

        def _session(self, session_id: str) -> dict:
            session = fake.sessions.get(session_id)
            if session is None:
                raise ApiError(404, f"No such checkout.session: '{session_id}'", "session", code="resource_missing")
            return session

        def do_GET(self):
            path = urlsplit(self.path).path
            if not path.startswith("/v1/"):
                return fake.pages.get(self)
            if not self._api_request("GET"):
                return
            match = SESSION_PATH.fullmatch(path)
            try:
                if not match or match.group(2):
                    raise ApiError(404, f"Unrecognized request URL (GET: {path}).")
                with fake.lock:
                    body = fake.public(self._session(match.group(1)), self.version)
            except ApiError as error:
                time.sleep(self.delay)
                return self._fail(error)
            time.sleep(self.delay)  # nothing to execute for a read: only the answer is late
            self.send_json(200, body)

        def do_POST(self):
            path = urlsplit(self.path).path
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not path.startswith("/v1/"):
                return fake.pages.post(self, path, raw)
            if not self._api_request("POST"):
                return
            params = _nested(parse_qsl(raw.decode(), keep_blank_values=True))
            key = self.headers.get("Idempotency-Key")
            signature = [path, params]
            with fake.lock:
                stored = fake.idempotency_keys.get(key) if key else None
                if stored is None:
                    try:
                        status, body = 200, self._execute(path, params)
                    except ApiError as error:  # refused before executing: nothing is kept under the key
                        status, body = error.status, {"error": error.error}
                    if key and status == 200:
                        fake.idempotency_keys[key] = {"request": signature, "status": status, "body": body}
            time.sleep(self.delay)
            if stored is None:
                return self.send_json(status, body)
            if stored["request"] != signature:  # https://docs.stripe.com/idempotency
                return self._fail(ApiError(400, "Keys for idempotent requests can only be used with the same "
                                                "parameters they were first used with. Try using a key other than "
                                                f"'{key}' if you meant to execute a different request.",
                                           kind="idempotency_error"))
            self.send_json(stored["status"], stored["body"], replayed=True)

        def _execute(self, path: str, params: dict) -> dict:
            """With fake.lock held."""
            if path == "/v1/checkout/sessions":
                session = fake._create_session(params, self.version)
                fake.sessions[session["id"]] = session
                return fake.public(session, self.version)
            match = SESSION_PATH.fullmatch(path)
            if match and match.group(2):
                self._session(match.group(1))
                return fake.public(fake._expire_session(match.group(1)), self.version)
            raise ApiError(404, f"Unrecognized request URL (POST: {path}).")

    return Handler
