"""What every fake shares: an HTTP server on 127.0.0.1 on a free port, run in a thread for
the length of a `with` block, and a request handler that answers JSON."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    content_type = "application/json"
    extra_headers: dict[str, str] = {}

    def log_message(self, *args):
        pass

    def send_json(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in self.extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class Faults:
    """Faults a test arms on a fake, the same way on every fake: `fail_next(n, status)` answers
    the next n requests with that status (each fake says whether it acts on them first),
    `delay_next(n, seconds)` answers the next n only after that long. The fake's handler calls
    `pop_fault()` for each request, with the fake's `lock` held."""

    def __init__(self, *args, **kwargs):
        self.failures: list[int] = []  # statuses still to answer with, one per coming request
        self.delays: list[float] = []  # seconds still to wait before answering, likewise
        super().__init__(*args, **kwargs)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        with self.lock:
            self.failures.extend([status] * n)

    def delay_next(self, n: int = 1, seconds: float = 1.0) -> None:
        with self.lock:
            self.delays.extend([seconds] * n)

    def pop_fault(self) -> tuple[int | None, float]:
        """(status to fail with, or None; seconds to wait) for the request being handled."""
        return (self.failures.pop(0) if self.failures else None), (self.delays.pop(0) if self.delays else 0.0)


class LocalServer:
    """Subclasses build their handler class in `_handler()` and may set `path` for `url`."""

    path = ""

    def __init__(self):
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.base_url + self.path
        # A short poll: shutdown() waits for the serving loop to look up, half a second by default,
        # which every test with a fake of its own paid at its end.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
