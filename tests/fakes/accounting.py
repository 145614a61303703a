"""A custom ERP's endpoint that receives payments back from the portal, verifying the Standard
Webhooks signature like a careful receiver would.

Every POST is kept in `deliveries`, in the order it arrived, with its webhook-id and what it was
answered, so a test can count the attempts per message; `received` holds the messages booked
(verified and answered 200), also in order and also when the same message comes twice.

Faults for tests: `fail_next(n, status)` answers the next n requests with that status without
booking them; `delay_next(n, seconds)` books the next n (if they verify) and then waits before
answering, so a sender that times out has nonetheless been heard and may deliver again."""
from __future__ import annotations

import functools
import json
import time

from integrations.signing import SignatureError, verify
from tests.fakes.base import Faults, JsonHandler, LocalServer


class FakeAccounting(Faults, LocalServer):
    path = "/portal-payments"

    def __init__(self, secret: str):
        self.secret = secret
        self.received: list[dict] = []
        self.rejected: list[str] = []
        self.deliveries: list[dict] = []  # {"webhook_id", "body", "status"}: every POST, in order
        super().__init__()

    def _set_fail_next(self, n: int) -> None:
        # `fake.fail_next = n`, the older spelling: n maintenance answers (503).
        with self.lock:
            self.failures = [503] * n

    # A method, `fake.fail_next(2, status=500)`; assigning a number still works as it used to.
    fail_next = property(lambda self: functools.partial(Faults.fail_next, self), _set_fail_next)

    def attempts(self, message_id: str) -> list[dict]:
        """Every delivery of one message (its webhook-id), in order, with what it was answered."""
        return [d for d in self.deliveries if d["webhook_id"] == message_id]

    def booked(self, message_id: str) -> int:
        """How many times one message was booked (more than once: the sender did not dedupe)."""
        return sum(1 for r in self.received if r["id"] == message_id)

    def _handler(self):
        fake = self

        class Handler(JsonHandler):

            def send_json(self, status: int, body: dict) -> None:
                try:
                    super().send_json(status, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender stopped waiting (delay_next); what was booked stays booked

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    failure, delay = fake.pop_fault()
                    delivery = {"webhook_id": self.headers.get("webhook-id"), "body": body.decode(errors="replace"),
                                "status": None}
                    fake.deliveries.append(delivery)
                if failure is not None:
                    time.sleep(delay)
                    delivery["status"] = failure
                    return self.send_json(failure, {"error": "maintenance" if failure == 503 else "server error"})
                try:
                    verify([fake.secret], {k.lower(): v for k, v in self.headers.items()}, body)
                except SignatureError as exc:
                    fake.rejected.append(str(exc))
                    delivery["status"] = 401
                    time.sleep(delay)
                    return self.send_json(401, {"error": str(exc)})
                with fake.lock:
                    fake.received.append({"id": self.headers["webhook-id"], **json.loads(body)})
                delivery["status"] = 200
                time.sleep(delay)
                self.send_json(200, {"status": "booked"})

        return Handler
