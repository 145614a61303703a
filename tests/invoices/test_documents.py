"""Invoice and credit note PDFs read back: content, pages, QR code, embedded e-invoice, storage."""
import io
import threading
from decimal import Decimal
from unittest import mock

import facturx
import pytest
import zxingcpp
from django.core.files.storage import storages
from django.db import connection as db
from lxml import etree
from PIL import Image
from pypdf import PdfReader

from invoices import services
from invoices.documents import render
from invoices.documents.einvoice import PEPPOL_CUSTOMIZATION, ubl_xml
from invoices.models import Invoice, RenderedDocument
from portal.models import Brand
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory

D = Decimal


@pytest.fixture
def brand(db):
    return BrandFactory(name="Acme Accounting B.V.", is_default=True, iban="NL91ABNA0417164300", bic="ABNANL2A",
                        bank_account_name="Acme Accounting B.V.", kvk_number="12345678",
                        vat_number="NL001234567B01", address_line="Keizersgracht 1", postal_code="1015 CC",
                        city="Amsterdam", primary_colour="#1f4e79",
                        legal_footer="Acme Accounting B.V. · KvK 12345678 · BTW NL001234567B01")


def _client(brand, locale="nl"):
    return ClientFactory(brand=brand, name="Northwind Traders B.V.", locale=locale, address_line="Damrak 50",
                         postal_code="1012 LM", city="Amsterdam", kvk_number="34567890", vat_number="NL003456789B01")


def _pdf(document):
    with staff_scope():
        return render.document_pdf(Invoice.objects.get(pk=document.pk) if isinstance(document, Invoice) else document)


def _text(content: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(content)).pages]


def test_invoice_pdf_shows_number_totals_brand_and_footer_in_dutch(brand):
    invoice = make_invoice(_client(brand), number="INV-2026-00042", purchase_order="PO-77",
                           lines=[line("Advieswerk", quantity="10", unit_price="95.00"),
                                  line("Naslagwerk", quantity="3", unit_price="19.99", discount="10", tax_rate="9")])
    pdf = _pdf(invoice)
    [page] = _text(pdf.content)
    assert pdf.file_name == "INV-2026-00042.pdf"
    for expected in ("Factuur INV-2026-00042", "Acme Accounting B.V.", "Northwind Traders B.V.", "PO-77",
                     "€\u00a01.208,33", "€\u00a0204,36", "€\u00a01.003,97", "Openstaand saldo", "NL91ABNA0417164300",
                     "KvK 12345678 · BTW NL001234567B01", "Pagina 1 van 1", "25 december 2026"):
        assert expected in page, expected
    assert "Korting" in page and "10%" in page  # a line has a discount: the column is there
    # The tax breakdown per rate.
    assert "€\u00a0950,00" in page and "€\u00a0199,50" in page and "€\u00a053,97" in page and "€\u00a04,86" in page


def test_english_client_gets_an_english_pdf(brand):
    invoice = make_invoice(_client(brand, locale="en"), lines=[line(unit_price="1000.00")])
    [page] = _text(_pdf(invoice).content)
    assert "Invoice INV-" in page and "€1,210.00" in page and "Page 1 of 1" in page and "Open balance" in page
    assert "BILLED TO" in page and "Invoice date" in page and "Discount" not in page


def test_a_long_invoice_breaks_across_pages_with_the_header_and_footer_on_each(brand):
    invoice = make_invoice(_client(brand), lines=[line(f"Regel {n}", unit_price="1.00") for n in range(200)])
    pages = _text(_pdf(invoice).content)
    assert len(pages) >= 4
    for number, text in enumerate(pages, start=1):
        assert "Omschrijving" in text and "Eenheidsprijs" in text  # the table header, repeated
        assert f"Pagina {number} van {len(pages)}" in text
        assert "KvK 12345678 · BTW NL001234567B01" in text
    assert "Regel 199" in pages[-1]


def test_epc_qr_code_carries_the_open_balance_and_reference(brand):
    invoice = make_invoice(_client(brand), number="INV-QR-1", lines=[line(unit_price="1000.00")])
    pay(invoice.client, [(invoice, "210.00")])
    reader = PdfReader(io.BytesIO(_pdf(invoice).content))
    [image] = reader.pages[0].images
    [code] = zxingcpp.read_barcodes(Image.open(io.BytesIO(image.data)))
    fields = code.text.split("\n")
    # EPC069-12: service tag, version, character set, identification, BIC, name, IBAN, amount, purpose,
    # structured reference, unstructured remittance text.
    assert fields[:8] == ["BCD", "002", "1", "SCT", "ABNANL2A", "Acme Accounting B.V.", "NL91ABNA0417164300",
                          "EUR1000"]
    assert fields[8:] in (["", "", "INV-QR-1"], ["", "", "INV-QR-1", ""])


