"""The local Twinfield (tests/fakes/twinfield.py) through plain HTTP, the way a client of Twinfield sees it:
the OpenID Connect login and cluster discovery, SOAP ProcessXmlString and Finder Search with each request
the portal sends, API credits and 429, the one-action-per-organisation rule, and faults."""
import re
import threading
from base64 import b64encode
from datetime import date
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import pytest
import requests
from lxml import etree

from tests.fakes.twinfield import FakeTwinfield

CLIENT_ID, CLIENT_SECRET = "portal-test", "twf-secret!1"
REDIRECT_URI = "http://127.0.0.1/twinfield/callback"
SCOPE = "openid twf.user twf.organisationUser twf.organisation offline_access"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TWF = "http://www.twinfield.com/"
BASIC = "Basic " + b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


@pytest.fixture
def twinfield():
    with FakeTwinfield(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI) as fake:
        fake.add_office("NLA001", "Bakkerij de Boer B.V.")
        fake.add_office("NLA002", "De Boer Holding")
        fake.add_customer("NLA001", "Jansen B.V.", email="factuur@jansen.test", street="Kerkstraat 1",
                          postcode="1234 AB", city="Utrecht", due_days=14)
        yield fake


@pytest.fixture
def token(twinfield):
    return twinfield.grant()["access_token"]


def consent(twinfield, scope=SCOPE, state="s-1") -> str:
    query = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": scope,
             "state": state, "nonce": "n-1"}
    page = requests.get(f"{twinfield.base_url}/auth/authentication/connect/authorize", params=query, timeout=5)
    assert page.status_code == 200 and "data-testid='twinfield-consent-accept'" in page.text
    action = re.search(r"action='([^']+)'", page.text).group(1).replace("&amp;", "&")
    back = requests.post(twinfield.base_url + action, data={"decision": "accept"}, allow_redirects=False, timeout=5)
    location = urlsplit(back.headers["Location"])
    assert back.status_code == 302 and f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    assert parse_qs(location.query)["state"] == [state]
    return parse_qs(location.query)["code"][0]


def token_call(twinfield, auth=BASIC, **form) -> requests.Response:
    headers = {"Authorization": auth} if auth else {}
    return requests.post(f"{twinfield.base_url}/auth/authentication/connect/token", data=form, headers=headers,
                         timeout=5)


