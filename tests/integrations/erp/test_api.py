"""The GraphQL API at /api/graphql/ as a back-office system meets it: mutations that become the
same canonical events as webhooks (typed errors, idempotent), queries paged by cursor with a
bounded number of SQL statements, tokens with scopes and expiry, limits, errors that give
nothing away, every call audited."""
import datetime
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.erp import api_views
from integrations.erp.api import schema_sdl
from integrations.erp.models import ApiToken
from integrations.models import ClientLink
from invoices import services
from invoices.models import Invoice, Payment, PaymentAllocation
from portal.models import AuditEvent, WebhookRequest
from portal.rls import staff_scope
from tests.integrations.erp.api_support import (CLIENT_INPUT, RECORD_PAYMENT, UPSERT_CLIENT, UPSERT_INVOICE,
                                                 gql, invoice_input, make_token)

D = Decimal


@pytest.fixture
def token(connection):
    return make_token(connection)


@pytest.fixture
def known_client(client, token):
    answer = gql(client, token, UPSERT_CLIENT, {"input": CLIENT_INPUT}).json()
    assert answer["data"]["upsertClient"]["status"] == "APPLIED", answer
    return answer


def _data(response, name):
    assert response.status_code == 200, response.content
    body = response.json()
    assert "errors" not in body, body
    return body["data"][name]


def test_a_client_and_an_invoice_go_in_through_the_canonical_path_and_come_back_as_stored(
        client, connection, token, known_client):
    assert known_client["data"]["upsertClient"]["client"] == {
        "externalId": "C-100", "name": "Northwind Traders B.V.", "billingEmail": "finance@northwind.test",
        "address": {"city": "Amsterdam"}}
    answer = _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    assert (answer["status"], answer["duplicate"], answer["errors"]) == ("APPLIED", False, [])
    invoice = answer["invoice"]
    assert (invoice["externalId"], invoice["number"], invoice["status"], invoice["total"],
            invoice["openBalance"]) == ("INV-1", "2026-0001", "OPEN", "1208.33", "1208.33")
    assert invoice["client"] == {"externalId": "C-100"}
    assert invoice["lines"][1] == {"description": "Books", "quantity": "3.000", "unitPrice": "19.9900",
                                   "taxRate": "9.00", "lineTotal": "58.83"}
    assert invoice["taxBreakdown"] == [{"rate": "9.00", "base": "53.97", "tax": "4.86"},
                                       {"rate": "21.00", "base": "950.00", "tax": "199.50"}]
    with staff_scope():
        stored = list(WebhookRequest.objects.filter(source="graphql").values_list("account", "status"))
        assert stored == [("erp", "accepted"), ("erp", "accepted")]  # as webhooks are stored
        assert Invoice.objects.get(external_id="INV-1").connection_id == connection.pk
        calls = list(AuditEvent.objects.filter(action=AuditEvent.Action.API_CALL).order_by("id"))
    assert [(c.actor_email, c.details["operation"], c.details["events"], c.details["connection"]) for c in calls] == [
        ("api:erp", "mutation", ["client.upserted"], "erp"), ("api:erp", "mutation", ["invoice.updated"], "erp")]
    assert calls[0].details["token"].startswith("ptk_")


def test_totals_that_do_not_add_up_are_refused_at_the_field_and_nothing_is_stored(client, token, known_client):
    wrong = invoice_input(taxTotal="204.37")
    answer = _data(gql(client, token, UPSERT_INVOICE, {"input": wrong}), "upsertInvoice")
    assert answer["status"] == "REFUSED" and answer["invoice"] is None
    assert answer["errors"] == [{"field": ["input", "taxTotal"], "code": "INVALID",
                                 "message": "does not add up: the lines make 204.36"}]
    too_precise = invoice_input(lines=[{"description": "x", "quantity": "1", "unitPrice": "1.00001", "taxRate": "21"}])
    errors = _data(gql(client, token, UPSERT_INVOICE, {"input": too_precise}), "upsertInvoice")["errors"]
    assert {"field": ["input", "lines", "0", "unitPrice"], "code": "INVALID",
            "message": 'a unit price as a decimal string with at most 10 digits before the point and 4 after, '
                       'like "19.9950"'} in errors
    with staff_scope():
        assert WebhookRequest.objects.filter(source="graphql").count() == 1  # the client only
        assert not Invoice.objects.exists()


