"""The back office at 1280 px (staff work on desktops), in English and Dutch: the invoice,
payment, inbound-webhook, credit-note and job lists and an invoice's page show their key
columns without a sideways scroll, amounts formatted, and a read-only record offers no Save or
Delete."""
import datetime
import json

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from invoices import services
from portal.models import Job, WebhookRequest
from tests.e2e.support import log_in, screenshot, sideways_overflow
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, UserFactory

pytestmark = pytest.mark.e2e


def _back_office():
    brand = BrandFactory(name="Acme Accounting Services B.V.", is_default=True)
    names = ["Northwind Traders International Holding B.V.", "Van der Berg Installatietechniek en Onderhoud B.V."]
    clients = [ClientFactory(brand=brand, name=name) for name in names]
    days = datetime.timedelta(days=1)
    invoices = []
    for n in range(12):
        lines = [line("Consultancy and implementation support, phase %d" % (i + 1), quantity="12.5",
                      unit_price="135.0000", discount="5") for i in range(3)]
        invoices.append(make_invoice(clients[n % 2], number=f"INV-2026-{n + 1:06d}", issue_date=TODAY - 40 * n * days,
                                     lines=lines))
    pay(clients[0], [(invoices[0], "1000.00")], reference="Bank transfer 2026-11-25 NL91ABNA0417164300")
    services.credit_note_create(invoice=invoices[1], number="CN-2026-000001", issue_date=TODAY,
                                lines=[line("Discount agreed for the delayed delivery", unit_price="250.00")])
    for n in range(6):
        Job.objects.create(kind="accounting.event", key=f"webhook:{1000 + n}", subject=f"connection:exact-online-{n}",
                           state=Job.State.DEAD, attempts=6, run_after=timezone.now(),
                           last_error="ConnectionError: HTTPSConnectionPool(host='start.exactonline.nl', port=443): "
                                      "Max retries exceeded with url: /api/v1/current/Me")
    for n in range(6):
        WebhookRequest.objects.create(
            source="accounting", account="exact-online-production-connection", status=WebhookRequest.Status.REJECTED,
            natural_key=f"evt_2026_11_25_{n:04d}_7f3c9a1e-0b8d-4f7e-9a52-3c1d2e4f5a6b",
            error="The signature does not match any of the connection's signing secrets (webhook-signature)",
            headers={"webhook-id": f"msg_{n}"}, body=json.dumps({"id": n}), ip_address="203.0.113.7")
    return invoices[0], UserFactory(email="sam@acme.test", is_staff=True, is_superuser=True)


@pytest.fixture(params=["en", "nl"])
def desktop(request, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  locale="nl-NL" if request.param == "nl" else "en-GB")
    page = context.new_page()
    page.screen_width, page.language = 1280, request.param
    yield page
    context.close()


def _hidden_columns(page) -> list[str]:
    """Boxes that scroll sideways inside the page (Django wraps a list's table in one): their
    columns are out of sight although the page itself fits."""
    return page.evaluate("""() => [...document.querySelectorAll('#content *')]
        .filter(el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX)
                      && el.scrollWidth > el.clientWidth + 1)
        .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${el.scrollWidth} > ${el.clientWidth}`)""")


def _sign_in(page, live_url, staff):
    from tests.staff_mfa import enrol_totp, totp_code

    secret = enrol_totp(staff)
    log_in(page, f"{live_url}/", staff.email)
    # The back office needs a second factor (portal/staff_mfa.py).
    page.wait_for_url(f"{live_url}/accounts/2fa/authenticate/")
    page.locator("input[name=code]").fill(totp_code(secret))
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url(f"{live_url}/admin/")


def test_back_office_lists_and_invoice_page_fit_a_desktop(committed, live_url, desktop):
    invoice, staff = committed.create(_back_office)
    _sign_in(desktop, live_url, staff)
    for name, path in [("invoices", "/admin/invoices/invoice/"), ("payments", "/admin/invoices/payment/"),
                       ("webhooks", "/admin/portal/webhookrequest/"), ("credit-notes", "/admin/invoices/creditnote/"),
                       ("jobs", "/admin/portal/job/"),
                       ("invoice", f"/admin/invoices/invoice/{invoice.pk}/change/")]:
        desktop.goto(f"{live_url}{path}")
        screenshot(desktop, f"admin-{name}")
        assert sideways_overflow(desktop) == [], (name, sideways_overflow(desktop))
        assert _hidden_columns(desktop) == [], (name, _hidden_columns(desktop))
    # The invoice is a record: no Save, no Delete; its amounts read as money.
    expect(desktop.locator("input[name=_save]")).to_have_count(0)
    expect(desktop.locator("a.deletelink")).to_have_count(0)
    money = "€135.00" if desktop.language == "en" else "€\u00a0135,00"  # a unit price stored as 135.0000
    expect(desktop.locator("#content").get_by_text(money).first).to_be_visible()
    assert "135.0000" not in desktop.content()