def envelope(token, office, body: str) -> bytes:
    header = f"<Header xmlns='{TWF}'>" + (f"<AccessToken>{token}</AccessToken>" if token else "") + \
             (f"<CompanyCode>{office}</CompanyCode>" if office else "") + "</Header>"
    return (f"<soap:Envelope xmlns:soap='{SOAP}'><soap:Header>{header}</soap:Header>"
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def process_xml(twinfield, token, xml: str, office="NLA001", url=None) -> requests.Response:
    body = f"<ProcessXmlString xmlns='{TWF}'><xmlRequest>{escape(xml)}</xmlRequest></ProcessXmlString>"
    return requests.post((url or twinfield.cluster_url) + "/webservices/processxml.asmx",
                         data=envelope(token, office, body), timeout=10,
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": '"http://www.twinfield.com/ProcessXmlString"'})


def answer(response) -> etree._Element:
    """The XML inside ProcessXmlStringResult."""
    assert response.status_code == 200, response.text
    result = etree.fromstring(response.content).findtext(f"{{{SOAP}}}Body/{{{TWF}}}ProcessXmlStringResponse/"
                                                         f"{{{TWF}}}ProcessXmlStringResult")
    return etree.fromstring(result.encode())


def fault_string(response) -> str:
    return etree.fromstring(response.content).findtext(f"{{{SOAP}}}Body/{{{SOAP}}}Fault/faultstring")


def finder(twinfield, token, kind, options=(), pattern="*", field=0, first=1, max_rows=100, office="NLA001"):
    pairs = "".join(f"<ArrayOfString><string>{k}</string><string>{v}</string></ArrayOfString>" for k, v in options)
    body = (f"<Search xmlns='{TWF}'><type>{kind}</type><pattern>{pattern}</pattern><field>{field}</field>"
            f"<firstRow>{first}</firstRow><maxRows>{max_rows}</maxRows><options>{pairs}</options></Search>")
    response = requests.post(twinfield.cluster_url + "/webservices/finder.asmx", data=envelope(token, office, body),
                             headers={"Content-Type": "text/xml; charset=utf-8",
                                      "SOAPAction": '"http://www.twinfield.com/Search"'}, timeout=5)
    assert response.status_code == 200, response.text
    return etree.fromstring(response.content).find(f"{{{SOAP}}}Body/{{{TWF}}}SearchResponse")


def items(search) -> list[list[str]]:
    return [[s.text for s in row] for row in search.iterfind(f"{{{TWF}}}data/{{{TWF}}}Items/{{{TWF}}}ArrayOfString")]


def columns(code, *specs) -> str:
    """A browse request: each spec is (field, operator, from, to) or a bare field to show."""
    parts = []
    for spec in specs:
        field, operator, start, end = (spec, "none", "", "") if isinstance(spec, str) else spec
        parts.append(f"<column><field>{field}</field><visible>true</visible><ask>true</ask>"
                     f"<operator>{operator}</operator><from>{start}</from><to>{end}</to></column>")
    return f"<columns code='{code}'>{''.join(parts)}</columns>"


def cells(browse) -> list[dict]:
    return [{td.get("field"): td.text or "" for td in tr.findall("td")} for tr in browse.findall("tr")]


# Login.
def test_code_exchange_with_basic_auth_gives_tokens_and_the_cluster_by_validation(twinfield):
    code = consent(twinfield)
    response = token_call(twinfield, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    body = response.json()
    assert response.status_code == 200 and body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    assert body["refresh_token"] and body["id_token"].count(".") == 2
    assert twinfield.token_calls[-1] == {"grant_type": "authorization_code", "status": 200, "code": code,
                                         "at": twinfield.token_calls[-1]["at"], "error": None}
    validation = requests.get(f"{twinfield.base_url}/auth/authentication/connect/accesstokenvalidation",
                              params={"token": body["access_token"]}, timeout=5)
    claims = validation.json()
    assert claims["twf.clusterUrl"] == twinfield.cluster_url == twinfield.base_url + "/cluster"
    assert claims["twf.organisationCode"] == "TWF-ORG-1" and claims["twf.organisationUserCode"] == "FENNA"
    assert claims["exp"] > 0
    again = token_call(twinfield, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}  # single use


def test_client_secret_in_the_body_works_and_a_wrong_one_does_not(twinfield):
    code = consent(twinfield)
    wrong = token_call(twinfield, auth="Basic " + b64encode(b"portal-test:nope").decode(),
                       grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    code = consent(twinfield)
    right = token_call(twinfield, auth=None, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI,
                       client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert right.status_code == 200


def test_consent_refuses_missing_scope_or_nonce_and_a_denial_returns_access_denied(twinfield):
    url = f"{twinfield.base_url}/auth/authentication/connect/authorize"
    base = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": SCOPE,
            "nonce": "n"}
    assert requests.get(url, params={**base, "scope": "openid twf.organisationUser"}, timeout=5).status_code == 400
    assert requests.get(url, params={k: v for k, v in base.items() if k != "nonce"}, timeout=5).status_code == 400
    assert requests.get(url, params={**base, "client_id": "other"}, timeout=5).status_code == 400
    denied = requests.post(url, params={**base, "state": "x"}, data={"decision": "deny"}, allow_redirects=False,
                           timeout=5)
    assert parse_qs(urlsplit(denied.headers["Location"]).query) == {"error": ["access_denied"], "state": ["x"]}
    without_offline = consent(twinfield, scope="openid twf.user twf.organisationUser twf.organisation")
    body = token_call(twinfield, grant_type="authorization_code", code=without_offline,
                      redirect_uri=REDIRECT_URI).json()
    assert "refresh_token" not in body


def test_refresh_tokens_last_rotate_when_asked_and_can_be_revoked(twinfield):
    refresh = twinfield.grant()["refresh_token"]
    first = token_call(twinfield, grant_type="refresh_token", refresh_token=refresh).json()
    assert first["refresh_token"] == refresh  # by default the same one, again and again
    twinfield.rotate_refresh_tokens = True
    rotated = token_call(twinfield, grant_type="refresh_token", refresh_token=refresh).json()["refresh_token"]
    assert rotated != refresh
    assert token_call(twinfield, grant_type="refresh_token", refresh_token=refresh).status_code == 400
    twinfield.revoke_refresh_tokens()
    revoked = token_call(twinfield, grant_type="refresh_token", refresh_token=rotated)
    assert revoked.status_code == 400 and revoked.json() == {"error": "invalid_grant"}


def test_an_expired_token_fails_validation_and_the_cluster(twinfield, token):
    twinfield.advance(3601)
    validation = requests.get(f"{twinfield.base_url}/auth/authentication/connect/accesstokenvalidation",
                              params={"token": token}, timeout=5)
    assert validation.status_code == 400
    response = process_xml(twinfield, token, "<list><type>offices</type></list>")
    assert response.status_code == 500 and fault_string(response) == "Access denied. Token invalid (code 354)."


# SOAP basics.
def test_the_cluster_is_only_at_the_discovered_url_and_needs_company_and_soapaction(twinfield, token):
    assert process_xml(twinfield, token, "<list><type>offices</type></list>",
                       url=twinfield.base_url).status_code == 404
    missing = process_xml(twinfield, token, "<list><type>offices</type></list>", office=None)
    assert missing.status_code == 500
    assert fault_string(missing) == "Toegang geweigerd. Company ontbreekt in request header."
    wrong_action = requests.post(twinfield.cluster_url + "/webservices/processxml.asmx",
                                 data=envelope(token, "NLA001", f"<ProcessXmlString xmlns='{TWF}'/>"),
                                 headers={"Content-Type": "text/xml", "SOAPAction": '"http://www.twinfield.com/X"'},
                                 timeout=5)
    assert wrong_action.status_code == 500 and "SOAPAction" in fault_string(wrong_action)


def test_offices_list_and_an_office_the_user_cannot_reach(twinfield, token):
    twinfield.add_office("NLA009", "Verboden B.V.", reachable=False)
    offices = answer(process_xml(twinfield, token, "<list><type>offices</type></list>"))
    assert offices.get("result") == "1"
    assert [(o.text, o.get("name")) for o in offices] == [("NLA001", "Bakkerij de Boer B.V."),
                                                          ("NLA002", "De Boer Holding")]
    refused = process_xml(twinfield, token, "<list><type>offices</type></list>", office="NLA009")
    assert refused.status_code == 500
    assert items(finder(twinfield, token, "OFF")) == [["NLA001", "Bakkerij de Boer B.V."],
                                                      ["NLA002", "De Boer Holding"]]
    no_access = finder(twinfield, token, "DIM", [("dimtype", "DEB"), ("office", "NLA009")])
    assert no_access.findtext(f".//{{{TWF}}}Code") == "NoAccessToOffice"


# Customers.
def test_customers_page_through_the_finder_and_read_as_dimensions(twinfield, token):
    for number in range(30):
        twinfield.add_customer("NLA001", f"Klant {number:02d}")
    first = finder(twinfield, token, "DIM", [("dimtype", "DEB"), ("office", "NLA001")], max_rows=25)
    assert first.findtext(f"{{{TWF}}}data/{{{TWF}}}TotalRows") == "31"
    assert [c.text for c in first.find(f"{{{TWF}}}data/{{{TWF}}}Columns")] == ["Code", "Naam"]
    second = finder(twinfield, token, "DIM", [("dimtype", "DEB")], first=26, max_rows=25)
    assert len(items(first)) == 25 and len(items(second)) == 6 and items(first)[0] == ["1000", "Jansen B.V."]
    assert len(items(finder(twinfield, token, "DIM", [("dimtype", "DEB")], max_rows=500))) == 31  # capped at 100
    unknown_option = finder(twinfield, token, "DIM", [("modifiedsince", "20260101000000")])
    assert unknown_option.findtext(f".//{{{TWF}}}Code") == "OptionNotAllowed"
    read = "<read><type>dimensions</type><office>NLA001</office><dimtype>DEB</dimtype><code>{}</code></read>"
    dimension = answer(process_xml(twinfield, token, read.format("1000")))
    assert dimension.get("result") == "1" and dimension.findtext("name") == "Jansen B.V."
    assert dimension.findtext("financials/duedays") == "14"
    address = dimension.find("addresses/address")
    assert (address.findtext("email"), address.findtext("field2"), address.findtext("postcode"),
            address.findtext("city"), address.findtext("country")) == \
        ("factuur@jansen.test", "Kerkstraat 1", "1234 AB", "Utrecht", "NL")
    missing = answer(process_xml(twinfield, token, read.format("9999")))
    assert missing.tag == "dimension" and missing.get("result") == "0" and missing.get("msgtype") == "error"


# VAT codes and daybooks.
def test_vat_codes_by_finder_and_read_with_dated_percentages(twinfield, token):
    assert items(finder(twinfield, token, "VAT")) == [["VH", "BTW Hoog"], ["VL", "BTW Laag"], ["VN", "BTW 0%"]]
    vat = answer(process_xml(twinfield, token, "<read><type>vat</type><office>NLA001</office><code>VL</code></read>"))
    assert vat.get("result") == "1" and vat.findtext("type") == "sales"
    assert [(p.findtext("date"), p.findtext("percentage")) for p in vat.findall("percentages/percentage")] == \
        [("20000101", "6.000000000"), ("20190101", "9.000000000")]


def test_daybooks_by_transaction_type_finder_and_bank_finder(twinfield, token):
    assert items(finder(twinfield, token, "TRS", [("office", "NLA001")])) == \
        [["BNK", "Standaard bank"], ["MEMO", "Memoriaal"], ["VRK", "Verkoopfactuur"]]
    assert items(finder(twinfield, token, "BNK")) == [["BNK", "Standaard bank"]]
    assert items(finder(twinfield, token, "TRS", [("category", "sales")])) == [["VRK", "Verkoopfactuur"]]


# Transactions.
def test_a_sales_invoice_reads_back_with_total_detail_and_vat_lines(twinfield, token):
    invoice = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "100.00", "VH"), ("Koek", "50.00", "VL")],
                                          date=date(2026, 3, 2))
    assert invoice["number"] == 202600001 and invoice["invoicenumber"] == "1"
    read = (f"<read><type>transaction</type><office>NLA001</office><code>VRK</code>"
            f"<number>{invoice['number']}</number></read>")
    transaction = answer(process_xml(twinfield, token, read))
    assert transaction.get("result") == "1" and transaction.get("location") == "final"
    assert transaction.findtext("header/period") == "2026/03" and transaction.findtext("header/duedate") == "20260316"
    lines = transaction.findall("lines/line")
    assert [(li.get("type"), li.findtext("dim1"), li.findtext("value"), li.findtext("debitcredit"))
            for li in lines] == [
        ("total", "1300", "175.50", "debit"), ("detail", "8020", "100.00", "credit"),
        ("detail", "8010", "50.00", "credit"), ("vat", "1530", "21.00", "credit"), ("vat", "1520", "4.50", "credit")]
    assert (lines[0].findtext("dim2"), lines[0].findtext("matchstatus"), lines[0].findtext("openvalue")) == \
        ("1000", "available", "175.50")
    missing = answer(process_xml(twinfield, token, read.replace(str(invoice["number"]), "202699999")))
    assert missing.get("result") == "0" and missing.get("msg")


BANK = """<transactions><transaction destiny="final" raisewarning="false"><header><office>NLA001</office>
<code>BNK</code><currency>EUR</currency><date>20260310</date></header><lines>
<line type="total"><dim1>1100</dim1><debitcredit>debit</debitcredit><value>{value}</value></line>
<line type="detail"><dim1>1300</dim1><dim2>{customer}</dim2><debitcredit>credit</debitcredit><value>{detail}</value>
<invoicenumber>1</invoicenumber><description>PORTAL-PAY-7</description></line></lines></transaction></transactions>"""


def test_posting_a_bank_transaction_echoes_it_with_number_and_line_ids(twinfield, token):
    posted = answer(process_xml(twinfield, token, BANK.format(value="60.00", detail="60.00", customer="1000")))
    transaction = posted.find("transaction")
    assert posted.get("result") == "1" and transaction.get("result") == "1"
    assert transaction.get("location") == "final" and transaction.findtext("header/number") == "202600001"
    assert [li.get("id") for li in transaction.findall("lines/line")] == ["1", "2"]
    assert twinfield.transaction("NLA001", "BNK", 202600001)["lines"][1]["description"] == "PORTAL-PAY-7"
    assert twinfield.requests[-1] == {"service": "processxml", "action": "transactions", "office": "NLA001",
                                      "status": 200, "credits": 3}


@pytest.mark.parametrize("value, detail, customer, where", [
    ("60.00", "59.99", "1000", "transaction"), ("60.00", "60.00", "4242", "dim2")])
def test_a_refused_bank_transaction_says_why_and_books_nothing(twinfield, token, value, detail, customer, where):
    posted = answer(process_xml(twinfield, token, BANK.format(value=value, detail=detail, customer=customer)))
    assert posted.get("result") == "0" and posted.find("transaction").get("result") == "0"
    flagged = posted.find("transaction") if where == "transaction" else posted.find("transaction/lines/line[2]/dim2")
    assert flagged.get("msgtype") == "error" and flagged.get("msg")
    if where == "transaction":
        assert flagged.get("msg") == "De boeking is niet in balans. Er ontbreekt 0.01 credit."
    assert twinfield.transactions("NLA001", "BNK") == []
    unknown_daybook = answer(process_xml(twinfield, token, BANK.replace("<code>BNK</code>", "<code>XYZ</code>")
                                         .format(value="1.00", detail="1.00", customer="1000")))
    assert unknown_daybook.find("transaction/header/code").get("msgtype") == "error"


# Matching.
def match_request(bank_number, invoice_number, value=None) -> str:
    def line(code, number, line_id, amount):
        extra = f"<matchvalue>{amount}</matchvalue>" if amount else ""
        return (f"<line><transcode>{code}</transcode><transnumber>{number}</transnumber>"
                f"<transline>{line_id}</transline>{extra}</line>")
    return (f"<match><set><office>NLA001</office><matchcode>170</matchcode><matchdate>20260310</matchdate><lines>"
            f"{line('BNK', bank_number, 2, f'-{value}' if value else None)}"
            f"{line('VRK', invoice_number, 1, value)}</lines></set></match>")


def test_a_partial_match_leaves_the_invoice_available_and_a_full_one_matches_both(twinfield, token):
    invoice = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "100.00", "VH")], date=date(2026, 3, 2))
    bank = answer(process_xml(twinfield, token, BANK.format(value="21.00", detail="21.00", customer="1000")))
    bank_number = bank.findtext("transaction/header/number")
    unbalanced = answer(process_xml(twinfield, token, match_request(bank_number, invoice["number"])))
    assert unbalanced.find("set").get("result") == "0"  # -21.00 and 121.00 do not add up to zero
    matched = answer(process_xml(twinfield, token, match_request(bank_number, invoice["number"], "21.00")))
    match_set = matched.find("set")
    assert match_set.get("result") == "1" and match_set.findtext("value") == "0.00"
    assert match_set.find("dimensions/dimension").get("matchnumber") == "1"
    assert [li.findtext("matchvalue") for li in match_set.findall("lines/line")] == ["-21.00", "21.00"]
    after = twinfield.transaction("NLA001", "VRK", invoice["number"])["lines"][0]
    assert (after["matchstatus"], after["open"], after["matchnumber"]) == ("available", Decimal("100.00"), None)
    twinfield.pay("NLA001", invoice["invoicenumber"], "100.00")
    paid = twinfield.transaction("NLA001", "VRK", invoice["number"])["lines"][0]
    second_bank = twinfield.transactions("NLA001", "BNK")[-1]["lines"][1]
    assert paid["matchstatus"] == second_bank["matchstatus"] == "matched"
    assert paid["matchnumber"] == second_bank["matchnumber"] == 2 and len(twinfield.match_sets("NLA001")) == 2
    again = answer(process_xml(twinfield, token, match_request(bank_number, invoice["number"], "1.00")))
    assert again.find("set").get("result") == "0" and again.find("set/lines").get("result") == "0"


