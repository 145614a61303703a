"""The SOAP side of the local Twinfield (tests/fakes/twinfield.py): the envelopes, ProcessXmlString's
requests and answers, and Finder's Search.

Sources (../shared/reference/api-facts.md §2.2–2.4 has more):
- SOAP 1.1 with `<Header xmlns="http://www.twinfield.com/"><AccessToken/><CompanyCode/></Header>`;
  ProcessXmlString(xmlRequest) answers ProcessXmlStringResult, both escaped strings (WK's processxml.wsdl
  in TwinfieldIntegrationSamples). Search(type, pattern, field, firstRow, maxRows, options as
  ArrayOfArrayOfString) answers SearchResult (messages: Type Error|Warning|Informational, Text, Code of
  ErrorCodes such as NoAccessToOffice, OptionNotAllowed, InvalidFinderType, ParameterOutOfRange,
  ParameterTooSmall) and data (TotalRows, Columns, Items of ArrayOfString) (the raw envelope on
  developers.twinfield.com/documentation/api/miscellaneous/finder; the Finder proxy in
  TwinfieldIntegrationSamples ExtendedApiExampleApp). Columns for TRS are "Code", "Naam"
  (php-twinfield transactionTypesListAllWithMultipleResultsResponse.php); the same two for OFF, DIM,
  VAT and BNK is UNCONFIRMED ("Return fields: code, name" in the finder page's table).
- Every answer element carries result="1" or result="0", and an element that is refused carries
  msgtype="error" and msg (php-twinfield src/Response/Response.php). Shapes of `<offices>`,
  `<dimension>`, `<vat>`, `<transaction>` and the match `<sets>` answer are the php-twinfield fixtures'
  (officeOauthGetResponse.xml, customerGetResponse.xml, vatCodeGetResponse.xml,
  salesTransactionGetResponse.xml, cashTransactionGetResponse.xml, single-matchset.xml); a line's
  `<matches><set status=…><matchdate/><matchvalue/><lines><line><code/><number/><line/><matchvalue/>`
  is what php-twinfield's TransactionMapper reads.
- Without CompanyCode Twinfield says "Toegang geweigerd. Company ontbreekt in request header." (the
  finder page). An expired or unknown token: "Access denied. Token invalid (code 354)." (Invantive forum
  1412). Both as SOAP faults with HTTP 500 is UNCONFIRMED, as is every other refusal's wording here.

UNCONFIRMED, chosen here: a `<read>` of something that does not exist answers the element asked for with
result="0" and msg; a request of several `<read>`s is not supported (php-twinfield never batches reads);
Finder has no "modified since" option (its name could not be confirmed), caps maxRows silently at
`finder_max_rows` (100) and searches field 0 (code or name), 1 (code) or 2 (name) only.
"""
from __future__ import annotations

import copy
import re
from datetime import date, datetime

from lxml import etree

from tests.fakes import twinfield_browse as browse
from tests.fakes.twinfield_data import CURRENCIES, Office, Problem

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TWF = "http://www.twinfield.com/"
TOKEN_INVALID = "Access denied. Token invalid (code 354)."
COMPANY_MISSING = "Toegang geweigerd. Company ontbreekt in request header."
QUERY_ROOTS = {"list", "read", "columns", "accountcode", "accountcodes"}  # 1 credit (fair-use page)


class SoapFault(Exception):
    def __init__(self, message: str, status: int = 500, code: str = "soap:Server"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


# Envelopes.
def parse_envelope(body: bytes) -> tuple[dict[str, str], etree._Element]:
    """The Twinfield header's fields and the body's operation element."""
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        raise SoapFault("Server was unable to process request. The request is not well-formed XML.",
                        400, "soap:Client") from None
    operation = root.find(f"{{{SOAP}}}Body/*")
    if root.tag != f"{{{SOAP}}}Envelope" or operation is None:
        raise SoapFault("Server was unable to process request. No SOAP 1.1 Envelope/Body.", 400, "soap:Client")
    header = {child.tag.split("}")[1]: (child.text or "").strip()
              for child in root.findall(f"{{{SOAP}}}Header/{{{TWF}}}Header/*")}
    return header, operation


def envelope(body: etree._Element) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "xsi": "http://www.w3.org/2001/XMLSchema-instance",
                                                       "xsd": "http://www.w3.org/2001/XMLSchema"})
    etree.SubElement(env, f"{{{SOAP}}}Body").append(body)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def fault(message: str, code: str = "soap:Server") -> bytes:
    element = etree.Element(f"{{{SOAP}}}Fault")
    etree.SubElement(element, "faultcode").text = code
    etree.SubElement(element, "faultstring").text = message
    etree.SubElement(element, "detail")
    return envelope(element)