def test_an_unknown_client_or_invoice_is_named_not_waited_for(client, token, known_client):
    answer = _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input(clientExternalId="C-404")}),
                   "upsertInvoice")
    assert answer["errors"] == [{"field": ["input", "clientExternalId"], "code": "NOT_FOUND",
                                 "message": "no client with this external id; call upsertClient first"}]
    payment = {"externalId": "BANK-1", "clientExternalId": "C-100", "amount": "10.00", "currency": "EUR",
               "receivedAt": "2026-11-20T09:30:00Z", "allocations": [{"invoiceExternalId": "NOPE", "amount": "10"}]}
    errors = _data(gql(client, token, RECORD_PAYMENT, {"input": payment}), "recordPayment")["errors"]
    assert errors == [{"field": ["input", "allocations", "0", "invoiceExternalId"], "code": "NOT_FOUND",
                       "message": "no invoice with this external id"}]


def test_a_refusal_of_the_ledger_is_answered_with_its_reason(client, token, known_client):
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    void = """mutation { voidInvoice(input: {externalId: "INV-1", reason: "sent twice"}) {
      status errors { code message } invoice { status voidReason openBalance } } }"""
    assert _data(gql(client, token, void), "voidInvoice") == {
        "status": "APPLIED", "errors": [], "invoice": {"status": "VOID", "voidReason": "sent twice",
                                                       "openBalance": "0.00"}}
    corrected = invoice_input(notes="corrected", updatedAt=(timezone.now() + datetime.timedelta(minutes=1))
                              .isoformat())
    answer = _data(gql(client, token, UPSERT_INVOICE, {"input": corrected}), "upsertInvoice")
    assert answer["status"] == "REFUSED"
    assert answer["errors"] == [{"field": ["input"], "code": "REFUSED",
                                 "message": "invoice 2026-0001 is void and cannot change"}]


def test_an_older_version_is_ignored_and_says_so(client, token, known_client):
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input(updatedAt="2026-11-02T10:00:00Z")}),
          "upsertInvoice")
    older = invoice_input(purchaseOrder="OLD", updatedAt="2026-11-01T10:00:00Z")
    answer = _data(gql(client, token, UPSERT_INVOICE, {"input": older}), "upsertInvoice")
    assert (answer["status"], answer["invoice"]["number"]) == ("IGNORED", "2026-0001")
    assert answer["errors"][0]["code"] == "STALE" and "is not newer than the stored" in answer["errors"][0]["message"]
    with staff_scope():
        assert Invoice.objects.get().purchase_order == "PO-77"


def test_idempotency_key_replays_the_answer_and_refuses_other_content(client, token, known_client):
    first = _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}, key="inv-1-v1"), "upsertInvoice")
    again = _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}, key="inv-1-v1"), "upsertInvoice")
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["invoice"] == first["invoice"]
    other = _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input(notes="else")}, key="inv-1-v1"),
                  "upsertInvoice")
    assert other["errors"] == [{"field": ["Idempotency-Key"], "code": "IDEMPOTENCY_KEY_REUSED",
                                "message": "was used before for a different request; use a new key"}]
    with staff_scope():
        assert Invoice.objects.count() == 1
        assert AuditEvent.objects.filter(action=AuditEvent.Action.INVOICE_CREATED).count() == 1


def test_ten_identical_payments_at_once_record_one(committed, connection, token, known_client, client):
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    payment = {"externalId": "BANK-9", "clientExternalId": "C-100", "amount": "1208.33", "currency": "EUR",
               "receivedAt": "2026-11-20T09:30:00Z", "method": "BANK_TRANSFER", "reference": "2026-0001",
               "allocations": [{"invoiceExternalId": "INV-1", "amount": "1208.33"}]}
    start = threading.Barrier(10)

    def call(_):
        start.wait()
        try:
            return gql(HttpClient(), token, RECORD_PAYMENT, {"input": payment}).json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(call, range(10)))
    results = [a["data"]["recordPayment"] for a in answers]
    assert {r["status"] for r in results} == {"APPLIED"}
    assert sorted(r["duplicate"] for r in results) == [False] + [True] * 9
    assert len({r["payment"]["number"] for r in results}) == 1
    with staff_scope():
        assert Payment.objects.count() == 1
        assert Invoice.objects.get().status == Invoice.Status.PAID


