"""Validation before the answer: a signed accounting event is accepted only if the ledger can
store and render it as it is. Everything else gets 422 naming each field and why, never the
value sent, and nothing is stored but a sample of the rejected request."""
import copy
import json
import time

import pytest

from integrations import validation
from portal.models import Job, WebhookRequest
from portal.rls import staff_scope
from tests.integrations.helpers import CLIENT, event, invoice_data, post
from tests.security.corpus import with_value

PAYMENT = {"external_id": "BANK-9", "client_external_id": "C-100", "amount": "1208.33", "currency": "EUR",
           "received_at": "2026-11-20T09:30:00Z", "allocations": [{"invoice_external_id": "INV-EXT-1",
                                                                   "amount": "1208.33"}]}
CREDIT_NOTE = {"external_id": "CN-1", "number": "CN-2026-1", "invoice_external_id": "INV-EXT-1",
               "issue_date": "2026-11-05", "reason": "Goodwill",
               "lines": [{"description": "Goodwill", "quantity": "1", "unit_price": "100.00", "tax_rate": "21"}],
               "tax_breakdown": [{"rate": "21", "base": "100.00", "tax": "21.00"}],
               "subtotal": "100.00", "tax_total": "21.00", "total": "121.00"}


def one_line_invoice(quantity="1", unit_price="100.00", tax_rate="21", discount=None, **overrides):
    """An invoice of one line whose totals add up, whatever the line."""
    from invoices.money import document_totals

    line = {"description": "Work", "quantity": quantity, "unit_price": unit_price, "tax_rate": tax_rate}
    if discount is not None:
        line["discount_percent"] = discount
    try:
        totals = document_totals([{"discount_percent": "0", **line}])
        sums = {"subtotal": f"{totals.subtotal:.2f}", "tax_total": f"{totals.tax_total:.2f}",
                "total": f"{totals.total:.2f}",
                "tax_breakdown": [{"rate": tax_rate, "base": f"{totals.subtotal:.2f}", "tax": f"{totals.tax_total:.2f}"}]}
    except Exception:  # noqa: BLE001 - a line the schema refuses anyway
        sums = {"subtotal": "0.00", "tax_total": "0.00", "total": "0.00", "tax_breakdown": []}
    return invoice_data(lines=[line], **sums) | overrides


def with_(payload: dict, path: str, value) -> dict:
    """A copy of payload with the field at path ("data/lines/0/quantity") set to value."""
    changed = copy.deepcopy(payload)
    *parents, last = path.split("/")
    target = changed
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return changed


INVOICE = event("invoice.created", invoice_data())
REVERSE_CHARGE = {"description": "Renovation works", "quantity": "1", "unit_price": "5000.00", "tax_rate": "0",
                  "vat_category": "AE", "vat_exemption_reason": "Autoliquidation - Art. 51 § 2 Code TVA"}
# Every new field at once: a line at reverse charge beside one at 21 %, the VAT in euros of a USD invoice.
VAT_INVOICE = event("invoice.created", invoice_data(
    currency="USD", tax_currency="EUR", tax_total_in_tax_currency="178.95",
    lines=[{"description": "Consulting", "quantity": "10", "unit_price": "95.00", "tax_rate": "21",
            "vat_category": "S"}, REVERSE_CHARGE],
    tax_breakdown=[{"rate": "0", "base": "5000.00", "tax": "0.00"}, {"rate": "21", "base": "950.00", "tax": "199.50"}],
    subtotal="5950.00", tax_total="199.50", total="6149.50"))

