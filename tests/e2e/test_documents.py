"""A client downloads an invoice PDF from the overview, on a phone and on a desktop."""
import io

import pytest
from pypdf import PdfReader

from tests.e2e.support import open_menu
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import PASSWORD, BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e


def test_client_downloads_an_invoice_pdf_from_the_list(committed, live_url, page):
    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, iban="NL91ABNA0417164300")
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
        MembershipFactory(client=client, user__email="alice@northwind.test")
        return make_invoice(client, number="INV-2026-00042", lines=[line("Bookkeeping", unit_price="450.00")])

    committed.create(build)
    page.goto(f"{live_url}/")
    page.get_by_label("Email").fill("alice@northwind.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    open_menu(page)
    page.get_by_role("link", name="Invoices", exact=True).click()
    row = page.locator(".invoice-row", has_text="INV-2026-00042")
    assert "€544.50" in row.inner_text() and "Open" in row.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    link = page.get_by_role("link", name="PDF INV-2026-00042")
    assert link.bounding_box()["height"] >= 44
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "INV-2026-00042.pdf"
    text = PdfReader(io.BytesIO(open(download.path(), "rb").read())).pages[0].extract_text()
    assert "Invoice INV-2026-00042" in text and "Northwind Traders B.V." in text
