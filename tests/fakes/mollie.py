"""A local Mollie API (v2 Payments) following docs.mollie.com: the endpoints we use, their
JSON (HAL) shapes, statuses, Bearer API-key authentication, error bodies ({"status", "title",
"detail", "field", "_links"}) and Idempotency-Key handling as docs.mollie.com/overview/api-idempotency
describes it: every POST accepts a key; a repeat within 24 hours gets the cached initial response
with `Idempotent-Replayed: true`; the same key for another endpoint or other parameters is a 400; a
repeat while the first is still being processed is a 409. Reached through mollie-api-python with
only the API endpoint changed.

Faults for tests, as every fake here offers them: `fail_next(n, status)` answers the next n API
requests with Mollie's error body (not executed, so no idempotency key is stored); `delay_next(n,
seconds)` executes the next n API requests at once but answers only after that long, so a client that
gave up has nonetheless been heard (a create's key counts as still being processed until the answer
leaves: a retry meanwhile is a 409); `forget_idempotency_keys()` is the 24 hours passing. The hosted
checkout pages are the payer's browser, not the API: no faults there.

Paying inside the merchant's own page (Mollie Components, card tokens and 3-D Secure, iDEAL's bank
page) and the Mandates API's create live in tests/fakes/mollie_components.py; FakeMollie takes them in.
A payment with method ideal is paid on the bank page (/checkout/ideal/{id}); one without a method
on the test checkout that lets the payer choose an outcome (/checkout/select-method/{id})."""
from __future__ import annotations

import json
import re
import secrets
import time
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit
from urllib.request import Request, urlopen

from tests.fakes import mollie_components as components
from tests.fakes.base import Faults, JsonHandler, LocalServer

STATUSES = {"open", "pending", "authorized", "paid", "canceled", "expired", "failed"}
METHODS = {None, "ideal", "creditcard", "directdebit", "banktransfer"}
IDEMPOTENCY_KEY_LIFETIME = 24 * 3600  # seconds; "Keys older than 24 hours will be removed from our cache."
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 250


