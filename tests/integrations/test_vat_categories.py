"""VAT categories and a VAT accounting currency from accounting systems and ERPs (issue #18): a
Belgian reverse-charge invoice sent as a webhook or through the GraphQL API becomes an invoice
whose Peppol e-invoice says AE with the reason given, and passes the official rules; what the
ledger cannot take is refused with 422 naming the field; an event without the new fields is
taken as before."""
import copy
from decimal import Decimal

import pytest
from lxml import etree

from integrations.models import Connection
from invoices.documents.einvoice import ubl_xml
from invoices.documents.rules import validate_ubl
from invoices.models import CreditNote, Invoice
from portal.models import Job
from portal.rls import staff_scope
from tests.integrations.erp.api_support import UPSERT_CLIENT, gql, invoice_input, make_token
from tests.integrations.helpers import CLIENT, event, invoice_data, job_for, post
from tests.invoices.test_einvoice_rules import SELLERS
from tests.portal.factories import BrandFactory

CBC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
CAC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2}"
REASON = "Autoliquidation - Art. 51 § 2 Code TVA"
BUYER = CLIENT | {"name": "Gentse Bouw NV", "kvk_number": "", "vat_number": "BE0202239951",
                  "address": {"line": "Korenmarkt 3", "postal_code": "9000", "city": "Gent", "country": "BE"}}
# Works at a Belgian building site: reverse charge, beside materials at the standard rate.
LINES = [{"description": "Renovation works", "quantity": "1", "unit_price": "5000.00", "tax_rate": "0",
          "vat_category": "AE", "vat_exemption_reason": REASON},
         {"description": "Materials", "quantity": "10", "unit": "piece", "unit_price": "95.00", "tax_rate": "21",
          "vat_category": "S"}]
SUMS = {"tax_breakdown": [{"rate": "0", "base": "5000.00", "tax": "0.00"},
                          {"rate": "21", "base": "950.00", "tax": "199.50"}],
        "subtotal": "5950.00", "tax_total": "199.50", "total": "6149.50"}


@pytest.fixture
def belgian(committed, secret):
    """An accounting connection of a Belgian seller."""
    return committed.create(lambda: Connection.objects.create(
        name="Exact BE", slug="erp-be", brand=BrandFactory(**SELLERS["BE"]), signing_secrets=secret))


def _send(http, secret, worker, *events):
    for payload in events:
        response = post(http, "erp-be", secret, payload)
        assert response.status_code == 200, response.content
    worker.run()
    return response


def _categories(xml: bytes) -> dict:
    root = etree.fromstring(xml)
    return {sub.findtext(f"{CAC}TaxCategory/{CBC}ID"): sub for sub in root.findall(f"{CAC}TaxTotal/{CAC}TaxSubtotal")}


def test_a_reverse_charge_line_from_accounting_becomes_ae_with_its_reason_and_passes_the_rules(
        client, belgian, secret, worker):
    _send(client, secret, worker, event("client.upserted", BUYER),
          event("invoice.created", invoice_data(lines=LINES, **SUMS)))
    with staff_scope():
        invoice = Invoice.objects.get(connection=belgian, external_id="INV-EXT-1")
        assert [(line.tax_category, line.tax_exemption_reason) for line in invoice.lines.all()] == [
            ("AE", REASON), ("S", "")]
        xml = ubl_xml(invoice)
    report = validate_ubl(xml)
    assert report.passed, [(failure.rule, failure.text) for failure in report.fatal]
    categories = _categories(xml)
    assert set(categories) == {"AE", "S"}
    assert categories["AE"].findtext(f"{CAC}TaxCategory/{CBC}TaxExemptionReason") == REASON
    assert categories["AE"].findtext(f"{CAC}TaxCategory/{CBC}TaxExemptionReasonCode") == "VATEX-EU-AE"
    assert categories["AE"].findtext(f"{CBC}TaxableAmount") == "5000.00"


def test_a_foreign_currency_invoice_and_credit_note_state_their_vat_in_euros(client, belgian, secret, worker):
    usd = {"currency": "USD", "tax_currency": "EUR", "tax_total_in_tax_currency": "178.95"}
    credit = {"external_id": "CN-1", "number": "CN-2026-1", "invoice_external_id": "INV-EXT-1",
              "issue_date": "2026-11-05", "reason": "Returned", "lines": [LINES[1]],
              "tax_breakdown": [SUMS["tax_breakdown"][1]], "subtotal": "950.00", "tax_total": "199.50",
              "total": "1149.50", "tax_currency": "EUR", "tax_total_in_tax_currency": "178.95"}
    _send(client, secret, worker, event("client.upserted", BUYER),
          event("invoice.created", invoice_data(lines=LINES, **SUMS, **usd)), event("credit_note.created", credit))
    with staff_scope():
        invoice = Invoice.objects.get(connection=belgian, external_id="INV-EXT-1")
        note = CreditNote.objects.get(connection=belgian, external_id="CN-1")
        assert (invoice.currency, invoice.tax_currency, invoice.tax_total_in_tax_currency) == (
            "USD", "EUR", Decimal("178.95"))
        assert (note.currency, note.tax_currency, note.tax_total_in_tax_currency) == ("USD", "EUR", Decimal("178.95"))
        documents = [ubl_xml(invoice), ubl_xml(note)]
    for xml in documents:
        report = validate_ubl(xml)
        assert report.passed, [(failure.rule, failure.text) for failure in report.fatal]
        root = etree.fromstring(xml)
        assert root.findtext(f"{CBC}TaxCurrencyCode") == "EUR"
        assert {node.attrib["currencyID"]: node.text for node in root.findall(f"{CAC}TaxTotal/{CBC}TaxAmount")} == {
            "USD": "199.50", "EUR": "178.95"}


