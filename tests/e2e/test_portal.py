"""A client's day in the portal, in Chromium at phone and desktop widths: dashboard, filters,
the invoice table, the detail page, a PDF, a deep link from an email, Dutch, and an axe check."""
import datetime
import email
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from invoices import services
from portal.rls import staff_scope
from tests.e2e.support import open_menu
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import PASSWORD, BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e
AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"


def _ledger():
    brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, iban="NL91ABNA0417164300",
                         primary_colour="#1f4e79")
    client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
    MembershipFactory(client=client, user__email="alice@northwind.test", user__language="en")
    days = datetime.timedelta(days=1)
    late = make_invoice(client, number="NW-LATE", issue_date=TODAY - 60 * days, lines=[line("Audit", unit_price="300.00")])
    make_invoice(client, number="NW-OPEN", issue_date=TODAY - 2 * days, lines=[line("Hosting", unit_price="100.00")])
    paid = make_invoice(client, number="NW-PAID", issue_date=TODAY - 40 * days, lines=[line(unit_price="50.00")])
    pay(client, [(paid, "60.50")])
    with staff_scope():
        services.credit_note_create(invoice=late, number="NW-CN-1", issue_date=TODAY, lines=[line(unit_price="10.00")])
    return client


def _log_in(page, url):
    page.goto(url)
    page.get_by_label("Email").fill("alice@northwind.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()


def _rows(page, expected=None, seconds=5.0):
    """The invoice numbers listed, once they settle on `expected` (htmx swaps asynchronously)."""
    import time

    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + seconds
    while True:
        page.wait_for_load_state("networkidle")
        try:
            found = sorted(re.findall(r"NW-(?:LATE|OPEN|PAID)",
                                      " ".join(page.locator(".invoice-row .invoice-number").all_inner_texts())))
        except PlaywrightError as exc:  # a reload (htmx's history miss) replaced the page meanwhile
            if "context was destroyed" not in str(exc) or time.monotonic() > deadline:
                raise
            continue
        if expected is None or found == expected or time.monotonic() > deadline:
            return found
        page.wait_for_timeout(100)


def _open_filters(page):
    """On a phone the filters are folded behind the "Filters" button, after the invoices."""
    toggle = page.locator(".filters-panel > summary")
    if toggle.is_visible() and page.locator(".filters-panel[open]").count() == 0:
        toggle.click()


def _shot(page, name):
    from tests.e2e.conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"portal-{name}-{page.screen_width}px.png"), full_page=True)


def _axe(page):
    # Evaluated by the browser's DevTools protocol, which the page's Content-Security-Policy does
    # not govern (an added <script> with axe's text inline would be refused, as it should be).
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], len(v["nodes"])) for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


def test_dashboard_list_filters_preview_detail_and_pdf(committed, live_url, page):
    committed.create(_ledger)
    _log_in(page, f"{live_url}/")
    # Dashboard: 363.00 − 12.10 credit on the late one, plus 121.00 open.
    assert page.get_by_test_id("open-balance").inner_text() == "€471.90"
    assert page.get_by_test_id("overdue-count").inner_text() == "1"
    assert page.get_by_role("link", name="Pay what is overdue").is_visible()
    _shot(page, "dashboard")

    open_menu(page)
    page.get_by_role("link", name="Invoices", exact=True).click()
    assert _rows(page, ["NW-LATE", "NW-OPEN", "NW-PAID"]) == ["NW-LATE", "NW-OPEN", "NW-PAID"]
    _open_filters(page)
    page.get_by_label("Status").select_option("paid")  # htmx: no full page load, the URL follows
    page.wait_for_url(re.compile(r"status=paid"))
    assert _rows(page, ["NW-PAID"]) == ["NW-PAID"]
    with page.expect_response(lambda r: r.request.is_navigation_request() and r.url.endswith("/invoices/")):
        page.go_back()  # htmx keeps no copy of the page: going back reloads it
    page.wait_for_url(re.compile(r"/invoices/$"))
    assert _rows(page, ["NW-LATE", "NW-OPEN", "NW-PAID"]) == ["NW-LATE", "NW-OPEN", "NW-PAID"]

    _open_filters(page)
    page.get_by_label("Issued from").fill((TODAY - datetime.timedelta(days=45)).isoformat())
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"issued_from="))
    assert _rows(page, ["NW-OPEN", "NW-PAID"]) == ["NW-OPEN", "NW-PAID"]
    page.get_by_label("Amount from").fill("100")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"amount_min=100"))
    assert _rows(page, ["NW-OPEN"]) == ["NW-OPEN"]
    assert _axe(page) == []
    _shot(page, "list-filtered")

    page.goto(f"{live_url}/invoices/?status=overdue")
    row = page.locator(".invoice-row", has_text="NW-LATE")
    assert "€350.90" in row.inner_text()  # open after the credit note
    assert row.get_by_role("link", name="Pay NW-LATE").bounding_box()["height"] >= 44
    _shot(page, "list-overdue")
    row.get_by_role("link", name="NW-LATE", exact=True).click()

    assert page.get_by_role("heading", level=1).inner_text().startswith("Invoice NW-LATE")
    assert "€350.90" in page.locator(".amount-card").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert _axe(page) == []
    _shot(page, "detail")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")

    open_menu(page, account=True)
    page.get_by_label("Language").select_option("nl")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Factuur NW-LATE"))
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    open_menu(page)
    expect(page.get_by_role("link", name="Facturen", exact=True)).to_be_visible()


def test_deep_link_from_the_notification_email_lands_on_the_invoice_after_login(
        committed, celery_worker_process, test_email_dir, live_url, page):
    for stale in Path(test_email_dir).glob("*.log"):  # mail an earlier test of this session left
        stale.unlink()
    committed.create(_ledger)  # the new invoices notify alice; a real worker sends the emails
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    messages = []
    while datetime.datetime.now() < deadline:
        messages = [email.message_from_bytes(p.read_bytes()) for p in Path(test_email_dir).glob("*.log")]
        if any("NW-OPEN" in (m["Subject"] or "") for m in messages):
            break
    mail = next(m for m in messages if "NW-OPEN" in (m["Subject"] or ""))
    text = next(part for part in mail.walk() if part.get_content_type() == "text/plain").get_payload(decode=True)
    link = re.search(rb"https?://[^/\s]+(/invoices/\d+/)", text).group(1).decode()

    page.goto(f"{live_url}{link}")  # logged out: through the login page
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Email").fill("alice@northwind.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_url}{link}")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Invoice NW-OPEN")