def test_no_qr_code_once_nothing_is_open(brand):
    invoice = make_invoice(_client(brand), lines=[line(unit_price="10.00")])
    pay(invoice.client, [(invoice, "12.10")])
    content = _pdf(invoice).content
    assert len(list(PdfReader(io.BytesIO(content)).pages[0].images)) == 0
    assert "Hoe betaalt u" not in _text(content)[0]


def test_pdf_is_pdfa3_with_valid_factur_x_en16931_embedded(brand):
    invoice = make_invoice(_client(brand), number="INV-FX-1", lines=[line(unit_price="95.00", quantity="10")])
    content = _pdf(invoice).content
    name, xml = facturx.get_xml_from_pdf(content, check_xsd=False)
    assert name == "factur-x.xml"
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    root = etree.fromstring(xml)
    ns = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
          "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
    assert root.findtext(".//rsm:ExchangedDocument/ram:ID", namespaces=ns) == "INV-FX-1"
    assert root.findtext(".//ram:GrandTotalAmount", namespaces=ns) == "1149.50"
    assert root.findtext(".//ram:PayeePartyCreditorFinancialAccount/ram:IBANID", namespaces=ns) == "NL91ABNA0417164300"
    metadata = PdfReader(io.BytesIO(content)).xmp_metadata
    assert metadata is not None and 'pdfaid:part="3"' in metadata.rdf_root.toxml().replace("<pdfaid:part>3</pdfaid:part>", 'pdfaid:part="3"')


def test_credit_note_pdf_names_the_invoice_it_credits(brand):
    invoice = make_invoice(_client(brand), number="INV-CN-1")
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-2026-0001", issue_date=TODAY,
                                           lines=[line(unit_price="20.00")], reason="Prijsafspraak")
    with staff_scope():
        content = render.document_pdf(note).content
    [page] = _text(content)
    assert "Creditnota CN-2026-0001" in page and "Crediteert factuur INV-CN-1" in page
    # A credit note's own words, never an invoice's; no discount column when no line has one.
    for said in ("CREDITNOTA AAN", "Datum creditnota", "Nummer creditnota", "Bij factuur INV-CN-1"):
        assert said in page, said
    for unsaid in ("FACTUUR AAN", "Factuurdatum", "INVOICE TO", "Korting", "Discount"):
        assert unsaid.lower() not in page.lower(), unsaid
    _, xml = facturx.get_xml_from_pdf(content, check_xsd=False)
    assert etree.fromstring(xml).findtext(
        ".//{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}TypeCode") == "381"


def test_ubl_is_valid_peppol_bis_ubl_21(brand):
    invoice = make_invoice(_client(brand), number="INV-UBL-1")
    with staff_scope():
        xml = ubl_xml(invoice)
    assert facturx.xml_check_xsd(xml, flavor="ubl-2.1-invoice")
    root = etree.fromstring(xml)
    cbc = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
    assert root.findtext(f"{cbc}CustomizationID") == PEPPOL_CUSTOMIZATION
    assert root.findtext(f"{cbc}ProfileID") == "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
    assert root.findtext(f"{cbc}ID") == "INV-UBL-1"


def test_the_stored_pdf_is_served_encrypted_until_the_invoice_or_brand_changes(brand):
    invoice = make_invoice(_client(brand), lines=[line(unit_price="10.00")])
    first = _pdf(invoice)
    assert first.rendered_now and first.content.startswith(b"%PDF")
    with staff_scope():
        stored = RenderedDocument.objects.get(invoice=invoice)
    raw = (storages["encrypted"].path(stored.file_name))
    assert not open(raw, "rb").read().startswith(b"%PDF")  # encrypted at rest
    again = _pdf(invoice)
    assert not again.rendered_now and again.content == first.content

    pay(invoice.client, [(invoice, "5.00")])  # the balance on the PDF changes
    after_payment = _pdf(invoice)
    assert after_payment.rendered_now

    with staff_scope():
        Brand.objects.filter(pk=brand.pk).update(primary_colour="#aa0000")
    recoloured = _pdf(invoice)
    assert recoloured.rendered_now and recoloured.content != after_payment.content
    with staff_scope():
        assert RenderedDocument.objects.filter(invoice=invoice).count() == 1  # old versions are dropped


def test_rendering_never_fetches_a_url():
    from weasyprint.urls import FatalURLFetchingError

    with pytest.raises(FatalURLFetchingError):
        render.html_to_pdf('<img src="http://127.0.0.1:9/logo.png"><p>x</p>')


