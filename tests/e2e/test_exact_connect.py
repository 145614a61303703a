"""Connecting Exact Online from the back office, in a browser, against the local fake Exact: staff
press Connect, authorise at Exact's consent page, come back to a page that waits for the connect
job (a real worker), choose the division and the bank journal, press Sync now; the invoice in
Exact's books then appears in the client's own portal."""
import time

import pytest
from playwright.sync_api import expect

from integrations.exact.models import ExactConnection
from integrations.models import ClientLink, Connection
from tests.e2e.support import log_in, screenshot, sign_in_staff, wait_for_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e

DIVISION = 1234567


def _books(exact_server):
    """Exact's side: a division with a customer and an open invoice (the fake serves every test,
    so each run gets its own division and customer)."""
    division = DIVISION + int(time.time()) % 100_000
    exact_server.add_division(division, "Bakkerij De Vries Holding B.V.")
    account = exact_server.add_account("Bakkerij De Vries B.V.", division=division, email="admin@devries.test")
    invoice = exact_server.add_invoice(account, [("Boekhouding november", 1, "450.00", "2")], division=division,
                                       status=20, description="Boekhouding november")
    return division, account, invoice


def _portal(exact_server, account):
    def build():
        brand = BrandFactory(is_default=True)
        link = Connection.objects.create(name="Exact Online", slug="exact-online", kind=Connection.Kind.EXACT_ONLINE,
                                         brand=brand, signing_secrets="whsec_unused")
        exact = ExactConnection.objects.create(connection=link, client_id=exact_server.oauth.client_id,
                                               client_secret=exact_server.oauth.client_secret,
                                               webhook_secret=exact_server.webhook_secret)
        client = ClientFactory(brand=brand, name="Bakkerij De Vries B.V.")
        ClientLink.objects.create(connection=link, external_id=account["ID"], client=client)
        owner = MembershipFactory(client=client, user=UserFactory(email="fenna@devries.test")).user
        staff = UserFactory(email="sam@acme.test", is_staff=True, is_superuser=True)
        return exact, owner, staff

    return build


def test_staff_connect_exact_in_admin_and_its_invoice_appears_in_the_clients_portal(
        committed, live_url, exact_server, celery_worker_process, browser):
    division, account, exact_invoice = _books(exact_server)
    exact, owner, staff = committed.create(_portal(exact_server, account))
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    page = context.new_page()
    page.screen_width = 1280
    sign_in_staff(page, live_url, staff)

    page.goto(f"{live_url}/admin/integrations/exactconnection/{exact.pk}/change/")
    expect(page.get_by_test_id("exact-state")).to_contain_text("Not connected yet")
    page.get_by_test_id("exact-connect").click()
    # Exact's own consent page (the fake's), then back to the back office.
    page.get_by_test_id("exact-consent-accept").click()
    # The page that waits for the worker's connect job reloads itself until the divisions are read.
    page.wait_for_url(f"{live_url}/admin/integrations/exactconnection/{exact.pk}/division/", timeout=60_000)
    page.get_by_test_id("exact-division").select_option(str(division))
    page.get_by_test_id("exact-division-save").click()
    page.get_by_test_id("exact-journal").select_option("20")
    page.get_by_test_id("exact-journal-save").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Exact Online is connected: division {division}, journal 20.")
    expect(page.get_by_test_id("exact-state")).to_contain_text("Connected")

    page.get_by_test_id("exact-sync-now").click()
    expect(page.locator(".messagelist")).to_contain_text("Sync started")
    number = str(exact_invoice["InvoiceNumber"])
    invoice = wait_for_invoice(number, source="Exact", seconds=60)
    assert invoice.client.name == "Bakkerij De Vries B.V."
    page.reload()
    expect(page.get_by_test_id("exact-last-sync")).not_to_have_text("never")
    expect(page.get_by_test_id("exact-cursors")).to_contain_text("Sales invoices")
    screenshot(page, "admin-exact-connection")

    # Webhooks: Exact checks the address with an empty POST to the running portal before it subscribes.
    page.get_by_test_id("exact-subscribe-webhooks").click()
    expect(page.locator(".messagelist")).to_contain_text("Webhooks subscribed")
    url = f"{live_url}/webhooks/exact/exact-online/"
    subscribed = {s["Topic"] for s in exact_server.subscriptions.values()
                  if s["CallbackURL"] == url and s["Division"] == division}
    assert subscribed == {"Accounts", "SalesInvoices", "FinancialTransactions"}
    context.close()

    # The client's contact sees it in their portal.
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="en-GB")
    portal = context.new_page()
    log_in(portal, f"{live_url}/", owner.email)
    portal.goto(f"{live_url}/invoices/")
    expect(portal.locator("main")).to_contain_text(number)
    context.close()
