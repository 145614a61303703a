"""The pull adapter's mapping, without an ERP: money given as JSON numbers (read as Decimal, never a
float) and as strings becomes the canonical decimal strings; dates in ISO and DD-MM-YYYY; a value
with more decimals than the ledger keeps is refused, not rounded; and canned pages in each paging
style say where the next page starts."""
from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.erp.client import Answer
from integrations.erp.mapping import (Unmappable, coerce, map_record, mapping_problems, parse, record_key,
                                      version_later)
from integrations.erp.models import ErpFeed, ErpPull
from integrations.erp.pull import _next, record_text
from tests.integrations.erp.pull_support import GRAPHQL_FEEDS, REST_FEEDS

Entity = ErpFeed.Entity
REST_INVOICE = b"""{"id": "INV-1", "customer_id": "C1", "number": "2026-1", "date": "2026-11-02", "due": "2026-12-02",
 "currency": "EUR", "status": "open", "reference": null,
 "lines": [{"text": "Advies", "qty": 2.00, "price": 100.10, "vat": 21.00, "discount": 0.00},
           {"text": "Boek", "qty": 1, "price": 19.95, "vat": 9, "discount": 0}],
 "totals": {"net": 220.15, "vat": 43.84, "gross": 263.99},
 "vat_breakdown": [{"rate": 21.00, "base": 200.20, "amount": 42.04}, {"rate": 9.00, "base": 19.95, "amount": 1.80}],
 "modified": "2026-11-02T10:00:00Z"}"""
GRAPHQL_INVOICE = {"id": "INV-1", "customerId": "C1", "number": "2026-1", "date": "02-11-2026",
                   "dueDate": "02-12-2026", "currency": "EUR", "status": "open", "reference": "PO-9",
                   "lines": [{"text": "Advies", "qty": "2.00", "price": "100.10", "vat": "21.00", "discount": "0.00"},
                             {"text": "Boek", "qty": "1.00", "price": "19.95", "vat": "9.00", "discount": "0.00"}],
                   "totals": {"net": "220.15", "vat": "43.84", "gross": "263.99"},
                   "vatBreakdown": [{"rate": "21.00", "base": "200.20", "amount": "42.04"},
                                    {"rate": "9.00", "base": "19.95", "amount": "1.80"}],
                   "updatedAt": "2026-11-02T10:00:00Z"}
CANONICAL = {"external_id": "INV-1", "number": "2026-1", "client_external_id": "C1", "issue_date": "2026-11-02",
             "due_date": "2026-12-02", "currency": "EUR", "status": "open",
             "lines": [{"description": "Advies", "quantity": "2", "unit_price": "100.1", "tax_rate": "21",
                        "discount_percent": "0"},
                       {"description": "Boek", "quantity": "1", "unit_price": "19.95", "tax_rate": "9",
                        "discount_percent": "0"}],
             "tax_breakdown": [{"rate": "21", "base": "200.20", "tax": "42.04"},
                               {"rate": "9", "base": "19.95", "tax": "1.80"}],
             "subtotal": "220.15", "tax_total": "43.84", "total": "263.99", "updated_at": "2026-11-02T10:00:00Z"}


def test_money_given_as_json_numbers_is_read_as_decimal_and_written_at_two_places():
    record = parse(REST_INVOICE)
    assert isinstance(record["totals"]["gross"], Decimal) and record["totals"]["gross"] == Decimal("263.99")
    event = map_record(entity=Entity.INVOICES, mapping=REST_FEEDS[Entity.INVOICES][1], record=record)
    assert event == {"type": "invoice.updated", "data": CANONICAL}  # "reference": null is left out


def test_money_given_as_strings_and_dates_as_dd_mm_yyyy_map_to_the_same_event():
    event = map_record(entity=Entity.INVOICES, mapping=GRAPHQL_FEEDS[Entity.INVOICES][1], record=GRAPHQL_INVOICE)
    assert event == {"type": "invoice.updated", "data": {**CANONICAL, "purchase_order": "PO-9"}}


@pytest.mark.parametrize("value,expected", [(Decimal("242.00"), "242.00"), (Decimal("242"), "242.00"), (242, "242.00"),
                                            ("242.5", "242.50"), (" 1208.33 ", "1208.33"), (Decimal("-5.10"), "-5.10"),
                                            (Decimal("0.1") + Decimal("0.2"), "0.30")])
def test_money_is_a_decimal_string_at_two_places(value, expected):
    assert coerce("total", value) == expected