def process_xml_result(answer: etree._Element) -> bytes:
    response = etree.Element(f"{{{TWF}}}ProcessXmlStringResponse", nsmap={None: TWF})
    etree.SubElement(response, f"{{{TWF}}}ProcessXmlStringResult").text = etree.tostring(answer, encoding="unicode")
    return envelope(response)


def request_root(operation: etree._Element) -> etree._Element:
    """The XML inside ProcessXmlString's xmlRequest (an escaped string)."""
    text = operation.findtext(f"{{{TWF}}}xmlRequest") or ""
    try:
        return etree.fromstring(text.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        raise SoapFault("Server was unable to process request. ---> The xmlRequest is not valid XML.") from None


def credits_for_process_xml(operation: etree._Element) -> tuple[str, int]:
    """(root element, credits) for a ProcessXmlString call, read before anything is processed."""
    try:
        root = request_root(operation).tag
    except SoapFault:
        root = ""
    return root, 1 if root in QUERY_ROOTS else 3


# ProcessXmlString.
class ProcessXml:
    """Answers one xmlRequest for a user who reaches `reachable(office)`; the caller holds the fake's lock."""

    def __init__(self, offices: dict[str, Office], company: str, reachable, browse_row_limit: int):
        self.offices, self.company, self.reachable = offices, company, reachable
        self.browse_row_limit = browse_row_limit

    def answer(self, request: etree._Element) -> etree._Element:
        handler = {"list": self._list, "read": self._read, "columns": self._columns,
                   "transactions": self._transactions, "transaction": self._transactions,
                   "match": self._match}.get(request.tag)
        if handler is None:
            return _refused(copy.deepcopy(request), f"Onbekend verzoek <{request.tag}>.")
        return handler(request)

    def _office(self, code: str | None) -> Office | None:
        code = code or self.company
        return self.offices.get(code) if self.reachable(code) else None

    def _list(self, request):
        if request.findtext("type") != "offices":
            return _refused(copy.deepcopy(request), f"Lijsttype {request.findtext('type')!r} bestaat niet.")
        offices = etree.Element("offices", result="1")
        for office in self.offices.values():
            if self.reachable(office.code):
                etree.SubElement(offices, "office", name=office.name, shortname=office.name).text = office.code
        return offices

    def _read(self, request):
        kind, code = request.findtext("type") or "", (request.findtext("code") or "").strip()
        office = self._office((request.findtext("office") or "").strip())
        if office is None:
            return _refused(copy.deepcopy(request), f"Geen toegang tot administratie "
                                                    f"{request.findtext('office') or self.company}.")
        if kind == "dimensions":
            customer = office.customers.get(code) if (request.findtext("dimtype") or "DEB") == "DEB" else None
            return _dimension(office, customer) if customer else _missing(
                "dimension", office, {"type": request.findtext("dimtype") or "", "code": code},
                f"Dimensie {code} bestaat niet.")
        if kind == "vat":
            vat = office.vat_codes.get(code)
            return _vat(office, vat) if vat else _missing("vat", office, {"code": code},
                                                          f"Btw-code {code} bestaat niet.")
        if kind == "browse":
            return browse.definition(office, code) if code in browse.DEFINITIONS else _missing(
                "browse", office, {"code": code}, f"Browse-code {code} bestaat niet.")
        if kind == "transaction":
            number = (request.findtext("number") or "").strip()
            found = office.transactions.get((code, int(number))) if number.isdigit() else None
            return transaction_element(office, found) if found else _missing(
                "transaction", office, {"code": code, "number": number}, f"Boeking {code} {number} bestaat niet.")
        return _refused(copy.deepcopy(request), f"Leestype {kind!r} bestaat niet.")

    def _columns(self, request):
        try:
            return browse.rows(self.offices, request, self.company, self.reachable, self.browse_row_limit)
        except browse.BrowseError as error:
            return etree.Element("browse", result="0", msgtype="error", msg=str(error))

    def _transactions(self, request):
        given = [request] if request.tag == "transaction" else request.findall("transaction")
        answers = [self._one_transaction(element) for element in given]
        if request.tag == "transaction":
            return answers[0]
        root = etree.Element("transactions", result="1" if all(a.get("result") == "1" for a in answers) else "0")
        root.extend(answers)
        return root

    def _one_transaction(self, element):
        header = element.find("header")
        fields = {child.tag: (child.text or "").strip() for child in (header if header is not None else [])}
        office = self._office(fields.get("office"))
        if office is None:
            return _refused(copy.deepcopy(element), f"Geen toegang tot administratie "
                                                    f"{fields.get('office') or self.company}.")
        lines = []
        for line in element.findall("lines/line"):
            raw = {child.tag: (child.text or "").strip() for child in line}
            raw["type"], raw["id"] = line.get("type", ""), line.get("id", "")
            lines.append(raw)
        booked, problems = office.book({**fields, "destiny": element.get("destiny"), "lines": lines})
        if booked:
            answer = transaction_element(office, booked)
            for name in ("raisewarning", "autobalancevat"):
                if element.get(name) is not None:
                    answer.set(name, element.get(name))
            return answer
        return _with_problems(copy.deepcopy(element), problems)

    def _match(self, request):
        sets = etree.Element("sets")  # the answer's root as single-matchset.xml has it
        for given in request.findall("set"):
            office = self._office((given.findtext("office") or "").strip())
            if office is None:
                sets.append(_refused(copy.deepcopy(given), f"Geen toegang tot administratie "
                                                           f"{given.findtext('office') or self.company}."))
                continue
            wanted = [(line.findtext("transcode") or "", line.findtext("transnumber") or "",
                       line.findtext("transline") or "", (line.findtext("matchvalue") or "").strip() or None)
                      for line in given.findall("lines/line")]
            record, problems = office.match((given.findtext("matchcode") or "").strip(),
                                            (given.findtext("matchdate") or "").strip(), wanted)
            sets.append(_match_set(office, record) if record else _set_with_problems(copy.deepcopy(given), problems))
        return sets


def _refused(element, msg: str):
    element.set("result", "0")
    element.set("msgtype", "error")
    element.set("msg", msg)
    return element


def _missing(tag: str, office: Office, fields: dict, msg: str):
    element = etree.Element(tag, result="0", msgtype="error", msg=msg)
    etree.SubElement(element, "office").text = office.code
    for name, value in fields.items():
        etree.SubElement(element, name).text = value
    return element


def _with_problems(element, problems: list[Problem]):
    """The transaction as sent, with each refusal's msg on the element it is about."""
    element.set("result", "0")
    lines = element.findall("lines/line")
    for problem in problems:
        target = element
        if problem.line == "header":
            target = element.find("header") if element.find("header") is not None else element
        elif isinstance(problem.line, int) and problem.line <= len(lines):
            target = lines[problem.line - 1]
            target.set("result", "0")
        if problem.field and target is not element:
            found = target.find(problem.field)
            if found is None:
                found = etree.SubElement(target, problem.field)
            target = found
        target.set("result", "0")
        target.set("msgtype", "error")
        target.set("msg", "//".join(filter(None, [target.get("msg") if target.get("msgtype") else None, problem.msg])))
    return element


def _set_with_problems(element, problems: list[Problem]):
    element.set("result", "0")
    lines = element.findall("lines/line")
    for problem in problems:
        target = element
        if isinstance(problem.line, int):
            target = lines[problem.line - 1]
            element.find("lines").set("result", "0")
        target.set("result", "0")
        target.set("msgtype", "error")
        target.set("msg", problem.msg)
    for line in lines:
        if line.get("result") is None:
            line.set("result", "1")
    return element


def _sub(parent, tag: str, text=None, **attributes):
    element = etree.SubElement(parent, tag, **attributes)
    if text is not None:
        element.text = text if isinstance(text, str) else _text(text)
    return element


def _text(value) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y%m%d%H%M%S}"
    if isinstance(value, date):
        return f"{value:%Y%m%d}"
    return "" if value is None else str(value)