def test_matching_a_line_that_does_not_exist_is_refused_on_that_line(twinfield, token):
    invoice = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "100.00", "VH")])
    refused = answer(process_xml(twinfield, token, match_request("202600077", invoice["number"], "10.00")))
    line = refused.find("set/lines/line")
    assert (line.get("result"), line.get("msg")) == ("0", "De regel bestaat niet.")


# Browse.
def test_browse_definition_and_customer_transactions_with_filters(twinfield, token):
    twinfield.add_customer("NLA001", "Pietersen")
    first = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "100.00", "VH")], date=date(2026, 1, 10))
    twinfield.add_sales_invoice("NLA001", "1001", [("Koek", "10.00", "VL")], date=date(2026, 2, 10),
                                destiny="temporary")
    twinfield.pay("NLA001", first["invoicenumber"], "21.00", date=date(2026, 2, 1), description="PORTAL-PAY-1")
    definition = answer(process_xml(twinfield, token,
                                    "<read><type>browse</type><office>NLA001</office><code>100</code></read>"))
    assert definition.findtext("name") == "Debiteurenkaart"
    assert "fin.trs.line.openvaluesigned" in [c.findtext("field") for c in definition.findall("columns/column")]
    shown = ("fin.trs.head.code", "fin.trs.head.number", "fin.trs.head.status", "fin.trs.line.dim2",
             "fin.trs.line.invnumber", "fin.trs.line.valuesigned", "fin.trs.line.openvaluesigned",
             "fin.trs.line.matchstatus", "fin.trs.line.datedue", "fin.trs.line.description")
    everything = answer(process_xml(twinfield, token, columns(
        "100", ("fin.trs.head.yearperiod", "between", "2026/01", "2026/12"), *shown)))
    assert everything.get("result") == "1" and everything.get("total") == "3"
    assert [td.text for td in everything.find("th")] == ["fin.trs.head.yearperiod", *shown]
    rows = cells(everything)
    assert rows[0]["fin.trs.line.openvaluesigned"] == "100.00" and rows[0]["fin.trs.line.valuesigned"] == "121.00"
    assert rows[2]["fin.trs.line.valuesigned"] == "-21.00" and rows[2]["fin.trs.line.matchstatus"] == "matched"
    key = everything.find("tr/key")
    assert [key.findtext(t) for t in ("office", "code", "number", "line")] == ["NLA001", "VRK", "202600001", "1"]
    assert everything.find("tr/td[@field='fin.trs.line.matchstatus']").get("name") == "Beschikbaar"

    def count(*filters):
        return int(answer(process_xml(twinfield, token, columns("100", "fin.trs.head.number", *filters)))
                   .get("total"))

    assert count(("fin.trs.head.yearperiod", "between", "2026/02", "2026/02")) == 2
    assert count(("fin.trs.head.code", "equal", "VRK", "")) == 2
    assert count(("fin.trs.line.matchstatus", "equal", "available", "")) == 2
    assert count(("fin.trs.head.status", "equal", "temporary", "")) == 1
    assert count(("fin.trs.head.status", "equal", "normal", "")) == 3
    assert count(("fin.trs.line.description", "like", "PORTAL-PAY-*", "")) == 1
    assert count(("fin.trs.line.description", "like", "%PAY%", "")) == 1
    assert count(("fin.trs.head.number", "between", "202600002", "202600002")) == 1
    unknown = answer(process_xml(twinfield, token, columns("100", "fin.trs.line.nonsense")))
    assert unknown.get("result") == "0" and unknown.get("msgtype") == "error"


