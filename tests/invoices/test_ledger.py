"""Invoices, payments, credit notes, refunds and voids: balances, statuses and their audit trail."""
import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from invoices import services
from invoices.errors import DomainError, InvalidTransition
from invoices.models import ClientCredit, CreditNote, Invoice, PaymentAllocation
from portal.models import AuditEvent
from portal.rls import client_scope, staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay

D = Decimal
S = Invoice.Status


def _fresh(invoice):
    with staff_scope():
        return Invoice.objects.get(pk=invoice.pk)


def _status_trail(invoice):
    with staff_scope():
        events = AuditEvent.objects.filter(action=AuditEvent.Action.INVOICE_STATUS, object_id=str(invoice.pk))
        return [(e.details["from"], e.details["to"]) for e in events.order_by("created_at", "id")]


def _credit_balance(client):
    with staff_scope():
        return sum(ClientCredit.objects.filter(client=client).values_list("amount", flat=True), D("0"))


def test_new_invoice_has_lines_totals_and_is_open(client_a):
    invoice = make_invoice(client_a, lines=[line(quantity="2", unit_price="100.00"),
                                            line("Travel", unit_price="40.00", tax_rate="9")])
    invoice = _fresh(invoice)
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (D("240.00"), D("45.60"), D("285.60"))
    assert invoice.open_balance == D("285.60") and invoice.status == S.OPEN
    with staff_scope():
        assert [(l.position, l.net_amount, l.tax_amount) for l in invoice.lines.all()] == [
            (1, D("200.00"), D("42.00")), (2, D("40.00"), D("3.60"))]
    assert _status_trail(invoice) == [("draft", "open")]


def test_invoice_number_is_unique_per_brand(client_a):
    make_invoice(client_a, number="INV-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_invoice(client_a, number="INV-1")


def test_partial_then_full_payment(client_a):
    invoice = make_invoice(client_a)  # 121.00
    pay(client_a, [(invoice, "21.00")])
    invoice = _fresh(invoice)
    assert (invoice.amount_paid, invoice.open_balance, invoice.status) == (D("21.00"), D("100.00"), S.PARTIALLY_PAID)
    pay(client_a, [(invoice, "100.00")])
    invoice = _fresh(invoice)
    assert (invoice.open_balance, invoice.status) == (D("0.00"), S.PAID)
    assert _status_trail(invoice) == [("draft", "open"), ("open", "partially_paid"), ("partially_paid", "paid")]


def test_one_payment_settles_several_invoices(client_a):
    first, second = make_invoice(client_a), make_invoice(client_a, lines=[line(unit_price="50.00")])
    payment = pay(client_a, [(first, "121.00"), (second, "60.50")])
    assert _fresh(first).status == S.PAID and _fresh(second).status == S.PAID
    with staff_scope():
        assert sorted(payment.allocations.values_list("amount", flat=True)) == [D("60.50"), D("121.00")]


def test_overpayment_becomes_client_credit(client_a):
    invoice = make_invoice(client_a)
    pay(client_a, [(invoice, "121.00")], amount="150.00")
    assert _fresh(invoice).status == S.PAID
    assert _credit_balance(client_a) == D("29.00")


def test_payment_for_another_clients_invoice_is_refused(client_a, client_b):
    invoice = make_invoice(client_b)
    with pytest.raises(DomainError, match="another client"):
        pay(client_a, [(invoice, "10.00")])
    assert _fresh(invoice).amount_paid == D("0.00")


def test_credit_note_lowers_the_balance_and_walks_draft_issued_applied(client_a):
    invoice = make_invoice(client_a)
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-1", issue_date=TODAY,
                                           lines=[line(unit_price="20.00")], issue_now=False)
        assert note.status == CreditNote.Status.DRAFT
        services.credit_note_issue(credit_note=note)
        note.refresh_from_db()
        trail = AuditEvent.objects.filter(action=AuditEvent.Action.CREDIT_NOTE_STATUS, object_id=str(note.pk))
        assert [(e.details["from"], e.details["to"]) for e in trail.order_by("id")] == [
            ("draft", "issued"), ("issued", "applied")]
    invoice = _fresh(invoice)
    assert (note.status, note.amount_applied) == (CreditNote.Status.APPLIED, D("24.20"))
    assert (invoice.amount_credited, invoice.open_balance, invoice.status) == (D("24.20"), D("96.80"), S.PARTIALLY_PAID)


def test_credit_larger_than_the_open_balance_leaves_client_credit_never_a_negative_balance(client_a):
    invoice = make_invoice(client_a)  # 121.00
    pay(client_a, [(invoice, "100.00")])
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-2", issue_date=TODAY,
                                           lines=[line(unit_price="50.00")])  # 60.50
    invoice = _fresh(invoice)
    assert (invoice.open_balance, invoice.amount_credited, invoice.status) == (D("0.00"), D("21.00"), S.PAID)
    assert (note.amount_applied, note.amount_to_credit) == (D("21.00"), D("39.50"))
    assert _credit_balance(client_a) == D("39.50")


def test_an_applied_credit_note_cannot_be_issued_again(client_a):
    invoice = make_invoice(client_a)
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-3", issue_date=TODAY, lines=[line()])
        with pytest.raises(InvalidTransition, match="credit note CN-3 cannot go from applied to issued"):
            services.credit_note_issue(credit_note=note)


