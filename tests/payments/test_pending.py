"""A payment the gateway has not settled (pending, a SEPA debit) is seen everywhere the invoice
is, is not payable twice, and is counted exactly under concurrency; every payment has a page,
a receipt and a receipt PDF with its PAY- reference, never the gateway's id."""
import io
import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from invoices.errors import DomainError
from invoices.models import Invoice, Payment
from payments import services
from payments.gateways import GatewayPayment
from payments.models import CheckoutAttempt, SandboxPayment
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal
PENDING = CheckoutAttempt.Status.PENDING


@pytest.fixture
def alpha(committed, worker):
    def build():
        brand = BrandFactory(is_default=True)
        client = ClientFactory(brand=brand, name="Alpha B.V.", locale="en")
        owner = MembershipFactory(client=client, user__email="owner@alpha.test", user__language="en").user
        services.gateway_for_brand(brand)
        return {"client": client, "owner": owner,
                "invoice": make_invoice(client, number="A-1", lines=[line(unit_price="100.00")])}  # 121.00

    return committed.create(build)


def _started(alpha, amount, invoice=None):
    with staff_scope():
        return services.checkout_start(client=alpha["client"], user=alpha["owner"],
                                       requested=[(invoice or alpha["invoice"], D(amount))], method="sepa_direct_debit",
                                       idempotency_key=uuid.uuid4())


def _report(attempt, status):
    with staff_scope():
        return services.checkout_apply(gateway=attempt.gateway, reported=GatewayPayment(
            attempt.provider_payment_id, status, attempt.amount, attempt.currency))


def _invoice(alpha):
    with staff_scope():
        return Invoice.objects.get(pk=alpha["invoice"].pk)


def _pdf_text(content: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


def test_a_pending_payment_shows_everywhere_and_leaves_only_the_rest_payable(alpha, client):
    attempt = _started(alpha, "100.00")
    assert _invoice(alpha).amount_pending == D("0.00")  # on the gateway's page: not pending yet
    _report(attempt, PENDING)
    invoice = _invoice(alpha)
    assert (invoice.amount_pending, invoice.payable_balance, invoice.pending_method) == (
        D("100.00"), D("21.00"), "sepa_direct_debit")
    client.force_login(alpha["owner"])
    for url in (reverse("invoices:list"), reverse("invoices:detail", args=[invoice.pk]), reverse("portal:home")):
        page = client.get(url)
        assert "Payment pending" in page.text and "€100.00 by SEPA direct debit" in page.text, url
    statement = client.get(reverse("invoices:statement"), {"start": "2026-01-01", "end": "2026-12-31"})
    text = _pdf_text(statement.content)
    assert "Payments pending" in text and "€100.00" in text and "SEPA direct debit" in text
    # The pending part cannot be started again; the rest can.
    with pytest.raises(DomainError, match=r"At most €21.00 can be paid now: €100.00 is already pending."):
        _started(alpha, "121.00")
    _started(alpha, "21.00")
    # It fails: the whole balance is payable again.
    _report(attempt, CheckoutAttempt.Status.FAILED)
    assert (_invoice(alpha).amount_pending, _invoice(alpha).payable_balance) == (D("0.00"), D("121.00"))


def test_the_invoices_payments_section_shows_the_pending_payment_not_no_payments_yet(alpha, client):
    client.force_login(alpha["owner"])
    detail = reverse("invoices:detail", args=[alpha["invoice"].pk])
    assert "No payments yet." in client.get(detail).text
    attempt = _started(alpha, "121.00")
    _report(attempt, PENDING)
    page = client.get(detail).text
    received = page[page.index("Payments received"):]
    assert "No payments yet." not in received
    assert 'data-testid="pending-entry"' in received and "Payment pending" in received
    assert "€121.00 by SEPA direct debit on" in received
    _report(attempt, CheckoutAttempt.Status.FAILED)  # it failed: nothing is on its way any more
    assert "No payments yet." in client.get(detail).text


def test_the_invoice_list_reads_pending_payments_without_a_query_per_row(alpha, client):
    client.force_login(alpha["owner"])

    def queries():
        with CaptureQueriesContext(connection) as seen:
            assert client.get(reverse("invoices:list")).status_code == 200
        return len(seen)

    for _ in range(2):
        extra = committed_invoice(alpha)
        _report(_started(alpha, "121.00", invoice=extra), PENDING)
    queries()  # the first page of a session also saves the session
    few = queries()
    for _ in range(4):
        extra = committed_invoice(alpha)
        _report(_started(alpha, "121.00", invoice=extra), PENDING)
    assert queries() == few


def committed_invoice(alpha):
    with staff_scope():
        return make_invoice(alpha["client"], lines=[line(unit_price="100.00")])


def test_two_pending_reports_at_once_are_both_counted(alpha):
    attempts = [_started(alpha, "50.00"), _started(alpha, "60.00")]
    barrier, errors = threading.Barrier(2), []

    def report(attempt):
        barrier.wait()
        try:
            _report(attempt, PENDING)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=report, args=(a,)) for a in attempts]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert _invoice(alpha).amount_pending == D("110.00")


