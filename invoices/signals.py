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

# An invoice was issued: from now on the client sees it (sender=Invoice; invoice=Invoice). Sent
# once, when it leaves draft, whatever its source (Peppol delivery listens).
invoice_issued = Signal()

# A credit note was issued and applied to its invoice (sender=CreditNote; credit_note=CreditNote).
# Sent once per credit note, whatever its source.
credit_note_issued = Signal()

# Asked, not announced, before a client's invoice or credit note page reads its document
# (sender=Invoice or CreditNote). Each receiver returns {name: expression}: the page's one query
# of the document is annotated with them, so what an app above the ledger shows there costs no
# query of its own (integrations: the Peppol delivery's state), and its *_detail_context
# receiver reads them from the document.
document_detail_annotations = Signal()

# Asked, not announced: the client's invoice page is being shown (sender=Invoice;
# invoice=Invoice, client=Client). Each receiver returns a dict that is added to the template
# context (payments adds the direct-debit mandate and collection).
invoice_detail_context = Signal()

# Asked, not announced: the client's credit note page is being shown (sender=CreditNote;
# credit_note=CreditNote, client=Client). Each receiver returns a dict added to the context.
credit_note_detail_context = Signal()
