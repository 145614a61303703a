"""Payment receipts: what the client paid, when, how, and what it settled, as a page and as a
branded PDF (the invoice PDF's look: invoices/pdf/_base.html), in the client's language."""
from __future__ import annotations

from decimal import Decimal

from django.template.loader import render_to_string
from django.utils import timezone, translation

from invoices.documents.render import _css, _logo, html_to_pdf
from invoices.models import ClientCredit, Payment, PaymentAllocation


def receipt_context(payment: Payment) -> dict:
    """The receipt's content: the invoices the payment settled, what refunds and chargebacks
    took back, and what was left over as credit. The payment's allocations should be prefetched."""
    entries = list(payment.allocations.all())
    settled = [a for a in entries if a.kind == PaymentAllocation.Kind.ALLOCATION]
    taken_back = [a for a in entries if a.kind != PaymentAllocation.Kind.ALLOCATION]
    credited = getattr(payment, "credited_total", None)  # read with the payment (client_payment_get)
    if credited is None:
        credited = sum(ClientCredit.objects.filter(payment=payment).values_list("amount", flat=True), Decimal("0.00"))
    return {"settled": settled, "taken_back": taken_back, "credited": credited,
            "allocated": sum((a.amount for a in settled), Decimal("0.00"))}


def receipt_pdf(payment: Payment) -> tuple[bytes, str]:
    """The receipt as a branded PDF, in the client's language, with its download name."""
    client = payment.client
    brand = payment.brand or client.brand
    language = client.locale
    with translation.override(language):
        html = render_to_string("invoices/pdf/receipt.html", {
            "payment": payment, **receipt_context(payment), "brand": brand, "client": client,
            "logo": _logo(brand), "css": _css(), "language": language, "today": timezone.localdate()})
    return html_to_pdf(html), f"receipt-{payment.number or payment.pk}.pdf"
