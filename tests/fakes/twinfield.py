"""A local Twinfield (Wolters Kluwer), written from Twinfield's published documentation, WK's own samples
and the best-kept clients (../shared/reference/api-facts.md §2 lists the sources; each module cites
its own). One server stands for both hosts: `fake.base_url` for https://login.twinfield.com and
`fake.cluster_url` (base_url + "/cluster") for the organisation's cluster, which a client learns only from
the access-token validation endpoint's `twf.clusterUrl`, so a client that skips discovery fails here.

- Login: the consent page, the token endpoint and accesstokenvalidation: tests/fakes/twinfield_oauth.py.
- Cluster, SOAP 1.1: /webservices/processxml.asmx (SOAPAction "http://www.twinfield.com/ProcessXmlString")
  and /webservices/finder.asmx ("http://www.twinfield.com/Search"): tests/fakes/twinfield_xml.py and
  tests/fakes/twinfield_browse.py; the books in tests/fakes/twinfield_data.py.
- "Query requests cost 1 API credit, and other requests cost 3": ProcessXML with root list, read,
  columns, accountcode(s) and SOAP actions starting Get/Query/Search/Load are queries; "If the rate limit
  or concurrency limit is exceeded, you will receive a 429 Too Many Requests and the request will not be
  further processed", with a Retry-After header (developers.twinfield.com, getting-started/fair-use-policy).
  The fake keeps one bucket of `credit_limit_per_minute` (1,000, the per-IP and per-ClientId figure) in
  windows on the fake clock's minute; Retry-After is the seconds to the next minute (UNCONFIRMED).
- "Limiting the number of concurrent actions you perform per organization in Twinfield to one" (WK,
  "API Best practice - How to adjust my API connection to fit Twinfield API limits"): a cluster request
  that arrives while `concurrency_limit` (1) others of the organisation are in flight gets 429 with
  Retry-After: 1 (the limit's real figure and this answer are UNCONFIRMED). `max_concurrent` keeps the
  most requests of each organisation seen in flight at once, the refused one included.
- A browse answer of more than `browse_row_limit` (5,000) rows is HTTP 524 (Invantive forum 4302).
- A SOAPAction that does not name the body's operation is a SOAP fault, as ASP.NET web services answer
  ("Server did not recognize the value of HTTP Header SOAPAction"); text/xml is required (415 otherwise).

Faults (tests/fakes/base.py), for cluster requests: `fail_next(n, status)` answers a SOAP fault with that
status, unexecuted (its credits are counted); `delay_next(n, seconds)` executes at once and answers late,
so a request that timed out at the client has been processed all the same; the request stays in flight
(for the one-action rule) until it is answered. `fail_login_next(n, status)` does the first to token calls.
"""
from __future__ import annotations

import copy
import json
import math
import time
import uuid
from collections import defaultdict
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from tests.fakes import twinfield_browse as browse
from tests.fakes import twinfield_xml as soap
from tests.fakes.base import Faults, JsonHandler, LocalServer
from tests.fakes.twinfield_data import Office
from tests.fakes.twinfield_oauth import OAuth

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
LOGIN = "/auth/authentication/connect/"
SERVICES = {"/cluster/webservices/processxml.asmx": ("processxml", "ProcessXmlString"),
            "/cluster/webservices/finder.asmx": ("finder", "Search")}


