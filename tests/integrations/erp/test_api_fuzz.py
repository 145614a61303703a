"""Property-based fuzzing of the GraphQL API (hypothesis-graphql, the generator Schemathesis uses
for GraphQL): queries and mutations built from the served schema, valid ones and invalid ones,
with numbers, dates and strings of every shape. Whatever arrives, the answer is never a 5xx and
never an internal error: it is data, or errors that say what is wrong."""
import datetime
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from integrations.erp.api import schema_sdl
from tests.integrations.erp.api_support import CLIENT_INPUT, UPSERT_CLIENT, gql, make_token

SDL = schema_sdl()
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
SCALARS = {
    "Decimal": st.one_of(st.decimals(allow_nan=False, allow_infinity=False, places=2,
                                     min_value=-10**13, max_value=10**13).map(str),
                         st.sampled_from(["1e400", "NaN", "-0", "12.345", "", "1,50", "Infinity"]), TEXT
                         ).map(nodes.String),
    "Date": st.one_of(st.dates(min_value=datetime.date(1, 1, 1)).map(datetime.date.isoformat),
                      st.sampled_from(["2026-02-30", "0000-01-01", "26-11-2026"]), TEXT).map(nodes.String),
    "DateTime": st.one_of(st.datetimes(timezones=st.sampled_from([datetime.timezone.utc, None])).map(
        datetime.datetime.isoformat), TEXT).map(nodes.String),
}
IDS = st.sampled_from(["C-100", "INV-1", "", "x" * 101, "Ω", "\x00"])
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture
def api(client, connection):
    token = make_token(connection)
    assert gql(client, token, UPSERT_CLIENT, {"input": CLIENT_INPUT}).status_code == 200
    return lambda query: gql(client, token, query)


def _check(response):
    assert response.status_code < 500, response.content[:500]
    body = response.json()
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
    assert "INTERNAL" not in codes, body


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE])
def test_no_query_gets_a_server_error(api, mode):
    @FUZZ
    @given(from_schema(SDL, custom_scalars=SCALARS, mode=mode, fields=["clients", "invoices", "invoice",
                                                                       "creditNotes", "payments", "paymentsSince"]))
    def run(query):
        _check(api(query))

    run()


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE])
def test_no_mutation_gets_a_server_error(api, mode):
    @FUZZ
    @given(from_schema(SDL, custom_scalars=SCALARS, mode=mode, fields=[
        "upsertClient", "upsertInvoice", "voidInvoice", "createCreditNote", "recordPayment"]).filter(
        lambda q: str(q).lstrip().startswith("mutation") or True))
    def run(query):
        _check(api(query if str(query).lstrip().startswith("mutation") else f"mutation {query}"))

    run()


@FUZZ
@given(st.text(alphabet=string.printable, max_size=300))
def test_any_text_as_a_query_is_a_clear_refusal(client, connection, text):
    token = make_token(connection)
    _check(gql(client, token, text))
