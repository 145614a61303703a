"""A custom ERP's endpoint that receives payments back from the portal, verifying the Standard
Webhooks signature like a careful receiver would. It can be told to fail the next N requests."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from integrations.signing import SignatureError, verify


class FakeAccounting:
    def __init__(self, secret: str):
        self.secret = secret
        self.received: list[dict] = []
        self.rejected: list[str] = []
        self.fail_next = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/portal-payments"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if fake.fail_next:
                    fake.fail_next -= 1
                    return self._answer(503, {"error": "maintenance"})
                try:
                    verify([fake.secret], {k.lower(): v for k, v in self.headers.items()}, body)
                except SignatureError as exc:
                    fake.rejected.append(str(exc))
                    return self._answer(401, {"error": str(exc)})
                fake.received.append({"id": self.headers["webhook-id"], **json.loads(body)})
                self._answer(200, {"status": "booked"})

        return Handler