def _dim(parent, tag: str, office: Office, code: str):
    if code in office.customers:
        return _sub(parent, tag, code, name=office.customers[code]["name"], shortname="", type="DEB", inuse="true",
                    vatcode="", vatobligatory="false")
    account = office.gl_accounts.get(code, {"name": "", "type": ""})
    return _sub(parent, tag, code, name=account["name"], shortname=account["name"], type=account["type"],
                inuse="true", vatcode="", vatobligatory="false")


def transaction_element(office: Office, transaction: dict):
    """A booked transaction as a read answers it, and as a post echoes it."""
    daybook = office.daybooks[transaction["code"]]
    element = etree.Element("transaction", result="1", location=transaction["location"], raisewarning="false")
    header = _sub(element, "header")
    _sub(header, "office", office.code, name=office.name, shortname=office.name)
    _sub(header, "code", daybook["code"], name=daybook["name"], shortname=daybook["shortname"])
    currency = CURRENCIES[transaction["currency"]]
    _sub(header, "currency", transaction["currency"], name=currency, shortname=currency)
    _sub(header, "date", transaction["date"])
    _sub(header, "period", transaction["period"])
    for name in ("invoicenumber", "paymentreference", "duedate", "statementnumber"):
        if transaction[name]:
            _sub(header, name, transaction[name])
    _sub(header, "origin", transaction["origin"])
    _sub(header, "user", transaction["user"], name=transaction["user"], shortname=transaction["user"])
    _sub(header, "modificationdate", transaction["modified"])  # UNCONFIRMED format; named by pronamic/twinfield
    _sub(header, "number", transaction["number"])
    lines = _sub(element, "lines")
    total_vat = sum((line["value"] for line in transaction["lines"] if line["type"] == "vat"), start=0)
    for line in transaction["lines"]:
        item = _sub(lines, "line", type=line["type"], id=str(line["id"]))
        _dim(item, "dim1", office, line["dim1"])
        if line["dim2"]:
            _dim(item, "dim2", office, line["dim2"])
        _sub(item, "value", f"{line['value']:.2f}")
        _sub(item, "debitcredit", line["debitcredit"])
        _sub(item, "description", line["description"])
        if line["invoicenumber"]:
            _sub(item, "invoicenumber", line["invoicenumber"])
        if line["type"] == "detail" and line["vatcode"]:
            vat = office.vat_codes[line["vatcode"]]
            _sub(item, "vatcode", line["vatcode"], name=vat["name"], shortname=vat["shortname"])
        elif line["type"] == "vat":
            _sub(item, "vatcode", line["vatcode"])
        _sub(item, "rate", "1")
        _sub(item, "basevalue", f"{line['value']:.2f}")
        _sub(item, "reprate", "1")
        _sub(item, "repvalue", f"{line['value']:.2f}")
        if line["type"] == "total" and line["dim1"] == "1300":
            _sub(item, "vattotal", f"{total_vat:.2f}")
            _sub(item, "vatbasetotal", f"{total_vat:.2f}")
        if line["type"] == "detail" and line["vatvalue"] is not None:
            _sub(item, "vatvalue", f"{line['vatvalue']:.2f}")
            _sub(item, "vatbasevalue", f"{line['vatvalue']:.2f}")
        if line["type"] == "vat":
            _sub(item, "vatturnover", f"{line['vatturnover'] or 0:.2f}")
            _sub(item, "vatbaseturnover", f"{line['vatturnover'] or 0:.2f}")
            _sub(item, "baseline", line["baseline"] or "1")
        if line["duedate"] and line["type"] == "detail":
            _sub(item, "duedate", line["duedate"])
        if line["matchlevel"]:
            _sub(item, "matchlevel", str(line["matchlevel"]))
            _sub(item, "customersupplier", "2")
            for tag in ("openvalue", "openbasevalue", "openrepvalue"):
                _sub(item, tag, f"{abs(line['open']):.2f}")
        if line["type"] != "vat":
            _sub(item, "matchstatus", line["matchstatus"])
        if line["matchdate"]:
            _sub(item, "matchdate", line["matchdate"])
        if line["matches"]:
            matches = _sub(item, "matches")
            for record in line["matches"]:
                match_set = _sub(matches, "set", status=transaction["location"])
                _sub(match_set, "matchdate", record["matchdate"])
                _sub(match_set, "matchvalue", f"{record['value']:.2f}")
                others = _sub(match_set, "lines")
                for other in record["lines"]:
                    entry = _sub(others, "line")
                    _sub(entry, "code", other["transcode"])
                    _sub(entry, "number", other["transnumber"])
                    _sub(entry, "line", other["transline"])
                    _sub(entry, "matchvalue", f"{other['matchvalue']:.2f}")
    return element