def test_tokens_without_the_scope_expired_revoked_or_missing_get_a_typed_error(client, connection, known_client):
    read_only = make_token(connection, write=False)
    answer = gql(client, read_only, UPSERT_CLIENT, {"input": CLIENT_INPUT})
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN_SCOPE"
    write_only = make_token(connection, read=False)
    assert gql(client, write_only, "{ clients(first: 1) { edges { cursor } } }").json()["errors"][0][
        "extensions"]["code"] == "FORBIDDEN_SCOPE"
    expired = make_token(connection, expires_in=-datetime.timedelta(seconds=1))
    answer = gql(client, expired, "{ clients(first: 1) { edges { cursor } } }")
    assert (answer.status_code, answer.json()["errors"][0]["extensions"]["code"]) == (401, "TOKEN_EXPIRED")
    revoked = make_token(connection)
    with staff_scope():
        ApiToken.objects.filter(prefix=revoked[:12]).update(revoked_at=timezone.now())
    assert gql(client, revoked, "{ clients(first: 1) { edges { cursor } } }").json()["errors"][0][
        "extensions"]["code"] == "TOKEN_REVOKED"
    for missing in (None, "ptk_not-a-token"):
        answer = gql(client, missing, "{ clients(first: 1) { edges { cursor } } }")
        assert answer.status_code == 401 and answer["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/graphql/?query={clients{edges{cursor}}}").status_code == 405


def test_limits_refuse_before_anything_runs(client, connection, token, settings):
    too_deep = "{ invoices(first: 1) { edges { node { client { address { city } } lines { description } " \
               "creditNotes { lines { description } } } } } }"
    assert "errors" not in gql(client, token, too_deep).json()
    settings.GRAPHQL_MAX_DEPTH = 4
    api_views.schema.cache_clear()
    try:
        assert "exceeds maximum operation depth" in gql(client, token, too_deep).json()["errors"][0]["message"]
    finally:
        settings.GRAPHQL_MAX_DEPTH = 10
        api_views.schema.cache_clear()
    aliases = "{ " + " ".join(f"a{i}: clients(first: 1) {{ edges {{ cursor }} }}" for i in range(16)) + " }"
    assert "aliases" in gql(client, token, aliases).json()["errors"][0]["message"]
    big_page = gql(client, token, "{ invoices(first: 500) { edges { cursor } } }").json()
    assert big_page["errors"][0]["extensions"]["code"] == "BAD_PAGE_SIZE"
    costly = "{ " + " ".join(
        f"a{i}: invoices(first: 100) {{ edges {{ node {{ lines {{ description quantity unitPrice taxRate }} "
        f"creditNotes {{ lines {{ description quantity unitPrice taxRate lineTotal }} }} }} }} }}"
        for i in range(5)) + " }"
    answer = gql(client, token, costly).json()
    assert answer["errors"][0]["extensions"]["code"] == "TOO_COMPLEX" and "data" not in answer
    cycle = "query { clients(first: 1) { ...A } } fragment A on ClientConnection { ...B } " \
            "fragment B on ClientConnection { ...A }"
    assert gql(client, token, cycle).status_code == 400


