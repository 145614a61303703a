"""Connecting Twinfield from the back office, in a browser, against the local Twinfield: staff press
Connect, authorise at Wolters Kluwer's consent page, come back to a page that waits for the connect
job (a real worker: code, cluster, offices), choose the office and the bank daybook, press Poll now;
the invoice in Twinfield's books then appears in the client's own portal."""
import time

import pytest
from playwright.sync_api import expect

from integrations.models import ClientLink, Connection
from integrations.twinfield.models import TwinfieldConnection
from tests.e2e.support import log_in, screenshot, sign_in_staff, wait_for_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e


def _books(twinfield_server):
    """Twinfield's side: an office with a customer and an invoice (the fake serves every test, so
    each run gets its own office)."""
    office = twinfield_server.add_office(f"E2E{int(time.time() * 1000) % 10_000_000}", "Bakkerij De Vries B.V.")
    customer = twinfield_server.add_customer(office, "Bakkerij De Vries B.V.", email="admin@devries.test",
                                             street="Dorpsstraat 1", postcode="1234 AB", city="Utrecht")
    invoice = twinfield_server.add_sales_invoice(office, customer["code"], [("Boekhouding november", "450.00", "VH")],
                                                 invoice_number="2026-1107")
    return office, customer, invoice


def _portal(twinfield_server, customer):
    def build():
        brand = BrandFactory(is_default=True)
        link = Connection.objects.create(name="Twinfield", slug="twinfield", kind=Connection.Kind.TWINFIELD,
                                         brand=brand, signing_secrets="whsec_unused")
        twinfield = TwinfieldConnection.objects.create(connection=link, client_id=twinfield_server.oauth.client_id,
                                                       client_secret=twinfield_server.oauth.client_secret)
        client = ClientFactory(brand=brand, name="Bakkerij De Vries B.V.")
        ClientLink.objects.create(connection=link, external_id=customer["code"], client=client)
        owner = MembershipFactory(client=client, user=UserFactory(email="fenna@devries.test")).user
        staff = UserFactory(email="sam@acme.test", is_staff=True, is_superuser=True)
        return twinfield, owner, staff

    return build


def test_staff_connect_twinfield_in_admin_and_its_invoice_appears_in_the_clients_portal(
        committed, live_url, twinfield_server, celery_worker_process, browser):
    office, customer, made = _books(twinfield_server)
    twinfield, owner, staff = committed.create(_portal(twinfield_server, customer))
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    page = context.new_page()
    page.screen_width = 1280
    sign_in_staff(page, live_url, staff)

    page.goto(f"{live_url}/admin/integrations/twinfieldconnection/{twinfield.pk}/change/")
    expect(page.get_by_test_id("twinfield-state")).to_contain_text("Not connected yet")
    page.get_by_test_id("twinfield-connect").click()
    page.get_by_test_id("twinfield-consent-accept").click()  # Wolters Kluwer's consent page (the fake's)
    # The page that waits for the worker's connect job reloads itself until the offices are read.
    page.wait_for_url(f"{live_url}/admin/integrations/twinfieldconnection/{twinfield.pk}/office/", timeout=60_000)
    page.get_by_test_id("twinfield-office").select_option(office)
    page.get_by_test_id("twinfield-office-save").click()
    page.get_by_test_id("twinfield-daybook").select_option("BNK")
    page.get_by_test_id("twinfield-daybook-save").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Twinfield is connected: office {office}, daybook BNK.")
    expect(page.get_by_test_id("twinfield-state")).to_contain_text("Connected")

    page.get_by_test_id("twinfield-poll-now").click()
    expect(page.locator(".messagelist")).to_contain_text("Poll started")
    invoice = wait_for_invoice(made["invoicenumber"], source="Twinfield")
    assert invoice.client.name == "Bakkerij De Vries B.V." and str(invoice.total) == "544.50"
    page.reload()
    expect(page.get_by_test_id("twinfield-last-poll")).not_to_have_text("never")
    expect(page.get_by_test_id("twinfield-cursors")).to_contain_text("Sales transactions")
    screenshot(page, "admin-twinfield-connection")
    context.close()

    # The client's contact sees it in their portal.
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="en-GB")
    portal = context.new_page()
    log_in(portal, f"{live_url}/", owner.email)
    portal.goto(f"{live_url}/invoices/")
    expect(portal.locator("main")).to_contain_text(made["invoicenumber"])
    context.close()
