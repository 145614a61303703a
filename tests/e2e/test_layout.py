"""Every client page on a phone (375 px) and a desktop (1280 px), in Dutch and English: no sideways
scroll, a one-row header, axe clean, a screenshot under var/screenshots/; and the invoice table
itself in Chromium: sorting by a header, select all, the ZIP, the phone's cards and filter button."""
import datetime
import io
import re
import zipfile
from pathlib import Path

import pytest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from playwright.sync_api import expect

from integrations.peppol.models import PeppolDelivery
from invoices import services
from payments.models import GatewayAccount, Mandate
from tests.e2e.support import broken_numbers, check_page, clipped_content, log_in
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e
DAY = datetime.timedelta(days=1)
LONG = ("Implementation of the quarterly financial consolidation, including intercompany eliminations, "
        "currency revaluation and the supporting workpapers for the external auditor")


def _client_with_history(language: str) -> dict:
    """A contact of two companies whose first has a bit of everything: invoices with long lines
    and large amounts, one overdue, one paid, a credit note, notifications and a mandate."""
    brand = BrandFactory(name="Acme Accounting & Advisory B.V.", is_default=True, iban="NL91ABNA0417164300")
    client = ClientFactory(brand=brand, name="Northwind Traders Internationaal B.V.", locale=language)
    membership = MembershipFactory(client=client, user__email=f"alice-{language}@northwind.test",
                                   user__language=language)
    MembershipFactory(client=ClientFactory(brand=brand, name="Northwind Logistics B.V."), user=membership.user)
    big = make_invoice(client, number="NW-2026-000101", issue_date=TODAY - 3 * DAY, lines=[
        line(LONG, quantity="12.5", unit_price="1234.5678"), line("Hosting", quantity="3", unit="month"),
        line("Travel expenses, Amsterdam to Rotterdam and back", unit_price="87.30", tax_rate="9", unit="")])
    late = make_invoice(client, number="NW-2026-000077", issue_date=TODAY - 60 * DAY,
                        lines=[line("Audit", unit_price="300.00")])
    paid = make_invoice(client, number="NW-2026-000050", issue_date=TODAY - 40 * DAY, lines=[line(unit_price="50.00")])
    void = services.invoice_void(invoice=make_invoice(client, number="NW-2026-000060", issue_date=TODAY - 30 * DAY),
                                 reason="voided in accounting")
    payment = pay(client, [(paid, "60.50")])
    note = services.credit_note_create(invoice=late, number="NW-CN-2026-0001", issue_date=TODAY, reason=LONG,
                                       lines=[line("Audit hours not used", unit_price="10.00")])
    gateway = GatewayAccount.objects.create(brand=brand, provider=GatewayAccount.Provider.SANDBOX, ideal=True,
                                            card=True, sepa_direct_debit=True, allow_partial=True)
    Mandate.objects.create(client=client, gateway=gateway, provider_customer_id="cst_1", provider_mandate_id="mdt_1",
                           status=Mandate.Status.VALID, consumer_name="Northwind Traders Internationaal B.V.",
                           consumer_account="NL55INGB0000000000", signed_on=TODAY - 10 * DAY)
    # The big invoice went to the client's accounting system over Peppol: its page says so.
    PeppolDelivery.objects.create(client=client, brand=brand, document="invoice", invoice=big,
                                  state=PeppolDelivery.State.DELIVERED, delivered_at=timezone.now())
    return {"email": membership.user.email, "client": client.pk, "big": big.pk, "late": late.pk, "paid": paid.pk,
            "void": void.pk, "payment": payment.pk, "note": note.pk}


