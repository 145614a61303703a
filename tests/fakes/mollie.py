"""A local Mollie API (v2 Payments) following docs.mollie.com: the endpoints we use, their
JSON (HAL) shapes, statuses, Bearer API-key authentication, Idempotency-Key replays and
error bodies ({"status", "title", "detail", "field", "_links"}). Reached through
mollie-api-python with only the API endpoint changed."""
from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl
from urllib.request import Request, urlopen

from tests.fakes.base import JsonHandler, LocalServer

STATUSES = {"open", "pending", "authorized", "paid", "canceled", "expired", "failed"}
METHODS = {None, "ideal", "creditcard", "directdebit", "banktransfer"}


class FakeMollie(LocalServer):
    def __init__(self, api_key: str):
        self.api_key = api_key
        self.payments: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.mandates: dict[str, dict[str, dict]] = {}  # customer id -> mandate id -> mandate
        self.by_idempotency_key: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        super().__init__()

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
                "checkout": {"href": f"{self.url}/checkout/select-method/{payment_id}", "type": "text/html"},
                "documentation": {"href": "https://docs.mollie.com/reference/create-payment", "type": "text/html"},
            },
        }

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            content_type = "application/hal+json"

            def _error(self, status: int, title: str, detail: str, field: str | None = None) -> None:
                body = {"status": status, "title": title, "detail": detail,
                        "_links": {"documentation": {"href": "https://docs.mollie.com/overview/handling-errors",
                                                     "type": "text/html"}}}
                if field:
                    body["field"] = field
                self.send_json(status, body)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._error(401, "Unauthorized Request", "Missing authentication, or failed to authenticate")
                    return False
                return True

            def do_POST(self):
                fake.requests.append(("POST", self.path))
                checkout = re.fullmatch(r"/checkout/select-method/(tr_\w+)", self.path)
                if checkout:
                    payment = self._checkout_page(checkout.group(1))
                    if payment is None:
                        return
                    form = dict(parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
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
                if self.path == "/v2/customers":
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                    customer_id = "cst_" + secrets.token_hex(5)
                    with fake.lock:
                        fake.customers[customer_id] = {
                            "resource": "customer", "id": customer_id, "mode": "test", "name": body.get("name"),
                            "email": body.get("email"), "locale": body.get("locale"), "metadata": body.get("metadata"),
                            "createdAt": _now(), "_links": {"self": {"href": f"{fake.url}/v2/customers/{customer_id}",
                                                                     "type": "application/hal+json"}}}
                    return self.send_json(201, fake.customers[customer_id])
                if self.path != "/v2/payments":
                    return self._error(404, "Not Found", "The resource does not exist")
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                except ValueError:
                    return self._error(400, "Bad Request", "The JSON body is not valid")
                amount = body.get("amount") or {}
                if not re.fullmatch(r"\d+\.\d{2}", str(amount.get("value", ""))) or not amount.get("currency"):
                    return self._error(422, "Unprocessable Entity", "The amount contains an invalid value", "amount")
                sequence = body.get("sequenceType", "oneoff")
                required = ("description",) if sequence == "recurring" else ("description", "redirectUrl")
                for field in required:
                    if not body.get(field):
                        return self._error(422, "Unprocessable Entity", f"The {field} is invalid", field)
                if sequence in ("first", "recurring") and body.get("customerId") not in fake.customers:
                    return self._error(422, "Unprocessable Entity", "The customer id is invalid", "customerId")
                if sequence == "recurring":
                    mandate = fake.mandates.get(body["customerId"], {}).get(body.get("mandateId"))
                    if not mandate or mandate["status"] != "valid":
                        return self._error(422, "Unprocessable Entity",
                                           "The customer does not have a valid mandate", "mandateId")
                if body.get("method") not in METHODS:
                    return self._error(422, "Unprocessable Entity", "The payment method is invalid", "method")
                key = self.headers.get("Idempotency-Key")
                with fake.lock:
                    if key and key in fake.by_idempotency_key:  # a replay returns the original
                        return self.send_json(201, fake.payments[fake.by_idempotency_key[key]])
                    payment = fake._payment(body)
                    if sequence == "recurring":  # a direct debit: pending until the bank settles it
                        payment["status"], payment["method"] = "pending", "directdebit"
                    fake.payments[payment["id"]] = payment
                    if key:
                        fake.by_idempotency_key[key] = payment["id"]
                self.send_json(201, payment)

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
                match = re.fullmatch(r"/v2/customers/(cst_\w+)/mandates/(mdt_\w+)", self.path)
                mandate = match and fake.mandates.get(match.group(1), {}).get(match.group(2))
                if not mandate:
                    return self._error(404, "Not Found", "The mandate does not exist")
                with fake.lock:
                    mandate["status"] = "invalid"  # Mollie: a revoked mandate is no longer listed as valid
                self.send_response(204)
                self.end_headers()

            def do_GET(self):
                fake.requests.append(("GET", self.path))
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
                customer = re.fullmatch(r"/v2/customers/(cst_\w+)(/mandates)?(\?.*)?", self.path)
                if customer:
                    if customer.group(1) not in fake.customers:
                        return self._error(404, "Not Found", "No customer exists with token " + customer.group(1))
                    if not customer.group(2):
                        return self.send_json(200, fake.customers[customer.group(1)])
                    listed = [m for m in fake.mandates.get(customer.group(1), {}).values() if m["status"] == "valid"]
                    return self.send_json(200, {"count": len(listed), "_embedded": {"mandates": listed},
                                            "_links": {"self": {"href": fake.url + self.path,
                                                                "type": "application/hal+json"},
                                                       "previous": None, "next": None}})
                match = re.fullmatch(r"/v2/payments/(tr_\w+)(\?.*)?", self.path)
                if not match or match.group(1) not in fake.payments:
                    return self._error(404, "Not Found", "No payment exists with token "
                                       f"{match.group(1) if match else self.path}.")
                with fake.lock:
                    self.send_json(200, fake.payments[match.group(1)])

        return Handler


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
