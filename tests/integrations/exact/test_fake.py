"""The local Exact Online (tests/fakes/exact.py) through plain HTTP, the way a client of Exact sees it:
consent and token rules, OData paging and $select, /Date(ms)/ and amounts, sync cursors and deletes,
rate-limit headers and 429, the hourly error limit, booking a payment (also when the answer is lost),
and webhooks with their validation POST and HashCode."""
import hashlib
import hmac
import json
import re
import threading
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fakes.exact import FakeExact

CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET = "b81cc4de-d192-400e-bcb4-09254394c52a", "cs-Exact!4", "whsec-exact"
REDIRECT_URI = "http://127.0.0.1/exact/callback"
DIVISION = 3141592


@pytest.fixture
def exact():
    with FakeExact(CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET, redirect_uri=REDIRECT_URI) as fake:
        fake.add_division(DIVISION, "Bakkerij de Boer B.V.")
        yield fake


def consent(exact, state="s-1") -> str:
    """The user's browser: the consent page, the Authorize button, back to the redirect URI with a code."""
    page = requests.get(f"{exact.url}/api/oauth2/auth", params={
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "state": state})
    assert page.status_code == 200 and 'data-testid=\'exact-consent-accept\'' in page.text
    action = re.search(r"action='([^']+)'", page.text).group(1).replace("&amp;", "&")
    back = requests.post(exact.url + action, data={"decision": "accept"}, allow_redirects=False)
    assert back.status_code == 302
    location = urlsplit(back.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def token(exact, **form) -> requests.Response:
    return requests.post(f"{exact.url}/api/oauth2/token",
                         data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}, timeout=5)


def connect(exact) -> dict:
    answer = token(exact, grant_type="authorization_code", code=consent(exact), redirect_uri=REDIRECT_URI)
    assert answer.status_code == 200
    return answer.json()


def api(exact, tokens, path, method="GET", **kwargs) -> requests.Response:
    url = path if path.startswith("http") else f"{exact.url}/api/v1/{path}"
    return requests.request(method, url, headers={"Authorization": f"Bearer {tokens['access_token']}",
                                                  "Accept": "application/json"}, timeout=5, **kwargs)


def as_decimal(response) -> dict:
    return json.loads(response.text, parse_float=Decimal)


