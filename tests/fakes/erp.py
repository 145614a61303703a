"""A local custom ERP, the in-house back office of a company that is neither Exact nor Twinfield, for
the pull adapter (integrations/erp/pull.py) and the push back of payments (integrations/erp/push.py).
It implements the contract of issue 16 (/work/notes/erp_spec.md, "The fake ERP"); where that is silent
it follows the standards, and tests/fakes/README.md lists each choice. One server, two flavours:

REST, under `fake.rest_url` (base_url + "/rest/")
- `Authorization: Bearer <fake.rest_token>` ("erp-rest-token"); an access token from /oauth/token and,
  when `fake.basic_auth` is set to (user, password), HTTP Basic work too. Otherwise 401
  {"error": "invalid_token"} with `WWW-Authenticate: Bearer error="invalid_token"`.
- GET customers, invoices, credit-notes, payments with `offset` (0), `limit` (50, at most 200: more is
  taken as 200) and `modified_since` (ISO 8601; records modified after it): 200 {"items", "total"} in
  (modified, id) order, and `Link: <absolute URL of the next page>; rel="next"` (RFC 8288) while
  more remain. A bad offset, limit or modified_since is 400 {"error": ...}.
- POST portal-payments: any JSON object, recorded in `fake.received`; 201 {"id"}. The same
  `Idempotency-Key` again answers the first answer (with `Idempotent-Replayed: true`) and records
  nothing; the same key with another body is 422 (draft-ietf-httpapi-idempotency-key-header §2.7).

GraphQL, at `fake.graphql_url` (base_url + "/graphql"), with the token endpoint at `fake.token_url`
(base_url + "/oauth/token"): tests/fakes/erp_graphql.py and tests/fakes/erp_oauth.py. POST JSON
{query, variables, operationName}; a missing, unknown or expired access token is 401 with
`WWW-Authenticate: Bearer realm="erp"` (plus error="invalid_token" when a token was sent; RFC 6750 §3).

Control for tests, as methods (add_customer, add_invoice, add_credit_note, add_payment, update,
delete, records, received, fail_next, rate_limit_next, delay_next, fail_token_next, advance,
expire_tokens, reset) and the same over HTTP under /_fake/ (no authentication):
  POST /_fake/reset                       POST /_fake/clock {"advance": seconds}
  POST /_fake/records/<collection>        {field: value} → the record made (201)
  PATCH /_fake/records/<collection>/<id>  {field: value} → the record, `modified` bumped
  DELETE /_fake/records/<collection>/<id> GET /_fake/records/<collection> → {"items"}
  GET /_fake/received → {"received", "deliveries"}    POST /_fake/tokens/expire
  POST /_fake/faults {"fail": n, "status": 500} | {"rate_limit": n, "retry_after": 30} |
                     {"delay": n, "seconds": 1.0} | {"fail_token": n, "status": 500}

Faults (tests/fakes/base.py), for REST and GraphQL calls (not /oauth/token, not /_fake/): acted on
first, before authentication. `fail_next(n, status)` answers unexecuted with {"error": "server_error"}
(a 429 or 503 with `Retry-After: fake.retry_after`); `rate_limit_next(n, retry_after)` is
fail_next(n, 429) with that Retry-After; `delay_next(n, seconds)` executes at once and answers late,
so a POST the client gave up on has been recorded all the same. `fail_token_next(n, status)` does the
token endpoint."""
from __future__ import annotations

import base64
import binascii
import copy
import json
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes import erp_graphql
from tests.fakes.base import Faults, JsonHandler, LocalServer
from tests.fakes.erp_data import COLLECTIONS, Books, dumps, parse_moment
from tests.fakes.erp_oauth import ClientCredentials

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
ADDERS = {"customers": "add_customer", "invoices": "add_invoice", "credit-notes": "add_credit_note",
          "payments": "add_payment"}