def test_an_event_without_the_new_fields_is_taken_as_before_and_an_update_replaces_them(
        client, belgian, secret, worker):
    _send(client, secret, worker, event("client.upserted", BUYER),
          event("invoice.created", invoice_data(lines=LINES, **SUMS, currency="USD", tax_currency="EUR",
                                                tax_total_in_tax_currency="178.95")))
    _send(client, secret, worker, event("invoice.updated", invoice_data(updated_at="2026-11-02T10:00:00Z")))
    with staff_scope():
        invoice = Invoice.objects.get(connection=belgian, external_id="INV-EXT-1")
        assert (invoice.currency, invoice.tax_currency, invoice.tax_total_in_tax_currency, invoice.total) == (
            "EUR", "", None, Decimal("1208.33"))
        assert [(line.tax_rate, line.tax_category, line.vat_category, line.tax_exemption_reason)
                for line in invoice.lines.all()] == [(Decimal("21.00"), "", "S", ""), (Decimal("9.00"), "", "S", "")]
        xml = ubl_xml(invoice)
    assert set(_categories(xml)) == {"S"}
    assert etree.fromstring(xml).findtext(f"{CBC}TaxCurrencyCode") is None


INVALID = [  # (what the event changes, field, reason)
    ({"lines": [LINES[0] | {"vat_category": "RC"}, LINES[1]]}, "/data/lines/0/vat_category",
     "must be one of: S, Z, E, AE, K, G, O"),
    ({"lines": [LINES[0] | {"tax_rate": "21"}, LINES[1]]}, "/data/lines/0/tax_rate",
     "must be 0 with the VAT category AE (only S charges VAT)"),
    ({"lines": [LINES[0], LINES[1] | {"tax_rate": "0"}]}, "/data/lines/1/tax_rate",
     "must be more than 0 with the VAT category S (a line without VAT has another category)"),
    ({"lines": [LINES[0], LINES[1] | {"vat_exemption_reason": REASON}]}, "/data/lines/1/vat_exemption_reason",
     "must be left out unless the VAT category is E, AE, K, G or O"),
    ({"tax_currency": "EUR", "tax_total_in_tax_currency": "199.50"}, "/data/tax_currency",
     "must differ from the currency (leave both tax_currency and tax_total_in_tax_currency out when VAT is "
     "accounted in it)"),
    ({"currency": "USD", "tax_currency": "EUR"}, "/data/tax_total_in_tax_currency", "is required with tax_currency"),
    ({"currency": "USD", "tax_total_in_tax_currency": "178.95"}, "/data/tax_currency",
     "is required with tax_total_in_tax_currency"),
]


@pytest.mark.parametrize("change, field, reason", INVALID)
def test_each_combination_the_ledger_cannot_take_gets_422_naming_the_field(
        client, belgian, secret, worker, change, field, reason):
    data = copy.deepcopy(invoice_data(lines=LINES, **SUMS)) | change
    if field.endswith("tax_rate") and "lines/0" in field:  # totals that add up, so only the category is wrong
        data |= {"tax_breakdown": [{"rate": "21", "base": "5950.00", "tax": "1249.50"}], "tax_total": "1249.50",
                 "total": "7199.50"}
    elif field.endswith("tax_rate"):
        data |= {"tax_breakdown": [{"rate": "0", "base": "5950.00", "tax": "0.00"}], "tax_total": "0.00",
                 "total": "5950.00"}
    response = post(client, "erp-be", secret, event("invoice.created", data))
    assert response.status_code == 422, response.content
    assert {"field": field, "reason": reason} in response.json()["errors"]
    assert f"{field}: {reason}" in response.json()["error"]
    with staff_scope():
        assert not Invoice.objects.exists()