def test_a_token_over_its_rate_waits(client, connection):
    slow = make_token(connection, rate=3)
    answers = [gql(client, slow, "{ clients(first: 1) { edges { cursor } } }") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert 1 <= int(answers[-1]["Retry-After"]) <= 60


def test_introspection_is_off_unless_enabled(client, token, settings):
    query = "{ __schema { types { name } } }"
    assert "data" in gql(client, token, query).json()
    settings.GRAPHQL_INTROSPECTION = False
    answer = gql(client, token, query).json()
    assert "introspection" in answer["errors"][0]["message"].lower() and "data" not in answer


def test_an_unexpected_failure_says_nothing_of_the_inside(client, token, known_client, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("psycopg: relation secret_table at 10.0.0.3")

    monkeypatch.setattr("integrations.erp.api._page", broken)
    answer = gql(client, token, "{ clients(first: 1) { edges { cursor } } }").json()
    assert answer["errors"] == [{"message": "internal error; it has been logged", "path": ["clients"],
                                 "extensions": {"code": "INTERNAL"}}]
    assert "secret_table" in caplog.text


def _ledger(connection, count):
    """`count` invoices of the connection's client, each with two lines, a credit note and a payment."""
    with staff_scope():
        link = ClientLink.objects.select_related("client").get(connection=connection)
        lines = [{"description": "Work", "quantity": D("2"), "unit": "", "unit_price": D("50.00"),
                  "discount_percent": D("0"), "tax_rate": D("21")},
                 {"description": "Books", "quantity": D("1"), "unit": "", "unit_price": D("10.00"),
                  "discount_percent": D("0"), "tax_rate": D("9")}]
        for n in range(count):
            invoice = services.invoice_create(
                client=link.client, brand=link.client.brand, connection=connection, external_id=f"N-{n}",
                number=f"N-{n:04d}", issue_date=datetime.date(2026, 10, 1), due_date=datetime.date(2026, 11, 1),
                currency="EUR", lines=lines, open_now=True)
            services.credit_note_create(invoice=invoice, number=f"CN-{n:04d}", issue_date=datetime.date(2026, 10, 5),
                                        lines=lines[1:], reason="books returned")
            services.payment_record(client=link.client, amount=D("50.00"), currency="EUR",
                                    source=Payment.Source.GATEWAY, method=Payment.Method.IDEAL,
                                    received_at=timezone.now(), allocations=[(invoice, D("50.00"))])


LIST = """query($after: String) { invoices(first: 100, after: $after) {
  edges { cursor node { number total openBalance status client { externalId name }
    lines { description lineTotal } taxBreakdown { rate tax }
    creditNotes { number total lines { description } taxBreakdown { rate } }
    payments { kind amount invoiceNumber } } }
  pageInfo { hasNextPage endCursor } } }"""


def test_a_hundred_invoices_with_everything_in_a_bounded_number_of_queries(client, connection, token, known_client):
    _ledger(connection, 120)
    with CaptureQueriesContext(connections["default"]) as captured:
        page = _data(gql(client, token, LIST), "invoices")
    assert len(page["edges"]) == 100 and page["pageInfo"]["hasNextPage"]
    node = page["edges"][0]["node"]
    assert node["creditNotes"][0]["lines"] == [{"description": "Books"}]
    assert node["payments"] == [{"kind": "PAYMENT", "amount": "50.00", "invoiceNumber": "N-0000"}]
    sql = [q for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    # token, scope, rate (cache), the page, lines, credit notes, their lines, allocations,
    # client ids, the audit row and the token's last use: the same for 1 invoice as for 100.
    assert len(sql) <= 12, "\n".join(q["sql"][:120] for q in sql)
    rest = _data(gql(client, token, LIST, {"after": page["pageInfo"]["endCursor"]}), "invoices")
    assert [e["node"]["number"] for e in rest["edges"]] == [f"N-{n:04d}" for n in range(100, 120)]
    assert rest["pageInfo"] == {"hasNextPage": False, "endCursor": rest["edges"][-1]["cursor"]}


def test_filters_narrow_the_list(client, connection, token, known_client):
    _ledger(connection, 3)
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    query = """query($f: InvoiceFilter) { invoices(first: 50, filter: $f) { edges { node { number } } } }"""

    def numbers(f):
        return [e["node"]["number"] for e in _data(gql(client, token, query, {"f": f}), "invoices")["edges"]]

    assert numbers({"status": ["OPEN"]}) == ["2026-0001"]  # the others are partly paid and credited
    assert numbers({"issued": {"start": "2026-11-01"}}) == ["2026-0001"]
    assert numbers({"total": {"min": "1000"}}) == ["2026-0001"]
    assert numbers({"number": "N-0001"}) == ["N-0001"]
    assert numbers({"clientExternalId": "C-404"}) == []
    bad = gql(client, token, "{ invoices(first: 5, after: \"bm9wZQ==\") { edges { cursor } } }").json()
    assert bad["errors"][0]["extensions"]["code"] == "BAD_CURSOR"


FEED = """query($cursor: String) { paymentsSince(cursor: $cursor, first: 2) {
  cursor hasMore entries { kind amount invoiceExternalId payment { number method source } } } }"""


def test_the_payments_feed_tells_portal_payments_refunds_and_chargebacks_in_order(
        client, connection, token, known_client, settings):
    settings.GRAPHQL_FEED_SETTLE_SECONDS = 0
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    mine = {"externalId": "BANK-1", "clientExternalId": "C-100", "amount": "8.33", "currency": "EUR",
            "receivedAt": "2026-11-20T09:30:00Z", "allocations": [{"invoiceExternalId": "INV-1", "amount": "8.33"}]}
    _data(gql(client, token, RECORD_PAYMENT, {"input": mine}), "recordPayment")
    with staff_scope():
        invoice = Invoice.objects.get(external_id="INV-1")
        payment, _ = services.payment_record(client=invoice.client, amount=D("1200.00"), currency="EUR",
                                             source=Payment.Source.GATEWAY, method=Payment.Method.CARD,
                                             received_at=timezone.now(), allocations=[(invoice, D("1200.00"))])
        services.payment_reverse(payment=payment, invoice=invoice, amount=D("100.00"))
        services.payment_reverse(payment=payment, invoice=invoice, amount=D("50.00"),
                                 kind=PaymentAllocation.Kind.CHARGEBACK)
    first = _data(gql(client, token, FEED), "paymentsSince")
    assert [(e["kind"], e["amount"]) for e in first["entries"]] == [("PAYMENT", "1200.00"), ("REFUND", "-100.00")]
    assert first["hasMore"] and first["entries"][0]["payment"]["number"].startswith("PAY-")
    second = _data(gql(client, token, FEED, {"cursor": first["cursor"]}), "paymentsSince")
    assert [(e["kind"], e["amount"]) for e in second["entries"]] == [("CHARGEBACK", "-50.00")]
    assert not second["hasMore"]
    third = _data(gql(client, token, FEED, {"cursor": second["cursor"]}), "paymentsSince")
    assert third == {"cursor": second["cursor"], "hasMore": False, "entries": []}


def test_the_feed_holds_back_what_may_not_have_settled(client, connection, token, known_client, settings):
    settings.GRAPHQL_FEED_SETTLE_SECONDS = 3600
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    with staff_scope():
        invoice = Invoice.objects.get(external_id="INV-1")
        services.payment_record(client=invoice.client, amount=D("10.00"), currency="EUR",
                                source=Payment.Source.GATEWAY, method=Payment.Method.CARD,
                                received_at=timezone.now(), allocations=[(invoice, D("10.00"))])
    assert _data(gql(client, token, FEED), "paymentsSince")["entries"] == []


def test_another_connections_records_are_not_seen(client, connection, token, known_client, committed):
    from integrations.models import Connection
    other = committed.create(lambda: Connection.objects.create(name="Other", slug="other", brand=connection.brand,
                                                               signing_secrets=""))
    stranger = make_token(other)
    _data(gql(client, token, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    assert _data(gql(client, stranger, "{ invoices(first: 5) { edges { cursor } } }"), "invoices")["edges"] == []
    assert _data(gql(client, stranger, "{ clients(first: 5) { edges { cursor } } }"), "clients")["edges"] == []
    refused = _data(gql(client, stranger, UPSERT_INVOICE, {"input": invoice_input()}), "upsertInvoice")
    assert refused["errors"][0]["code"] == "NOT_FOUND"


def test_the_schema_in_docs_is_the_schema_the_code_serves():
    path = Path(__file__).resolve().parents[3] / "docs" / "graphql" / "schema.graphql"
    assert path.read_text() == schema_sdl(), "run: .venv/bin/python manage.py graphql_schema"
