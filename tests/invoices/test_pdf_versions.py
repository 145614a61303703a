"""A stored PDF is served while nothing it shows has changed, at the cost of one query and one
decrypt, and never once something has: the invoice, its lines, a credit note, the brand (colours,
texts, logo), the client's language, the template, or the day it falls overdue. Each case changes
one thing the way the back office or a sync would (services, admin saves, plain updates), then
downloads through the portal and reads the change in the PDF."""
import datetime
import io
import shutil
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image
from pypdf import PdfReader

from invoices import services
from invoices.documents import render
from invoices.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, RenderedDocument
from portal.models import Brand, Client
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


@pytest.fixture
def portal(db, client):
    brand = BrandFactory(name="Acme B.V.", is_default=True, iban="NL91ABNA0417164300", legal_footer="Acme · KvK 1")
    customer = ClientFactory(brand=brand, name="Alpha B.V.", locale="en")
    client.force_login(MembershipFactory(client=customer).user)
    invoice = make_invoice(customer, number="INV-V-1", lines=[line("Consulting", unit_price="100.00")])
    return client, brand, customer, invoice


def _download(browser, document) -> tuple[bytes, str]:
    name = "invoices:credit_note_pdf" if isinstance(document, CreditNote) else "invoices:invoice_pdf"
    response = browser.get(reverse(name, args=[document.pk]))
    assert response.status_code == 200
    return response.content, "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)


def _renders(browser, document) -> tuple[bool, str]:
    """(rendered for this download, the PDF's text)."""
    with mock.patch.object(render, "_render", side_effect=render._render) as drawn:
        _, text = _download(browser, document)
    return drawn.called, text


def test_a_stored_pdf_costs_one_query_and_no_render(portal, django_assert_num_queries):
    browser, _, _, invoice = portal
    first, _ = _download(browser, invoice)
    with staff_scope():
        loaded = Invoice.objects.select_related("client", "brand").get(pk=invoice.pk)
        with mock.patch.object(render, "_render", side_effect=AssertionError("rendered")), \
                mock.patch.object(render, "render_to_string", side_effect=AssertionError("templated")), \
                mock.patch.object(render, "factur_x_xml", side_effect=AssertionError("xml made")):
            with django_assert_num_queries(1):
                stored = render.document_pdf(loaded)
    assert not stored.rendered_now and stored.content == first
    again, _ = _download(browser, invoice)
    assert again == first


def test_a_changed_invoice_is_rendered_again(portal):
    browser, _, _, invoice = portal
    assert _renders(browser, invoice)[0]
    assert not _renders(browser, invoice)[0]
    with staff_scope():
        Invoice.objects.filter(pk=invoice.pk).update(purchase_order="PO-NEW-7")
    rendered, text = _renders(browser, invoice)
    assert rendered and "PO-NEW-7" in text


def test_changed_lines_are_rendered_again_however_they_are_written(portal):
    browser, _, customer, invoice = portal
    _download(browser, invoice)
    with staff_scope():
        InvoiceLine.objects.filter(invoice=invoice).update(description="Audit work")
    assert "Audit work" in _download(browser, invoice)[1]
    with staff_scope():
        stale_copy = Invoice.objects.get(pk=invoice.pk)  # loaded before the next line is added
        InvoiceLine.objects.create(client=customer, invoice=invoice, position=2, description="Travel", quantity=1,
                                   unit_price=10, tax_rate=21, net_amount=10, tax_amount="2.10", line_total="12.10")
        stale_copy.save()  # writes its older lines revision back: the database keeps the newer one
    assert "Travel" in _download(browser, invoice)[1]
    with staff_scope():
        InvoiceLine.objects.filter(invoice=invoice, position=2).delete()
    assert "Travel" not in _download(browser, invoice)[1]