def _match_set(office: Office, record: dict):
    element = etree.Element("set", result="1")
    _sub(element, "office", office.code)
    _sub(element, "matchcode", record["matchcode"], name="Debiteuren afletteren")
    _sub(element, "matchdate", record["matchdate"])
    lines = _sub(element, "lines")
    for entry in record["lines"]:
        transaction = office.transactions[(entry["transcode"], entry["transnumber"])]
        line = next(li for li in transaction["lines"] if li["id"] == entry["transline"])
        daybook = office.daybooks[entry["transcode"]]
        item = _sub(lines, "line", result="1")
        _sub(item, "transcode", entry["transcode"], name=daybook["name"], shortname=daybook["shortname"])
        _sub(item, "transnumber", entry["transnumber"])
        _sub(item, "transline", entry["transline"])
        _sub(item, "matchvalue", f"{entry['matchvalue']:.2f}")
        _sub(item, "origin", transaction["origin"])
        _sub(item, "status", transaction["location"])
        _sub(item, "dim1", line["dim1"])
        _sub(item, "dim2", line["dim2"])
        _sub(item, "matchlevel", "2")
        for tag in ("basevalueopen", "repvalueopen", "valueopen"):  # before this set, as in the fixture
            _sub(item, tag, f"{entry['openbefore']:.2f}")
        for tag in ("matchvaluerep", "matchvaluecur"):
            _sub(item, tag, f"{entry['matchvalue']:.2f}")
    dimensions = _sub(element, "dimensions")
    _sub(dimensions, "dimension", record["dimension"], level="2", matchnumber=str(record["matchnumber"]))
    _sub(element, "value", f"{record['value']:.2f}")
    return element