@pytest.mark.parametrize("value,reason", [(Decimal("242.005"), "more than 2 decimals"), ("12,50", "not a number"),
                                          (True, "expected a number"), ({"amount": 1}, "expected a number"),
                                          ("NaN", "not a number")])
def test_money_that_the_ledger_cannot_keep_exactly_is_refused_not_rounded(value, reason):
    with pytest.raises(Unmappable, match=reason):
        coerce("total", value)


def test_quantities_prices_and_rates_keep_their_own_precision():
    assert coerce("lines[].quantity", Decimal("1.500")) == "1.5"
    assert coerce("lines[].unit_price", Decimal("19.9950")) == "19.995"
    assert coerce("lines[].tax_rate", Decimal("100.00")) == "100"
    with pytest.raises(Unmappable, match="more than 4 decimals"):
        coerce("lines[].unit_price", "0.00001")
    assert coerce("payment_terms.days", Decimal("30.0")) == 30


@pytest.mark.parametrize("value,expected", [("2026-11-02", "2026-11-02"), ("2026-11-02T23:30:00+01:00", "2026-11-02")])
def test_dates_in_iso(value, expected):
    assert coerce("issue_date", value) == expected


@pytest.mark.parametrize("value", ["02-11-2026", "2026-02-30", "20261102", 20261102])
def test_a_date_in_another_format_needs_the_date_function(value):
    with pytest.raises(Unmappable, match=r"date\(value, '%d-%m-%Y'\)|not a date"):
        coerce("issue_date", value)


def test_the_date_and_moment_functions_read_the_erps_own_formats():
    record = {"d": "02-11-2026", "m": "02-11-2026 14:30", "bad": "31-02-2026"}
    mapping = {"external_id": "'X'", "updated_at": "moment(m, '%d-%m-%Y %H:%M')", "reason": "date(d, '%d-%m-%Y')"}
    event = map_record(entity=Entity.VOIDS, mapping=mapping, record=record)
    assert event["data"]["updated_at"] == "2026-11-02T14:30:00+01:00"  # Dutch time (winter)
    assert event["data"]["reason"] == "2026-11-02"
    with pytest.raises(Unmappable, match="not a date written as %d-%m-%Y"):
        map_record(entity=Entity.VOIDS, mapping={**mapping, "reason": "date(bad, '%d-%m-%Y')"}, record=record)


def test_decimal_and_cents_read_amounts_written_the_dutch_way_or_in_cents():
    record = {"id": "P1", "c": "C1", "eur": "1.234,56", "cents": 123456, "when": "2026-11-02T10:00:00Z"}
    mapping = {"external_id": "id", "client_external_id": "c", "amount": "decimal(eur, ',')", "currency": "'EUR'",
               "received_at": "when", "allocations[]": "`[]`"}
    assert map_record(entity=Entity.PAYMENTS, mapping=mapping, record=record)["data"]["amount"] == "1234.56"
    mapping["amount"] = "cents(cents)"
    assert map_record(entity=Entity.PAYMENTS, mapping=mapping, record=record)["data"]["amount"] == "1234.56"


def test_a_record_the_ledger_would_refuse_says_why_field_by_field():
    record = parse(REST_INVOICE)
    record["totals"]["gross"] = Decimal("263.98")
    with pytest.raises(Unmappable, match="/data/total: does not add up: the lines make 263.99"):
        map_record(entity=Entity.INVOICES, mapping=REST_FEEDS[Entity.INVOICES][1], record=record)
    with pytest.raises(Unmappable, match="/data/lines/0/unit_price: expected a number|unit_price"):
        map_record(entity=Entity.INVOICES, mapping={**REST_FEEDS[Entity.INVOICES][1], "lines[].unit_price": "text"},
                   record=parse(REST_INVOICE))


def test_a_vat_category_its_reason_and_the_vat_in_the_accounting_currency_are_mapped_and_checked():
    record = parse(REST_INVOICE)
    record |= {"currency": "USD", "vat_currency": "EUR", "vat_in_eur": 37.6}
    record["lines"][1] |= {"vat": 0, "code": "AE", "why": "Reverse charge"}
    record["totals"] |= {"vat": 42.04, "gross": 262.19}
    record["vat_breakdown"][1] |= {"rate": 0, "amount": 0}
    mapping = {**REST_FEEDS[Entity.INVOICES][1], "lines[].vat_category": "code", "lines[].vat_exemption_reason": "why",
               "tax_currency": "vat_currency", "tax_total_in_tax_currency": "vat_in_eur"}
    data = map_record(entity=Entity.INVOICES, mapping=mapping, record=record)["data"]
    assert (data["tax_currency"], data["tax_total_in_tax_currency"]) == ("EUR", "37.60")  # money at two places
    assert [(line["tax_rate"], line.get("vat_category"), line.get("vat_exemption_reason")) for line in data["lines"]] \
        == [("21", None, None), ("0", "AE", "Reverse charge")]
    record["lines"][1]["vat"] = 9
    with pytest.raises(Unmappable, match=r"/data/lines/1/tax_rate: must be 0 with the VAT category AE"):
        map_record(entity=Entity.INVOICES, mapping=mapping, record=record)