def _download_twice_at_once(invoice) -> tuple[int, list]:
    """Two downloads of one invoice started together, each on its own connection: how many
    renders they made and what each got."""
    calls, results, errors, barrier = [], [], [], threading.Barrier(2)
    real_render = render._render

    def counting_render(*args, **kwargs):
        calls.append(1)
        return real_render(*args, **kwargs)

    def download():
        barrier.wait()
        try:
            with staff_scope():
                results.append(render.document_pdf(Invoice.objects.select_related("client", "brand")
                                                   .get(pk=invoice.pk)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    with mock.patch.object(render, "_render", side_effect=counting_render):
        threads = [threading.Thread(target=download) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert errors == []
    return len(calls), results


def _without_prerender(build):
    # The pre-render job a new invoice queues is left out: a worker of the suite may be running,
    # and would render it first (into its own storage, not this test's).
    with mock.patch.object(services, "_document_changed", lambda kind, pk: None):
        return build()


def test_two_downloads_at_once_render_once(committed):
    # Committed for real (no test transaction), so two connections see the same invoice.
    invoice = committed.create(lambda: _without_prerender(
        lambda: make_invoice(_client(BrandFactory(iban="NL91ABNA0417164300")))))
    renders, results = _download_twice_at_once(invoice)
    assert renders == 1 and len(results) == 2
    assert results[0].content == results[1].content


def test_a_render_whose_file_never_landed_is_rendered_again_once(committed):
    # A render recorded its row, then died before uploading its file: the two downloads that
    # find the row wait for the file, and then only one of them renders it again.
    invoice = committed.create(lambda: _without_prerender(
        lambda: make_invoice(_client(BrandFactory(iban="NL91ABNA0417164300")))))
    with staff_scope():
        loaded = Invoice.objects.select_related("client", "brand").get(pk=invoice.pk)
        RenderedDocument.objects.create(client=loaded.client, invoice=loaded, fingerprint=render.fingerprint(loaded),
                                        file_name=f"documents/{loaded.client_id}/lost.pdf", size=1)
    with mock.patch.object(render, "FILE_WAIT_SECONDS", 0.3):
        renders, results = _download_twice_at_once(invoice)
    assert renders == 1 and len(results) == 2
    assert results[0].content == results[1].content and results[0].content.startswith(b"%PDF")
    with staff_scope():
        assert list(RenderedDocument.objects.filter(invoice=invoice).values_list("file_name", flat=True)) != [
            f"documents/{invoice.client_id}/lost.pdf"]


def test_the_brand_logo_comes_from_the_brand_row(brand, settings, tmp_path):
    from django.core.files.base import ContentFile

    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "media")}}}
    logo = io.BytesIO()
    Image.new("RGB", (240, 80), (31, 78, 121)).save(logo, format="PNG")
    with staff_scope():
        brand.logo.save("acme.png", ContentFile(logo.getvalue()))
    invoice = make_invoice(_client(brand), lines=[line(unit_price="10.00")])
    images = list(PdfReader(io.BytesIO(_pdf(invoice).content)).pages[0].images)
    sizes = sorted(Image.open(io.BytesIO(image.data)).size for image in images)
    assert (240, 80) in sizes and len(images) == 2  # the logo and the payment QR code


def test_every_render_checks_its_factur_x_against_the_official_xsd(brand):
    from invoices.documents.einvoice import check_factur_x, factur_x_xml

    invoice = make_invoice(_client(brand), lines=[line(unit_price="10.00")])
    with staff_scope():
        xml = factur_x_xml(invoice)
    check_factur_x(xml)
    broken = xml.replace(b"<ram:TypeCode>380</ram:TypeCode>", b"<ram:Kind>380</ram:Kind>", 1)
    assert broken != xml
    with pytest.raises(etree.DocumentInvalid):
        check_factur_x(broken)
    with staff_scope(), mock.patch("invoices.documents.einvoice._generate.generate_xml", return_value=broken):
        with pytest.raises(etree.DocumentInvalid):
            render.render_document(Invoice.objects.get(pk=invoice.pk))


def test_ubl_is_checked_against_the_official_ubl_xsd(brand):
    from invoices.documents.einvoice import ubl_xml

    invoice = make_invoice(_client(brand), lines=[line(unit_price="10.00")])
    with staff_scope():
        xml = ubl_xml(invoice)
        assert b"<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>" in xml
        generated = _generate_ubl(invoice)
        broken = generated.replace(b"<cbc:InvoiceTypeCode>", b"<cbc:Kind>", 1).replace(
            b"</cbc:InvoiceTypeCode>", b"</cbc:Kind>", 1)
        assert broken != generated
        with mock.patch("invoices.documents.einvoice._generate.generate_xml", return_value=broken):
            with pytest.raises(etree.DocumentInvalid):
                ubl_xml(invoice)


def _generate_ubl(invoice) -> bytes:
    from invoices.documents.einvoice import _generate, en16931_data

    return _generate.generate_xml(en16931_data(invoice), flavor="ubl-2.1", level="en16931", check_xsd=False,
                                  check_schematron=False)