REFUSED = [
    # currency: a maintained ISO 4217 list, not three capitals
    (with_(INVOICE, "data/currency", "ZZZ"), "/data/currency", "must be an ISO 4217 currency code, such as EUR"),
    (with_(INVOICE, "data/currency", "XAU"), "/data/currency", "must be an ISO 4217 currency code, such as EUR"),
    (with_(INVOICE, "data/currency", "XTS"), "/data/currency", "must be an ISO 4217 currency code, such as EUR"),
    (with_(INVOICE, "data/currency", "EUR\n"), "/data/currency", "contains control characters (such as a line break)"),
    (with_(INVOICE, "data/currency", "eur"), "/data/currency", "an ISO 4217 currency code, such as EUR"),
    (event("client.upserted", CLIENT | {"default_currency": "ZZZ"}), "/data/default_currency",
     "must be an ISO 4217 currency code, such as EUR"),
    (event("payment.recorded", PAYMENT | {"currency": "ABC"}), "/data/currency",
     "must be an ISO 4217 currency code, such as EUR"),
    # dates and moments that exist
    (with_(INVOICE, "data/issue_date", "2026-02-30"), "/data/issue_date", "is not a date that exists"),
    (with_(INVOICE, "data/due_date", "2026-13-01"), "/data/due_date", "is not a date that exists"),
    (with_(INVOICE, "data/due_date", "0000-01-01"), "/data/due_date", "is not a date that exists"),
    (with_(INVOICE, "data/due_date", "1066-10-14"), "/data/due_date", "must be in the years 1900 to 2999"),
    (with_(INVOICE, "data/updated_at", "2026-02-29T10:00:00Z"), "/data/updated_at",
     "is not a moment that exists (with a time zone)"),
    (with_(INVOICE, "data/updated_at", "2026-11-01T25:00:00Z"), "/data/updated_at",
     "is not a moment that exists (with a time zone)"),
    (with_(INVOICE, "data/updated_at", "9999-12-31T23:59:59-23:59"), "/data/updated_at",
     "must be in the years 1900 to 2999"),
    (with_(INVOICE, "data/updated_at", "2026-11-01T10:00:00"), "/data/updated_at", "ISO 8601 with a time zone"),
    (with_(INVOICE, "occurred_at", "2026-04-31T10:00:00Z"), "/occurred_at",
     "is not a moment that exists (with a time zone)"),
    # the ledger's precision: more decimals are refused, never rounded
    (event("invoice.created", one_line_invoice(quantity="1.2345")), "/data/lines/0/quantity",
     "a quantity as a decimal string with at most 9 digits before the point and 3 after"),
    (event("invoice.created", one_line_invoice(quantity="1234567890")), "/data/lines/0/quantity",
     "a quantity as a decimal string with at most 9 digits before the point and 3 after"),
    (event("invoice.created", one_line_invoice(unit_price="1.23456")), "/data/lines/0/unit_price",
     "a unit price as a decimal string with at most 10 digits before the point and 4 after"),
    (with_(INVOICE, "data/total", "1208.330"), "/data/total",
     "an amount as a decimal string with at most 12 digits before the point and 2 after"),
    (with_(INVOICE, "data/total", 1208.33), "/data/total", "must be a string"),
    (event("invoice.created", one_line_invoice(tax_rate="150")), "/data/lines/0/tax_rate", "must be at most 100"),
    (event("invoice.created", one_line_invoice(discount="101")), "/data/lines/0/discount_percent",
     "must be at most 100"),
    (event("invoice.created", invoice_data(lines=[  # totals the ledger holds, of lines it cannot
        {"description": "Huge", "quantity": "999999999", "unit_price": "9999999999", "tax_rate": "0"},
        {"description": "Huge back", "quantity": "-999999999", "unit_price": "9999999999", "tax_rate": "0"},
        {"description": "Work", "quantity": "1", "unit_price": "1.00", "tax_rate": "0"}],
        tax_breakdown=[{"rate": "0", "base": "1.00", "tax": "0.00"}], subtotal="1.00", tax_total="0.00",
        total="1.00")), "/data/lines/0", "comes to more than the ledger holds (999999999999.99)"),
    # totals that add up at that precision, above zero
    (with_(INVOICE, "data/total", "1208.34"), "/data/total", "does not add up: the lines make 1208.33"),
    (with_(INVOICE, "data/tax_breakdown/1/tax", "199.49"), "/data/tax_breakdown/1/tax",
     "does not add up: the lines at 21% make 199.50"),
    (with_(INVOICE, "data/tax_breakdown", [{"rate": "21", "base": "950.00", "tax": "199.50"}] * 2 +
           [{"rate": "9", "base": "53.97", "tax": "4.86"}]), "/data/tax_breakdown/1/rate",
     "this rate has a row already"),
    (event("invoice.created", one_line_invoice(unit_price="0.00")), "/data/total",
     "must be more than zero (send a credit_note.created to credit)"),
    (event("invoice.created", one_line_invoice(quantity="-1")), "/data/total",
     "must be more than zero (send a credit_note.created to credit)"),
    (event("credit_note.created", CREDIT_NOTE | {
        "lines": [{"description": "Back", "quantity": "-1", "unit_price": "100.00", "tax_rate": "21"}],
        "tax_breakdown": [{"rate": "21", "base": "-100.00", "tax": "-21.00"}],
        "subtotal": "-100.00", "tax_total": "-21.00", "total": "-121.00"}), "/data/total", "must be more than zero"),
    (event("payment.recorded", PAYMENT | {"amount": "0.00", "allocations": []}), "/data/amount",
     "must be more than zero"),
    (event("payment.recorded", PAYMENT | {"amount": "-5.00"}), "/data/amount", "an amount above zero"),
    (event("payment.recorded", PAYMENT | {"amount": "10.00"}), "/data/allocations",
     "add up to more than the payment's amount"),
    (event("payment.recorded", PAYMENT | {"allocations": [{"invoice_external_id": "INV-EXT-1", "amount": "1.00"}] * 2}),
     "/data/allocations/1/invoice_external_id", "names an invoice an earlier allocation names"),
    # text: no control characters, line breaks only where several lines are meant
    (with_(INVOICE, "data/lines/0/description", "Consulting\x07"), "/data/lines/0/description",
     "contains control characters"),
    (with_(INVOICE, "data/number", "2026-0001\r\n"), "/data/number", "contains control characters"),
    (with_(INVOICE, "data/purchase_order", "PO\u0085"), "/data/purchase_order", "contains control characters"),
    (event("client.upserted", CLIENT | {"name": "Northwind\tTraders"}), "/data/name", "contains control characters"),
    (with_(INVOICE, "data/number", '2026"; rm -rf'), "/data/number", "a document number"),
    (with_(INVOICE, "data/number", "2026/../../x"), "/data/number", "must not contain two dots in a row"),
    # lengths: refused when longer, never cut
    (with_(INVOICE, "data/external_id", "E" * 101), "/data/external_id", "must be at most 100 characters"),
    (with_(INVOICE, "data/client_external_id", ""), "/data/client_external_id", "must not be empty"),
    (event("client.upserted", CLIENT | {"billing_email": "a@" + "b" * 300 + ".test"}), "/data/billing_email",
     "must be at most 254 characters"),
    (event("client.upserted", CLIENT | {"billing_email": "finance@northwind"}), "/data/billing_email",
     "is not an email address"),
    (event("client.upserted", CLIENT | {"vat_number": "not a vat"}), "/data/vat_number", "a VAT number"),
    # VAT categories: only S charges VAT, and it charges some; reasons only where no VAT is charged
    (with_(VAT_INVOICE, "data/lines/1/vat_category", "RC"), "/data/lines/1/vat_category",
     "must be one of: S, Z, E, AE, K, G, O"),
    (with_(VAT_INVOICE, "data/lines/1/vat_category", "ae"), "/data/lines/1/vat_category",
     "must be one of: S, Z, E, AE, K, G, O"),
    (event("invoice.created", one_line_invoice(tax_rate="21") | {
        "lines": [{"description": "Work", "quantity": "1", "unit_price": "100.00", "tax_rate": "21",
                   "vat_category": "AE"}]}), "/data/lines/0/tax_rate",
     "must be 0 with the VAT category AE (only S charges VAT)"),
    (event("invoice.created", one_line_invoice(tax_rate="9") | {
        "lines": [{"description": "Work", "quantity": "1", "unit_price": "100.00", "tax_rate": "9",
                   "vat_category": "Z"}]}), "/data/lines/0/tax_rate",
     "must be 0 with the VAT category Z (only S charges VAT)"),
    (event("invoice.created", one_line_invoice(tax_rate="0") | {
        "lines": [{"description": "Work", "quantity": "1", "unit_price": "100.00", "tax_rate": "0",
                   "vat_category": "S"}]}), "/data/lines/0/tax_rate",
     "must be more than 0 with the VAT category S (a line without VAT has another category)"),
    (with_(VAT_INVOICE, "data/lines/0/vat_exemption_reason", "Exempt"), "/data/lines/0/vat_exemption_reason",
     "must be left out unless the VAT category is E, AE, K, G or O"),
    (with_(VAT_INVOICE, "data/lines/1/vat_exemption_reason", "x" * 301), "/data/lines/1/vat_exemption_reason",
     "must be at most 300 characters"),
    (with_(VAT_INVOICE, "data/lines/1/vat_exemption_reason", "Art. 51\nCode TVA"),
     "/data/lines/1/vat_exemption_reason", "contains control characters (such as a line break)"),
    # a VAT accounting currency: with its total, and another than the document's
    (with_(VAT_INVOICE, "data/tax_currency", "USD"), "/data/tax_currency",
     "must differ from the currency (leave both tax_currency and tax_total_in_tax_currency out"),
    (with_(VAT_INVOICE, "data/tax_currency", "ZZZ"), "/data/tax_currency",
     "must be an ISO 4217 currency code, such as EUR"),
    (with_(VAT_INVOICE, "data/tax_total_in_tax_currency", "178.955"), "/data/tax_total_in_tax_currency",
     "an amount as a decimal string with at most 12 digits before the point and 2 after"),
    (event("invoice.created", {k: v for k, v in VAT_INVOICE["data"].items() if k != "tax_total_in_tax_currency"}),
     "/data/tax_total_in_tax_currency", "is required with tax_currency"),
    (event("invoice.created", {k: v for k, v in VAT_INVOICE["data"].items() if k != "tax_currency"}),
     "/data/tax_currency", "is required with tax_total_in_tax_currency"),
    (event("credit_note.created", CREDIT_NOTE | {"tax_currency": "EUR"}), "/data/tax_total_in_tax_currency",
     "is required with tax_currency"),
    # the shape
    (with_(INVOICE, "data/colour", "red"), "/data", "has a property the schema does not know"),
    (event("invoice.created", {k: v for k, v in invoice_data().items() if k != "due_date"}), "/data/due_date",
     "is required"),
    (event("invoice.paid", {}), "/type", "must be one of: invoice.created, invoice.updated"),
]