def _dimension(office: Office, customer: dict):
    element = etree.Element("dimension", status="active", result="1")
    _sub(element, "office", office.code, name=office.name, shortname=office.name)
    _sub(element, "type", "DEB", name="Debiteuren", shortname="Debiteuren")
    _sub(element, "name", customer["name"])
    _sub(element, "shortname", customer["shortname"])
    for tag in ("website", "cocnumber", "vatnumber"):
        _sub(element, tag, "")
    financials = _sub(element, "financials")
    for tag, text in (("matchtype", "customersupplier"), ("duedays", str(customer["due_days"])),
                      ("payavailable", "false"), ("meansofpayment", "none"), ("level", "2"),
                      ("accounttype", "inherit"), ("subanalyse", "false"), ("ebilling", "false"),
                      ("substitutionlevel", "1"), ("substitutewith", "1300"), ("vatobligatory", "false")):
        _sub(financials, tag, text)
    addresses = _sub(element, "addresses")
    address = _sub(addresses, "address", id="1", type="invoice", default="true")
    _sub(address, "name", customer["name"])
    _sub(address, "country", customer["country"], name="", shortname="")
    for tag, text in (("city", customer["city"]), ("postcode", customer["postcode"]), ("telephone", ""),
                      ("telefax", ""), ("email", customer["email"]), ("contact", ""), ("field1", ""),
                      ("field2", customer["street"]), ("field3", ""), ("field4", ""), ("field5", ""),
                      ("field6", "")):
        _sub(address, tag, text)
    banks = _sub(element, "banks")
    if customer["iban"]:
        bank = _sub(banks, "bank", default="true", id="1")
        _sub(bank, "ascription", customer["name"])
        _sub(bank, "iban", customer["iban"])
    _sub(element, "code", customer["code"])
    _sub(element, "uid", customer["uid"])
    _sub(element, "inuse", "true" if _in_use(office, customer["code"]) else "false")
    _sub(element, "behaviour", "normal")
    _sub(element, "touched", "0")
    return element


def _in_use(office: Office, code: str) -> bool:
    return any(line["dim2"] == code for t in office.transactions.values() for line in t["lines"])


def _vat(office: Office, vat: dict):
    element = etree.Element("vat", status="active", result="1")
    for tag in ("code", "name", "shortname", "uid"):
        _sub(element, tag, vat[tag])
    _sub(element, "type", vat["type"])
    percentages = _sub(element, "percentages")
    for since, percentage in vat["percentages"]:
        item = _sub(percentages, "percentage", status="active", inuse="true")
        _sub(item, "date", since)
        _sub(item, "percentage", f"{percentage:.9f}")
        _sub(item, "name", vat["name"])
        _sub(item, "shortname", vat["shortname"])
        accounts = _sub(item, "accounts")
        if vat["account"]:
            account = _sub(accounts, "account", id="1")
            _sub(account, "dim1", vat["account"], name=office.gl_accounts[vat["account"]]["name"], shortname="",
                 dimensiontype="BAS")
            _sub(account, "percentage", "100.0")
            _sub(account, "linetype", "vat")
    return element


