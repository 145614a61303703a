"""Downloads from the portal and the back office: who may, what they get, and the audit trail."""
import datetime
import io
from decimal import Decimal

from django.urls import reverse
from pypdf import PdfReader

from invoices import services
from invoices.models import Invoice, PaymentAllocation
from portal.models import AuditEvent
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


def _setup(db_brand=None):
    brand = db_brand or BrandFactory(is_default=True, iban="NL91ABNA0417164300", legal_footer="Acme · KvK 12345678")
    mine = ClientFactory(brand=brand, name="Alpha B.V.", locale="en")
    theirs = ClientFactory(brand=brand, name="Bravo B.V.")
    user = MembershipFactory(client=mine, user__email="owner@alpha.test").user
    return mine, theirs, user


def _text(response) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)


def test_client_downloads_its_invoice_pdf_with_proper_headers_and_an_audit_event(db, client):
    mine, _, user = _setup()
    invoice = make_invoice(mine, number="INV-2026-00042")
    client.force_login(user)
    response = client.get(reverse("invoices:invoice_pdf", args=[invoice.pk]), HTTP_USER_AGENT="pytest-browser")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="INV-2026-00042.pdf"'
    assert int(response["Content-Length"]) == len(response.content) and response.content.startswith(b"%PDF")
    assert response["Cache-Control"] == "private, no-store"
    assert "INV-2026-00042" in _text(response)
    with staff_scope():
        [event] = AuditEvent.objects.filter(action=AuditEvent.Action.FILE_DOWNLOADED)
    assert (event.actor_id, event.client_id, event.object_id, event.ip_address, event.user_agent) == (
        user.pk, mine.pk, str(invoice.pk), "127.0.0.1", "pytest-browser")
    assert event.details == {"format": "pdf", "number": "INV-2026-00042"}


def test_another_clients_invoice_and_a_draft_are_404(db, client):
    mine, theirs, user = _setup()
    other = make_invoice(theirs)
    with staff_scope():
        draft = services.invoice_create(client=mine, brand=mine.brand, number="DRAFT-1", issue_date=TODAY,
                                        due_date=TODAY, currency="EUR", lines=[line()], open_now=False)
    client.force_login(user)
    for url in (reverse("invoices:invoice_pdf", args=[other.pk]), reverse("invoices:invoice_ubl", args=[other.pk]),
                reverse("invoices:invoice_pdf", args=[draft.pk])):
        assert client.get(url).status_code == 404, url
    with staff_scope():
        assert not AuditEvent.objects.filter(action=AuditEvent.Action.FILE_DOWNLOADED).exists()


def test_ubl_and_credit_note_downloads(db, client):
    mine, _, user = _setup()
    invoice = make_invoice(mine, number="INV-7")
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-7", issue_date=TODAY, lines=[line()])
    client.force_login(user)
    ubl = client.get(reverse("invoices:invoice_ubl", args=[invoice.pk]))
    assert ubl["Content-Type"] == "application/xml" and b"<cbc:ID>INV-7</cbc:ID>" in ubl.content
    assert ubl["Content-Disposition"] == 'attachment; filename="INV-7.xml"'
    pdf = client.get(reverse("invoices:credit_note_pdf", args=[note.pk]))
    assert "Credit note CN-7" in _text(pdf) and "INV-7" in _text(pdf)


