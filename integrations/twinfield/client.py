"""The one client for Twinfield's SOAP services: every call of every job goes through it, so
Twinfield's fair-use rules are kept in one place. Plain `requests` (the HTTP library the rest of
the integrations use) and lxml build and read the envelopes: the services take one string of XML
each (ProcessXmlString) or a handful of scalars (Finder's Search), which zeep's WSDL machinery
would not make clearer.

What Twinfield documents and this keeps to (../shared/reference/api-facts.md §2.2, §2.6):
- SOAP 1.1 under the organisation's cluster URL (from the access token: tokens.py), with the
  header `<Header xmlns="http://www.twinfield.com/"><AccessToken/><CompanyCode/></Header>`;
  `webservices/processxml.asmx` (ProcessXmlString: every read, write, browse and match) and
  `webservices/finder.asmx` (Search);
- every element of an answer says `result="1"` or `result="0"`, with `msgtype`/`msg` on what
  failed: a "0" becomes TwinfieldRefused with Twinfield's messages;
- credits: a query costs 1 (ProcessXml roots list/read/columns, Finder Search), anything else 3;
  1,000 a minute. Spent before each call in a short transaction on the connection's row; a call
  that would go over waits for the next minute instead of being refused;
- 429 (over the rate or the concurrency limit): not processed; wait for `Retry-After` (a call
  waits out a minute at most itself, with no transaction open; a longer wait is Throttled, and
  the job tries again then);
- at most one action at a time per organisation: every call holds a lease on the organisation
  (integrations.oauth.lease) for its length, shared by all workers.

No call is made inside a database transaction.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape

import requests
from django.db import transaction
from django.utils import timezone
from lxml import etree

from integrations import oauth
from integrations.twinfield.models import TwinfieldConnection
from portal.rls import staff_scope

NS = "http://www.twinfield.com/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TIMEOUT = (5, 120)  # a browse over a busy period can take a while
ORGANISATION_WAIT = 150.0  # seconds: longer than any one call may take (TIMEOUT)
CREDITS_PER_MINUTE = 1000
QUERY_ROOTS = {"list", "read", "columns", "accountcode", "accountcodes"}
DEFAULT_WAIT = datetime.timedelta(seconds=60)  # after a 429 that says nothing of when
WAIT_IN_CALL = 61.0  # the longest wait a call sits out itself (the rest of a minute), seconds
WAITS_IN_CALL = 3
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class TwinfieldError(Exception):
    """A call that did not give what was asked (Twinfield failed, or answered something else)."""


class TwinfieldRefused(TwinfieldError):
    """Twinfield answered result="0": `messages` are its msg texts (in the order given)."""

    def __init__(self, messages: list[str], element: etree._Element | None = None):
        super().__init__("; ".join(messages) or "Twinfield refused the request")
        self.messages = messages
        self.element = element


class Throttled(TwinfieldError):
    """Over Twinfield's credits or concurrency: try again at `until`."""

    def __init__(self, until: datetime.datetime, message: str):
        super().__init__(message)
        self.until = until


class TwinfieldUnreachable(TwinfieldError):
    """No answer (connection refused, timeout): Twinfield may or may not have done it."""


class NeedsReauthorisation(TwinfieldError):
    """The connection has no usable tokens: staff connect it again in admin."""


@dataclass
class Found:
    """A page of Finder's Search: `total` rows in all, this page's rows as lists of strings."""

    total: int
    columns: list[str]
    rows: list[list[str]]


def credits_of(xml: str) -> int:
    """What a ProcessXml request costs: 1 for a query root, 3 for anything else."""
    root = etree.fromstring(xml.encode(), PARSER)
    return 1 if etree.QName(root).localname in QUERY_ROOTS else 3


def failures(element: etree._Element) -> list[str]:
    """Twinfield's messages on every element of an answer marked result="0" or msgtype="error"."""
    found = []
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        if node.get("msgtype") == "error" or (node.get("result") == "0" and node.get("msg")):
            found.append(node.get("msg") or "")
    if not found and element.get("result") == "0":
        found.append(element.get("msg") or "")
    return [message for message in found if message] or (["Twinfield refused the request"] if
                                                         element.get("result") == "0" else [])