def test_bank_browse_and_a_browse_too_large_for_twinfield(twinfield, token):
    invoice = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "100.00", "VH")])
    twinfield.pay("NLA001", invoice["invoicenumber"], "121.00", description="PORTAL-PAY-2")
    bank = answer(process_xml(twinfield, token, columns("410", "fin.trs.line.dim1", "fin.trs.line.valuesigned",
                                                        ("fin.trs.line.description", "like", "*PAY-2", ""))))
    assert cells(bank) == [{"fin.trs.line.dim1": "1300", "fin.trs.line.valuesigned": "-121.00",
                            "fin.trs.line.description": "PORTAL-PAY-2"}]
    twinfield.browse_row_limit = 1
    assert process_xml(twinfield, token, columns("100", "fin.trs.head.number")).status_code == 524


# Void.
def test_provisional_transactions_are_deleted_and_final_ones_reversed(twinfield):
    provisional = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "10.00", "VH")], destiny="temporary")
    twinfield.delete_provisional("NLA001", "VRK", provisional["number"])
    assert twinfield.transaction("NLA001", "VRK", provisional["number"]) is None
    final = twinfield.add_sales_invoice("NLA001", "1000", [("Brood", "10.00", "VH")])
    with pytest.raises(ValueError):
        twinfield.delete_provisional("NLA001", "VRK", final["number"])
    reversal = twinfield.reverse("NLA001", "VRK", final["number"])
    assert reversal["lines"][0]["debitcredit"] == "credit" and reversal["lines"][0]["matchstatus"] == "matched"
    assert twinfield.transaction("NLA001", "VRK", final["number"])["lines"][0]["matchstatus"] == "matched"