def test_a_credit_note_whose_vat_currency_is_its_invoices_is_not_applied_and_says_why(
        client, belgian, secret, worker):
    _send(client, secret, worker, event("client.upserted", BUYER),
          event("invoice.created", invoice_data(lines=LINES, **SUMS)))
    credit = {"external_id": "CN-1", "number": "CN-2026-1", "invoice_external_id": "INV-EXT-1",
              "issue_date": "2026-11-05", "lines": [LINES[1]], "tax_breakdown": [SUMS["tax_breakdown"][1]],
              "subtotal": "950.00", "tax_total": "199.50", "total": "1149.50",
              "tax_currency": "EUR", "tax_total_in_tax_currency": "199.50"}
    response = _send(client, secret, worker, event("credit_note.created", credit))
    with staff_scope():
        job = Job.objects.get(pk=job_for(response).pk)
        assert not CreditNote.objects.exists()
    assert job.state == Job.State.RETRYING
    assert "tax_currency must differ from the currency of invoice 2026-0001 (EUR)" in job.last_error


# --- The GraphQL API ------------------------------------------------------------------------------

UPSERT = """mutation($input: InvoiceInput!) { upsertInvoice(input: $input) {
  status errors { field code message }
  invoice { currency taxCurrency taxTotalInTaxCurrency lines { description vatCategory vatExemptionReason } } } }"""
GQL_LINES = [{"description": "Renovation works", "quantity": "1", "unitPrice": "5000.00", "taxRate": "0",
              "vatCategory": "AE", "vatExemptionReason": REASON},
             {"description": "Materials", "quantity": "10", "unitPrice": "95.00", "taxRate": "21"}]
GQL_SUMS = {"taxBreakdown": SUMS["tax_breakdown"], "subtotal": "5950.00", "taxTotal": "199.50", "total": "6149.50"}
GQL_CLIENT = {"externalId": "C-100", "name": "Gentse Bouw NV", "billingEmail": "finance@gentsebouw.test",
              "vatNumber": "BE0202239951",
              "address": {"line": "Korenmarkt 3", "postalCode": "9000", "city": "Gent", "country": "BE"}}


def test_an_erp_sends_categories_and_a_vat_currency_through_the_graphql_api_and_reads_them_back(
        client, belgian):
    token = make_token(belgian)
    assert gql(client, token, UPSERT_CLIENT, {"input": GQL_CLIENT}).json()["data"]["upsertClient"]["status"] == \
        "APPLIED"
    answer = gql(client, token, UPSERT, {"input": invoice_input(
        lines=GQL_LINES, **GQL_SUMS, currency="USD", taxCurrency="EUR", taxTotalInTaxCurrency="178.95")}).json()
    assert answer["data"]["upsertInvoice"] == {"status": "APPLIED", "errors": [], "invoice": {
        "currency": "USD", "taxCurrency": "EUR", "taxTotalInTaxCurrency": "178.95",
        "lines": [{"description": "Renovation works", "vatCategory": "AE", "vatExemptionReason": REASON},
                  {"description": "Materials", "vatCategory": "S", "vatExemptionReason": ""}]}}
    with staff_scope():
        xml = ubl_xml(Invoice.objects.get(connection=belgian, external_id="INV-1"))
    report = validate_ubl(xml)
    assert report.passed, [(failure.rule, failure.text) for failure in report.fatal]
    assert _categories(xml)["AE"].findtext(f"{CAC}TaxCategory/{CBC}TaxExemptionReason") == REASON


def test_the_graphql_api_names_the_field_of_a_category_or_currency_it_cannot_take(client, belgian):
    token = make_token(belgian)
    gql(client, token, UPSERT_CLIENT, {"input": GQL_CLIENT})
    wrong_rate = [GQL_LINES[0] | {"taxRate": "21"}, GQL_LINES[1]]
    answer = gql(client, token, UPSERT, {"input": invoice_input(
        lines=wrong_rate, taxBreakdown=[{"rate": "21", "base": "5950.00", "tax": "1249.50"}], subtotal="5950.00",
        taxTotal="1249.50", total="7199.50")}).json()["data"]["upsertInvoice"]
    assert (answer["status"], answer["errors"]) == ("REFUSED", [
        {"field": ["input", "lines", "0", "taxRate"], "code": "INVALID",
         "message": "must be 0 with the VAT category AE (only S charges VAT)"}])
    answer = gql(client, token, UPSERT, {"input": invoice_input(
        lines=GQL_LINES, **GQL_SUMS, taxCurrency="EUR", taxTotalInTaxCurrency="199.50")}).json()["data"]["upsertInvoice"]
    assert answer["errors"] == [{"field": ["input", "taxCurrency"], "code": "INVALID",
                                 "message": "must differ from the currency (leave both tax_currency and "
                                            "tax_total_in_tax_currency out when VAT is accounted in it)"}]
    unknown = gql(client, token, UPSERT, {"input": invoice_input(lines=[GQL_LINES[0] | {"vatCategory": "RC"}])})
    assert "VatCategory" in unknown.json()["errors"][0]["message"]  # GraphQL's own check of the enum
    with staff_scope():
        assert not Invoice.objects.exists()
