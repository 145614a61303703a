"""A custom ERP's endpoint that receives payments back from the portal, verifying the Standard
Webhooks signature like a careful receiver would. It can be told to fail the next N requests."""
from __future__ import annotations

import json

from integrations.signing import SignatureError, verify
from tests.fakes.base import JsonHandler, LocalServer


class FakeAccounting(LocalServer):
    path = "/portal-payments"

    def __init__(self, secret: str):
        self.secret = secret
        self.received: list[dict] = []
        self.rejected: list[str] = []
        self.fail_next = 0
        super().__init__()

    def _handler(self):
        fake = self

        class Handler(JsonHandler):

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if fake.fail_next:
                    fake.fail_next -= 1
                    return self.send_json(503, {"error": "maintenance"})
                try:
                    verify([fake.secret], {k.lower(): v for k, v in self.headers.items()}, body)
                except SignatureError as exc:
                    fake.rejected.append(str(exc))
                    return self.send_json(401, {"error": str(exc)})
                fake.received.append({"id": self.headers["webhook-id"], **json.loads(body)})
                self.send_json(200, {"status": "booked"})

        return Handler