class TwinfieldClient:
    def __init__(self, twinfield: TwinfieldConnection, *, office: str | None = None):
        self.twinfield = twinfield
        self.office = office if office is not None else twinfield.office
        self.session = requests.Session()

    # --- The services ----------------------------------------------------------------------

    def process(self, xml: str) -> etree._Element:
        """ProcessXmlString: the answer's root element. TwinfieldRefused when it says result="0"."""
        body = f'<ProcessXmlString xmlns="{NS}"><xmlRequest>{escape(xml)}</xmlRequest></ProcessXmlString>'
        envelope = self._call("processxml.asmx", "ProcessXmlString", body, credits=credits_of(xml))
        result = envelope.find(f".//{{{NS}}}ProcessXmlStringResult")
        if result is None or not (result.text or "").strip():
            raise TwinfieldError("Twinfield's ProcessXmlString answered without a result")
        answer = etree.fromstring(result.text.encode(), PARSER)
        problems = failures(answer)
        if answer.get("result") == "0" or problems:
            raise TwinfieldRefused(problems, answer)
        return answer

    def search(self, type: str, *, pattern: str = "*", field: int = 0, first_row: int = 1, max_rows: int = 25,
               options: dict[str, str] | None = None) -> Found:
        """Finder's Search (pages of `max_rows` from `first_row`, 1-based)."""
        options = {"office": self.office, **(options or {})} if self.office else dict(options or {})
        option_xml = "".join(f"<ArrayOfString><string>{escape(k)}</string><string>{escape(str(v))}</string>"
                             f"</ArrayOfString>" for k, v in options.items())
        body = (f'<Search xmlns="{NS}"><type>{escape(type)}</type><pattern>{escape(pattern)}</pattern>'
                f"<field>{field}</field><firstRow>{first_row}</firstRow><maxRows>{max_rows}</maxRows>"
                f"<options>{option_xml}</options></Search>")
        envelope = self._call("finder.asmx", "Search", body, credits=1)
        messages = [m.text or "" for m in envelope.iterfind(f".//{{{NS}}}MessageOfErrorCodes/{{{NS}}}Text")]
        if any(messages):
            raise TwinfieldRefused([m for m in messages if m])
        data = envelope.find(f".//{{{NS}}}data")
        if data is None:
            return Found(0, [], [])
        total = int((data.findtext(f"{{{NS}}}TotalRows") or "0").strip() or 0)
        columns = [c.text or "" for c in data.iterfind(f"{{{NS}}}Columns/{{{NS}}}string")]
        rows = [[s.text or "" for s in item.iterfind(f"{{{NS}}}string")]
                for item in data.iterfind(f"{{{NS}}}Items/{{{NS}}}ArrayOfString")]
        return Found(total, columns, rows)

    def browse(self, code: str, fields: list[str], filters: dict[str, tuple[str, str, str]]) -> list[dict]:
        """Browse data (`<columns code=…>`): one dict per row, field -> text, with the row's
        transaction key under "key" (office, code, number, line). `filters`: field -> (operator,
        from, to), operator equal, between or like. One query (1 credit)."""
        columns = []
        for field in dict.fromkeys([*fields, *filters]):
            column = f"<column><field>{escape(field)}</field><visible>true</visible>"
            if field in filters:
                operator, low, high = filters[field]
                column += (f"<ask>true</ask><operator>{escape(operator)}</operator><from>{escape(low)}</from>"
                           f"<to>{escape(high)}</to>")
            columns.append(column + "</column>")
        office = f"<column><field>fin.trs.head.office</field><visible>true</visible><ask>true</ask>" \
                 f"<operator>equal</operator><from>{escape(self.office)}</from></column>"
        answer = self.process(f'<columns code="{escape(code)}">{office}{"".join(columns)}</columns>')
        rows = []
        for tr in answer.iterfind("tr"):
            row = {td.get("field"): (td.text or "").strip() for td in tr.iterfind("td")}
            key = tr.find("key")
            row["key"] = {child.tag: (child.text or "").strip() for child in key} if key is not None else {}
            rows.append(row)
        return rows

    # --- One call --------------------------------------------------------------------------

    def _call(self, service: str, action: str, body: str, *, credits: int) -> etree._Element:
        """One call; a wait Twinfield asks for (or the minute's credits spent) of at most
        WAIT_IN_CALL seconds is waited out here, with no transaction open and the organisation's
        lock let go (a first load spends a minute's credits in seconds); a longer one is Throttled."""
        for attempt in range(1, WAITS_IN_CALL + 2):
            try:
                return self._call_once(service, action, body, credits=credits)
            except Throttled as throttled:
                wait = (throttled.until - timezone.now()).total_seconds()
                if attempt > WAITS_IN_CALL or wait > WAIT_IN_CALL:
                    raise
                time.sleep(max(wait, 0.05))
        raise AssertionError("unreachable")

    def _call_once(self, service: str, action: str, body: str, *, credits: int) -> etree._Element:
        from integrations.twinfield import tokens

        twinfield = self.twinfield
        token = tokens.access_token(twinfield)
        if not twinfield.cluster_url:
            raise NeedsReauthorisation("Twinfield's cluster is not known yet: staff connect it in admin")
        company = f"<CompanyCode>{escape(self.office)}</CompanyCode>" if self.office else ""
        envelope = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Header>'
                    f'<Header xmlns="{NS}"><AccessToken>{escape(token)}</AccessToken>{company}</Header>'
                    f"</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>")
        url = f"{twinfield.cluster_url.rstrip('/')}/webservices/{service}"
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}{action}"'}
        with oauth.lease(f"twinfield-org:{twinfield.organisation or twinfield.pk}", wait=ORGANISATION_WAIT,
                                error=TwinfieldError):
            self._spend(credits)
            try:
                response = self.session.post(url, data=envelope.encode(), headers=headers, timeout=TIMEOUT,
                                             allow_redirects=False)
            except requests.RequestException as exc:
                raise TwinfieldUnreachable(f"Twinfield did not answer {action}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 429:
            until = timezone.now() + _retry_after(response)
            with staff_scope(), transaction.atomic():
                TwinfieldConnection.objects.filter(pk=twinfield.pk).update(throttled_until=until)
            raise Throttled(until, f"Twinfield answered 429 on {action}")
        try:
            answer = etree.fromstring(response.content, PARSER)
        except etree.XMLSyntaxError:
            raise TwinfieldError(f"Twinfield answered {action} with {response.status_code} and no XML: "
                                 f"{response.text[:200]}") from None
        fault = answer.find(f".//{{{SOAP}}}Fault")
        if fault is not None:
            message = (fault.findtext("faultstring") or "").strip()
            if _token_refused(message):
                tokens.token_refused(twinfield)  # the next call refreshes it
            raise TwinfieldError(f"Twinfield answered {action} with a fault ({response.status_code}): {message[:300]}")
        if response.status_code >= 400:
            raise TwinfieldError(f"Twinfield answered {response.status_code} on {action}")
        return answer

    def _spend(self, credits: int) -> None:
        """Take `credits` from this minute's budget (and count them for today), or Throttled until
        the next minute. The row is locked for this short transaction."""
        now = timezone.now()
        minute = now.replace(second=0, microsecond=0)
        with staff_scope(), transaction.atomic():
            row = TwinfieldConnection.objects.select_for_update().get(pk=self.twinfield.pk)
            if row.throttled_until and row.throttled_until > now:
                raise Throttled(row.throttled_until, "Twinfield asked to wait (429)")
            used = row.credits_this_minute if row.credits_minute == minute else 0
            if used + credits > CREDITS_PER_MINUTE:
                raise Throttled(minute + datetime.timedelta(minutes=1), "this minute's Twinfield credits are spent")
            today = timezone.localdate()
            row.credits_minute, row.credits_this_minute = minute, used + credits
            row.credits_today = (row.credits_today if row.credits_day == today else 0) + credits
            row.credits_day = today
            row.save(update_fields=["credits_minute", "credits_this_minute", "credits_today", "credits_day"])


def _retry_after(response: requests.Response) -> datetime.timedelta:
    try:
        return datetime.timedelta(seconds=min(max(float(response.headers["Retry-After"]), 1.0), 3600.0))
    except (KeyError, ValueError):
        return DEFAULT_WAIT


def _token_refused(message: str) -> bool:
    lowered = message.lower()
    return "token invalid" in lowered or "code 354" in lowered or "logon credentials are not valid" in lowered