def _waiting_for_a_lock(count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"{count} sessions never waited for a lock")


def test_a_checkout_waiting_behind_a_pending_report_sees_it_and_is_refused(alpha):
    """The invoice's row lock orders them: the report that got there first is counted before the
    new checkout checks what is payable, so the two together never pass the balance."""
    from django.db import transaction

    attempt = _started(alpha, "121.00")
    outcome = {}

    def in_thread(name, work):
        try:
            outcome[name] = work()
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcome[name] = exc
        finally:
            connection.close()

    with staff_scope():
        with transaction.atomic():  # this test's own connection holds the invoice's lock meanwhile
            Invoice.objects.select_for_update().get(pk=alpha["invoice"].pk)
            report = threading.Thread(target=in_thread, args=("report", lambda: _report(attempt, PENDING)))
            report.start()
            _waiting_for_a_lock(1)
            second = threading.Thread(target=in_thread, args=("checkout", lambda: _started(alpha, "121.00")))
            second.start()
            _waiting_for_a_lock(2)
    report.join()
    second.join()
    assert isinstance(outcome["report"], CheckoutAttempt), outcome
    assert isinstance(outcome["checkout"], DomainError), outcome
    assert "is pending" in str(outcome["checkout"])
    with staff_scope():
        assert CheckoutAttempt.objects.filter(client=alpha["client"]).count() == 1
    assert _invoice(alpha).amount_pending == D("121.00")


def test_payments_page_receipt_and_pdf_show_the_reference_never_the_gateway_id(alpha, client, worker):
    client.force_login(alpha["owner"])
    invoice = alpha["invoice"]
    response = client.post(reverse("payments:checkout"), {
        "invoice": invoice.pk, "idempotency_key": str(uuid.uuid4()), "method": "ideal",
        f"amount_{invoice.pk}": "121.00"})
    back = client.post(response.url, {"outcome": "paid"}).url
    worker.run()
    with staff_scope():
        payment = Payment.objects.get(client=alpha["client"])
        gateway_id = SandboxPayment.objects.get().provider_payment_id
    assert payment.number.startswith("PAY-20") and len(payment.number) == len("PAY-2026-000001")
    returned = client.get(back)
    assert reverse("payments:receipt", args=[payment.pk]) in returned.text
    listing = client.get(reverse("payments:list"))
    assert payment.number in listing.text and "A-1" in listing.text and "€121.00" in listing.text
    receipt = client.get(reverse("payments:receipt", args=[payment.pk]))
    assert payment.number in receipt.text and "iDEAL" in receipt.text
    pdf = client.get(reverse("payments:receipt_pdf", args=[payment.pk]))
    assert pdf["Content-Type"] == "application/pdf"
    text = _pdf_text(b"".join(pdf.streaming_content) if pdf.streaming else pdf.content)
    assert payment.number in text and "A-1" in text and "€121.00" in text
    for page in (listing.text, receipt.text, returned.text, text):
        assert gateway_id not in page and "sb_" not in page


def test_the_payments_page_and_dashboard_show_the_clients_credit(alpha, client):
    pay(alpha["client"], [(alpha["invoice"], "121.00")], amount="150.00")  # 29.00 over
    client.force_login(alpha["owner"])
    for url in (reverse("payments:list"), reverse("portal:home")):
        page = client.get(url)
        assert "Your credit" in page.text and "€29.00" in page.text, url
