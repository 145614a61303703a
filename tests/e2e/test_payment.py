"""Paying an invoice end to end in Chromium: Pay now → the sandbox gateway's checkout → back in
the portal, which updates itself when a real worker has processed the gateway's webhook."""
import time

import pytest
from playwright.sync_api import expect

from integrations.models import ClientLink, Connection
from integrations.signing import generate_secret
from tests.fakes.accounting import FakeAccounting
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import PASSWORD, BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e


def _sign_in_and_pay_by_ideal(page, invoice_url, pay_button):
    """A deep link to the invoice, the login on the way, Pay now, iDEAL, pay."""
    page.goto(invoice_url)
    page.get_by_label("Email").fill("alice@northwind.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.get_by_role("link", name="Pay now").click()
    page.get_by_label("iDEAL").check()
    page.get_by_role("button", name=pay_button).click()


@pytest.fixture
def accounting():
    with FakeAccounting(generate_secret()) as fake:
        yield fake


def test_client_pays_an_invoice_through_the_sandbox_gateway(committed, celery_worker_process, accounting, live_url,
                                                            page):
    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
        MembershipFactory(client=client, user__email="alice@northwind.test", user__language="en")
        erp = Connection.objects.create(name="ERP", slug="erp", brand=brand, signing_secrets=accounting.secret,
                                        outbound_url=accounting.url)
        ClientLink.objects.create(connection=erp, external_id="NW", client=client)
        return make_invoice(client, number="NW-PAY-1", lines=[line("Bookkeeping", unit_price="450.00")],
                            connection=erp, external_id="ERP-NW-PAY-1")

    invoice = committed.create(build)
    _sign_in_and_pay_by_ideal(page, f"{live_url}/invoices/{invoice.pk}/", "Pay €544.50")

    expect(page.get_by_role("heading", name="Sandbox payment gateway")).to_be_visible()
    page.get_by_role("button", name="Pay", exact=True).click()

    # Back in the portal: the page updates itself once the worker has applied the webhook.
    expect(page.get_by_role("heading", name="Paid. Thank you!")).to_be_visible(timeout=20_000)
    page.get_by_role("link", name="NW-PAY-1").click()
    expect(page.locator(".amount-card")).to_contain_text("€0.00")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Paid")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # And the accounting system has been told, signed, by the worker.
    deadline = time.monotonic() + 20
    while not accounting.received and time.monotonic() < deadline:
        time.sleep(0.2)
    [booked] = accounting.received
    assert booked["type"] == "payment.recorded" and booked["data"]["amount"] == "544.50"
    assert booked["data"]["allocations"][0]["invoice_external_id"] == "ERP-NW-PAY-1"


def test_client_pays_through_mollie_checkout_and_accounting_hears_of_it(
        committed, celery_worker_process, mollie_server, accounting, live_url, page):
    from payments.models import GatewayAccount
    from tests.conftest import MOLLIE_TEST_KEY

    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
        GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=MOLLIE_TEST_KEY, ideal=True,
                                      card=True, sepa_direct_debit=False)
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="en")
        MembershipFactory(client=client, user__email="alice@northwind.test", user__language="en")
        erp = Connection.objects.create(name="ERP", slug="erp", brand=brand, signing_secrets=accounting.secret,
                                        outbound_url=accounting.url)
        ClientLink.objects.create(connection=erp, external_id="NW", client=client)
        return make_invoice(client, number="NW-MOL-1", lines=[line("Bookkeeping", unit_price="100.00")],
                            connection=erp, external_id="ERP-NW-MOL-1")

    invoice = committed.create(build)
    _sign_in_and_pay_by_ideal(page, f"{live_url}/invoices/{invoice.pk}/", "Pay €121.00")

    expect(page.get_by_role("heading", name="Test bank — iDEAL")).to_be_visible()  # the bank, via Mollie (fake)
    assert page.url.startswith(mollie_server.url)
    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("heading", name="Paid. Thank you!")).to_be_visible(timeout=20_000)
    deadline = time.monotonic() + 20
    while not accounting.received and time.monotonic() < deadline:
        time.sleep(0.2)
    [booked] = accounting.received
    assert booked["data"]["amount"] == "121.00" and booked["data"]["gateway_payment_id"].startswith("mollie:")
