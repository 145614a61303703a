"""Ledger test data, made through the services (the only way the ledger is written)."""
import datetime
from decimal import Decimal

from invoices import services
from invoices.models import Payment
from portal.rls import staff_scope

TODAY = datetime.date(2026, 11, 25)


def line(description="Consulting", quantity="1", unit_price="100.00", tax_rate="21", discount="0", unit="hour"):
    return {"description": description, "quantity": Decimal(quantity), "unit": unit,
            "unit_price": Decimal(unit_price), "discount_percent": Decimal(discount), "tax_rate": Decimal(tax_rate)}


_numbers = iter(range(1, 10**6))


def make_invoice(client, *, lines=None, issue_date=TODAY, due_days=30, currency="EUR", **kwargs):
    with staff_scope():
        return services.invoice_create(
            client=client, brand=client.brand, number=kwargs.pop("number", f"INV-{next(_numbers):05d}"),
            issue_date=issue_date, due_date=issue_date + datetime.timedelta(days=due_days), currency=currency,
            lines=lines or [line()], payment_terms_days=due_days, **kwargs)


def pay(client, allocations, amount=None, *, currency="EUR", method=Payment.Method.BANK_TRANSFER, **kwargs):
    allocations = [(invoice, Decimal(share)) for invoice, share in allocations]
    amount = Decimal(amount) if amount is not None else sum(share for _, share in allocations)
    with staff_scope():
        return services.payment_record(
            client=client, amount=amount, currency=currency, source=Payment.Source.MANUAL, method=method,
            received_at=datetime.datetime(2026, 11, 25, 12, tzinfo=datetime.timezone.utc),
            allocations=allocations, **kwargs)[0]