# Limits and faults.
def test_credits_per_minute_then_429_with_retry_after_until_the_next_minute(twinfield, token):
    twinfield.credit_limit_per_minute = 5
    for _ in range(5):
        assert process_xml(twinfield, token, "<list><type>offices</type></list>").status_code == 200
    refused = process_xml(twinfield, token, "<list><type>offices</type></list>")
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert twinfield.credits_used == 5 and twinfield.credits_this_minute() == 5
    twinfield.advance(60)
    assert process_xml(twinfield, token, "<list><type>offices</type></list>").status_code == 200
    twinfield.credit_limit_per_minute = 3  # one query used this minute, and a write costs three
    posted = process_xml(twinfield, token, BANK.format(value="1.00", detail="1.00", customer="1000"))
    assert posted.status_code == 429 and twinfield.requests[-1]["credits"] == 0
    assert twinfield.transactions("NLA001", "BNK") == []


def test_a_second_request_of_the_organisation_while_one_is_in_flight_gets_429(twinfield, token):
    twinfield.delay_next(1, 0.5)
    slow = threading.Thread(target=process_xml, args=(twinfield, token, "<list><type>offices</type></list>"))
    slow.start()
    for _ in range(50):
        if twinfield.in_flight[twinfield.organisation]:
            break
        threading.Event().wait(0.01)
    second = process_xml(twinfield, token, "<list><type>offices</type></list>")
    slow.join()
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    assert twinfield.max_concurrent[twinfield.organisation] == 2
    assert [r["status"] for r in twinfield.requests] == [429, 200]


def test_fail_next_answers_a_fault_unexecuted_and_delay_next_books_all_the_same(twinfield, token):
    twinfield.fail_next(1, 503)
    failed = process_xml(twinfield, token, BANK.format(value="5.00", detail="5.00", customer="1000"))
    assert failed.status_code == 503 and fault_string(failed)
    assert twinfield.transactions("NLA001", "BNK") == []
    twinfield.delay_next(1, 1.0)
    with pytest.raises(requests.Timeout):
        requests.post(twinfield.cluster_url + "/webservices/processxml.asmx", timeout=0.3,
                      data=envelope(token, "NLA001", f"<ProcessXmlString xmlns='{TWF}'><xmlRequest>"
                                    f"{escape(BANK.format(value='5.00', detail='5.00', customer='1000'))}"
                                    f"</xmlRequest></ProcessXmlString>"),
                      headers={"Content-Type": "text/xml; charset=utf-8",
                               "SOAPAction": '"http://www.twinfield.com/ProcessXmlString"'})
    assert len(twinfield.transactions("NLA001", "BNK")) == 1
    twinfield.fail_login_next(1, 502)
    assert token_call(twinfield, grant_type="refresh_token", refresh_token="x").status_code == 502
