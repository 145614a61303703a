"""What the ledger announces, so the apps above it can act without the ledger importing them
(ARCHITECTURE: apps depend downward only). Sent synchronously, inside the ledger's own
transaction: what a receiver writes (the accounting outbox) commits or rolls back with the
change, and a receiver that raises rolls the change back."""
from django.dispatch import Signal

# A payment was recorded and allocated (sender=Payment; payment=Payment). Sent once per payment,
# after its allocations exist, whatever its source; a receiver decides what needs no echo.
payment_recorded = Signal()

# Money was taken back from one invoice (sender=Payment; payment=Payment, invoice=Invoice,
# amount=Decimal (positive), kind=PaymentAllocation.Kind: refund or chargeback).
payment_reversed = Signal()

# The portal itself issued an invoice that accounting has not heard of, such as a reminder's
# late fee (sender=Invoice; invoice=Invoice, lines=the line dicts it was created from,
# related_invoice=the Invoice it belongs to, or None).
invoice_issued_by_portal = Signal()

# Asked, not announced: the client's invoice page is being shown (sender=Invoice;
# invoice=Invoice, client=Client). Each receiver returns a dict that is added to the template
# context (payments adds the direct-debit mandate and collection).
invoice_detail_context = Signal()