class FakeTwinfield(Faults, LocalServer):
    def __init__(self, client_id: str, client_secret: str, redirect_uri: str = "http://127.0.0.1/twinfield/callback",
                 organisation: str = "TWF-ORG-1", user: str = "FENNA"):
        self.organisation, self.user_code, self.user_name = organisation, user, "Fenna de Boer"
        self.clock_offset = 0.0
        self.offices: dict[str, Office] = {}
        self.unreachable: set[str] = set()  # offices of the organisation this user may not open
        self.credit_limit_per_minute = 1000
        self.concurrency_limit = 1
        self.browse_row_limit = 5000
        self.finder_max_rows = 100
        self.credits_used = 0
        self.credits_per_minute: dict[int, int] = defaultdict(int)  # minute (epoch // 60) -> credits
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_concurrent: dict[str, int] = defaultdict(int)
        self.requests: list[dict] = []
        self.login_failures: list[int] = []
        super().__init__()
        self.cluster_url = self.base_url + "/cluster"
        self.oauth = OAuth(client_id, client_secret, redirect_uri, {
            "iss": self.base_url + "/auth", "sub": str(uuid.uuid4()), "twf.organisationId": str(uuid.uuid4()),
            "twf.organisationCode": organisation, "twf.organisationUserCode": user,
            "twf.clusterUrl": self.cluster_url})

    # The clock, for tests.
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.now(), AMSTERDAM).replace(microsecond=0)

    # Login, for tests.
    @property
    def token_calls(self) -> list[dict]:
        return self.oauth.token_calls

    @property
    def rotate_refresh_tokens(self) -> bool:
        return self.oauth.rotate_refresh_tokens

    @rotate_refresh_tokens.setter
    def rotate_refresh_tokens(self, value: bool) -> None:
        self.oauth.rotate_refresh_tokens = value

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.oauth.revoke_refresh_tokens()

    def grant(self) -> dict:
        """Tokens as a code exchange gives them, for a test that skips the browser (not a token call)."""
        with self.lock:
            return self.oauth.grant(self.now())

    def fail_login_next(self, n: int = 1, status: int = 500) -> None:
        with self.lock:
            self.login_failures.extend([status] * n)

    def credits_this_minute(self) -> int:
        with self.lock:
            return self.credits_per_minute[int(self.now() // 60)]

    # The books, for tests. Each helper returns a copy.
    def add_office(self, code: str, name: str, *, reachable: bool = True) -> str:
        with self.lock:
            self.offices[code] = Office(code, name, self.moment, user=self.user_code)
            if not reachable:
                self.unreachable.add(code)
            return code

    def reachable(self, code: str | None) -> bool:
        return code in self.offices and code not in self.unreachable

    def _change(self, office: str, method: str, *args, **kwargs):
        with self.lock:
            return copy.deepcopy(getattr(self.offices[office], method)(*args, **kwargs))

    def add_customer(self, office: str, name: str, **fields) -> dict:
        return self._change(office, "add_customer", name, **fields)

    def add_sales_invoice(self, office: str, customer_code: str, lines, *, date=None, **kwargs) -> dict:
        """lines: (description, value excl. VAT as str, VAT code); negative values make a credit note."""
        return self._change(office, "add_sales_invoice", customer_code, lines, date_=date, **kwargs)

    def pay(self, office: str, invoice_number, amount, *, date=None, **kwargs) -> dict:
        return self._change(office, "pay", invoice_number, amount, date_=date, **kwargs)

    def match(self, office: str, lines, *, matchdate=None) -> dict:
        """A bookkeeper's match set (code 170): lines of (code, number, line, matchvalue or None)."""
        with self.lock:
            record, problems = self.offices[office].match("170", matchdate or self.moment().date(), list(lines))
            if problems:
                raise ValueError("; ".join(p.msg for p in problems))
            return copy.deepcopy(record)

    def delete_provisional(self, office: str, code: str, number: int) -> None:
        self._change(office, "delete_provisional", code, number)

    def reverse(self, office: str, code: str, number: int) -> dict:
        return self._change(office, "reverse", code, number)

    def transaction(self, office: str, code: str, number: int) -> dict | None:
        with self.lock:
            return copy.deepcopy(self.offices[office].transactions.get((code, int(number))))

    def transactions(self, office: str, code: str | None = None) -> list[dict]:
        with self.lock:
            return copy.deepcopy([t for t in self.offices[office].transactions.values()
                                  if code is None or t["code"] == code])

    def match_sets(self, office: str) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self.offices[office].match_sets)

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def _send(self, status: int, payload: bytes = b"", content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (delay_next): Twinfield has done the work all the same

            def _query(self) -> dict[str, str]:
                return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def do_GET(self):
                path = urlsplit(self.path).path
                if path == LOGIN + "authorize":
                    return self._consent_page()
                if path == LOGIN + "accesstokenvalidation":
                    with fake.lock:
                        answer = fake.oauth.validation(self._query().get("token", ""), fake.now())
                    return self._send(answer.status, json.dumps(answer.body).encode())
                self._send(404, b"Not found", "text/plain")

            def do_POST(self):
                path, body = urlsplit(self.path).path, self._body()
                if path == LOGIN + "authorize":
                    return self._consent_decision(body)
                if path == LOGIN + "token":
                    return self._token(body)
                if path in SERVICES:
                    return self._cluster(path, body)
                self._send(404, b"Not found", "text/plain")

            # Login.
            def _consent_page(self):
                query = self._query()
                problem = fake.oauth.consent_problem(query)
                if problem:
                    return self._send(400, problem.encode(), "text/plain; charset=utf-8")
                page = fake.oauth.consent_page(query, fake.user_name, LOGIN + "authorize?" + urlencode(query))
                self._send(200, page.encode(), "text/html; charset=utf-8")

            def _consent_decision(self, body: bytes):
                query = self._query()
                if fake.oauth.consent_problem(query):
                    return self._send(400, b"Invalid request", "text/plain; charset=utf-8")
                accepted = dict(parse_qsl(body.decode())).get("decision") == "accept"
                with fake.lock:
                    location = fake.oauth.consent_redirect(query, accepted, fake.now())
                self._send(302, b"", "text/plain", {"Location": location})

            def _token(self, body: bytes):
                form = dict(parse_qsl(body.decode(), keep_blank_values=True))
                with fake.lock:
                    failure = fake.login_failures.pop(0) if fake.login_failures else None
                    if failure is not None:
                        fake.oauth.token_calls.append({"grant_type": form.get("grant_type"), "status": failure,
                                                       "at": fake.now(), "error": "fault injected",
                                                       "code": form.get("code")})
                    else:
                        answer = fake.oauth.token(form, self.headers.get("Authorization", ""), fake.now())
                if failure is not None:
                    return self._send(failure, json.dumps({"error": "server_error"}).encode())
                self._send(answer.status, json.dumps(answer.body).encode(), headers={"Cache-Control": "no-store"})

            # Cluster.
            def _cluster(self, path: str, body: bytes):
                service, operation_name = SERVICES[path]
                xml = "text/xml; charset=utf-8"
                if not self.headers.get("Content-Type", "").startswith("text/xml"):
                    return self._send(415, b"Unsupported Media Type: SOAP 1.1 needs text/xml", "text/plain")
                try:
                    header, operation = soap.parse_envelope(body)
                except soap.SoapFault as error:
                    return self._send(error.status, soap.fault(error.message, error.code), xml)
                action = self.headers.get("SOAPAction", "").strip('"')
                root, credits = (soap.credits_for_process_xml(operation) if service == "processxml"
                                 else (operation.findtext(f"{{{soap.TWF}}}type") or "", 1))
                entry = {"service": service, "action": root, "office": header.get("CompanyCode", ""),
                         "status": None, "credits": 0}
                organisation = None
                with fake.lock:
                    now = fake.now()
                    minute = int(now // 60)
                    if fake.credits_per_minute[minute] + credits > fake.credit_limit_per_minute:
                        entry["status"] = 429
                        fake.requests.append(entry)
                        return self._send(429, b"Too Many Requests", "text/plain",
                                          {"Retry-After": str(max(1, math.ceil((minute + 1) * 60 - now)))})
                    fake.credits_per_minute[minute] += credits
                    fake.credits_used += credits
                    entry["credits"] = credits
                    if fake.oauth.valid(header.get("AccessToken", ""), now):
                        organisation = fake.organisation
                        fake.in_flight[organisation] += 1
                        fake.max_concurrent[organisation] = max(fake.max_concurrent[organisation],
                                                                fake.in_flight[organisation])
                        if fake.in_flight[organisation] > fake.concurrency_limit:
                            fake.in_flight[organisation] -= 1
                            entry["status"] = 429
                            fake.requests.append(entry)
                            return self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": "1"})
                    failure, delay = fake.pop_fault()
                try:
                    status, payload = self._execute(service, operation_name, action, header, operation,
                                                    organisation, failure)
                    time.sleep(delay)
                    entry["status"] = status
                finally:
                    # Done before the answer is written: a client that sends its next request the
                    # moment it has this answer must not find this one still in flight.
                    with fake.lock:
                        if entry["status"] is not None:
                            fake.requests.append(entry)
                        if organisation is not None:
                            fake.in_flight[organisation] -= 1
                self._send(status, payload, xml if status != 524 else "text/html; charset=utf-8")

            def _execute(self, service, operation_name, action, header, operation, organisation, failure):
                if failure is not None:
                    return failure, soap.fault("An error occurred on the server; the request was not processed.")
                if action != soap.TWF + operation_name or operation.tag != f"{{{soap.TWF}}}{operation_name}":
                    return 500, soap.fault("System.Web.Services.Protocols.SoapException: Server did not recognize "
                                           f"the value of HTTP Header SOAPAction: {action}.", "soap:Client")
                if organisation is None:
                    return 500, soap.fault(soap.TOKEN_INVALID)
                company = header.get("CompanyCode", "")
                with fake.lock:
                    if service == "finder":
                        has_office = "office" in [s.text for s in operation.iter(f"{{{soap.TWF}}}string")]
                        # Listing the offices is how a client learns which company to name, so type
                        # OFF asks for none (UNCONFIRMED: the finder page only says the company comes
                        # from the header or the office option).
                        lists_offices = (operation.findtext(f"{{{soap.TWF}}}type") or "").strip() == "OFF"
                        if not company and not has_office and not lists_offices:
                            return 500, soap.fault(soap.COMPANY_MISSING)
                        return 200, soap.envelope(soap.search(fake.offices, operation, company, fake.reachable,
                                                              fake.finder_max_rows))
                    if not company:
                        return 500, soap.fault(soap.COMPANY_MISSING)
                    if not fake.reachable(company):  # wording UNCONFIRMED
                        return 500, soap.fault(f"Toegang geweigerd. Geen toegang tot administratie {company}.")
                    try:
                        request = soap.request_root(operation)
                    except soap.SoapFault as error:
                        return error.status, soap.fault(error.message, error.code)
                    try:
                        answer = soap.ProcessXml(fake.offices, company, fake.reachable,
                                                 fake.browse_row_limit).answer(request)
                    except browse.TooLarge:
                        return 524, b"<html><body><h1>Error 524</h1><p>A timeout occurred</p></body></html>"
                    return 200, soap.process_xml_result(answer)

        return Handler