def test_an_invoice_whose_status_is_void_becomes_invoice_voided():
    record = parse(REST_INVOICE)
    record["status"] = "void"
    event = map_record(entity=Entity.INVOICES, mapping=REST_FEEDS[Entity.INVOICES][1], record=record)
    assert event == {"type": "invoice.voided", "data": {"external_id": "INV-1", "updated_at": "2026-11-02T10:00:00Z",
                                                        "reason": "voided in the ERP"}}


def test_a_mapping_that_does_not_compile_or_lacks_its_list_is_refused_in_admin():
    assert mapping_problems({"total": "totals.[gross"})[0].startswith("total: 'totals.[gross' is not JMESPath")
    assert mapping_problems({"lines[].quantity": "qty"}) == ['lines[].quantity: say where the list is with "lines[]"']
    assert mapping_problems(REST_FEEDS[Entity.INVOICES][1]) == []
    assert mapping_problems([]) != []


def test_ids_versions_and_the_parked_record_keep_what_the_erp_sent():
    record = parse(b'{"id": 17, "modified": "2026-11-02T10:00:01Z", "amount": 10.50}')
    assert record_key("id", record) == "17"
    with pytest.raises(Unmappable):
        record_key("nummer", record)
    assert version_later("2026-11-02T10:00:01Z", "2026-11-02T11:00:00+02:00")  # moments, not texts
    assert version_later(10, 9) and not version_later("9", "10")  # numbers, not texts
    assert record_text(record) == '{"amount": 10.50, "id": 17, "modified": "2026-11-02T10:00:01Z"}'
    assert parse(record_text(record)) == record


def _answer(data, links=None, url="https://erp.test/api/invoices"):
    return Answer(200, data, links or {}, url, {})


@pytest.mark.parametrize("paging,data,links,position,expected", [
    (ErpPull.Paging.OFFSET, {"items": [1, 2], "total": 5}, None, "", ("2", "")),
    (ErpPull.Paging.OFFSET, {"items": [1, 2], "total": 4}, None, "2", ("", "")),
    (ErpPull.Paging.OFFSET, {"items": [1]}, None, "4", ("", "")),
    (ErpPull.Paging.LINK, {"items": [1, 2]}, {"next": {"url": "/api/invoices?offset=2"}}, "",
     ("https://erp.test/api/invoices?offset=2", "")),
    (ErpPull.Paging.LINK, {"items": [1]}, {}, "", ("", "")),
    (ErpPull.Paging.CURSOR, {"items": [1, 2], "next": "abc"}, None, "", ("abc", "abc")),
    (ErpPull.Paging.CURSOR, {"items": [1, 2], "next": "abc"}, None, "abc", ("", "abc")),  # the same again: the end
    (ErpPull.Paging.RELAY, {"data": {"x": {"edges": [1, 2], "pageInfo": {"hasNextPage": True, "endCursor": "c2"}}}},
     None, "", ("c2", "c2")),
    (ErpPull.Paging.RELAY, {"data": {"x": {"edges": [1], "pageInfo": {"hasNextPage": False, "endCursor": "c3"}}}},
     None, "c2", ("", "c3")),
], ids=["offset", "offset-total", "offset-short", "link", "link-last", "cursor", "cursor-same", "relay", "relay-last"])
def test_canned_pages_say_where_the_next_one_starts(paging, data, links, position, expected):
    erp = ErpPull(paging=paging, page_size=2)
    feed = ErpFeed(next_cursor="next" if paging == ErpPull.Paging.CURSOR else "")
    records = data.get("items") or data.get("data", {}).get("x", {}).get("edges", [])
    offset = int(position) if paging == ErpPull.Paging.OFFSET and position else 0
    assert _next(erp, feed, _answer(data, links), records, offset=offset, limit=2,
                 cursor=position if paging in (ErpPull.Paging.CURSOR, ErpPull.Paging.RELAY) else "") == expected
