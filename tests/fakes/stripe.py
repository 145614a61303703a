"""A local Stripe API following docs.stripe.com for what we use: POST /v1/checkout/sessions
(form-encoded, Bearer secret key, Idempotency-Key replays, {"error": {...}} bodies), and the
events Stripe would send, signed with the Stripe-Signature scheme (t=..., v1=HMAC-SHA256 of
"t.payload" with the endpoint secret). Reached through the `stripe` SDK with only the API
base changed; events are posted to our webhook by the tests, as Stripe would."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from urllib.parse import parse_qsl

from tests.fakes.base import JsonHandler, LocalServer

METHOD_TYPES = {"card", "ideal", "sepa_debit"}


def _nested(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding (line_items[0][price_data][currency]=eur) back into JSON shape."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part, following in zip(parts, parts[1:]):
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


class FakeStripe(LocalServer):
    def __init__(self, api_key: str, webhook_secret: str):
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.sessions: dict[str, dict] = {}
        self.by_idempotency_key: dict[str, str] = {}
        super().__init__()

    # --- Events, as Stripe would send them (payload bytes and the Stripe-Signature header) ----
    def event(self, kind: str, obj: dict) -> tuple[bytes, str]:
        body = {"id": f"evt_{secrets.token_hex(12)}", "object": "event", "api_version": "2024-06-20",
                "created": int(time.time()), "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None}, "type": kind}
        payload = json.dumps(body).encode()
        return payload, sign(payload, self.webhook_secret)

    def complete(self, session_id: str, *, paid: bool = True) -> tuple[bytes, str]:
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid" if paid else "unpaid",
                       payment_intent=session["payment_intent"] or f"pi_{secrets.token_hex(12)}")
        return self.event("checkout.session.completed", dict(session))

    def async_result(self, session_id: str, *, succeeded: bool) -> tuple[bytes, str]:
        session = self.sessions[session_id]
        session["payment_status"] = "paid" if succeeded else "unpaid"
        kind = "succeeded" if succeeded else "failed"
        return self.event(f"checkout.session.async_payment_{kind}", dict(session))

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

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def send_json(self, status: int, body: dict) -> None:
                self.extra_headers = {"Request-Id": f"req_{secrets.token_hex(7)}"}
                super().send_json(status, body)

            def _error(self, status: int, message: str, param: str | None = None, kind="invalid_request_error"):
                error = {"type": kind, "message": message}
                if param:
                    error["param"] = param
                self.send_json(status, {"error": error})

            def do_POST(self):
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._error(401, "Invalid API Key provided: sk_test_****")
                if self.path != "/v1/checkout/sessions":
                    return self._error(404, f"Unrecognized request URL (POST: {self.path}).")
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                params = _nested(parse_qsl(raw, keep_blank_values=True))
                if params.get("mode") != "payment":
                    return self._error(400, "Missing required param: mode.", "mode")
                items = params.get("line_items") or []
                if not items:
                    return self._error(400, "Missing required param: line_items.", "line_items")
                methods = params.get("payment_method_types") or ["card"]
                if any(m not in METHOD_TYPES for m in methods):
                    return self._error(400, "Invalid payment_method_types[0]", "payment_method_types")
                key = self.headers.get("Idempotency-Key")
                with fake.lock:
                    if key and key in fake.by_idempotency_key:
                        return self.send_json(200, fake.sessions[fake.by_idempotency_key[key]])
                    total = sum(int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items)
                    session_id = f"cs_test_{secrets.token_hex(16)}"
                    session = {
                        "id": session_id, "object": "checkout.session", "amount_subtotal": total,
                        "amount_total": total, "currency": items[0]["price_data"]["currency"],
                        "client_reference_id": params.get("client_reference_id"),
                        "metadata": params.get("metadata", {}), "mode": "payment", "payment_intent": None,
                        "payment_method_types": methods, "payment_status": "unpaid", "status": "open",
                        "success_url": params.get("success_url"), "cancel_url": params.get("cancel_url"),
                        "url": f"{fake.url}/c/pay/{session_id}", "livemode": False, "created": int(time.time()),
                        "expires_at": int(time.time()) + 86400,
                    }
                    fake.sessions[session_id] = session
                    if key:
                        fake.by_idempotency_key[key] = session_id
                self.send_json(200, session)

        return Handler