def test_refund_moves_paid_back_to_partially_paid_and_chargeback_to_open(client_a):
    invoice = make_invoice(client_a)
    payment = pay(client_a, [(invoice, "121.00")])
    with staff_scope():
        services.payment_reverse(payment=payment, invoice=invoice, amount=D("21.00"))
    assert _fresh(invoice).status == S.PARTIALLY_PAID and _fresh(invoice).open_balance == D("21.00")
    with staff_scope():
        services.payment_reverse(payment=payment, invoice=invoice, amount=D("100.00"),
                                 kind=PaymentAllocation.Kind.CHARGEBACK)
    invoice = _fresh(invoice)
    assert (invoice.status, invoice.open_balance, invoice.amount_paid) == (S.OPEN, D("121.00"), D("0.00"))
    with staff_scope(), pytest.raises(DomainError, match="0.00 of this payment is on it"):
        services.payment_reverse(payment=payment, invoice=invoice, amount=D("1.00"))


def test_void_is_final_and_a_paid_invoice_cannot_be_voided(client_a):
    paid = make_invoice(client_a)
    pay(client_a, [(paid, "121.00")])
    with staff_scope(), pytest.raises(InvalidTransition, match="cannot go from paid to void"):
        services.invoice_void(invoice=paid)
    assert _fresh(paid).status == S.PAID

    partly = make_invoice(client_a)
    pay(client_a, [(partly, "21.00")])
    with staff_scope():
        services.invoice_void(invoice=partly, reason="issued in error")
    partly = _fresh(partly)
    assert (partly.status, partly.open_balance) == (S.VOID, D("0.00"))
    assert _credit_balance(client_a) == D("21.00")  # what was paid is not lost
    with staff_scope(), pytest.raises(InvalidTransition, match="cannot go from void to open"):
        services.invoice_open(invoice=partly)


def test_the_database_refuses_a_balance_that_does_not_add_up(client_a):
    invoice = make_invoice(client_a)
    with staff_scope(), pytest.raises(IntegrityError, match="invoice_balance_adds_up"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(open_balance=D("1.00"))


def test_overdue_label_and_the_moment_it_was_recorded_once(client_a):
    overdue = make_invoice(client_a, issue_date=TODAY - datetime.timedelta(days=40), due_days=30)
    current = make_invoice(client_a, issue_date=TODAY, due_days=30)
    paid_late = make_invoice(client_a, issue_date=TODAY - datetime.timedelta(days=40), due_days=30)
    pay(client_a, [(paid_late, "121.00")])
    today = datetime.date(2026, 11, 25)
    assert [_fresh(i).is_overdue(today) for i in (overdue, current, paid_late)] == [True, False, False]
    now = datetime.datetime(2026, 11, 25, 3, tzinfo=datetime.timezone.utc)
    with staff_scope():
        assert services.invoice_mark_overdue(now=now) == 1
        assert services.invoice_mark_overdue(now=now + datetime.timedelta(hours=1)) == 0
        assert AuditEvent.objects.filter(action=AuditEvent.Action.INVOICE_OVERDUE).count() == 1
    assert _fresh(overdue).overdue_since == now


def test_overdue_invoices_beyond_one_batch_are_each_marked_once(client_a, monkeypatch):
    # The candidates are read a batch at a time after the last id seen (no server-side cursor
    # across the marking transactions): a batch of 2 over 5 overdue invoices marks all five.
    invoices = [make_invoice(client_a, issue_date=TODAY - datetime.timedelta(days=40), due_days=30)
                for _ in range(5)]
    batches = services._in_batches
    monkeypatch.setattr(services, "_in_batches", lambda pks: batches(pks, size=2))
    now = datetime.datetime(2026, 11, 25, 3, tzinfo=datetime.timezone.utc)
    with staff_scope():
        assert services.invoice_mark_overdue(now=now) == 5
        assert services.invoice_mark_overdue(now=now) == 0
    assert [_fresh(i).overdue_since for i in invoices] == [now] * 5


def test_a_client_sees_only_its_own_invoices_even_without_a_filter(client_a, client_b):
    make_invoice(client_a, number="A-1")
    make_invoice(client_b, number="B-1")
    with client_scope(client_a.pk):
        assert list(Invoice.objects.values_list("number", flat=True)) == ["A-1"]


def test_tax_breakdown_per_rate_comes_from_the_stored_lines(client_a):
    from invoices.selectors import TaxRow, client_credit_balance, document_tax_breakdown

    invoice = make_invoice(client_a, lines=[line(unit_price="100.00"), line("Books", unit_price="20.00", tax_rate="9"),
                                            line(unit_price="0.05")])
    with staff_scope():
        assert document_tax_breakdown(document=invoice) == [
            TaxRow(D("9.00"), D("20.00"), D("1.80")), TaxRow(D("21.00"), D("100.05"), D("21.01"))]
        assert client_credit_balance(client=client_a, currency="EUR") == D("0.00")
    pay(client_a, [(invoice, "142.86")], amount="150.00")  # total 142.86
    with staff_scope():
        assert client_credit_balance(client=client_a, currency="EUR") == D("7.14")


def test_overdue_is_one_filter_for_everyone(client_a):
    late = make_invoice(client_a, issue_date=TODAY - datetime.timedelta(days=31), due_days=30)
    make_invoice(client_a)
    with staff_scope():
        assert list(Invoice.objects.overdue(TODAY)) == [_fresh(late)]
        assert late.pk not in Invoice.objects.not_overdue(TODAY).values_list("pk", flat=True)