class FakeErp(Faults, LocalServer):
    def __init__(self, rest_token: str = "erp-rest-token", client_id: str = "erp-client",
                 client_secret: str = "erp-secret", token_lifetime: int = 3600,
                 scopes: tuple[str, ...] = ("read", "write")):
        self.rest_token = rest_token
        self.basic_auth: tuple[str, str] | None = None
        self.oauth = ClientCredentials(client_id, client_secret, scopes, token_lifetime)
        self.clock_offset = 0.0
        self.retry_after = 30
        self.token_failures: list[int] = []
        self._fresh_state()
        super().__init__()
        self.rest_url = self.base_url + "/rest/"
        self.graphql_url = self.base_url + "/graphql"
        self.token_url = self.base_url + "/oauth/token"

    def _fresh_state(self) -> None:
        self.books = Books(self.moment)
        self._received: list[dict] = []  # each portal payment recorded once: flavour, id, key, body, headers
        self.deliveries: list[dict] = []  # every POST /rest/portal-payments and mutation call, with its status
        self.idempotent_answers: dict[str, tuple[str, int, dict]] = {}  # Idempotency-Key -> (body, status, answer)
        self.payments_by_message: dict[str, str] = {}  # GraphQL messageId -> payment id
        self.requests: list[dict] = []  # every REST and GraphQL call: method, path, status

    # The configuration, for tests.
    @property
    def client_id(self) -> str:
        return self.oauth.client_id

    @property
    def client_secret(self) -> str:
        return self.oauth.client_secret

    @property
    def token_lifetime(self) -> int:
        return self.oauth.lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self.oauth.lifetime = seconds

    @property
    def token_calls(self) -> list[dict]:
        return self.oauth.token_calls

    def reset(self) -> None:
        """Empty books, nothing received, no faults, no tokens, the real clock, the default settings:
        a session-wide fake (the `erp_server` fixture) is reset by each test that uses it."""
        with self.lock:
            self._fresh_state()
            self.failures.clear()
            self.delays.clear()
            self.token_failures.clear()
            self.oauth.tokens.clear()
            self.oauth.token_calls.clear()
            self.oauth.lifetime = 3600
            self.clock_offset = 0.0
            self.retry_after = 30
            self.basic_auth = None

    # The clock.
    def now(self) -> float:
        return time.time() + self.clock_offset

    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.now(), timezone.utc)

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    def expire_tokens(self) -> None:
        with self.lock:
            self.oauth.expire_all()

    # Faults.
    def rate_limit_next(self, n: int = 1, retry_after: int = 30) -> None:
        with self.lock:
            self.retry_after = retry_after
        self.fail_next(n, 429)

    def fail_token_next(self, n: int = 1, status: int = 500) -> None:
        with self.lock:
            self.token_failures.extend([status] * n)

    # The books. Each helper returns a copy of the record in its REST shape (amounts Decimal).
    def _change(self, method: str, *args, **kwargs) -> dict:
        with self.lock:
            return getattr(self.books, method)(*args, **kwargs)

    def add_customer(self, name: str = "Jansen B.V.", **fields) -> dict:
        return self._change("add_customer", name, **fields)

    def add_invoice(self, customer_id: str, lines=(("Advies", 2, "100.00", 21),), **fields) -> dict:
        """lines: (text, qty, price, vat rate[, discount %]) tuples or dicts."""
        return self._change("add_invoice", customer_id, list(lines), **fields)

    def add_credit_note(self, invoice_id: str, lines=None, **fields) -> dict:
        return self._change("add_credit_note", invoice_id, lines, **fields)

    def add_payment(self, customer_id: str, amount, **fields) -> dict:
        """allocations=[(invoice_id, amount)]"""
        return self._change("add_payment", customer_id, amount, **fields)

    def update(self, collection: str, record_id: str, **fields) -> dict:
        return self._change("update", collection, record_id, **fields)

    def delete(self, collection: str, record_id: str) -> None:
        with self.lock:
            self.books.delete(collection, record_id)

    def records(self, collection: str) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self.books.ordered(collection))

    def sample_books(self) -> dict:
        """Two customers, three invoices (one void, one with two VAT rates and a discount), a credit note
        and a payment allocated to two invoices; the records made, by collection."""
        jansen = self.add_customer("Jansen B.V.", vat="NL001234567B01", kvk="12345678")
        smit = self.add_customer("Smit & Zn", street="Markt 5", zip="3511 AA", language="en")
        first = self.add_invoice(jansen["id"], [("Advies", 2, "100.00", 21)], reference="PO-77")
        second = self.add_invoice(jansen["id"], [("Boeken", 3, "19.95", 9), ("Licentie", 1, "250.00", 21, 10)])
        void = self.add_invoice(smit["id"], [("Training", 1, "500.00", 21)], status="void")
        credit = self.add_credit_note(second["id"], [("Boeken", 1, "19.95", 9)], reason="Eén boek retour")
        payment = self.add_payment(jansen["id"], "300.00", reference="NL12BANK-0001",
                                   allocations=[(first["id"], "242.00"), (second["id"], "58.00")])
        return {"customers": [jansen, smit], "invoices": [first, second, void], "credit-notes": [credit],
                "payments": [payment]}

    # What the portal told the ERP.
    @property
    def received(self) -> list[dict]:
        """Portal payments recorded, each once: {"flavour": "rest"|"graphql", "id", "key" (the
        Idempotency-Key or messageId), "body" (the JSON object or the mutation's input), "headers"}."""
        with self.lock:
            return copy.deepcopy(self._received)

    def booked(self, key: str) -> int:
        """How many times a message (Idempotency-Key or messageId) was recorded: 1 when deduped."""
        with self.lock:
            return sum(1 for r in self._received if r["key"] == key)

    def attempts(self, key: str) -> list[dict]:
        """Every delivery of one message, in order, with its status and whether it was a replay."""
        with self.lock:
            return copy.deepcopy([d for d in self.deliveries if d["key"] == key])

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def _send(self, status: int, body: dict | list | None, headers: dict | None = None) -> None:
                payload = b"" if body is None else dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped waiting (delay_next); what was recorded stays recorded

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _json(self, raw: bytes):
                try:
                    return json.loads(raw or b"null")
                except (ValueError, UnicodeDecodeError):
                    return ValueError

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PATCH(self):
                self._route("PATCH")

            def do_DELETE(self):
                self._route("DELETE")

            def _route(self, method: str):
                url = urlsplit(self.path)
                body = self._body()
                if url.path.startswith("/_fake/"):
                    return self._control(method, url.path[len("/_fake/"):].strip("/").split("/"), body)
                if url.path == "/oauth/token":
                    return self._token(method, body)
                if url.path.startswith("/rest/") or url.path == "/graphql":
                    return self._api(method, url, body)
                self._send(404, {"error": "not_found"})

            # REST and GraphQL, behind the faults.
            def _api(self, method: str, url, body: bytes):
                entry = {"method": method, "path": url.path, "query": url.query, "status": None}
                with fake.lock:
                    fake.requests.append(entry)
                    failure, delay = fake.pop_fault()
                    retry_after = fake.retry_after
                if failure is not None:
                    time.sleep(delay)
                    entry["status"] = failure
                    headers = {"Retry-After": str(retry_after)} if failure in (429, 503) else {}
                    return self._send(failure, {"error": "rate_limited" if failure == 429 else "server_error"},
                                      headers)
                if url.path == "/graphql":
                    status, answer, headers = self._graphql(method, body)
                else:
                    status, answer, headers = self._rest(method, url, body)
                entry["status"] = status
                time.sleep(delay)
                self._send(status, answer, headers)

            def _bearer(self) -> str | None:
                scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
                return credentials.strip() if scheme.lower() == "bearer" else None

            # REST.
            def _rest_allowed(self) -> bool:
                authorization = self.headers.get("Authorization", "")
                token = self._bearer()
                if token is not None:
                    return token == fake.rest_token or fake.oauth.scopes_of(token, fake.now()) is not None
                if fake.basic_auth and authorization.lower().startswith("basic "):
                    try:
                        user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
                    except (binascii.Error, UnicodeDecodeError):
                        return False
                    return (user, password) == tuple(fake.basic_auth)
                return False

            def _rest(self, method: str, url, body: bytes):
                collection = url.path[len("/rest/"):].strip("/")
                with fake.lock:
                    allowed = self._rest_allowed()
                if not allowed:
                    return 401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                if collection == "portal-payments":
                    if method != "POST":
                        return 405, {"error": "method_not_allowed"}, {"Allow": "POST"}
                    return self._portal_payment(body)
                if collection not in COLLECTIONS:
                    return 404, {"error": "not_found"}, {}
                if method != "GET":
                    return 405, {"error": "method_not_allowed"}, {"Allow": "GET"}
                return self._list(collection, url)

            def _list(self, collection: str, url):
                query = dict(parse_qsl(url.query, keep_blank_values=True))
                try:
                    offset = int(query.get("offset", 0))
                    limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
                    if offset < 0 or limit < 1:
                        raise ValueError
                except ValueError:
                    return 400, {"error": "offset must be 0 or more and limit 1 or more"}, {}
                since = None
                if query.get("modified_since"):
                    try:
                        since = parse_moment(query["modified_since"])
                    except ValueError:
                        return 400, {"error": "modified_since is not an ISO 8601 moment"}, {}
                with fake.lock:
                    records = copy.deepcopy(fake.books.ordered(collection, since))
                headers = {}
                if offset + limit < len(records):
                    following = {**query, "offset": str(offset + limit), "limit": str(limit)}
                    headers["Link"] = f'<{fake.base_url}{url.path}?{urlencode(following)}>; rel="next"'
                return 200, {"items": records[offset:offset + limit], "total": len(records)}, headers

            def _portal_payment(self, raw: bytes):
                message = self._json(raw)
                key = self.headers.get("Idempotency-Key")
                headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
                delivery = {"flavour": "rest", "key": key, "body": raw.decode(errors="replace"), "status": None,
                            "replayed": False}
                with fake.lock:
                    fake.deliveries.append(delivery)
                    if not isinstance(message, dict):
                        delivery["status"] = 400
                        return 400, {"error": "the body must be a JSON object"}, {}
                    if key is not None and key in fake.idempotent_answers:
                        first_body, status, answer = fake.idempotent_answers[key]
                        if first_body != raw.decode(errors="replace"):
                            delivery["status"] = 422
                            return 422, {"error": "this Idempotency-Key was used with another body"}, {}
                        delivery.update(status=status, replayed=True)
                        return status, answer, {"Idempotent-Replayed": "true"}
                    payment_id = "PP-" + uuid.uuid4().hex[:12]
                    fake._received.append({"flavour": "rest", "id": payment_id, "key": key, "body": message,
                                           "headers": headers})
                    answer = {"id": payment_id}
                    if key is not None:
                        fake.idempotent_answers[key] = (raw.decode(errors="replace"), 201, answer)
                    delivery["status"] = 201
                return 201, answer, {}

            # GraphQL.
            def _graphql(self, method: str, raw: bytes):
                challenge = 'Bearer realm="erp"'
                token = self._bearer()
                with fake.lock:
                    scopes = fake.oauth.scopes_of(token, fake.now()) if token else None
                if scopes is None:
                    if token:
                        challenge += ', error="invalid_token", error_description="unknown or expired access token"'
                    return 401, {"errors": [{"message": "unauthorized: a valid access token is required"}]}, \
                        {"WWW-Authenticate": challenge}
                if method != "POST":
                    return 405, {"errors": [{"message": "POST a JSON body"}]}, {"Allow": "POST"}
                body = self._json(raw)
                if not isinstance(body, dict) or not isinstance(body.get("query"), str) \
                        or not isinstance(body.get("variables") or {}, dict):
                    return 400, {"errors": [{"message": "the body must be JSON {query, variables, operationName}"}]}, {}
                headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
                with fake.lock:
                    answer = erp_graphql.execute(body, {"books": fake.books, "scopes": scopes, "headers": headers,
                                                        "received": fake._received, "deliveries": fake.deliveries,
                                                        "payments_by_message": fake.payments_by_message})
                return 200, answer, {}

            # The token endpoint.
            def _token(self, method: str, raw: bytes):
                if method != "POST":
                    return self._send(405, {"error": "invalid_request"}, {"Allow": "POST"})
                with fake.lock:
                    failure = fake.token_failures.pop(0) if fake.token_failures else None
                if failure is not None:
                    return self._send(failure, {"error": "server_error"})
                if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    return self._send(400, {"error": "invalid_request",
                                            "error_description": "the body must be application/x-www-form-urlencoded"})
                form = dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
                with fake.lock:
                    answer = fake.oauth.token(form, self.headers.get("Authorization", ""), fake.now())
                self._send(answer.status, answer.body, answer.headers)

            # Control.
            def _control(self, method: str, parts: list[str], raw: bytes):
                data = self._json(raw) if raw else {}
                if data is ValueError or not isinstance(data, dict):
                    return self._send(400, {"error": "the body must be a JSON object"})
                try:
                    return self._send(*self._do_control(method, parts, data))
                except (KeyError, TypeError, ValueError) as error:
                    return self._send(400, {"error": f"{type(error).__name__}: {error}"})

            def _do_control(self, method: str, parts: list[str], data: dict):
                head = parts[0]
                if (method, head) == ("POST", "reset"):
                    fake.reset()
                    return 200, {"status": "reset"}
                if (method, head) == ("POST", "clock"):
                    fake.advance(float(data.get("advance", 0)))
                    return 200, {"now": fake.moment().isoformat()}
                if (method, head) == ("POST", "tokens") and parts[1:] == ["expire"]:
                    fake.expire_tokens()
                    return 200, {"status": "expired"}
                if (method, head) == ("GET", "received"):
                    with fake.lock:
                        return 200, {"received": copy.deepcopy(fake._received),
                                     "deliveries": copy.deepcopy(fake.deliveries)}
                if (method, head) == ("POST", "faults"):
                    if "fail" in data:
                        fake.fail_next(int(data["fail"]), int(data.get("status", 500)))
                    if "rate_limit" in data:
                        fake.rate_limit_next(int(data["rate_limit"]), int(data.get("retry_after", 30)))
                    if "delay" in data:
                        fake.delay_next(int(data["delay"]), float(data.get("seconds", 1.0)))
                    if "fail_token" in data:
                        fake.fail_token_next(int(data["fail_token"]), int(data.get("status", 500)))
                    return 200, {"status": "armed"}
                if head == "records" and len(parts) >= 2 and parts[1] in COLLECTIONS:
                    collection = parts[1]
                    if method == "GET" and len(parts) == 2:
                        return 200, {"items": fake.records(collection)}
                    if method == "POST" and len(parts) == 2:
                        return 201, getattr(fake, ADDERS[collection])(**data)
                    if method == "PATCH" and len(parts) == 3:
                        return 200, fake.update(collection, parts[2], **data)
                    if method == "DELETE" and len(parts) == 3:
                        fake.delete(collection, parts[2])
                        return 200, {"status": "deleted"}
                return 404, {"error": "no such control"}

        return Handler