def test_staff_download_from_admin_is_audited(db, client, staff):
    mine, _, _ = _setup()
    invoice = make_invoice(mine, number="INV-ADM")
    client.force_login(staff)
    detail = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    assert reverse("admin:invoices_invoice_pdf", args=[invoice.pk]) in detail.text
    response = client.get(reverse("admin:invoices_invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200 and response["Content-Disposition"] == 'attachment; filename="INV-ADM.pdf"'
    with staff_scope():
        event = AuditEvent.objects.get(action=AuditEvent.Action.FILE_DOWNLOADED)
    assert event.actor_id == staff.pk and event.client_id == mine.pk and event.details["back_office"] is True


def test_statement_lists_the_period_with_opening_and_closing_balance_and_overdue(db, client, staff):
    mine, _, user = _setup()
    old = make_invoice(mine, number="OLD-1", issue_date=datetime.date(2026, 8, 1), lines=[line(unit_price="100.00")])
    late = make_invoice(mine, number="LATE-1", issue_date=datetime.date(2026, 9, 10), lines=[line(unit_price="200.00")])
    paid = make_invoice(mine, number="PAID-1", issue_date=datetime.date(2026, 10, 5), lines=[line(unit_price="50.00")])
    payment = pay(mine, [(paid, "60.50")])
    with staff_scope():
        services.payment_reverse(payment=payment, invoice=paid, amount=D("10.00"), kind=PaymentAllocation.Kind.REFUND)
        services.credit_note_create(invoice=late, number="CN-S1", issue_date=datetime.date(2026, 10, 20),
                                    lines=[line(unit_price="20.00")])
    client.force_login(user)
    response = client.get(reverse("invoices:statement"), {"start": "2026-09-01", "end": "2026-11-30"})
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = _text(response)
    assert "Statement of account" in text and "Alpha B.V." in text
    assert "Opening balance" in text and "€121.00" in text  # OLD-1 before the period
    for reference in ("LATE-1", "PAID-1", "CN-S1"):
        assert reference in text
    assert "OLD-1" in text  # still open and overdue, listed under overdue invoices
    # 121.00 + 242.00 + 60.50 − 60.50 (payment) + 10.00 (refund) − 24.20 (credit note) = 348.80
    assert "€348.80" in text and "Refund" in text
    with staff_scope():
        assert AuditEvent.objects.filter(action=AuditEvent.Action.FILE_DOWNLOADED, details__format="statement").exists()
    # A bad range gets the form back with the reason; staff get any client's statement from admin.
    bad = client.get(reverse("invoices:statement"), {"start": "2026-12-01", "end": "2026-11-01"})
    assert bad.status_code == 400 and "The start date must come before the end date." in bad.text
    client.force_login(staff)
    from_admin = client.get(reverse("admin:portal_client_statement", args=[mine.pk]),
                            {"start": "2026-01-01", "end": "2026-12-31"})
    assert from_admin.status_code == 200 and "OLD-1" in _text(from_admin)


def test_a_statement_too_long_to_render_while_waiting_asks_for_a_shorter_period(db, client, monkeypatch):
    from invoices.documents import statement

    monkeypatch.setattr(statement, "STATEMENT_MOST_ENTRIES", 3)
    monkeypatch.setattr(statement, "STATEMENT_OVERDUE_LISTED", 2)
    mine, _, user = _setup()
    for day in (1, 2, 3, 4):  # four invoices in September, long overdue; one before it
        make_invoice(mine, number=f"SEP-{day}", issue_date=datetime.date(2026, 9, day), due_days=5,
                     lines=[line(unit_price="10.00")])
    make_invoice(mine, number="AUG-1", issue_date=datetime.date(2026, 8, 1), lines=[line(unit_price="100.00")])
    client.force_login(user)
    september = client.get(reverse("invoices:statement"), {"start": "2026-09-01", "end": "2026-09-30"})
    assert september.status_code == 400
    assert "This period holds 4 movements; a statement holds at most 3. Choose a shorter period." in september.text
    with staff_scope():
        assert not AuditEvent.objects.filter(action=AuditEvent.Action.FILE_DOWNLOADED).exists()
    # Three days of it fit: their opening balance is summed from everything before, the two longest
    # overdue of all five are listed and the other three counted, in the overdue total all the same.
    response = client.get(reverse("invoices:statement"), {"start": "2026-09-02", "end": "2026-09-30"})
    assert response.status_code == 200
    text = _text(response)
    assert "€133.10" in text  # the opening balance: AUG-1 and SEP-1 (121.00 + 12.10)
    assert "Closing balance €169.40" in text and "Of which overdue €169.40" in text  # 121.00 + 4 x 12.10
    assert "AUG-1" in text and "SEP-1" in text  # the two longest overdue
    assert "And 3 more overdue invoices, in the total above." in text
