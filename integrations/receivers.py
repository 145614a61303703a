"""Integrations listen to the ledger: payments, reversals and invoices the portal issued go to
the accounting system's outbox, in the ledger's own transaction (the signals are synchronous)."""
from __future__ import annotations

from decimal import Decimal

from django.dispatch import receiver

from integrations.outbox import accounting_connection, outbox_write
from invoices.models import Invoice, Payment, PaymentAllocation
from invoices.signals import invoice_issued_by_portal, payment_recorded, payment_reversed

REVERSAL_EVENTS = {PaymentAllocation.Kind.REFUND: "payment.refunded",
                   PaymentAllocation.Kind.CHARGEBACK: "payment.charged_back"}


def _payment_data(payment: Payment, *, client_external_id: str, amount: Decimal, rows: list[dict]) -> dict:
    return {"external_id": f"portal-payment-{payment.pk}", "client_external_id": client_external_id,
            "amount": str(amount), "currency": payment.currency, "received_at": payment.received_at.isoformat(),
            "method": payment.method, "reference": payment.reference,
            "gateway_payment_id": payment.gateway_payment_id, "allocations": rows}


def _payment_subject(payment: Payment) -> str:
    # A refund or chargeback reaches accounting after the payment it reverses.
    return f"outbox:payment:{payment.pk}"


@receiver(payment_recorded, dispatch_uid="integrations.payment_recorded")
def payment_recorded_to_outbox(sender, *, payment: Payment, **kwargs) -> None:
    if payment.source == Payment.Source.ACCOUNTING:
        return  # what came from accounting needs no echo
    allocations = list(payment.allocations.select_related("invoice"))
    connection, client_external_id = accounting_connection(client=payment.client,
                                                           invoices=[a.invoice for a in allocations])
    if connection is None:
        return
    rows = [{"invoice_external_id": a.invoice.external_id, "invoice_number": a.invoice.number, "amount": str(a.amount)}
            for a in allocations if a.kind == PaymentAllocation.Kind.ALLOCATION]
    outbox_write(connection=connection, event_type="payment.recorded", subject=_payment_subject(payment),
                 data=_payment_data(payment, client_external_id=client_external_id, amount=payment.amount,
                                    rows=rows))


@receiver(payment_reversed, dispatch_uid="integrations.payment_reversed")
def payment_reversed_to_outbox(sender, *, payment: Payment, invoice: Invoice, amount: Decimal, kind: str,
                               **kwargs) -> None:
    if payment.source == Payment.Source.ACCOUNTING:
        return
    connection, client_external_id = accounting_connection(client=payment.client, invoices=[invoice])
    if connection is None:
        return
    rows = [{"invoice_external_id": invoice.external_id, "invoice_number": invoice.number, "amount": str(amount)}]
    outbox_write(connection=connection, event_type=REVERSAL_EVENTS.get(kind, "payment.charged_back"),
                 subject=_payment_subject(payment),
                 data=_payment_data(payment, client_external_id=client_external_id, amount=amount, rows=rows))


@receiver(invoice_issued_by_portal, dispatch_uid="integrations.invoice_issued_by_portal")
def invoice_issued_to_outbox(sender, *, invoice: Invoice, lines: list[dict], related_invoice: Invoice | None = None,
                             **kwargs) -> None:
    connection, client_external_id = accounting_connection(client=invoice.client,
                                                           invoices=[related_invoice or invoice])
    if connection is None:
        return
    data = {"external_id": f"portal-invoice-{invoice.pk}", "number": invoice.number,
            "client_external_id": client_external_id, "issue_date": invoice.issue_date.isoformat(),
            "due_date": invoice.due_date.isoformat(), "currency": invoice.currency}
    if related_invoice is not None:
        data |= {"related_invoice_external_id": related_invoice.external_id,
                 "related_invoice_number": related_invoice.number}
    data |= {"lines": [{"description": line["description"], "quantity": str(line["quantity"]),
                        "unit_price": str(line["unit_price"]), "tax_rate": str(line["tax_rate"])} for line in lines],
             "subtotal": str(invoice.subtotal), "tax_total": str(invoice.tax_total), "total": str(invoice.total)}
    outbox_write(connection=connection, event_type="invoice.created", subject=f"outbox:invoice:{invoice.pk}",
                 data=data)


from integrations.peppol import receivers as peppol_receivers  # noqa: E402,F401 - Peppol delivery listens too