def _optional(name: str, *args) -> str | None:
    """A page another part of the portal may not have yet."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _header_is_one_row(page) -> None:
    height = page.locator(".site-header").bounding_box()["height"]
    assert height <= 64, f"the header wraps: {height}px high"


def test_every_client_page_fits_the_screen_and_passes_axe(committed, live_url, screen):
    data = committed.create(lambda: _client_with_history(screen.language))
    log_in(screen, f"{live_url}/", data["email"])
    # Two companies: the portal asks which one first.
    check_page(screen, "choose-company")
    screen.locator("form").filter(has=screen.locator(f"input[name=client_id][value='{data['client']}']")) \
        .get_by_role("button").click()
    expect(screen.get_by_test_id("open-balance")).to_be_visible()

    pages = [
        ("dashboard", reverse("portal:home")),
        ("invoices", reverse("invoices:list")),
        ("invoices-filtered-sorted", reverse("invoices:list") + "?status=partially_paid&sort=-total"),
        ("invoice", reverse("invoices:detail", args=[data["big"]])),
        ("invoice-credited", reverse("invoices:detail", args=[data["late"]])),
        ("invoice-void", reverse("invoices:detail", args=[data["void"]])),
        ("credit-note", reverse("invoices:credit_note_detail", args=[data["note"]])),
        ("statement", reverse("invoices:statement")),
        ("notifications", reverse("portal:notifications")),
        ("notification-settings", reverse("portal:notification_preferences")),
        ("direct-debit", reverse("payments:mandates")),
        ("company", reverse("portal:client_detail", args=[data["client"]])),
        ("checkout", f"{reverse('payments:checkout')}?invoice={data['big']}&invoice={data['late']}"),
        ("security", reverse("mfa_index")),
        ("payments", _optional("payments:list")),
        ("receipt", _optional("payments:receipt", data["payment"])),
    ]
    for name, path in pages:
        if path is None:
            continue
        response = screen.goto(f"{live_url}{path}")
        assert response.status == 200, (name, response.status)
        _header_is_one_row(screen)
        check_page(screen, name)
        # Nothing is cut off inside a card, and no number or amount breaks over two lines.
        assert clipped_content(screen) == [], (name, clipped_content(screen))
        assert broken_numbers(screen) == [], (name, broken_numbers(screen))
        if name == "invoice":
            expect(screen.get_by_test_id("peppol-delivery")).to_be_visible()
        if name == "invoice" and screen.screen_width < 640:
            # The lines table reflows: each line is a stack of labelled values, not a row of columns.
            cells = screen.locator(".lines-table").first.locator("tbody tr").first.locator("td[data-label]")
            tops = [cells.nth(i).bounding_box()["y"] for i in range(cells.count())]
            assert len(tops) >= 3 and tops == sorted(tops) and len(set(tops)) == len(tops), tops
        if name == "invoice-void":
            # A void invoice says when and why, in the client's words.
            said = {"en": ("Voided on", "Voided in our accounting system."),
                    "nl": ("Geannuleerd op", "Geannuleerd in ons boekhoudsysteem.")}[screen.language]
            for words in said:
                expect(screen.get_by_test_id("void-note")).to_contain_text(words)
        if screen.screen_width < 640 and name.startswith("invoices"):
            # The invoices come before the filters, folded behind one button.
            expect(screen.locator(".filters-panel form")).to_be_hidden()
            # ("Filters" in Dutch too)
            expect(screen.locator(".filters-panel > summary")).to_have_text("Filters (1)" if "status" in path else "Filters")
    # The menu: on a phone it opens from one button and holds the account links too.
    if screen.screen_width < 640:
        menu = screen.locator(".site-menu > summary")
        menu.click()
        expect(screen.locator(".site-nav")).to_be_visible()
        expect(screen.locator(".account-menu__panel")).to_be_visible()
        check_page(screen, "menu-open")
        screen.keyboard.press("Escape")
        expect(screen.locator(".site-nav")).to_be_hidden()
    else:
        expect(screen.locator(".site-nav")).to_be_visible()
        screen.locator(".account-menu > summary").click()
        expect(screen.locator("#language-switch")).to_be_visible()
        check_page(screen, "account-menu-open")


def test_login_page_fits_every_screen(live_url, screen, committed):
    screen.goto(f"{live_url}{reverse('account_login')}")
    expect(screen.locator("input[name=login]")).to_be_visible()
    _header_is_one_row(screen)
    check_page(screen, "login")


def _ledger_of_five():
    brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
    client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
    MembershipFactory(client=client, user__email="alice@northwind.test", user__language="en")
    for n, (days_ago, amount) in enumerate([(5, "400.00"), (50, "100.00"), (20, "900.00"), (80, "250.00"),
                                           (2, "10.00")]):
        make_invoice(client, number=f"NW-{n + 1}", issue_date=TODAY - days_ago * DAY,
                     lines=[line("Consulting", unit_price=amount)])


def _numbers(page) -> list[str]:
    return page.locator(".invoice-table tbody .invoice-number").all_inner_texts()


def _english_page(browser, width, height):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB", accept_downloads=True)
    page = context.new_page()
    page.screen_width = width
    return context, page


@pytest.fixture
def desktop(browser):
    context, page = _english_page(browser, 1280, 800)
    yield page
    context.close()


@pytest.fixture
def phone(browser):
    context, page = _english_page(browser, 375, 740)
    yield page
    context.close()


def test_the_invoice_table_sorts_by_its_headers_selects_all_and_downloads_a_zip(committed, live_url, desktop):
    page = desktop
    committed.create(_ledger_of_five)
    log_in(page, f"{live_url}/invoices/", "alice@northwind.test")
    expect(page.locator(".invoice-table tbody tr")).to_have_count(5)
    assert _numbers(page) == ["NW-5", "NW-1", "NW-3", "NW-2", "NW-4"]  # newest first
    issued = page.get_by_role("columnheader", name=re.compile("^Issue date"))
    expect(issued).to_have_attribute("aria-sort", "descending")

    # A header sorts (htmx swaps the rows, the URL follows); the keyboard works too; again reverses.
    total = page.get_by_role("columnheader", name=re.compile("^Total"))
    total.get_by_role("link").click()
    page.wait_for_url(re.compile(r"sort=-total"))
    expect(page.get_by_role("columnheader", name=re.compile("^Total"))).to_have_attribute("aria-sort", "descending")
    assert _numbers(page) == ["NW-3", "NW-1", "NW-4", "NW-2", "NW-5"]
    expect(page.get_by_role("columnheader", name=re.compile("^Issue date"))).not_to_have_attribute("aria-sort", re.compile(".*"))
    page.get_by_role("columnheader", name=re.compile("^Total")).get_by_role("link").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"sort=total"))
    expect(page.get_by_role("columnheader", name=re.compile("^Total"))).to_have_attribute("aria-sort", "ascending")
    assert _numbers(page) == ["NW-5", "NW-2", "NW-4", "NW-1", "NW-3"]
    expect(page.get_by_label("Sort by")).to_have_value("total")  # the filter form follows

    # Nothing ticked: the buttons cannot be pressed. Select all ticks every row and enables them.
    pay_selected = page.get_by_role("button", name="Pay selected")
    download = page.get_by_role("button", name="Download ZIP")
    expect(pay_selected).to_be_disabled()
    expect(download).to_be_disabled()
    page.get_by_label("Select all").check()
    expect(page.locator("input[name=invoice]:checked")).to_have_count(5)
    expect(pay_selected).to_be_enabled()
    page.get_by_label("Select NW-1").uncheck()
    expect(page.get_by_label("Select all")).not_to_be_checked()
    with page.expect_download() as downloaded:
        download.click()
    names = sorted(zipfile.ZipFile(io.BytesIO(Path(downloaded.value.path()).read_bytes())).namelist())
    assert names == ["NW-2.pdf", "NW-3.pdf", "NW-4.pdf", "NW-5.pdf"]
    assert "csrfmiddlewaretoken" not in page.url
    page.get_by_label("Select all").check()  # all four, then none
    page.get_by_label("Select all").uncheck()
    expect(download).to_be_disabled()


def test_on_a_phone_the_invoices_come_first_as_cards_and_the_filters_fold_away(committed, live_url, phone):
    screen = phone
    committed.create(_ledger_of_five)
    log_in(screen, f"{live_url}/invoices/?status=open", "alice@northwind.test")
    first = screen.locator(".invoice-table tbody tr").first
    expect(first).to_be_visible()
    toggle = screen.get_by_text("Filters (1)")
    assert toggle.bounding_box()["y"] < first.bounding_box()["y"] < screen.viewport_size["height"]
    expect(screen.get_by_label("Issued from")).to_be_hidden()
    # A card says what each value is.
    labels = first.evaluate("row => [...row.querySelectorAll('td[data-label]')]"
                            ".map(cell => getComputedStyle(cell, '::before').content)")
    assert labels == ['"Number"', '"Issue date"', '"Due date"', '"Total"', '"Open"', '"Status"']
    toggle.click()
    expect(screen.get_by_label("Issued from")).to_be_visible()
    screen.get_by_label("Select all").check()
    expect(screen.get_by_role("button", name="Pay selected")).to_be_enabled()
