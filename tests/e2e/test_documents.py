"""A client downloads an invoice PDF from the overview and exports its list as CSV, on a phone and on a desktop."""
import csv
import io

import pytest
from pypdf import PdfReader

from tests.e2e.support import log_in, open_menu
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e


def test_client_downloads_an_invoice_pdf_from_the_list(committed, live_url, page):
    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, iban="NL91ABNA0417164300")
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
        MembershipFactory(client=client, user__email="alice@northwind.test")
        return make_invoice(client, number="INV-2026-00042", lines=[line("Bookkeeping", unit_price="450.00")])

    committed.create(build)
    log_in(page, f"{live_url}/", "alice@northwind.test")  # waits for the dashboard: the menu is folded there
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


def test_client_exports_the_filtered_list_as_csv_through_the_real_server(committed, live_url, page):
    # gunicorn sends the export as it is written (a streamed response, read from a server-side
    # cursor in a transaction and scope of its own after the view has returned).
    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
        MembershipFactory(client=client, user__email="carol@northwind.test")
        for n in range(1, 601):
            make_invoice(client, number=f"NW-{n:04d}", lines=[line("Bookkeeping", unit_price="100.00")])

    committed.create(build)
    log_in(page, f"{live_url}/", "carol@northwind.test")
    page.goto(f"{live_url}/invoices/?q=NW-&sort=number")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("invoices-") and download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(open(download.path(), "rb").read().decode("utf-8-sig"))))
    # More rows than one piece of the response (500), in the list's order.
    assert [row["number"] for row in rows] == [f"NW-{n:04d}" for n in range(1, 601)]
    assert {row["total"] for row in rows} == {"121.00"}
