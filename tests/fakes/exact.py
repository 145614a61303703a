"""A local Exact Online, written from Exact's published documentation and the best-maintained clients
(../shared/reference/api-facts.md §1 lists the sources; each module cites its own). The portal reaches
it with only the base URL changed: `fake.url` stands for https://start.exactonline.nl.

- OAuth2 authorization code with Exact's token rules (consent page, rotating single-use refresh
  tokens, the 570 s rule, 30-day idle expiry, 200 token calls a day): tests/fakes/exact_oauth.py.
- REST under {base}/api/v1/{division}/…: current/Me, system/Divisions, crm/Accounts,
  salesinvoice/SalesInvoices and SalesInvoiceLines, cashflow/Receivables,
  read/financial/ReceivablesList, vat/VATCodes, financial/Journals, financialtransaction/BankEntries
  (GET, POST) and BankEntryLines (GET, to find an entry by its Description/Notes/OurRef), and the
  sync API (sync/CRM/Accounts, sync/SalesInvoice/SalesInvoices, sync/Financial/TransactionLines,
  sync/Deleted): OData conventions in tests/fakes/exact_odata.py, the books in tests/fakes/exact_data.py.
  "Mandatory filtering on single and bulk endpoints where sync APIs are available" (Exact's
  announcement of July 2021, forums.invantive.com/t/new-exact-online-api-limitations/1040/2): a
  GET of crm/Accounts or salesinvoice/SalesInvoices(Lines) without $filter is a 400 (wording
  UNCONFIRMED; `mandatory_filtering = False` turns it off).
- Limits per app per division: `minute_limit` (60) and `day_limit` (5,000) calls, in fixed windows on
  the clock minute and the UTC day (picqer issue #646 shows resets at hh:mm:00 and at 00:00 UTC).
  Every answer carries X-RateLimit-Limit/-Remaining/-Reset and X-RateLimit-Minutely-Limit/-Remaining/
  -Reset, resets in epoch milliseconds (picqer Connection.php extractRateLimits()). Past a limit: 429
  with an empty body (picqer #528 shows "Error 429: " with nothing after it) and only the headers of
  the limit that was hit (picqer #646: "Exact omits the daily limit information when they return a 429
  due to minutely limits and vice versa"). A call refused with 429 is not counted.
- "No more than 10 errors per API key, per user, per company, per endpoint, and per hour … your API key
  will be temporarily blocked from making further requests. The block will automatically be lifted
  after one hour"; 400, 401, 403 and 404 count (Exact, quoted at forums.invantive.com/t/impact-
  analysis-of-10-error-messages-per-app-endpoint-division-user-and-hour/1336). Counted per division
  and endpoint; the 11th error within an hour blocks, for `error_block_seconds`, what
  `error_block_scope` says: "app" (default: the docs' words, every call of the app), "division" or
  "endpoint". The blocked answer is UNCONFIRMED: 429 with an OData error naming the block. The growing
  block for repeat offenders is not modelled.
- Webhooks (webhooks/WebhookSubscriptions, POST/GET/DELETE): on subscribe an empty POST goes to the
  CallbackURL first and must get a 2xx, else the subscription is refused with 500 "Invalid: Post to
  callback URL endpoint returns …" (picqer issues #438 and #522; hookdeck/webhook-skills PR #152).
  The callback must be on the redirect URI's domain (Invantive forum 4541). `notify()` POSTs
  {"Content":{…},"HashCode":"…"} with HashCode the uppercase hex HMAC-SHA256 of the Content JSON as sent,
  keyed with the app's webhook secret (picqer Webhook/Authenticatable.php; zangra-dev/ExactOnlineBundle
  for the payload's fields and the EventCreatedOn format).

Faults (tests/fakes/base.py), for token and REST calls: `fail_next(n, status)` answers unexecuted
with an error body (counted as a call, as Exact would have counted it); `delay_next(n, seconds)`
executes at once and answers late, so a POST that timed out at the client has been booked all the same.
`delay_api_next(n, seconds)` does the same to REST calls only (token calls pass), for a drill that
holds a job after its code exchange.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
from collections import Counter
from datetime import datetime, timezone
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import Request, urlopen

from tests.fakes import exact_odata as odata
from tests.fakes.base import Faults, JsonHandler, LocalServer
from tests.fakes.exact_data import Books
from tests.fakes.exact_endpoints import BANK_ENTRY_LINE, ENDPOINTS, INVOICE_LINE, Endpoint, me_row
from tests.fakes.exact_oauth import OAuth, new_guid

TOPICS = {"Accounts": "crm/Accounts", "SalesInvoices": "salesinvoice/SalesInvoices",
          # The endpoint named in a FinancialTransactions event: UNCONFIRMED.
          "FinancialTransactions": "financialtransaction/Transactions"}
ERROR_STATUSES = {400, 401, 403, 404}
NAVIGATION = {"SalesInvoiceLines": INVOICE_LINE, "BankEntryLines": BANK_ENTRY_LINE}
API_PATH = re.compile(r"/api/v1/(?:(?P<division>\d+)/)?(?P<endpoint>[A-Za-z/]+?)(?:\((?P<key>guid'[^']*'|\d+)\))?")


class FakeExact(Faults, LocalServer):
    def __init__(self, client_id: str, client_secret: str, webhook_secret: str,
                 redirect_uri: str = "http://127.0.0.1/exact/callback"):
        self.webhook_secret = webhook_secret
        self.user = {"UserID": new_guid(), "UserName": "fenna@boekhouding.test", "FullName": "Fenna de Boer",
                     "Email": "fenna@boekhouding.test", "LanguageCode": "nl-NL"}
        self.oauth = OAuth(client_id, client_secret, redirect_uri, self.user["UserID"])
        self.clock_offset = 0.0
        self.divisions: dict[int, Books] = {}
        self.current_division: int | None = None
        self._timestamp = 8_589_934_592  # rowversions are large 64-bit numbers (2**33 here)
        self.minute_limit, self.day_limit = 60, 5000
        self.error_limit, self.error_block_seconds, self.error_block_scope = 10, 3600, "app"
        self.page_size, self.sync_page_size = 60, 1000
        self.mandatory_filtering = True
        self.require_https_callbacks = False  # Exact requires HTTPS; local tests run on http
        self.usage: dict[int, dict] = {}
        self.errors: dict[tuple, list[float]] = {}
        self.blocked_until: dict[tuple, float] = {}
        self.calls: Counter = Counter()  # endpoint -> calls counted against the rate limits
        self.requests: list[dict] = []
        self.subscriptions: dict[str, dict] = {}
        self.webhook_deliveries: list[dict] = []
        self.api_delays: list[float] = []  # delay_api_next
        super().__init__()

    # The clock and the limits, for tests.
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    @property
    def token_calls(self) -> list[dict]:
        return self.oauth.token_calls

    @property
    def token_day_limit(self) -> int:
        return self.oauth.token_day_limit

    @token_day_limit.setter
    def token_day_limit(self, value: int) -> None:
        self.oauth.token_day_limit = value

    def delay_api_next(self, n: int = 1, seconds: float = 1.0) -> None:
        with self.lock:
            self.api_delays.extend([seconds] * n)

    def calls_today(self, division: int) -> int:
        with self.lock:
            usage = self.usage.get(division)
            return usage["day_count"] if usage and usage["day"] == self._day_start() else 0

    def grant(self) -> dict:
        """Tokens as a code exchange gives them, for a test that skips the browser (not a token call)."""
        with self.lock:
            return self.oauth.grant(self.now())

    def _stamp(self) -> int:
        self._timestamp += 1
        return self._timestamp

    # Building the books, for tests. Each change takes new Timestamps; each helper returns a copy.
    def add_division(self, code: int, name: str) -> int:
        with self.lock:
            self.divisions[code] = Books(code, name, self._stamp, self.now)
            if self.current_division is None:
                self.current_division = code
            return code

    def books(self, division: int | None = None) -> Books:
        return self.divisions[division or self.current_division]

    def _change(self, method: str, *args, division=None, **kwargs):
        with self.lock:
            return copy.deepcopy(getattr(self.books(division), method)(*args, **kwargs))

    def add_account(self, name: str, *, division: int | None = None, code=None, **fields) -> dict:
        return self._change("add_account", name, code, division=division, **fields)

    def update_account(self, account, *, division: int | None = None, **fields) -> dict:
        return self._change("update_account", _id(account, "ID"), division=division, **fields)

    def add_invoice(self, account, lines, *, division: int | None = None, credits=None, **kwargs) -> dict:
        """lines: (description, quantity, unit_price, vat_code) tuples or dicts; `credits=` an invoice
        makes a credit note (Type 8021, negative amounts) matched with it once processed."""
        return self._change("add_invoice", _id(account, "ID"), lines, division=division,
                            credits=_id(credits, "InvoiceID") if credits else None, **kwargs)

    def _invoice_division(self, invoice) -> int:
        invoice_id = _id(invoice, "InvoiceID")
        return next(code for code, books in self.divisions.items() if invoice_id in books.invoices)

    def process_invoice(self, invoice) -> dict:
        return self._change("process_invoice", _id(invoice, "InvoiceID"), division=self._invoice_division(invoice))

    def pay(self, invoice, amount, **kwargs) -> dict:
        """A bank transfer matched to the invoice: a bank entry, its TransactionLines, the receivable."""
        return self._change("pay", _id(invoice, "InvoiceID"), amount, division=self._invoice_division(invoice),
                            **kwargs)

    def delete_invoice(self, invoice) -> None:
        self._change("delete_invoice", _id(invoice, "InvoiceID"), division=self._invoice_division(invoice))

    def delete_account(self, account, *, division: int | None = None) -> None:
        self._change("delete_account", _id(account, "ID"), division=division)

    @property
    def bank_entries(self) -> list[dict]:
        """Every bank entry in every division, lines included (what a client booked, and `pay`)."""
        with self.lock:
            return copy.deepcopy([e for books in self.divisions.values() for e in books.bank_entries])

    def receivable(self, invoice) -> dict | None:
        with self.lock:
            found = self.books(self._invoice_division(invoice)).receivables.get(_id(invoice, "InvoiceID"))
            return copy.deepcopy(found)

    # Webhooks, for tests.
    def hash_code(self, content: str) -> str:
        return hmac.new(self.webhook_secret.encode(), content.encode(), hashlib.sha256).hexdigest().upper()

    def notify(self, topic: str, division: int, key: str, action: str = "Update") -> list[dict]:
        """What Exact POSTs to each subscription on (topic, division); the deliveries with their status."""
        created = datetime.fromtimestamp(self.now(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        content = json.dumps({"Topic": topic, "ClientId": self.oauth.client_id, "Division": division,
                              "Action": action, "Key": key,
                              "ExactOnlineEndpoint": f"{self.url}/api/v1/{division}/{TOPICS[topic]}(guid'{key}')",
                              "EventCreatedOn": created}, separators=(",", ":"))
        body = f'{{"Content":{content},"HashCode":"{self.hash_code(content)}"}}'.encode()
        with self.lock:
            targets = [s["CallbackURL"] for s in self.subscriptions.values()
                       if s["Topic"] == topic and s["Division"] == division]
        deliveries = []
        for url in targets:
            status = _post(url, body, {"Content-Type": "application/json"})
            deliveries.append({"url": url, "body": body, "status": status})
        with self.lock:
            self.webhook_deliveries.extend(deliveries)
        return deliveries

    # Limits.
    def _day_start(self) -> float:
        return self.now() // 86400 * 86400

    def _usage(self, division: int) -> dict:
        now = self.now()
        usage = self.usage.setdefault(division, {"minute": 0, "minute_count": 0, "day": 0, "day_count": 0})
        if usage["minute"] != now // 60 * 60:
            usage["minute"], usage["minute_count"] = now // 60 * 60, 0
        if usage["day"] != self._day_start():
            usage["day"], usage["day_count"] = self._day_start(), 0
        return usage

    def _rate_headers(self, usage: dict, which: str = "both") -> dict:
        headers = {}
        if which in ("both", "day"):
            headers.update({"X-RateLimit-Limit": str(self.day_limit),
                            "X-RateLimit-Remaining": str(max(self.day_limit - usage["day_count"], 0)),
                            "X-RateLimit-Reset": str(int((usage["day"] + 86400) * 1000))})
        if which in ("both", "minute"):
            headers.update({"X-RateLimit-Minutely-Limit": str(self.minute_limit),
                            "X-RateLimit-Minutely-Remaining": str(max(self.minute_limit - usage["minute_count"], 0)),
                            "X-RateLimit-Minutely-Reset": str(int((usage["minute"] + 60) * 1000))})
        return headers

    def _block_key(self, division: int, endpoint: str) -> tuple:
        return {"app": ("app",), "division": ("division", division)}.get(self.error_block_scope,
                                                                          ("endpoint", division, endpoint))

    def _record_error(self, division: int, endpoint: str) -> None:
        now = self.now()
        recent = [t for t in self.errors.get((division, endpoint), []) if now - t < 3600] + [now]
        self.errors[(division, endpoint)] = recent
        if len(recent) > self.error_limit:
            self.blocked_until[self._block_key(division, endpoint)] = now + self.error_block_seconds
            self.errors[(division, endpoint)] = []

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def _send(self, status: int, payload: bytes = b"", headers: dict | None = None,
                      content_type: str = "application/json") -> None:
                try:
                    self.send_response(status)
                    if payload:
                        self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (delay_next): Exact has done the work all the same

            def _query(self) -> dict[str, str]:
                return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def do_GET(self):
                path = urlsplit(self.path).path
                if path == "/api/oauth2/auth":
                    return self._consent_page()
                if path.startswith("/api/v1/"):
                    return self._api("GET", b"")
                self._send(404, odata.dumps(odata.error_body("Not found")))

            def do_POST(self):
                path, body = urlsplit(self.path).path, self._body()
                if path == "/api/oauth2/auth":
                    return self._consent_decision(body)
                if path == "/api/oauth2/token":
                    return self._token(body)
                if path.startswith("/api/v1/"):
                    return self._api("POST", body)
                self._send(404, odata.dumps(odata.error_body("Not found")))

            def do_DELETE(self):
                if urlsplit(self.path).path.startswith("/api/v1/"):
                    return self._api("DELETE", self._body())
                self._send(404, odata.dumps(odata.error_body("Not found")))

            # OAuth.
            def _consent_page(self):
                query = self._query()
                problem = fake.oauth.consent_problem(query)
                if problem:
                    return self._send(400, problem.encode(), content_type="text/plain; charset=utf-8")
                page = fake.oauth.consent_page(query, fake.user["FullName"], "/api/oauth2/auth?" + urlencode(query))
                self._send(200, page.encode(), content_type="text/html; charset=utf-8")

            def _consent_decision(self, body: bytes):
                query = self._query()
                if fake.oauth.consent_problem(query):
                    return self._send(400, b"Invalid request", content_type="text/plain; charset=utf-8")
                accepted = dict(parse_qsl(body.decode())).get("decision") == "accept"
                with fake.lock:
                    location = fake.oauth.consent_redirect(query, accepted, fake.now())
                self._send(302, headers={"Location": location})

            def _token(self, body: bytes):
                form = dict(parse_qsl(body.decode(), keep_blank_values=True))
                with fake.lock:
                    failure, delay = fake.pop_fault()
                    if failure is not None:
                        fake.oauth.token_calls.append({"grant_type": form.get("grant_type"), "status": failure,
                                                       "at": fake.now(), "error": "fault injected",
                                                       "code": form.get("code")})
                    else:
                        answer = fake.oauth.token(form, fake.now())
                time.sleep(delay)
                if failure is not None:
                    return self._send(failure, json.dumps({"error": "server_error"}).encode())
                self._send(answer.status, json.dumps(answer.body).encode(), answer.headers)

            # REST.
            def _api(self, method: str, body: bytes):
                match = API_PATH.fullmatch(urlsplit(self.path).path)
                endpoint = match.group("endpoint") if match else urlsplit(self.path).path
                with fake.lock:
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                    user = fake.oauth.user_of_access_token(token, fake.now())
                    division = int(match.group("division")) if match and match.group("division") else \
                        fake.current_division
                    blocked = max((fake.blocked_until.get(k, 0) for k in
                                   (("app",), ("division", division), ("endpoint", division, endpoint))), default=0)
                    if blocked > fake.now():
                        return self._send(429, odata.dumps(odata.error_body(
                            f"API key blocked until {int(blocked * 1000)} (epoch ms): more than {fake.error_limit} "
                            f"errors on {endpoint} within an hour")))
                    usage = fake._usage(division)
                    if user is not None:
                        if usage["minute_count"] >= fake.minute_limit:
                            return self._send(429, b"", fake._rate_headers(usage, "minute"))
                        if usage["day_count"] >= fake.day_limit:
                            return self._send(429, b"", fake._rate_headers(usage, "day"))
                        usage["minute_count"] += 1
                        usage["day_count"] += 1
                        fake.calls[endpoint] += 1
                    failure, delay = fake.pop_fault()
                    if fake.api_delays:
                        delay += fake.api_delays.pop(0)
                    headers = fake._rate_headers(usage)
                if user is None:
                    status, answer = 401, b""  # body UNCONFIRMED
                elif failure is not None:
                    status, answer = failure, odata.dumps(odata.error_body("An error occurred; not executed"))
                elif not match or (match.group("division") is None and endpoint != "current/Me"):
                    status, answer = 404, odata.dumps(odata.error_body(f"Endpoint not found: {self.path}"))
                elif division not in fake.divisions:
                    status, answer = 403, odata.dumps(odata.error_body("Forbidden"))  # wording UNCONFIRMED
                else:
                    status, answer = self._execute(method, division, endpoint, match.group("key"), body)
                with fake.lock:
                    fake.requests.append({"method": method, "division": division, "endpoint": endpoint,
                                          "status": status, "path": self.path})
                    if status in ERROR_STATUSES:
                        fake._record_error(division, endpoint)
                time.sleep(delay)
                self._send(status, answer, headers)

            def _execute(self, method: str, division: int, name: str, key: str | None, body: bytes):
                try:
                    if name == "current/Me":  # $select optional here; honoured when given
                        fields = [f.strip() for f in self._query().get("$select", "").split(",") if f.strip()]
                        return 200, odata.dumps({"d": {"results": [odata.select(me_row(fake), fields or None)]}})
                    endpoint = ENDPOINTS.get(name)
                    if endpoint is None:
                        raise odata.ODataError(404, f"Endpoint not found: {name}")
                    if method not in endpoint.methods:
                        raise odata.ODataError(405, f"Method {method} is not allowed on {name}")
                    if method == "GET":
                        return 200, odata.dumps(self._get(endpoint, division, name, key))
                    if method == "DELETE":
                        return self._delete(name, key)
                    try:
                        data = json.loads(body or b"{}")
                    except ValueError:
                        raise odata.ODataError(400, "The request body is not valid JSON") from None
                    return 201, odata.dumps({"d": self._create(name, division, data)})
                except odata.ODataError as error:
                    return error.status, odata.dumps(odata.error_body(error.message))

            def _get(self, endpoint: Endpoint, division: int, name: str, key: str | None) -> dict:
                query = odata.Query(self._query(), set(endpoint.fields), sync=endpoint.sync)
                if fake.mandatory_filtering and endpoint.filter_required and not key and not query.filter:
                    raise odata.ODataError(400, f"Mandatory filtering: add a $filter to {name}, or use the sync API")
                base = f"{fake.url}/api/v1/{division}/{name}"
                with fake.lock:
                    rows = [endpoint.project(r) for r in endpoint.rows(fake, fake.divisions[division])]

                def deferred(row):
                    return lambda nav: f"{base}(guid'{row[endpoint.key]}')/{nav}"

                if key:
                    wanted = odata._literal(key)[1]
                    found = [r for r in rows if str(r[endpoint.key]).lower() == str(wanted).lower()]
                    if not found:
                        raise odata.ODataError(404, f"{name}({key}) does not exist")
                    return {"d": odata.select(found[0], query.fields, self._expanded(found[0], query),
                                              deferred(found[0]))}
                rows = [r for r in rows if odata.matches(r, query.filter)]
                current, next_url = odata.page(rows, endpoint.key, query,
                                               fake.sync_page_size if endpoint.sync else fake.page_size, base)
                d = {"results": [odata.select(r, query.fields, self._expanded(r, query), deferred(r))
                                 for r in current]}
                if next_url:
                    d["__next"] = next_url
                return {"d": d}

            @staticmethod
            def _expanded(row: dict, query: odata.Query) -> dict:
                return {nav: [{f: line.get(f) for f in NAVIGATION[nav]} for line in row[nav]]
                        for nav in query.expand if nav in NAVIGATION and isinstance(row.get(nav), list)}

            def _create(self, name: str, division: int, data: dict) -> dict:
                if name == "financialtransaction/BankEntries":
                    with fake.lock:
                        try:
                            return copy.deepcopy(fake.divisions[division].book_bank_entry(data))
                        except (ValueError, KeyError, TypeError) as error:
                            raise odata.ODataError(400, str(error)) from None
                return self._subscribe(division, data)

            def _subscribe(self, division: int, data: dict) -> dict:
                topic, callback = data.get("Topic"), data.get("CallbackURL") or ""
                if topic not in TOPICS:
                    raise odata.ODataError(400, f"Invalid topic: {topic!r}")
                target, redirect = urlsplit(callback), urlsplit(fake.oauth.redirect_uri)
                if fake.require_https_callbacks and target.scheme != "https":
                    raise odata.ODataError(400, "The CallbackURL must use HTTPS")
                if target.hostname != redirect.hostname:
                    raise odata.ODataError(400, "The CallbackURL must be on the domain of the app's redirect URI")
                with fake.lock:
                    if any(s["Topic"] == topic and s["Division"] == division for s in fake.subscriptions.values()):
                        raise odata.ODataError(500, "Data already exists")
                status = _post(callback, b"", {})  # the empty validation POST, before anything is stored
                if not 200 <= status < 300:
                    raise odata.ODataError(500, f"Invalid: Post to callback URL endpoint returns {status}")
                row = {"ID": new_guid(), "CallbackURL": callback, "ClientID": fake.oauth.client_id,
                       "Division": division, "Topic": topic, "UserID": fake.user["UserID"],
                       "Description": data.get("Description"),
                       "Created": datetime.fromtimestamp(fake.now(), timezone.utc), "Creator": fake.user["UserID"]}
                with fake.lock:
                    fake.subscriptions[row["ID"]] = row
                return row

            def _delete(self, name: str, key: str | None):
                if not key:
                    raise odata.ODataError(400, "DELETE needs the entity's key: …/WebhookSubscriptions(guid'…')")
                with fake.lock:
                    if fake.subscriptions.pop(odata._literal(key)[1], None) is None:
                        raise odata.ODataError(404, f"{name}({key}) does not exist")
                return 204, b""

        return Handler


def _id(value, key: str) -> str:
    return value[key] if isinstance(value, dict) else value


def _post(url: str, body: bytes, headers: dict) -> int:
    """The HTTP status a POST got (0 when nothing answered)."""
    try:
        with urlopen(Request(url, data=body, headers=headers, method="POST"), timeout=10) as response:
            return response.status
    except HTTPError as error:
        return error.code
    except (URLError, OSError):
        return 0