@pytest.mark.parametrize("payload, field, reason", REFUSED)
def test_an_event_the_ledger_cannot_take_is_refused_naming_the_field(payload, field, reason):
    problems = validation.event_problems(json.loads(json.dumps(payload)))
    assert any(p["field"] == field and reason in p["reason"] for p in problems), problems


def test_every_documented_example_and_the_edges_of_the_limits_are_taken():
    for payload in (INVOICE, event("client.upserted", CLIENT), event("payment.recorded", PAYMENT),
                    event("credit_note.created", CREDIT_NOTE), VAT_INVOICE,
                    event("credit_note.created", CREDIT_NOTE | {"tax_currency": "USD",
                                                                "tax_total_in_tax_currency": "24.64"}),
                    event("invoice.created", one_line_invoice(tax_rate="0") | {"lines": [
                        {"description": "Work", "quantity": "1", "unit_price": "100.00", "tax_rate": "0",
                         "vat_category": category} for category in ("Z", "E", "AE", "K", "G", "O")],
                        "tax_breakdown": [{"rate": "0", "base": "600.00", "tax": "0.00"}],
                        "subtotal": "600.00", "tax_total": "0.00", "total": "600.00"}),
                    event("invoice.created", one_line_invoice(quantity="999.999", unit_price="0.0001")),
                    event("invoice.created", one_line_invoice(quantity="-1", unit_price="-100.00")),
                    event("invoice.created", one_line_invoice(discount="100", unit_price="5.00") | {
                        "lines": [{"description": "Free", "quantity": "1", "unit_price": "5.00", "tax_rate": "21",
                                   "discount_percent": "100"},
                                  {"description": "Paid", "quantity": "1", "unit_price": "1.00", "tax_rate": "21"}],
                        "tax_breakdown": [{"rate": "21", "base": "1.00", "tax": "0.21"}],
                        "subtotal": "1.00", "tax_total": "0.21", "total": "1.21"}),
                    with_(INVOICE, "data/currency", "JPY"), with_(INVOICE, "data/currency", "XOF"),
                    with_(INVOICE, "data/notes", "Line one\nLine two\twith a tab"),
                    with_(INVOICE, "data/updated_at", "2026-11-01T10:00:00.123456+01:00"),
                    with_(INVOICE, "data/issue_date", "2028-02-29"),
                    event("client.upserted", CLIENT | {"billing_email": "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".nl"})):
        assert validation.event_problems(json.loads(json.dumps(payload))) == [], payload


def test_a_60000_character_email_is_refused_in_milliseconds():
    payload = event("client.upserted", CLIENT | {"billing_email": "a" * 30000 + "@" + "a" * 30000})
    started = time.monotonic()
    problems = validation.event_problems(payload)
    assert time.monotonic() - started < 0.1
    assert {"field": "/data/billing_email", "reason": "must be at most 254 characters"} in problems


def test_every_pattern_in_the_schema_is_quick_on_a_long_hostile_value():
    schema = json.loads(validation.normalise.SCHEMA_PATH.read_text())
    patterns = []

    def walk(node):
        if isinstance(node, dict):
            if "pattern" in node:
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    import re

    hostile = ["a" * 50000 + "!", "a@" * 25000 + "!", "1" * 50000 + "x", "-" + "9." * 25000, "A" * 50000 + "\n"]
    for pattern in patterns:
        compiled = re.compile(pattern)
        for value in hostile:
            started = time.monotonic()
            compiled.search(value)
            assert time.monotonic() - started < 0.05, pattern


def test_a_name_the_sender_chose_never_reaches_a_pointer():
    payload = with_(INVOICE, "data/<script>alert(1)", "x")
    problems = validation.event_problems(payload)
    assert problems == [{"field": "/data", "reason": "has a property the schema does not know"}]
    problems = validation.event_problems({"type": "invoice.created", "data": {"\x00secret": 1}})
    assert all("secret" not in p["field"] and "\x00" not in p["field"] for p in problems)


# --- Through the webhook -------------------------------------------------------------------

def test_a_refused_event_gets_422_with_field_and_reason_never_the_value_and_leaves_nothing(
        client, connection, secret, worker):
    value = "ZQX"  # not a currency; must not be echoed anywhere
    response = post(client, "erp", secret, with_(INVOICE, "data/currency", value))
    assert response.status_code == 422
    assert response.json() == {
        "status": "rejected", "error": "invalid event: /data/currency: must be an ISO 4217 currency code, such as EUR",
        "errors": [{"field": "/data/currency", "reason": "must be an ISO 4217 currency code, such as EUR"}]}
    with staff_scope():
        [kept] = WebhookRequest.objects.all()
        assert kept.status == "rejected" and value not in kept.error and not Job.objects.exists()


def test_every_problem_is_answered_and_the_reason_shows_the_first_five(client, connection, secret, worker):
    payload = invoice_data(currency="ZZZ", issue_date="2026-02-30", due_date="2026-02-31",
                           updated_at="2026-02-30T10:00:00Z", number="A..B", purchase_order="PO\x01", notes="\x00")
    response = post(client, "erp", secret, event("invoice.created", payload))
    assert response.status_code == 400  # a NUL in a string is not JSON the portal reads
    response = post(client, "erp", secret, event("invoice.created", payload | {"notes": "fine"}))
    answer = response.json()
    assert response.status_code == 422 and len(answer["errors"]) == 1  # control characters first
    payload["purchase_order"] = "PO"
    answer = post(client, "erp", secret, event("invoice.created", payload | {"notes": "fine"})).json()
    assert [e["field"] for e in answer["errors"]] == ["/data/currency", "/data/issue_date", "/data/due_date",
                                                      "/data/updated_at", "/data/number"]


@pytest.mark.parametrize("event_id, status", [
    ("m" * 200, 200), ("m" * 201, 422), ("msg\x01", 400), ("msg with space", 422), ("msg_é", 422)])
def test_an_event_id_up_to_200_visible_ascii_characters_is_taken_and_longer_is_refused_never_cut(
        client, connection, secret, worker, event_id, status):
    response = post(client, "erp", secret, event("client.upserted", CLIENT), msg_id=event_id)
    assert response.status_code == status, response.content
    if status == 422:
        assert response.json()["errors"] == [
            {"field": "webhook-id", "reason": "must be 1 to 200 visible ASCII characters"}]
    elif status == 400:  # a header with control characters is refused before anything else
        assert response.json()["error"] == "the webhook-id header contains control characters"
    else:
        with staff_scope():
            assert WebhookRequest.objects.get(status="accepted").natural_key == event_id


def test_two_event_ids_that_differ_after_200_characters_are_not_taken_for_one(client, connection, secret, worker):
    base = "m" * 200
    for suffix in ("a", "b"):
        assert post(client, "erp", secret, event("client.upserted", CLIENT), msg_id=base + suffix).status_code == 422
    with staff_scope():
        assert not WebhookRequest.objects.filter(status="accepted").exists()


def _mutations(payload):
    """The payload, and copies of it with each field in turn removed, of another type, too long,
    of a wrong form, or beside a property the schema does not know."""
    yield payload
    stack = [((), payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            yield with_value(payload, path, {**value, "unknown": "x"})
            for name, item in value.items():
                yield with_value(payload, path, {k: v for k, v in value.items() if k != name})
                stack.append(((*path, name), item))
        elif isinstance(value, list):
            yield with_value(payload, path, [])
            yield with_value(payload, path, value * 60)
            stack.extend(((*path, index), item) for index, item in enumerate(value))
        for other in ("", "x" * 6000, "-1.5", "EUR", "2026-11-01", "a@b", 7, -1, 400, 1.5, True, None, {}, ["x"]):
            yield with_value(payload, path, other)


def test_the_compiled_schema_check_answers_as_the_schema_does():
    # integrations.normalise.schema_holds says yes only where jsonschema finds no error (a yes
    # is final); it may say no to more only for a value no schema field can hold anyway.
    from decimal import Decimal

    from integrations import normalise

    events = [INVOICE, event("client.upserted", CLIENT | {"address": {"line": "Dam 1", "country": "NL"}}),
              event("payment.recorded", PAYMENT | {"method": "ideal"}), event("credit_note.created", CREDIT_NOTE),
              event("invoice.voided", {"external_id": "INV-EXT-1", "updated_at": "2026-11-01T10:00:00Z"}),
              event("invoice.updated", invoice_data(payment_terms={"days": 30, "text": "30 days"}, status="open")),
              VAT_INVOICE, event("credit_note.created", CREDIT_NOTE | {
                  "tax_currency": "USD", "tax_total_in_tax_currency": "24.64",
                  "lines": [{**CREDIT_NOTE["lines"][0], "vat_category": "S"}, REVERSE_CHARGE | {"unit_price": "0.00"}]})]
    corpus = [payload for payload, _, _ in REFUSED] + [p for e in events for p in _mutations(e)]
    corpus += [json.loads(json.dumps(p), parse_float=Decimal) for p in corpus[::10]]  # as the intake reads them
    held = 0
    for payload in corpus:
        errors = list(normalise.validator().iter_errors(payload))
        assert normalise.schema_holds()(payload) == (not errors), (payload, errors[:1])
        held += not errors
    assert len(corpus) > 2000 and 200 < held < len(corpus) - 1000  # both answers well represented