def test_a_changed_credit_note_is_rendered_again(portal):
    browser, _, _, invoice = portal
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-V-1", issue_date=TODAY,
                                           lines=[line("Discount agreed", unit_price="20.00")], reason="Goodwill")
    assert "Goodwill" in _download(browser, note)[1]
    with staff_scope():
        CreditNote.objects.filter(pk=note.pk).update(reason="Price agreement")
        CreditNoteLine.objects.filter(credit_note=note).update(description="Late delivery")
    rendered, text = _renders(browser, note)
    assert rendered and "Price agreement" in text and "Late delivery" in text
    with staff_scope():
        Invoice.objects.filter(pk=invoice.pk).update(purchase_order="PO-CN-9")  # the credit note names it
    assert "PO-CN-9" in _download(browser, note)[1]


def test_a_changed_brand_is_rendered_again(portal, settings, tmp_path):
    browser, brand, _, invoice = portal
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "media")}}}
    plain, _ = _download(browser, invoice)
    with staff_scope():
        Brand.objects.filter(pk=brand.pk).update(primary_colour="#aa0000")
    recoloured, _ = _download(browser, invoice)
    assert recoloured != plain
    assert b"0.666667 0 0" in _page_stream(recoloured) and b"0.666667 0 0" not in _page_stream(plain)
    with staff_scope():
        Brand.objects.filter(pk=brand.pk).update(legal_footer="Acme · KvK 99887766", name="Acme Group B.V.")
    text = _download(browser, invoice)[1]
    assert "KvK 99887766" in text and "Acme Group B.V." in text
    for size in ((240, 80), (120, 40)):  # a logo, then another one
        logo = io.BytesIO()
        Image.new("RGB", size, (31, 78, 121)).save(logo, format="PNG")
        with staff_scope():
            brand = Brand.objects.get(pk=brand.pk)
            brand.logo.save("logo.png", ContentFile(logo.getvalue()))
        content, _ = _download(browser, invoice)
        sizes = {Image.open(io.BytesIO(image.data)).size for image in PdfReader(io.BytesIO(content)).pages[0].images}
        assert size in sizes


def _page_stream(content: bytes) -> bytes:
    return PdfReader(io.BytesIO(content)).pages[0].get_contents().get_data()


def test_a_changed_language_is_rendered_again(portal):
    browser, _, customer, invoice = portal
    assert "Open balance" in _download(browser, invoice)[1]
    with staff_scope():
        Client.objects.filter(pk=customer.pk).update(locale="nl")
    text = _download(browser, invoice)[1]
    assert "Openstaand saldo" in text and "Open balance" not in text


def test_a_changed_template_is_rendered_again(portal, settings, tmp_path):
    browser, _, _, invoice = portal
    _download(browser, invoice)
    assert not _renders(browser, invoice)[0]
    source = django_settings.BASE_DIR / "templates" / "invoices" / "pdf"
    copy = tmp_path / "templates" / "invoices" / "pdf"
    shutil.copytree(source, copy)
    document = copy / "document.html"
    document.write_text(document.read_text().replace("{% block body %}", "{% block body %}<p>Thank you!</p>", 1))
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path / "templates"]}]
    rendered, text = _renders(browser, invoice)
    assert rendered and "Thank you!" in text


def test_an_invoice_falling_overdue_is_rendered_again(portal, time_machine):
    browser, _, customer, invoice = portal
    with staff_scope():
        contact = customer.memberships.get().user
    for days_past_due, overdue in ((0, False), (1, True)):
        day = invoice.due_date + datetime.timedelta(days=days_past_due)
        time_machine.move_to(datetime.datetime.combine(day, datetime.time(12), tzinfo=datetime.UTC))
        browser.force_login(contact)  # the session signed in weeks before would have lapsed
        assert ("Overdue" in _download(browser, invoice)[1]) is overdue


def test_only_the_current_version_is_kept(portal):
    browser, _, _, invoice = portal
    for reference in ("PO-1", "PO-2", "PO-3"):
        with staff_scope():
            Invoice.objects.filter(pk=invoice.pk).update(purchase_order=reference)
        _download(browser, invoice)
    with staff_scope():
        assert RenderedDocument.objects.filter(invoice=invoice).count() == 1
