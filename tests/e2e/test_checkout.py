"""Paying in Chromium on a phone and a desktop, in Dutch and English: an amount typed the way the
client writes it (Dutch `10,50`) is what the gateway is asked for, the Pay button follows what
is typed, the payment leads to a receipt (page and PDF) with its PAY- reference; a pending
payment shows on the dashboard, the list and the invoice and cannot be paid twice; an invoice
lowered only by a credit note says "Partly credited"."""
import datetime
import io
import re
import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from invoices import services as ledger
from invoices.models import Payment
from payments import services
from payments.gateways import GatewayPayment
from payments.models import CheckoutAttempt, SandboxPayment
from portal.rls import staff_scope
from tests.e2e.support import check_page, log_in
from tests.invoices.factories import TODAY, line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e
EMAIL = "alice@northwind.test"
WORDS = {
    "en": {"typed": "10.50", "pay": "Pay €10.50", "pending": "Payment pending", "credited": "Partly credited",
           "refused": "A payment for the chosen invoices is pending", "receipt": "View your receipt",
           "thanks": "Paid. Thank you!", "amount": "€10.50", "sandbox": "Sandbox payment gateway",
           "sandbox_pay": "Pay", "overdue": "Pay what is overdue", "pay_overdue": "Pay €484.00",
           "pending_amount": "€363.00", "no_payments": "No payments yet."},
    "nl": {"typed": "10,50", "pay": "Betaal €\u00a010,50", "pending": "Betaling in behandeling",
           "credited": "Gedeeltelijk gecrediteerd", "refused": "Voor de gekozen facturen is al een betaling",
           "receipt": "Bekijk uw betalingsbewijs", "thanks": "Betaald. Dank u wel!", "amount": "€\u00a010,50",
           "sandbox": "Testbetaalomgeving", "sandbox_pay": "Betalen", "overdue": "Betaal wat achterstallig is",
           "pay_overdue": "Betaal €\u00a0484,00", "pending_amount": "€\u00a0363,00",
           "no_payments": "Nog geen betalingen."},
}


def _client(language):
    brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
    client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale=language)
    MembershipFactory(client=client, user__email=EMAIL, user__language=language)
    services.gateway_for_brand(brand)
    return client