# Finder.
FINDER_OPTIONS = {"OFF": set(), "DIM": {"office", "dimtype", "section"}, "VAT": {"office", "vattype"},
                  "TRS": {"office", "hidden", "ic", "category"}, "BNK": {"office"}}


def search(offices: dict[str, Office], operation: etree._Element, company: str, reachable,
           max_rows_cap: int) -> etree._Element:
    """The SearchResponse for a Search operation."""
    def arg(name):
        return (operation.findtext(f"{{{TWF}}}{name}") or "").strip()

    kind, pattern = arg("type"), arg("pattern") or "*"
    options = {}
    for pair in operation.findall(f"{{{TWF}}}options/{{{TWF}}}ArrayOfString"):
        values = [s.text or "" for s in pair.findall(f"{{{TWF}}}string")]
        if len(values) == 2:
            options[values[0]] = values[1]
    if kind not in FINDER_OPTIONS:
        return _search_error("InvalidFinderType", f"Finder type {kind!r} does not exist.")
    unknown = set(options) - FINDER_OPTIONS[kind]
    if unknown:
        return _search_error("OptionNotAllowed", f"Option {sorted(unknown)[0]!r} is not allowed for {kind}.")
    try:
        field, first, max_rows = int(arg("field") or 0), int(arg("firstRow") or 1), int(arg("maxRows") or 100)
    except ValueError:
        return _search_error("ParameterOutOfRange", "field, firstRow and maxRows are integers.")
    if field not in (0, 1, 2):
        return _search_error("ParameterOutOfRange", f"Search field {field} is not available for {kind}.")
    if first < 1 or max_rows < 1:
        return _search_error("ParameterTooSmall", "firstRow and maxRows start at 1.")
    office_code = options.get("office") or company
    if kind != "OFF" and (office_code not in offices or not reachable(office_code)):
        return _search_error("NoAccessToOffice", f"No access to office {office_code}.")
    office = offices.get(office_code)
    if kind == "OFF":
        items = [(o.code, o.name) for o in offices.values() if reachable(o.code)]
    elif kind == "DIM":
        items = [(c["code"], c["name"]) for c in office.customers.values()] \
            if options.get("dimtype", "DEB") == "DEB" else []
    elif kind == "VAT":
        items = [(v["code"], v["name"]) for v in office.vat_codes.values()
                 if options.get("vattype") in (None, v["type"])]
    elif kind == "TRS":
        items = [(d["code"], d["name"]) for d in office.daybooks.values()
                 if options.get("category") in (None, d["category"])]
    else:
        items = [(d["code"], d["name"]) for d in office.daybooks.values() if d["category"] == "bank"]
    wildcard = re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern),
                          re.IGNORECASE)
    items = sorted(i for i in items if any(wildcard.fullmatch(v) for v in (i if field == 0 else (i[field - 1],))))
    response = etree.Element(f"{{{TWF}}}SearchResponse", nsmap={None: TWF})
    etree.SubElement(response, f"{{{TWF}}}SearchResult")
    data = etree.SubElement(response, f"{{{TWF}}}data")
    etree.SubElement(data, f"{{{TWF}}}TotalRows").text = str(len(items))
    columns = etree.SubElement(data, f"{{{TWF}}}Columns")
    for name in ("Code", "Naam"):
        etree.SubElement(columns, f"{{{TWF}}}string").text = name
    listed = etree.SubElement(data, f"{{{TWF}}}Items")
    for item in items[first - 1:first - 1 + min(max_rows, max_rows_cap)]:
        row = etree.SubElement(listed, f"{{{TWF}}}ArrayOfString")
        for value in item:
            etree.SubElement(row, f"{{{TWF}}}string").text = value
    return response


def _search_error(code: str, text: str) -> etree._Element:
    response = etree.Element(f"{{{TWF}}}SearchResponse", nsmap={None: TWF})
    message = etree.SubElement(etree.SubElement(response, f"{{{TWF}}}SearchResult"), f"{{{TWF}}}MessageOfErrorCodes")
    for tag, value in (("Type", "Error"), ("Text", text), ("Code", code)):
        etree.SubElement(message, f"{{{TWF}}}{tag}").text = value
    return response
