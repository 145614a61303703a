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


# Sellers and buyers whose documents carry every party field EN 16931 and Peppol ask for.
SELLERS = {
    "NL": dict(name="Acme Accounting B.V.", country="NL", kvk_number="12345678", vat_number="NL001234567B01",
               peppol_scheme="0106", peppol_id="12345678", address_line="Keizersgracht 1", postal_code="1015 CC",
               city="Amsterdam", iban="NL91ABNA0417164300", bank_account_name="Acme Accounting B.V."),
    "BE": dict(name="Brugse Boekhouding BV", country="BE", vat_number="BE0403170701", peppol_scheme="0208",
               peppol_id="0403170701", address_line="Markt 1", postal_code="8000", city="Brugge",
               iban="BE68539007547034"),
}
BUYERS = {
    "NL": dict(name="Northwind Traders B.V.", country="NL", kvk_number="34567890", vat_number="NL003456789B01",
               peppol_scheme="0106", peppol_id="34567890", address_line="Damrak 50", postal_code="1012 LM",
               city="Amsterdam"),
    "BE": dict(name="Gentse Bouw NV", country="BE", kvk_number="", vat_number="BE0202239951",
               peppol_scheme="0208", peppol_id="0202239951", address_line="Korenmarkt 3", postal_code="9000",
               city="Gent"),
    # Reached over Peppol by their VAT numbers (9930, 9932): no Peppol identifier set.
    "DE": dict(name="Berliner Handel GmbH", country="DE", kvk_number="", vat_number="DE136695976",
               address_line="Unter den Linden 5", postal_code="10117", city="Berlin"),
    "GB": dict(name="Umbrella Trading Ltd", country="GB", kvk_number="", vat_number="GB980780684",
               address_line="221 Baker Street", postal_code="NW1 6XE", city="London"),
}
