"""Live pages in Chromium, on the four screens: with the overview, the invoice list or an invoice
open, a new invoice and a payment committed elsewhere appear without a reload, announced in the
polite status region in the client's language; a list with a ticked box is not changed under
the client's hands (a fixed notice offers the update). Pages poll every LIVE_POLL_SECONDS (1 s
in the test settings)."""
import datetime

import pytest
from playwright.sync_api import expect

from tests.e2e.support import check_page, log_in
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e
SECONDS = 8_000  # ms: a poll a second, a page fetch, on two busy cores

WORDS = {
    "en": {"new": "New invoice LIVE-2", "paid": "Payment received: €60.50", "partly": "Payment received: €20.00",
           "notice": "There are updates to this page.", "show": "Show updates", "paid_amount": "€60.50"},
    "nl": {"new": "Nieuwe factuur LIVE-2", "paid": "Betaling ontvangen: € 60,50",
           "partly": "Betaling ontvangen: € 20,00", "notice": "Er zijn wijzigingen op deze pagina.",
           "show": "Wijzigingen tonen", "paid_amount": "€ 60,50"},
}


def test_new_invoices_and_payments_appear_without_a_reload(screen, committed, live_url):
    language = screen.language
    words = {key: value.replace(" ", "\u00a0") if key in ("paid", "partly", "paid_amount") and language == "nl"
             else value for key, value in WORDS[language].items()}
    email = f"live-{language}-{screen.screen_width}@live.test"

    def ledger():
        client = ClientFactory(brand=BrandFactory(), name="Live Traders B.V.", locale=language)
        MembershipFactory(client=client, user__email=email, user__language=language)
        first = make_invoice(client, number="LIVE-1", issue_date=datetime.date.today(),
                             lines=[line("Hosting", unit_price="100.00")])
        return client, first

    client, first = committed.create(ledger)
    log_in(screen, f"{live_url}/", email)
    status = screen.locator("#live-status")

    # The overview: a new invoice arrives.
    expect(screen.locator("#live-dashboard")).to_be_visible()
    second = committed.create(lambda: make_invoice(client, number="LIVE-2", lines=[line(unit_price="50.00")]))
    expect(screen.locator("#live-dashboard")).to_contain_text("LIVE-2", timeout=SECONDS)
    expect(status).to_contain_text(words["new"], timeout=SECONDS)
    check_page(screen, "live-overview")

    # The list, with a box ticked: the payment waits behind a notice until the client asks.
    screen.goto(f"{live_url}/invoices/")
    row_box = screen.locator("#results input[type=checkbox][name=invoice]").first
    row_box.check()
    committed.create(lambda: pay(client, [(second, "60.50")]))
    notice = screen.locator("#live-notice")
    expect(notice).to_be_visible(timeout=SECONDS)
    expect(notice).to_contain_text(words["notice"])
    expect(status).to_contain_text(words["paid"], timeout=SECONDS)
    expect(row_box).to_be_checked()  # nothing changed under the client's hands
    check_page(screen, "live-list-notice")
    notice.get_by_role("button", name=words["show"]).click()
    expect(notice).to_be_hidden(timeout=SECONDS)
    expect(screen.locator("#results input[type=checkbox][name=invoice]:checked")).to_have_count(0)

    # An invoice open: a part payment shows in its payments and balance.
    screen.goto(f"{live_url}/invoices/{first.pk}/")
    expect(screen.locator("#live-invoice")).to_be_visible()
    committed.create(lambda: pay(client, [(first, "20.00")]))
    expect(status).to_contain_text(words["partly"], timeout=SECONDS)
    expect(screen.locator("#live-invoice")).to_contain_text("101" if language == "en" else "101,00", timeout=SECONDS)
    check_page(screen, "live-invoice")
