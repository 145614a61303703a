"""Property-based: random sequences of payments, credit notes, refunds, chargebacks and voids
keep balance = total − paid − credited at every step, and the status true to the balance."""
import datetime
from decimal import Decimal

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoices import services
from invoices.errors import DomainError
from invoices.models import ClientCredit, Invoice, PaymentAllocation
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay

S = Invoice.Status
cents = st.integers(min_value=1, max_value=30_000).map(lambda c: Decimal(c) / 100)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), cents),
        st.tuples(st.just("credit"), cents),
        st.tuples(st.just("refund"), st.integers(1, 100)),
        st.tuples(st.just("chargeback"), st.integers(1, 100)),
        st.tuples(st.just("void"), st.just(0)),
    ),
    max_size=10,
)


def _check(invoice: Invoice, today: datetime.date) -> None:
    paid = sum(invoice.allocations.values_list("amount", flat=True), Decimal("0"))
    credited = sum(invoice.credit_notes.values_list("amount_applied", flat=True), Decimal("0"))
    assert invoice.amount_paid == paid and invoice.amount_credited == credited
    if invoice.status == S.VOID:
        assert invoice.open_balance == 0
        return
    assert invoice.open_balance == invoice.total - invoice.amount_paid - invoice.amount_credited >= 0
    expected = S.PAID if invoice.open_balance == 0 else (
        S.PARTIALLY_PAID if invoice.open_balance < invoice.total else S.OPEN)
    assert invoice.status == expected
    assert invoice.is_overdue(today) == (invoice.open_balance > 0 and invoice.due_date < today)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, price=cents, overdue=st.booleans())
def test_random_ledger_histories_keep_the_balance_and_status_true(client_a, ops, price, overdue):
    with transaction.atomic():
        issue = TODAY - datetime.timedelta(days=45 if overdue else 0)
        invoice = make_invoice(client_a, lines=[line(unit_price=str(price))], issue_date=issue, due_days=30)
        payments = []
        with staff_scope():
            for step, (kind, value) in enumerate(ops):
                before = Invoice.objects.get(pk=invoice.pk)
                credit_before = sum(ClientCredit.objects.filter(client=client_a).values_list("amount", flat=True),
                                    Decimal("0"))
                try:
                    if kind == "pay":
                        payments.append(pay(client_a, [(invoice, value)]))
                    elif kind == "credit":
                        services.credit_note_create(invoice=invoice, number=f"CN-{invoice.pk}-{step}",
                                                    issue_date=TODAY, lines=[line(unit_price=str(value), tax_rate="0")])
                    elif kind in ("refund", "chargeback") and payments:
                        payment = payments[value % len(payments)]
                        on_invoice = sum(payment.allocations.filter(invoice=invoice).values_list("amount", flat=True),
                                         Decimal("0"))
                        services.payment_reverse(
                            payment=payment, invoice=invoice, amount=on_invoice,
                            kind=PaymentAllocation.Kind.REFUND if kind == "refund" else PaymentAllocation.Kind.CHARGEBACK)
                    elif kind == "void":
                        services.invoice_void(invoice=invoice)
                except DomainError:
                    # Refused: nothing may have changed.
                    after = Invoice.objects.get(pk=invoice.pk)
                    assert (after.status, after.open_balance, after.amount_paid, after.amount_credited) == (
                        before.status, before.open_balance, before.amount_paid, before.amount_credited)
                    assert sum(ClientCredit.objects.filter(client=client_a).values_list("amount", flat=True),
                               Decimal("0")) == credit_before
                _check(Invoice.objects.get(pk=invoice.pk), TODAY)
        transaction.set_rollback(True)
