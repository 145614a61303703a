"""E-invoice XML (EN 16931) for invoices and credit notes: Factur-X CII, embedded in the PDF,
and UBL 2.1 for Peppol BIS Billing 3.0. Both are built by the factur-x package from one
EN 16931 data dict and checked against their official XSDs as they are made."""
from __future__ import annotations

import importlib
from decimal import Decimal

import facturx
from lxml import etree

from invoices.models import CreditNote, Invoice
from invoices.selectors import document_tax_breakdown

_generate = importlib.import_module("facturx.generate_xml")

PEPPOL_CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PEPPOL_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
KVK_SCHEME = "0106"  # ISO 6523 ICD of the Dutch Chamber of Commerce number
UNITS = {"hour": "HUR", "hours": "HUR", "uur": "HUR", "day": "DAY", "dag": "DAY", "month": "MON",
         "maand": "MON", "quarter": "QAN", "year": "ANN", "kg": "KGM", "km": "KMT"}
INVOICE, CREDIT_NOTE = "380", "381"


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def _party(company) -> dict:
    """A brand (seller) or client (buyer) as an EN 16931 party."""
    party = {"name": company.name, "country_code": company.country or "NL", "addr_l1": company.address_line,
             "postcode": company.postal_code, "city": company.city, "vat_identifier": company.vat_number}
    if company.kvk_number:
        party.update(legal_identifier=company.kvk_number, legal_identifier_schemeid=KVK_SCHEME,
                     einvoicing_addr=company.kvk_number, einvoicing_addr_schemeid=KVK_SCHEME)
    return {key: value for key, value in party.items() if value}


def _tax_category(rate: Decimal) -> str:
    return "S" if rate > 0 else "Z"


def en16931_data(document: Invoice | CreditNote) -> dict:
    """The EN 16931 business terms of an invoice or credit note."""
    is_credit = isinstance(document, CreditNote)
    brand, client = document.brand, document.client
    invoice = document.invoice if is_credit else document
    paid = Decimal("0.00") if is_credit else invoice.amount_paid + invoice.amount_credited
    data = {
        "BT-1": document.number,
        "BT-2": document.issue_date,
        "BT-3": CREDIT_NOTE if is_credit else INVOICE,
        "BT-5": document.currency,
        "BT-10": invoice.purchase_order or client.name[:50],
        "BT-23": PEPPOL_PROFILE,
        "BT-72": document.issue_date,
        "BT-81": "58",  # SEPA credit transfer
        "BT-83": invoice.number,
        "BT-106": _amount(document.subtotal),
        "BT-109": _amount(document.subtotal),
        "BT-110": _amount(document.tax_total),
        "BT-112": _amount(document.total),
        "BT-113": _amount(paid),
        "BT-115": _amount(document.total - paid),
        "BG-4": _party(brand),
        "BG-7": _party(client),
        "BG-23": [{"BT-116": _amount(row.base), "BT-117": _amount(row.tax), "BT-118": _tax_category(row.rate),
                   "BT-119": f"{row.rate:.2f}"} for row in document_tax_breakdown(document=document)],
        "BG-25": [{"BT-126": str(line.position), "BT-129": f"{line.quantity:.3f}",
                   "BT-130": UNITS.get(line.unit.lower(), "C62"), "BT-131": _amount(line.net_amount),
                   "BT-146": f"{line.unit_price * (100 - line.discount_percent) / 100:.4f}",
                   "BT-151": _tax_category(line.tax_rate), "BT-152": f"{line.tax_rate:.2f}",
                   "BT-153": line.description[:200]} for line in document.lines.all()],
    }
    if brand.iban:
        data.update({"BT-84": brand.iban.replace(" ", ""), "BT-85": brand.bank_account_name or brand.name})
    if invoice.purchase_order:
        data["BT-13"] = invoice.purchase_order
    if is_credit:
        data["BG-3"] = [{"BT-25": invoice.number, "BT-26": invoice.issue_date}]
        if document.reason:
            data["BG-1"] = [{"BT-22": document.reason}]
    else:
        data["BT-9"] = invoice.due_date
        data["BT-20"] = invoice.payment_terms_text or f"{invoice.payment_terms_days} days"
    return data


def factur_x_xml(document: Invoice | CreditNote) -> bytes:
    """Factur-X (CII) XML at the EN 16931 profile; raises if it breaks the official XSD."""
    return _generate.generate_xml(en16931_data(document), flavor="factur-x", level="en16931",
                                  check_xsd=True, check_schematron=False)


def ubl_xml(document: Invoice | CreditNote) -> bytes:
    """UBL 2.1 for Peppol BIS Billing 3.0; raises if it breaks the official UBL 2.1 XSD."""
    xml = _generate.generate_xml(en16931_data(document), flavor="ubl-2.1", level="en16931",
                                 check_xsd=True, check_schematron=False)
    root = etree.fromstring(xml)
    customization = root.find("{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}CustomizationID")
    customization.text = PEPPOL_CUSTOMIZATION
    flavor = "ubl-2.1-creditnote" if isinstance(document, CreditNote) else "ubl-2.1-invoice"
    facturx.xml_check_xsd(root, flavor=flavor)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
