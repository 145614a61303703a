"""The local custom ERP (tests/fakes/erp.py) through plain HTTP, the way the pull adapter and the push
back of payments see it: REST with bearer auth, offset and Link paging and modified_since; OAuth2
client credentials (by Authlib, as the adapter uses it) and GraphQL with Relay paging; portal payments
told back idempotently; faults; and the /_fake/ control."""
import json
import threading
from base64 import b64encode
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.fakes.erp import FakeErp

REST_AUTH = {"Authorization": "Bearer erp-rest-token"}
INVOICES_PAGE = """
query Invoices($first: Int!, $after: String, $since: DateTime) {
  invoices(first: $first, after: $after, updatedSince: $since) {
    edges { cursor node { id customerId number date dueDate status totals { net vat gross }
                          vatBreakdown { rate base amount } lines { text qty price vat discount } updatedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount
  }
}"""
RECORD_PAYMENT = """
mutation Tell($input: PortalPaymentInput!) { recordPortalPayment(input: $input) { id duplicate } }"""


@pytest.fixture
def erp():
    with FakeErp() as fake:
        yield fake


def rest(erp, path, headers=REST_AUTH, **params) -> requests.Response:
    return requests.get(erp.rest_url + path, headers=headers, params=params, timeout=5)


def access_token(erp, scope=None) -> str:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    answer = requests.post(erp.token_url, data=form, auth=(erp.client_id, erp.client_secret), timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def graphql(erp, query, token, **variables) -> requests.Response:
    return requests.post(erp.graphql_url, json={"query": query, "variables": variables},
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)


def make_invoices(erp, n: int) -> list[str]:
    customer = erp.add_customer("Jansen B.V.")
    return [erp.add_invoice(customer["id"], [(f"Uur {i}", 1, "100.00", 21)])["id"] for i in range(n)]


# REST.
def test_rest_pages_by_offset_with_a_total_and_amounts_written_as_numbers_with_two_decimals(erp):
    ids = make_invoices(erp, 7)

    pages = [rest(erp, "invoices", offset=offset, limit=3) for offset in (0, 3, 6)]

    assert [p.status_code for p in pages] == [200, 200, 200]
    assert [[item["id"] for item in p.json()["items"]] for p in pages] == [ids[0:3], ids[3:6], ids[6:]]
    assert {p.json()["total"] for p in pages} == {7}
    assert '"gross": 121.00' in pages[0].text and '"qty": 1.00' in pages[0].text
    first = json.loads(pages[0].text, parse_float=Decimal)["items"][0]
    assert first["totals"] == {"net": Decimal("100.00"), "vat": Decimal("21.00"), "gross": Decimal("121.00")}
    assert first["date"].count("-") == 2 and first["modified"].endswith("Z")
    assert "Link" not in pages[2].headers


def test_rest_link_header_leads_through_every_page_and_keeps_modified_since(erp):
    ids = make_invoices(erp, 5)
    since = erp.records("invoices")[0]["modified"]

    seen, answer = [], rest(erp, "invoices", limit=2, modified_since=since)
    pages = 1
    while True:
        assert answer.status_code == 200
        seen += [item["id"] for item in answer.json()["items"]]
        if "next" not in answer.links:
            break
        assert answer.links["next"]["url"].startswith(erp.rest_url + "invoices?")
        assert "modified_since=" in answer.links["next"]["url"]
        answer = requests.get(answer.links["next"]["url"], headers=REST_AUTH, timeout=5)
        pages += 1

    assert seen == ids[1:] and pages == 2
    assert answer.json()["total"] == 4


def test_rest_default_limit_is_50_and_more_than_200_is_taken_as_200(erp):
    make_invoices(erp, 210)

    assert len(rest(erp, "invoices").json()["items"]) == 50
    big = rest(erp, "invoices", limit=500)
    assert len(big.json()["items"]) == 200
    assert parse_qs(urlsplit(big.links["next"]["url"]).query) == {"offset": ["200"], "limit": ["200"]}


def test_rest_modified_since_gives_only_records_changed_after_it(erp):
    sample = erp.sample_books()
    watermark = max(record["modified"] for record in erp.records("invoices"))
    assert rest(erp, "invoices", modified_since=watermark).json() == {"items": [], "total": 0}

    erp.advance(60)
    changed = erp.update("invoices", sample["invoices"][0]["id"], status="void")

    answer = rest(erp, "invoices", modified_since=watermark).json()
    assert [item["id"] for item in answer["items"]] == [changed["id"]]
    assert answer["items"][0]["status"] == "void" and answer["items"][0]["modified"] > watermark
    assert rest(erp, "invoices", modified_since="yesterday").status_code == 400


def test_rest_refuses_a_missing_or_wrong_bearer_token(erp):
    erp.add_customer()
    for headers in ({}, {"Authorization": "Bearer not-it"}, {"Authorization": "Basic ZXJwOmVycA=="}):
        answer = rest(erp, "customers", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert rest(erp, "customers").json()["total"] == 1


def test_rest_takes_basic_when_configured_and_an_oauth_access_token(erp):
    erp.add_customer()
    erp.basic_auth = ("erp", "s3cret")
    basic = {"Authorization": "Basic " + b64encode(b"erp:s3cret").decode()}
    assert rest(erp, "customers", headers=basic).status_code == 200
    assert rest(erp, "customers", headers={"Authorization": f"Bearer {access_token(erp)}"}).status_code == 200


def test_sample_books_follow_the_portals_money_rules(erp):
    sample = erp.sample_books()
    mixed = sample["invoices"][1]  # 3 × 19.95 at 9 %, 250.00 less 10 % at 21 %
    assert mixed["totals"] == {"net": Decimal("284.85"), "vat": Decimal("52.64"), "gross": Decimal("337.49")}
    assert mixed["vat_breakdown"] == [{"rate": Decimal("9"), "base": Decimal("59.85"), "amount": Decimal("5.39")},
                                      {"rate": Decimal("21"), "base": Decimal("225.00"), "amount": Decimal("47.25")}]
    assert [i["status"] for i in sample["invoices"]] == ["open", "open", "void"]
    assert sample["payments"][0]["allocations"][0] == {"invoice_id": sample["invoices"][0]["id"],
                                                       "amount": Decimal("242.00")}


# OAuth2 client credentials.
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_by_authlib_with_basic_or_post(erp, method):
    session = OAuth2Session(erp.client_id, erp.client_secret, token_endpoint_auth_method=method, scope="read")

    token = session.fetch_token(erp.token_url, grant_type="client_credentials")

    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600 and token["scope"] == "read"
    assert "refresh_token" not in token
    assert erp.token_calls[-1]["auth_method"] == ("basic" if method == "client_secret_basic" else "post")
    answer = session.post(erp.graphql_url, json={"query": "{ customers(first: 1) { totalCount } }"}, timeout=5)
    assert answer.json() == {"data": {"customers": {"totalCount": 0}}}


def test_token_endpoint_answers_as_rfc_6749_says(erp):
    def call(form, auth=None, **headers):
        return requests.post(erp.token_url, data=form, auth=auth, headers=headers, timeout=5)

    good = call({"grant_type": "client_credentials"}, auth=("erp-client", "erp-secret"))
    assert good.status_code == 200 and good.json()["scope"] == "read write"
    assert good.headers["Cache-Control"] == "no-store" and good.headers["Pragma"] == "no-cache"

    wrong = call({"grant_type": "client_credentials"}, auth=("erp-client", "nope"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    posted = call({"grant_type": "client_credentials", "client_id": "erp-client", "client_secret": "nope"})
    assert (posted.status_code, posted.json()["error"]) == (401, "invalid_client")
    both = call({"grant_type": "client_credentials", "client_secret": "erp-secret"}, auth=("erp-client", "erp-secret"))
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
    grant = call({"grant_type": "password"}, auth=("erp-client", "erp-secret"))
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    scope = call({"grant_type": "client_credentials", "scope": "read admin"}, auth=("erp-client", "erp-secret"))
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")
    json_body = requests.post(erp.token_url, json={"grant_type": "client_credentials"},
                              auth=("erp-client", "erp-secret"), timeout=5)
    assert (json_body.status_code, json_body.json()["error"]) == (400, "invalid_request")


def test_graphql_refuses_a_missing_unknown_or_expired_token(erp):
    erp.token_lifetime = 30
    token = access_token(erp)
    query = "{ customers(first: 1) { totalCount } }"
    assert graphql(erp, query, token).status_code == 200

    missing = requests.post(erp.graphql_url, json={"query": query}, timeout=5)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="erp"'
    assert graphql(erp, query, "made-up").status_code == 401

    erp.advance(31)
    expired = graphql(erp, query, token)
    assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    fresh = access_token(erp)
    assert graphql(erp, query, fresh).status_code == 200
    erp.expire_tokens()
    assert graphql(erp, query, fresh).status_code == 401


def test_a_read_token_may_query_but_not_record_a_payment(erp):
    token = access_token(erp, scope="read")
    answer = graphql(erp, RECORD_PAYMENT, token, input={"messageId": "m-1", "kind": "payment", "amount": "10.00",
                                                        "currency": "EUR"}).json()
    assert answer["data"] is None and answer["errors"][0]["extensions"]["code"] == "insufficient_scope"
    assert erp.received == []


# GraphQL.
def test_relay_paging_walks_every_page_with_strings_for_amounts_and_dd_mm_yyyy_dates(erp):
    ids = make_invoices(erp, 5)
    token = access_token(erp)

    seen, after, pages = [], None, []
    while True:
        page = graphql(erp, INVOICES_PAGE, token, first=2, after=after).json()["data"]["invoices"]
        pages.append(page["pageInfo"])
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["totalCount"] == 5
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert seen == ids and len(pages) == 3
    assert [p["hasPreviousPage"] for p in pages] == [False, True, True]
    node = graphql(erp, INVOICES_PAGE, token, first=1).json()["data"]["invoices"]["edges"][0]["node"]
    record = erp.records("invoices")[0]
    assert node["totals"] == {"net": "100.00", "vat": "21.00", "gross": "121.00"}
    assert node["date"] == "-".join(reversed(record["date"].split("-")))
    assert node["lines"][0] == {"text": "Uur 0", "qty": "1.00", "price": "100.00", "vat": "21.00", "discount": "0.00"}
    assert node["updatedAt"] == record["modified"]


def test_relay_update_since_and_a_record_changed_behind_the_cursor_comes_again(erp):
    ids = make_invoices(erp, 4)
    token = access_token(erp)
    first = graphql(erp, INVOICES_PAGE, token, first=2).json()["data"]["invoices"]
    erp.advance(10)
    erp.update("invoices", ids[0], status="void")

    rest_of_it = graphql(erp, INVOICES_PAGE, token, first=10, after=first["pageInfo"]["endCursor"]).json()
    assert [e["node"]["id"] for e in rest_of_it["data"]["invoices"]["edges"]] == [ids[2], ids[3], ids[0]]

    since = erp.records("invoices")[-2]["modified"]
    changed = graphql(erp, INVOICES_PAGE, token, first=10, since=since).json()["data"]["invoices"]
    assert [(e["node"]["id"], e["node"]["status"]) for e in changed["edges"]] == [(ids[0], "void")]

    empty = graphql(erp, INVOICES_PAGE, token, first=10, since="2999-01-01T00:00:00Z").json()["data"]["invoices"]
    assert empty["edges"] == [] and empty["pageInfo"]["endCursor"] is None and not empty["pageInfo"]["hasNextPage"]


def test_relay_refuses_a_negative_first_and_a_cursor_it_did_not_give(erp):
    token = access_token(erp)
    negative = graphql(erp, INVOICES_PAGE, token, first=-1).json()
    assert negative["data"] is None and "first" in negative["errors"][0]["message"]
    forged = graphql(erp, INVOICES_PAGE, token, first=1, after="bm90IGEgY3Vyc29y").json()
    assert "cursor" in forged["errors"][0]["message"]
    bad_since = graphql(erp, INVOICES_PAGE, token, first=1, since="tomorrow").json()
    assert "ISO 8601" in bad_since["errors"][0]["message"]


def test_graphql_is_real_graphql_aliases_fragments_and_introspection(erp):
    erp.sample_books()
    token = access_token(erp)
    query = """
    fragment Money on Payment { amount currency allocations { invoiceId amount } }
    { them: customers(first: 5) { edges { node { name address { city } } } }
      paid: payments(first: 5) { edges { node { ...Money paidAt } } }
      __type(name: "PortalPaymentInput") { inputFields { name } } }"""

    data = graphql(erp, query, token).json()["data"]

    assert [e["node"]["name"] for e in data["them"]["edges"]] == ["Jansen B.V.", "Smit & Zn"]
    assert data["paid"]["edges"][0]["node"]["amount"] == "300.00"
    assert {f["name"] for f in data["__type"]["inputFields"]} >= {"messageId", "kind", "invoiceNumbers", "amount"}
    unknown = graphql(erp, "{ customers(first: 1) { edges { node { nope } } } }", token)
    assert unknown.status_code == 200 and "nope" in unknown.json()["errors"][0]["message"]


# Portal payments told back.
def test_rest_portal_payment_is_recorded_once_per_idempotency_key(erp):
    body = {"type": "payment.recorded", "invoice": "2026-1001", "amount": "242.00"}
    headers = {**REST_AUTH, "Idempotency-Key": "msg-1", "X-Portal": "yes"}

    first = requests.post(erp.rest_url + "portal-payments", json=body, headers=headers, timeout=5)
    again = requests.post(erp.rest_url + "portal-payments", json=body, headers=headers, timeout=5)

    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert erp.booked("msg-1") == 1 and [a["replayed"] for a in erp.attempts("msg-1")] == [False, True]
    received = erp.received[0]
    assert received["body"] == body and received["headers"]["X-Portal"] == "yes"
    assert "Authorization" not in received["headers"]

    other = requests.post(erp.rest_url + "portal-payments", json={**body, "amount": "1.00"}, headers=headers,
                          timeout=5)
    assert other.status_code == 422 and erp.booked("msg-1") == 1
    for _ in range(2):
        requests.post(erp.rest_url + "portal-payments", json=body, headers=REST_AUTH, timeout=5)
    assert len(erp.received) == 3
    assert requests.post(erp.rest_url + "portal-payments", json=body, timeout=5).status_code == 401
    assert requests.post(erp.rest_url + "portal-payments", data="[1]", headers=REST_AUTH, timeout=5).status_code == 400


def test_graphql_portal_payment_is_idempotent_on_message_id_under_ten_concurrent_calls(erp):
    token = access_token(erp)
    payment = {"messageId": "msg-9", "kind": "refund", "invoiceNumbers": ["2026-1001"], "customerId": "C001",
               "amount": "50.00", "currency": "EUR", "paidAt": "2026-03-01T10:00:00Z", "reference": "R-1"}
    start = threading.Barrier(10)

    def tell():
        start.wait()
        return graphql(erp, RECORD_PAYMENT, token, input=payment).json()["data"]["recordPortalPayment"]

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: tell(), range(10)))

    assert len({a["id"] for a in answers}) == 1
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 9
    assert erp.booked("msg-9") == 1 and len(erp.attempts("msg-9")) == 10
    assert erp.received[0]["body"]["kind"] == "refund" and erp.received[0]["body"]["amount"] == "50.00"
    refused = graphql(erp, RECORD_PAYMENT, token, input={**payment, "messageId": "msg-10", "amount": "-5"}).json()
    assert refused["data"] is None and erp.booked("msg-10") == 0


# Faults.
def test_faults_fail_then_answer_and_a_429_says_when_to_come_back(erp):
    erp.add_customer()
    erp.fail_next(2)
    erp.rate_limit_next(1, retry_after=7)

    statuses = [rest(erp, "customers") for _ in range(4)]

    assert [s.status_code for s in statuses] == [500, 500, 429, 200]
    assert statuses[2].headers["Retry-After"] == "7"
    assert [r["status"] for r in erp.requests] == [500, 500, 429, 200]
    erp.fail_next(1, 503)
    token = access_token(erp)  # the token endpoint is not touched by fail_next
    assert graphql(erp, "{ customers(first: 1) { totalCount } }", token).status_code == 503
    erp.fail_token_next(1)
    assert requests.post(erp.token_url, data={"grant_type": "client_credentials"}, auth=("erp-client", "erp-secret"),
                         timeout=5).status_code == 500


def test_a_slow_answer_has_recorded_the_payment_and_the_retry_is_a_replay(erp):
    erp.delay_next(1, seconds=1.0)
    headers = {**REST_AUTH, "Idempotency-Key": "msg-slow"}
    with pytest.raises(requests.Timeout):
        requests.post(erp.rest_url + "portal-payments", json={"amount": "5.00"}, headers=headers, timeout=0.3)

    retry = requests.post(erp.rest_url + "portal-payments", json={"amount": "5.00"}, headers=headers, timeout=5)

    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert erp.booked("msg-slow") == 1


# Control over HTTP, and the session fixture.
def test_control_endpoints_change_the_books_read_what_came_and_arm_faults(erp):
    control = erp.base_url + "/_fake/"
    customer = requests.post(control + "records/customers", json={"name": "Bakker", "id": "C900"}, timeout=5)
    assert customer.status_code == 201 and customer.json()["id"] == "C900"
    invoice = requests.post(control + "records/invoices", timeout=5, json={
        "customer_id": "C900", "lines": [{"text": "Brood", "qty": 10, "price": "2.50", "vat": 9}]}).json()
    assert invoice["totals"] == {"net": 25.0, "vat": 2.25, "gross": 27.25}
    before = invoice["modified"]
    requests.post(control + "clock", json={"advance": 5}, timeout=5)
    patched = requests.patch(control + f"records/invoices/{invoice['id']}", json={"status": "void"}, timeout=5).json()
    assert patched["status"] == "void" and patched["modified"] > before

    requests.post(erp.rest_url + "portal-payments", json={"a": 1}, headers={**REST_AUTH, "Idempotency-Key": "k"},
                  timeout=5)
    seen = requests.get(control + "received", timeout=5).json()
    assert [r["key"] for r in seen["received"]] == ["k"] and len(seen["deliveries"]) == 1

    requests.post(control + "faults", json={"rate_limit": 1, "retry_after": 3}, timeout=5)
    assert rest(erp, "customers").status_code == 429
    token = access_token(erp)
    requests.post(control + "tokens/expire", timeout=5)
    assert graphql(erp, "{ customers(first: 1) { totalCount } }", token).status_code == 401

    requests.post(control + "reset", timeout=5)
    assert rest(erp, "customers").json() == {"items": [], "total": 0} and erp.received == []
    assert requests.get(control + "nothing", timeout=5).status_code == 404


def test_the_session_fixture_serves_both_flavours_after_a_reset(erp_server):
    erp_server.reset()
    erp_server.sample_books()
    assert rest(erp_server, "invoices").json()["total"] == 3
    token = access_token(erp_server)
    data = graphql(erp_server, "{ creditNotes(first: 5) { edges { node { invoiceId reason } } } }", token).json()
    assert data["data"]["creditNotes"]["edges"][0]["node"]["reason"] == "Eén boek retour"
    erp_server.reset()