def _pdf_text(content: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


def test_an_amount_typed_in_the_clients_language_is_charged_and_gets_a_receipt(
        committed, celery_worker_process, live_url, screen):
    words = WORDS[screen.language]

    def build():
        client = _client(screen.language)
        return make_invoice(client, number="NW-PAY-1", lines=[line("Bookkeeping", unit_price="1000.00")])

    invoice = committed.create(build)  # 1,210.00
    log_in(screen, f"{live_url}/pay/?invoice={invoice.pk}", EMAIL)
    amount = screen.locator(f"#id_amount_{invoice.pk}")
    expect(amount).to_have_attribute("inputmode", "decimal")
    amount.fill(words["typed"])
    pay = screen.get_by_test_id("pay-button")
    expect(pay).to_have_text(words["pay"])  # the summary followed the typing (htmx, formatted server-side)
    expect(screen.get_by_test_id("checkout-total")).to_have_text(words["amount"])
    check_page(screen, "checkout")
    pay.click()

    expect(screen.get_by_role("heading", name=words["sandbox"])).to_be_visible()
    with staff_scope():
        [sandbox] = SandboxPayment.objects.all()
    assert (sandbox.amount, sandbox.currency) == (Decimal("10.50"), "EUR")  # never 1,050.00
    screen.get_by_role("button", name=words["sandbox_pay"], exact=True).click()

    expect(screen.get_by_role("heading", name=words["thanks"])).to_be_visible(timeout=20_000)
    screen.get_by_role("link", name=words["receipt"]).click()
    with staff_scope():
        payment = Payment.objects.get()
    assert re.fullmatch(r"PAY-\d{4}-\d{6}", payment.number)
    expect(screen.get_by_test_id("payment-number")).to_have_text(payment.number)
    check_page(screen, "receipt")
    assert sandbox.provider_payment_id not in screen.content()

    pdf = screen.request.get(f"{live_url}/payments/{payment.pk}/receipt.pdf")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    text = _pdf_text(pdf.body())
    assert payment.number in text and "NW-PAY-1" in text

    screen.goto(f"{live_url}/payments/")
    expect(screen.get_by_test_id("payment").first).to_contain_text(payment.number)
    check_page(screen, "payments")


def test_a_pending_payment_shows_everywhere_and_is_not_paid_twice(committed, live_url, screen):
    words = WORDS[screen.language]

    def build():
        client = _client(screen.language)
        pending = make_invoice(client, number="NW-SEPA", issue_date=TODAY - datetime.timedelta(days=45),
                               lines=[line("Audit", unit_price="300.00")])
        credited = make_invoice(client, number="NW-CRED", lines=[line("Hosting", unit_price="100.00")])
        ledger.credit_note_create(invoice=credited, number="NW-CN-1", issue_date=TODAY,
                                  lines=[line(unit_price="10.00")])
        return client, pending, credited

    client, pending, credited = committed.create(build)
    with staff_scope():
        attempt = services.checkout_start(client=client, user=None, requested=[(pending, pending.open_balance)],
                                          method="sepa_direct_debit", idempotency_key=uuid.uuid4())
        services.checkout_apply(gateway=attempt.gateway, reported=GatewayPayment(
            attempt.provider_payment_id, CheckoutAttempt.Status.PENDING, attempt.amount, attempt.currency))

    log_in(screen, f"{live_url}/", EMAIL)
    expect(screen.get_by_test_id("pending-payments")).to_contain_text("NW-SEPA")
    expect(screen.get_by_test_id("pending-payments")).to_contain_text(words["pending"])
    check_page(screen, "dashboard-pending")

    screen.goto(f"{live_url}/invoices/{pending.pk}/")
    expect(screen.get_by_test_id("pending")).to_contain_text(words["pending"])
    expect(screen.locator("a.button--pay")).to_have_count(0)  # nothing left to pay now
    # Under the payments the pending one is listed, not "No payments yet".
    expect(screen.get_by_test_id("pending-entry")).to_contain_text(words["pending"])
    expect(screen.get_by_test_id("pending-entry")).to_contain_text(words["pending_amount"])
    expect(screen.get_by_text(words["no_payments"])).to_have_count(0)
    check_page(screen, "invoice-pending")

    # A second payment for the pending part is refused, back on the list with the reason.
    screen.goto(f"{live_url}/pay/?invoice={pending.pk}")
    expect(screen.locator(".messages")).to_contain_text(words["refused"])
    assert screen.url.startswith(f"{live_url}/invoices/")
    expect(screen.get_by_test_id("pending-note").first).to_be_visible()
    check_page(screen, "list-pending")

    screen.goto(f"{live_url}/invoices/{credited.pk}/")
    expect(screen.get_by_role("heading", level=1)).to_contain_text(words["credited"])
    check_page(screen, "invoice-partly-credited")


def test_pay_what_is_overdue_goes_from_the_overview_straight_to_a_checkout_of_every_overdue_invoice(
        committed, live_url, screen):
    words = WORDS[screen.language]

    def build():
        client = _client(screen.language)
        for number, days, price in (("NW-LATE-1", 60, "100.00"), ("NW-LATE-2", 45, "300.00"), ("NW-NEW", 2, "50.00")):
            make_invoice(client, number=number, issue_date=TODAY - datetime.timedelta(days=days),
                         lines=[line("Bookkeeping", unit_price=price)])

    committed.create(build)
    log_in(screen, f"{live_url}/", EMAIL)
    screen.get_by_role("link", name=words["overdue"]).click()
    summary = screen.get_by_test_id("checkout-summary")
    expect(summary).to_contain_text("NW-LATE-1")
    expect(summary).to_contain_text("NW-LATE-2")
    expect(summary).not_to_contain_text("NW-NEW")
    expect(screen.get_by_test_id("pay-button")).to_have_text(words["pay_overdue"])  # 121.00 + 363.00
    check_page(screen, "checkout-overdue")


def test_an_amount_typed_in_the_clients_language_is_what_mollie_is_asked_for(
        committed, mollie_server, live_url, screen):
    from payments.models import GatewayAccount
    from tests.conftest import MOLLIE_TEST_KEY

    words = WORDS[screen.language]
    number = f"NW-MOL-{screen.language}-{screen.screen_width}"

    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True)
        GatewayAccount.objects.create(brand=brand, provider="mollie", api_key=MOLLIE_TEST_KEY, ideal=True,
                                      card=False, sepa_direct_debit=False, allow_partial=True)
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale=screen.language)
        MembershipFactory(client=client, user__email=EMAIL, user__language=screen.language)
        return make_invoice(client, number=number, lines=[line("Bookkeeping", unit_price="1000.00")])

    invoice = committed.create(build)  # 1,210.00
    log_in(screen, f"{live_url}/pay/?invoice={invoice.pk}", EMAIL)
    screen.locator(f"#id_amount_{invoice.pk}").fill(words["typed"])
    pay = screen.get_by_test_id("pay-button")
    expect(pay).to_have_text(words["pay"])
    pay.click()
    expect(screen.get_by_role("heading", name="Test bank — iDEAL")).to_be_visible()  # at the bank, via Mollie
    with staff_scope():
        attempt = CheckoutAttempt.objects.get(items__invoice=invoice)
    assert mollie_server.payments[attempt.provider_payment_id]["amount"] == {"currency": "EUR", "value": "10.50"}