# OAuth.
def test_consent_and_code_exchange_give_tokens_as_exact_does(exact):
    code = consent(exact)
    answer = token(exact, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    body = answer.json()
    assert answer.status_code == 200 and body["expires_in"] == "600" and body["token_type"] == "bearer"
    assert "!" in body["refresh_token"]  # a client must form-encode it
    me = api(exact, body, "current/Me").json()["d"]["results"][0]
    assert me["CurrentDivision"] == DIVISION
    again = token(exact, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    assert again.status_code == 400  # a code is single-use


def test_refresh_before_570_seconds_is_refused_and_the_refresh_token_survives(exact):
    tokens = connect(exact)
    exact.advance(569)
    early = token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert early.status_code == 400
    assert early.json() == {"error": "access_denied",
                            "error_description": "Rate limit exceeded: access_token not expired"}
    assert early.headers["Reason"].startswith("TooEarlyToRefreshTokens")
    exact.advance(1)
    fresh = token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert fresh.status_code == 200 and fresh.json()["refresh_token"] != tokens["refresh_token"]


def test_a_refresh_token_is_single_use(exact):
    tokens = connect(exact)
    exact.advance(570)
    assert token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200
    exact.advance(600)
    reused = token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert reused.status_code == 401
    assert reused.json() == {"error": "unauthorized_client", "error_description": "Old refresh token used."}


def test_ten_concurrent_refreshes_with_one_token_give_one_success_and_old_refresh_token_used(exact):
    tokens = connect(exact)
    exact.advance(600)
    results = []

    def refresh():
        results.append(token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code)

    threads = [threading.Thread(target=refresh) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [401] * 9
    assert [c["status"] for c in exact.token_calls].count(401) == 9


def test_an_access_token_lives_600_seconds(exact):
    tokens = connect(exact)
    exact.advance(599)
    assert api(exact, tokens, "current/Me").status_code == 200
    exact.advance(1)
    assert api(exact, tokens, "current/Me").status_code == 401


def test_a_refresh_token_unused_for_30_days_expires(exact):
    tokens = connect(exact)
    exact.advance(30 * 86400 + 1)
    expired = token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_request"
    assert re.fullmatch(r"The refresh token expired at \d+/\d+/\d{4} \d+:\d\d:\d\d [AP]M and it is now .+\.",
                        expired.json()["error_description"])


def test_token_calls_beyond_the_day_budget_are_refused_until_the_next_day(exact):
    # The calls below span 19 minutes of the fake's clock: they start an hour into a UTC day, so
    # that they never straddle its midnight, whenever the test runs (run at 23:45 UTC, the budget
    # started again between the third call and the fourth).
    exact.advance(86400 - exact.now() % 86400 + 3600)
    exact.token_day_limit = 3
    tokens = connect(exact)  # call 1
    exact.advance(570)
    tokens = token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()  # call 2
    assert token(exact, grant_type="refresh_token", refresh_token="stampNL001.never!issued").status_code == 400
    exact.advance(570)
    refused = token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"])  # call 4
    assert refused.status_code == 400 and refused.json()["error"] == "access_denied"
    assert len(exact.token_calls) == 4 and exact.token_calls[-1]["status"] == 400
    exact.advance(86400)
    assert token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200


def test_a_failed_token_call_is_not_executed(exact):
    tokens = connect(exact)
    exact.advance(570)
    exact.fail_next(1, status=503)
    assert token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 503
    assert token(exact, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200


# OData.
def test_select_is_required_unless_top_is_one(exact):
    tokens = connect(exact)
    answer = api(exact, tokens, f"{DIVISION}/vat/VATCodes")
    assert answer.status_code == 400
    assert answer.json() == {"error": {"code": "", "message": {
        "lang": "", "value": "Please add a $select or a $top=1 statement to the query string."}}}
    assert len(api(exact, tokens, f"{DIVISION}/vat/VATCodes", params={"$top": "1"}).json()["d"]["results"]) == 1
    codes = api(exact, tokens, f"{DIVISION}/vat/VATCodes", params={"$select": "Code,Percentage,Type"}).json()
    assert {(c["Code"].strip(), c["Percentage"]) for c in codes["d"]["results"]} >= {("2", 0.21), ("5", 0.09)}
    assert set(codes["d"]["results"][0]) == {"Code", "Percentage", "Type"}


def test_regular_endpoints_page_by_60_with_next_links_and_need_a_filter(exact):
    for n in range(130):
        exact.add_account(f"Klant {n}", code=n + 1)
    tokens = connect(exact)
    unfiltered = api(exact, tokens, f"{DIVISION}/crm/Accounts", params={"$select": "ID"})
    assert unfiltered.status_code == 400  # mandatory filtering where a sync API exists
    pages, url, params = [], f"{DIVISION}/crm/Accounts", {"$select": "ID,Code,Name", "$filter": "Status eq 'C'"}
    while url:
        body = api(exact, tokens, url, params=params).json()["d"]
        pages.append(body["results"])
        url, params = body.get("__next"), None  # followed verbatim
    assert [len(p) for p in pages] == [60, 60, 10]
    assert len({a["ID"] for p in pages for a in p}) == 130


def test_account_codes_are_18_characters_right_aligned_and_filterable(exact):
    account = exact.add_account("Northwind Traders B.V.", code=25)
    tokens = connect(exact)
    assert account["Code"] == " " * 16 + "25"
    for condition in ("Code eq '                25'", "trim(Code) eq '25'"):
        found = api(exact, tokens, f"{DIVISION}/crm/Accounts", params={"$select": "ID,Code", "$filter": condition})
        assert found.json()["d"]["results"] == [{"ID": account["ID"], "Code": account["Code"]}]


def test_dates_are_ms_since_1970_and_amounts_json_numbers_with_credit_notes_negative(exact):
    account = exact.add_account("Northwind")
    invoice = exact.add_invoice(account, [("Consultancy", 10, "95.00", "2"), ("Boeken", 3, "19.99", "5")],
                                invoice_date=date(2026, 1, 15))
    credit = exact.add_invoice(account, [("Consultancy", 2, "95.00", "2")], credits=invoice,
                               invoice_date=date(2026, 1, 20))
    tokens = connect(exact)
    one = api(exact, tokens, f"{DIVISION}/salesinvoice/SalesInvoices(guid'{invoice['InvoiceID']}')",
              params={"$select": "InvoiceDate,AmountFC,AmountFCExclVat,VATAmountFC,Type,Status"})
    assert as_decimal(one) == {"d": {"InvoiceDate": "/Date(1768435200000)/", "AmountFC": Decimal("1214.87"),
                                     "AmountFCExclVat": Decimal("1009.97"), "VATAmountFC": Decimal("204.90"),
                                     "Type": 8020, "Status": 50}}
    credited = as_decimal(api(exact, tokens, f"{DIVISION}/salesinvoice/SalesInvoices", params={
        "$select": "Type,AmountFC", "$filter": f"InvoiceID eq guid'{credit['InvoiceID']}'"}))
    assert credited["d"]["results"] == [{"Type": 8021, "AmountFC": Decimal("-229.90")}]
    # Exact links a credit note to its invoice only by matching their receivables.
    receivables = as_decimal(api(exact, tokens, f"{DIVISION}/cashflow/Receivables",
                                 params={"$select": "InvoiceNumber,AmountDC,IsFullyPaid,Status"}))
    assert sorted(receivables["d"]["results"], key=lambda r: r["InvoiceNumber"]) == [
        {"InvoiceNumber": invoice["InvoiceNumber"], "AmountDC": Decimal("1214.87"), "IsFullyPaid": False, "Status": 20},
        {"InvoiceNumber": credit["InvoiceNumber"], "AmountDC": Decimal("-229.90"), "IsFullyPaid": True, "Status": 50}]
    open_items = as_decimal(api(exact, tokens, f"{DIVISION}/read/financial/ReceivablesList",
                                params={"$select": "InvoiceNumber,Amount"}))
    assert open_items["d"]["results"] == [{"InvoiceNumber": invoice["InvoiceNumber"], "Amount": Decimal("984.97")}]


# Sync.
def sync(exact, tokens, endpoint, after, select):
    rows, url, params = [], f"{DIVISION}/sync/{endpoint}", {"$select": select, "$filter": f"Timestamp gt {after}L"}
    while url:
        body = api(exact, tokens, url, params=params).json()["d"]
        rows += body["results"]
        url, params = body.get("__next"), None
    return rows


def test_sync_returns_what_changed_after_a_timestamp_and_deletes_come_from_sync_deleted(exact):
    exact.sync_page_size = 50
    account = exact.add_account("Northwind")
    invoices = [exact.add_invoice(account, [("Regel A", 1, "10.00", "2"), ("Regel B", 2, "5.00", "5")])
                for _ in range(40)]
    tokens = connect(exact)
    rows = sync(exact, tokens, "SalesInvoice/SalesInvoices", 1, "Timestamp,InvoiceID,InvoiceNumber,LineNumber,AmountFC")
    assert len(rows) == 120  # a header row (LineNumber 0) and a row per line, over three pages
    assert {r["LineNumber"] for r in rows} == {0, 1, 2}
    assert all(r["InvoiceNumber"] for r in rows)  # the header's fields repeated on the lines
    cursor = max(r["Timestamp"] for r in rows)
    assert cursor > 2 ** 32
    assert sync(exact, tokens, "SalesInvoice/SalesInvoices", cursor, "Timestamp") == []

    newer = exact.add_invoice(account, [("Regel C", 1, "7.50", "2")])
    exact.delete_invoice(invoices[0])
    changed = sync(exact, tokens, "SalesInvoice/SalesInvoices", cursor, "Timestamp,InvoiceID")
    assert {r["InvoiceID"] for r in changed} == {newer["InvoiceID"]}
    deleted = sync(exact, tokens, "Deleted", cursor, "Timestamp,EntityKey,EntityType")
    assert {"EntityKey": invoices[0]["InvoiceID"], "EntityType": 13} in [
        {k: d[k] for k in ("EntityKey", "EntityType")} for d in deleted]
    other_filter = api(exact, tokens, f"{DIVISION}/sync/CRM/Accounts",
                       params={"$select": "ID", "$filter": "Name eq 'Northwind'"})
    assert other_filter.status_code == 400  # only Timestamp may be filtered on a sync endpoint


def test_a_matched_bank_transfer_shows_in_transaction_lines_and_the_receivable(exact):
    account = exact.add_account("Northwind")
    invoice = exact.add_invoice(account, [("Consultancy", 1, "100.00", "2")])
    tokens = connect(exact)
    cursor = max(r["Timestamp"] for r in sync(exact, tokens, "Financial/TransactionLines", 1, "Timestamp"))
    exact.pay(invoice, "50.00", paid_on=date(2026, 11, 20))
    lines = as_decimal(api(exact, tokens, f"{DIVISION}/sync/Financial/TransactionLines", params={
        "$select": "Type,Account,AmountDC,InvoiceNumber", "$filter": f"Timestamp gt {cursor}L"}))["d"]["results"]
    assert {"Type": 40, "Account": account["ID"], "AmountDC": Decimal("-50.00"),
            "InvoiceNumber": invoice["InvoiceNumber"]} in lines
    receivable = exact.receivable(invoice)
    assert receivable["IsFullyPaid"] is False and receivable["LastPaymentDate"] == date(2026, 11, 20)
    exact.pay(invoice, "71.00")
    assert exact.receivable(invoice)["IsFullyPaid"] is True


# Booking a payment from the portal.
def _bank_entry(account, invoice, reference):
    return {"JournalCode": "20", "BankEntryLines": [{
        "Account": account["ID"], "AmountFC": -121.00, "OurRef": invoice["InvoiceNumber"], "Date": "2026-11-27T00:00",
        "Description": f"Portal payment {reference}", "Notes": reference}]}


def test_a_posted_bank_entry_is_booked_matched_and_findable_by_its_reference(exact):
    account = exact.add_account("Northwind")
    invoice = exact.add_invoice(account, [("Consultancy", 1, "100.00", "2")])
    tokens = connect(exact)
    created = api(exact, tokens, f"{DIVISION}/financialtransaction/BankEntries", "POST",
                  json=_bank_entry(account, invoice, "portal-pay-17"))
    assert created.status_code == 201 and created.json()["d"]["EntryID"]
    assert exact.receivable(invoice)["IsFullyPaid"] is True
    found = api(exact, tokens, f"{DIVISION}/financialtransaction/BankEntryLines",
                params={"$select": "EntryID,OurRef,AmountFC", "$filter": "Notes eq 'portal-pay-17'"})
    assert found.json()["d"]["results"] == [{"EntryID": created.json()["d"]["EntryID"],
                                             "OurRef": invoice["InvoiceNumber"], "AmountFC": -121.0}]
    refused = api(exact, tokens, f"{DIVISION}/financialtransaction/BankEntries", "POST",
                  json={"JournalCode": "70", "BankEntryLines": []})
    assert refused.status_code == 400 and refused.json()["error"]["message"]["value"]


def test_a_bank_entry_answered_too_late_has_been_booked_all_the_same(exact):
    account = exact.add_account("Northwind")
    invoice = exact.add_invoice(account, [("Consultancy", 1, "100.00", "2")])
    tokens = connect(exact)
    exact.delay_next(1, seconds=1.0)
    with pytest.raises(requests.Timeout):
        requests.post(f"{exact.url}/api/v1/{DIVISION}/financialtransaction/BankEntries",
                      json=_bank_entry(account, invoice, "portal-pay-18"),
                      headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=0.3)
    assert [e["BankEntryLines"][0]["Notes"] for e in exact.bank_entries] == ["portal-pay-18"]
    found = api(exact, tokens, f"{DIVISION}/financialtransaction/BankEntryLines",
                params={"$select": "EntryID", "$filter": "Notes eq 'portal-pay-18'"})
    assert len(found.json()["d"]["results"]) == 1


# Limits.
def test_rate_limit_headers_count_down_and_a_429_names_only_the_limit_hit(exact):
    exact.minute_limit = 5
    tokens = connect(exact)
    remaining = [int(api(exact, tokens, "current/Me").headers["X-RateLimit-Minutely-Remaining"]) for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    hit = api(exact, tokens, "current/Me")
    assert hit.status_code == 429 and hit.content == b""
    assert "X-RateLimit-Minutely-Reset" in hit.headers and "X-RateLimit-Limit" not in hit.headers
    reset_ms = int(hit.headers["X-RateLimit-Minutely-Reset"])
    assert 0 < reset_ms / 1000 - exact.now() <= 60
    assert exact.calls["current/Me"] == 5  # the refused call is not counted
    exact.advance(60)
    assert api(exact, tokens, "current/Me").status_code == 200


def test_the_day_budget_is_per_division_and_resets_at_midnight_utc(exact):
    exact.day_limit = 2
    tokens = connect(exact)
    first = api(exact, tokens, "current/Me")
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert int(first.headers["X-RateLimit-Reset"]) % 86_400_000 == 0
    api(exact, tokens, "current/Me")
    hit = api(exact, tokens, "current/Me")
    assert hit.status_code == 429 and "X-RateLimit-Reset" in hit.headers
    assert "X-RateLimit-Minutely-Remaining" not in hit.headers
    assert exact.calls_today(DIVISION) == 2
    exact.advance(86400)
    assert api(exact, exact.grant(), "current/Me").status_code == 200  # the old access token has expired


def test_more_than_ten_errors_in_an_hour_block_the_app_for_an_hour(exact):
    tokens = connect(exact)
    missing = f"{DIVISION}/crm/Accounts(guid'00000000-0000-0000-0000-000000000001')"
    statuses = [api(exact, tokens, missing, params={"$select": "ID"}).status_code for _ in range(11)]
    assert statuses == [404] * 11
    blocked = api(exact, tokens, f"{DIVISION}/vat/VATCodes", params={"$select": "Code"})
    assert blocked.status_code == 429 and "errors" in blocked.json()["error"]["message"]["value"]
    exact.advance(3600)
    assert api(exact, exact.grant(), f"{DIVISION}/vat/VATCodes", params={"$select": "Code"}).status_code == 200


def test_ten_errors_do_not_block_and_an_endpoint_scope_leaves_other_endpoints_open(exact):
    exact.error_block_scope = "endpoint"
    tokens = connect(exact)
    missing = f"{DIVISION}/crm/Accounts(guid'00000000-0000-0000-0000-000000000001')"
    for _ in range(10):
        api(exact, tokens, missing, params={"$select": "ID"})
    assert api(exact, tokens, missing, params={"$select": "ID"}).status_code == 404  # the 11th still answers
    assert api(exact, tokens, f"{DIVISION}/crm/Accounts", params={"$select": "ID", "$filter": "Status eq 'C'"}
               ).status_code == 429
    assert api(exact, tokens, f"{DIVISION}/vat/VATCodes", params={"$select": "Code"}).status_code == 200


# Webhooks.
class Receiver:
    """A webhook endpoint of our own: records each POST's body and answers with `status`."""

    def __init__(self, status=200):
        self.status, self.bodies = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/exact"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_subscribing_validates_the_callback_with_an_empty_post_first(exact, receiver):
    tokens = connect(exact)
    created = api(exact, tokens, f"{DIVISION}/webhooks/WebhookSubscriptions", "POST",
                  json={"Topic": "SalesInvoices", "CallbackURL": receiver.url})
    assert created.status_code == 201 and receiver.bodies == [b""]
    listed = api(exact, tokens, f"{DIVISION}/webhooks/WebhookSubscriptions", params={"$select": "ID,Topic"})
    assert listed.json()["d"]["results"] == [{"ID": created.json()["d"]["ID"], "Topic": "SalesInvoices"}]
    gone = api(exact, tokens, f"{DIVISION}/webhooks/WebhookSubscriptions(guid'{created.json()['d']['ID']}')", "DELETE")
    assert gone.status_code == 204 and exact.subscriptions == {}


def test_a_callback_that_does_not_answer_2xx_is_refused(exact, receiver):
    receiver.status = 503
    tokens = connect(exact)
    refused = api(exact, tokens, f"{DIVISION}/webhooks/WebhookSubscriptions", "POST",
                  json={"Topic": "Accounts", "CallbackURL": receiver.url})
    assert refused.status_code == 500
    assert refused.json()["error"]["message"]["value"] == "Invalid: Post to callback URL endpoint returns 503"
    assert exact.subscriptions == {}


def test_a_notification_carries_the_key_and_a_hashcode_over_the_raw_content(exact, receiver):
    tokens = connect(exact)
    api(exact, tokens, f"{DIVISION}/webhooks/WebhookSubscriptions", "POST",
        json={"Topic": "SalesInvoices", "CallbackURL": receiver.url})
    key = "5b3b1f0a-0b49-4b2e-9d1e-3f2c7a1d2e10"
    [delivery] = exact.notify("SalesInvoices", DIVISION, key)
    assert delivery["status"] == 200
    raw = receiver.bodies[-1].decode()
    content, hash_code = re.fullmatch(r'\{"Content":(.*),"HashCode":"(.*)"\}', raw).groups()  # as picqer reads it
    assert hash_code == hmac.new(WEBHOOK_SECRET.encode(), content.encode(), hashlib.sha256).hexdigest().upper()
    event = json.loads(content)
    assert {k: event[k] for k in ("Topic", "Division", "Action", "Key")} == {
        "Topic": "SalesInvoices", "Division": DIVISION, "Action": "Update", "Key": key}
    assert event["ExactOnlineEndpoint"] == f"{exact.url}/api/v1/{DIVISION}/salesinvoice/SalesInvoices(guid'{key}')"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", event["EventCreatedOn"])