class FakeMollie(components.ComponentsMixin, Faults, LocalServer):
    def __init__(self, api_key: str):
        self.api_key = api_key
        self.payments: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.mandates: dict[str, dict[str, dict]] = {}  # customer id -> mandate id -> mandate
        # Idempotency-Key -> the initial request ("POST /v2/payments", parsed body) and its response.
        self.idempotency_keys: dict[str, dict] = {}
        self.in_progress: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        super().__init__()

    # Faults, for tests.
    def forget_idempotency_keys(self) -> None:
        """What 24 hours do: a repeated key is a new request again."""
        with self.lock:
            self.idempotency_keys.clear()

    def payments_for_metadata(self, key: str, value) -> list[dict]:
        """The payments created with metadata[key] == value, oldest first."""
        with self.lock:
            return [p for p in self.payments.values()
                    if isinstance(p.get("metadata"), dict) and p["metadata"].get(key) == value]

    def _take_faults(self) -> tuple[int | None, float]:
        # fail_next: answered with Mollie's error body, unexecuted; delay_next: executed at once,
        # answered late.
        with self.lock:
            return self.pop_fault()

    def _stored(self, key: str) -> dict | None:
        stored = self.idempotency_keys.get(key)
        if stored and time.time() - stored["stored_at"] >= IDEMPOTENCY_KEY_LIFETIME:
            del self.idempotency_keys[key]
            return None
        return stored

    # What happens at Mollie's side (the customer paying, a bank settling, a refund).
    def set_status(self, payment_id: str, status: str) -> None:
        assert status in STATUSES
        with self.lock:
            payment = self.payments[payment_id]
            payment["status"] = status
            if status == "paid":
                payment["paidAt"] = _now()
                payment["amountRemaining"] = dict(payment["amount"])
                if payment.get("sequenceType") == "first":  # paying a first payment signs a mandate
                    mandate_id = "mdt_" + secrets.token_hex(5)
                    self.mandates.setdefault(payment["customerId"], {})[mandate_id] = {
                        "resource": "mandate", "id": mandate_id, "mode": "test", "status": "valid",
                        "method": "directdebit", "details": {"consumerName": "T. Tester",
                                                             "consumerAccount": "NL55INGB0000000000",
                                                             "consumerBic": "INGBNL2A"},
                        "mandateReference": None, "signatureDate": _now()[:10], "createdAt": _now(),
                        "_links": {"self": {"href": f"{self.url}/v2/customers/{payment['customerId']}/mandates/"
                                                    f"{mandate_id}", "type": "application/hal+json"}}}
                    payment["mandateId"] = mandate_id

    def refund(self, payment_id: str, value: str) -> None:
        """A refund made in Mollie's dashboard: the payment shows amountRefunded."""
        self._add(payment_id, "amountRefunded", value, "refunds")

    def chargeback(self, payment_id: str, value: str) -> None:
        """The customer's bank reversed a (SEPA) payment: the payment shows amountChargedBack."""
        self._add(payment_id, "amountChargedBack", value, "chargebacks")

    def _add(self, payment_id: str, field: str, value: str, link: str) -> None:
        from decimal import Decimal

        with self.lock:
            payment = self.payments[payment_id]
            before = Decimal(payment.get(field, {"value": "0.00"})["value"])
            payment[field] = {"value": f"{before + Decimal(value):.2f}", "currency": payment["amount"]["currency"]}
            payment["_links"][link] = {"href": f"{self.url}/v2/payments/{payment_id}/{link}",
                                       "type": "application/hal+json"}

    def _payment(self, body: dict) -> dict:
        payment_id = "tr_" + secrets.token_hex(5)
        checkout = "ideal" if body.get("method") == "ideal" else "select-method"
        return {
            "resource": "payment", "id": payment_id, "mode": "test", "createdAt": _now(),
            "amount": body["amount"], "description": body["description"], "method": body.get("method"),
            "metadata": body.get("metadata"), "status": "open", "isCancelable": False,
            "expiresAt": (datetime.now(timezone.utc) + timedelta(minutes=15)).isoformat(timespec="seconds"),
            "profileId": "pfl_QkEhN94Ba", "sequenceType": body.get("sequenceType", "oneoff"),
            "redirectUrl": body.get("redirectUrl"), "webhookUrl": body.get("webhookUrl"),
            **({"customerId": body["customerId"]} if body.get("customerId") else {}),
            **({"mandateId": body["mandateId"]} if body.get("mandateId") else {}),
            "_links": {
                "self": {"href": f"{self.url}/v2/payments/{payment_id}", "type": "application/hal+json"},
                "checkout": {"href": f"{self.url}/checkout/{checkout}/{payment_id}", "type": "text/html"},
                "documentation": {"href": "https://docs.mollie.com/reference/create-payment", "type": "text/html"},
            },
        }

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            content_type = "application/hal+json"

            def _send(self, status: int, payload: bytes, replayed: bool = False) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", self.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    if replayed:
                        self.send_header("Idempotent-Replayed", "true")
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (delay_next): Mollie has done the work all the same

            def send_json(self, status: int, body: dict) -> None:
                self._send(status, json.dumps(body).encode())

            _error_body = staticmethod(components.error_body)

            def _error(self, status: int, title: str, detail: str, field: str | None = None) -> None:
                self.send_json(status, self._error_body(status, title, detail, field))

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._error(401, "Unauthorized Request", "Missing authentication, or failed to authenticate")
                    return False
                return True

            def _failed(self, failure: int | None, delay: float) -> bool:
                """Answer (late, if told to) with the injected error, if there is one (True: answered)."""
                if failure is None:
                    return False
                time.sleep(delay)
                self.send_json(failure, self._failure_body(failure))
                return True

            def _failure_body(self, status: int) -> dict:
                return self._error_body(status, HTTPStatus(status).phrase,
                                        "An error occurred at Mollie's side; the request was not executed")

            def do_OPTIONS(self):
                if not components.route(self, fake, "OPTIONS"):
                    self.send_response(405)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_POST(self):
                fake.requests.append(("POST", self.path))
                if components.route(self, fake, "POST"):
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                checkout = re.fullmatch(r"/checkout/select-method/(tr_\w+)", self.path)
                if checkout:
                    payment = self._checkout_page(checkout.group(1))
                    if payment is None:
                        return
                    form = dict(parse_qsl(raw.decode()))
                    fake.set_status(payment["id"], "paid" if form.get("outcome") == "paid" else "canceled")
                    if payment.get("webhookUrl"):  # Mollie calls the webhook with only the id
                        urlopen(Request(payment["webhookUrl"], data=f"id={payment['id']}".encode(),
                                        headers={"Content-Type": "application/x-www-form-urlencoded"}), timeout=10)
                    self.send_response(303)
                    self.send_header("Location", payment["redirectUrl"])
                    self.end_headers()
                    return
                if not self._authorised():
                    return
                failure, delay = fake._take_faults()
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                key = self.headers.get("Idempotency-Key")
                request = [f"POST {urlsplit(self.path).path}", body]
                if key:
                    with fake.lock:
                        stored = fake._stored(key)
                        busy = key in fake.in_progress
                        if not stored and not busy:
                            fake.in_progress.add(key)
                    if busy:
                        return self._error(409, "Conflict", "A request with this Idempotency-Key is still being "
                                                            "processed")
                    if stored:
                        if self._failed(failure, delay):
                            return
                        time.sleep(delay)
                        if stored["request"] != request:
                            return self._error(400, "Bad Request", "The Idempotency-Key was already used for "
                                                                   "another endpoint or other parameters")
                        return self._send(stored["status"], stored["payload"], replayed=True)
                # Executed at once; a late answer (delay_next) keeps the key "still being processed".
                # The key is released before the answer leaves, so that a retry sent the moment the
                # answer arrives gets the replay, not a 409.
                try:
                    if failure is not None:  # not executed: nothing stored under the key
                        status, answer = failure, self._failure_body(failure)
                    else:
                        status, answer = self._create(body)
                    payload = json.dumps(answer).encode()
                    if key and failure is None:
                        with fake.lock:
                            fake.idempotency_keys[key] = {"request": request, "status": status, "payload": payload,
                                                          "stored_at": time.time()}
                    time.sleep(delay)
                finally:
                    with fake.lock:
                        fake.in_progress.discard(key)
                self._send(status, payload)

            def _create(self, body) -> tuple[int, dict]:
                """POST /v2/customers, /v2/payments, /v2/customers/{id}/payments and
                /v2/customers/{id}/mandates: (status, answer)."""
                if body is None:
                    return 400, self._error_body(400, "Bad Request", "The JSON body is not valid")
                path = urlsplit(self.path).path
                if path == "/v2/customers":
                    customer_id = "cst_" + secrets.token_hex(5)
                    with fake.lock:
                        fake.customers[customer_id] = {
                            "resource": "customer", "id": customer_id, "mode": "test", "name": body.get("name"),
                            "email": body.get("email"), "locale": body.get("locale"), "metadata": body.get("metadata"),
                            "createdAt": _now(), "_links": {"self": {"href": f"{fake.url}/v2/customers/{customer_id}",
                                                                     "type": "application/hal+json"}}}
                        return 201, fake.customers[customer_id]
                for_mandates = re.fullmatch(r"/v2/customers/(cst_\w+)/mandates", path)
                if for_mandates:
                    return fake.create_mandate(for_mandates.group(1), body)
                for_customer = re.fullmatch(r"/v2/customers/(cst_\w+)/payments", path)
                if for_customer:  # "an alias of the Create payment endpoint with the customerId predefined"
                    body = {**body, "customerId": for_customer.group(1)}
                elif path != "/v2/payments":
                    return 404, self._error_body(404, "Not Found", "The resource does not exist")
                return self._create_payment(body)

            def _create_payment(self, body: dict) -> tuple[int, dict]:
                def invalid(detail, field):
                    return 422, self._error_body(422, "Unprocessable Entity", detail, field)

                amount = body.get("amount") or {}
                if not re.fullmatch(r"\d+\.\d{2}", str(amount.get("value", ""))) or not amount.get("currency"):
                    return invalid("The amount contains an invalid value", "amount")
                sequence = body.get("sequenceType", "oneoff")
                required = ("description",) if sequence == "recurring" else ("description", "redirectUrl")
                for field in required:
                    if not body.get(field):
                        return invalid(f"The {field} is invalid", field)
                if body.get("customerId") and body["customerId"] not in fake.customers:
                    return invalid("The customer id is invalid", "customerId")
                if sequence in ("first", "recurring") and not body.get("customerId"):
                    return invalid("The customer id is invalid", "customerId")
                if sequence == "recurring":
                    mandate = fake.mandates.get(body["customerId"], {}).get(body.get("mandateId"))
                    if not mandate or mandate["status"] != "valid":
                        return invalid("The customer does not have a valid mandate", "mandateId")
                if body.get("method") not in METHODS:
                    return invalid("The payment method is invalid", "method")
                if body.get("cardToken") is not None:  # Mollie Components: the card is in the token
                    return fake.create_card_payment(body)
                with fake.lock:
                    payment = fake._payment(body)
                    if sequence == "recurring":  # charged on the mandate's method; a direct debit is pending
                        payment["status"], payment["method"] = "pending", mandate["method"]  # until the bank settles
                    fake.payments[payment["id"]] = payment
                    return 201, json.loads(json.dumps(payment))  # the answer as it was at this moment

            def _checkout_page(self, payment_id: str):
                """Mollie's hosted checkout, reduced to its outcome: the payer pays or cancels."""
                payment = fake.payments.get(payment_id)
                if payment is None:
                    self.send_response(404)
                    self.end_headers()
                    return None
                return payment

            def do_DELETE(self):
                fake.requests.append(("DELETE", self.path))
                if not self._authorised():
                    return
                failure, delay = fake._take_faults()
                if self._failed(failure, delay):
                    return
                match = re.fullmatch(r"/v2/customers/(cst_\w+)/mandates/(mdt_\w+)", self.path)
                mandate = match and fake.mandates.get(match.group(1), {}).get(match.group(2))
                if mandate:
                    with fake.lock:
                        mandate["status"] = "invalid"  # Mollie: a revoked mandate is no longer listed as valid
                time.sleep(delay)
                if not mandate:
                    return self._error(404, "Not Found", "The mandate does not exist")
                try:
                    self.send_response(204)
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                if components.route(self, fake, "GET"):
                    return
                checkout = re.fullmatch(r"/checkout/select-method/(tr_\w+)", self.path)
                if checkout:
                    payment = self._checkout_page(checkout.group(1))
                    if payment is None:
                        return
                    page = (f"<!DOCTYPE html><html lang='en'><head><title>Mollie test checkout</title></head><body>"
                            f"<h1>Test payment</h1><p>{payment['description']}</p>"
                            f"<p>{payment['amount']['currency']} {payment['amount']['value']}</p>"
                            f"<form method='post'><button name='outcome' value='paid'>Paid</button>"
                            f"<button name='outcome' value='canceled'>Canceled</button></form></body></html>").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if not self._authorised():
                    return
                failure, delay = fake._take_faults()
                if self._failed(failure, delay):
                    return
                time.sleep(delay)  # nothing to execute for a read: only the answer is late
                path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
                if path == "/v2/payments":
                    with fake.lock:
                        payments = list(fake.payments.values())
                    return self._list_payments(payments, query, path,
                                               "https://docs.mollie.com/reference/v2/payments-api/list-payments")
                mandate = re.fullmatch(r"/v2/customers/(cst_\w+)/mandates/(mdt_\w+)", path)
                if mandate:
                    with fake.lock:
                        found = fake.mandates.get(mandate.group(1), {}).get(mandate.group(2))
                        if found:  # a revoked one too, as status invalid
                            return self.send_json(200, found)
                    return self._error(404, "Not Found", f"No mandate exists with token {mandate.group(2)}.")
                customer = re.fullmatch(r"/v2/customers/(cst_\w+)(/mandates|/payments)?", path)
                if customer:
                    customer_id = customer.group(1)
                    if customer_id not in fake.customers:
                        return self._error(404, "Not Found", "No customer exists with token " + customer_id)
                    if not customer.group(2):
                        return self.send_json(200, fake.customers[customer_id])
                    if customer.group(2) == "/payments":
                        with fake.lock:
                            payments = [p for p in fake.payments.values() if p.get("customerId") == customer_id]
                        return self._list_payments(
                            payments, query, path,
                            "https://docs.mollie.com/reference/v2/customers-api/list-customer-payments")
                    listed = [m for m in fake.mandates.get(customer_id, {}).values() if m["status"] == "valid"]
                    return self.send_json(200, {"count": len(listed), "_embedded": {"mandates": listed},
                                            "_links": {"self": {"href": fake.url + self.path,
                                                                "type": "application/hal+json"},
                                                       "previous": None, "next": None}})
                match = re.fullmatch(r"/v2/payments/(tr_\w+)", path)
                if not match or match.group(1) not in fake.payments:
                    return self._error(404, "Not Found", "No payment exists with token "
                                       f"{match.group(1) if match else self.path}.")
                with fake.lock:
                    self.send_json(200, fake.payments[match.group(1)])

            def _list_payments(self, payments: list[dict], query: dict, path: str, documentation: str) -> None:
                """A page of a payments list as docs.mollie.com describes it: newest first; `from` is the
                id of the first payment on the page (included); `limit` at most 250; HAL links to the
                previous and next pages, null where there is none."""
                newest_first = list(reversed(payments))
                try:
                    limit = int(query.get("limit", [LIST_LIMIT_DEFAULT])[0])
                except ValueError:
                    limit = 0
                if not 1 <= limit <= LIST_LIMIT_MAX:
                    return self._error(400, "Bad Request", f"The limit must be between 1 and {LIST_LIMIT_MAX}",
                                       "limit")
                start = 0
                if "from" in query:
                    ids = [p["id"] for p in newest_first]
                    if query["from"][0] not in ids:
                        return self._error(400, "Bad Request", "Invalid 'from' parameter: no such payment", "from")
                    start = ids.index(query["from"][0])
                page = newest_first[start:start + limit]

                def link(first_id):
                    params = {"from": first_id, "limit": limit} if first_id else {"limit": limit}
                    return {"href": f"{fake.url}{path}?{urlencode(params)}", "type": "application/hal+json"}

                previous = newest_first[max(start - limit, 0)]["id"] if start > 0 else None
                following = newest_first[start + limit]["id"] if start + limit < len(newest_first) else None
                with fake.lock:
                    self.send_json(200, {
                        "count": len(page), "_embedded": {"payments": page},
                        "_links": {"self": link(query["from"][0] if "from" in query else None),
                                   "previous": link(previous) if previous else None,
                                   "next": link(following) if following else None,
                                   "documentation": {"href": documentation, "type": "text/html"}}})

        return Handler


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
