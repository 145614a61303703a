"""What payments adds to the ledger's pages, through the ledger's signals (the ledger never
imports payments)."""
from django.dispatch import receiver

from invoices.signals import invoice_detail_context
from payments.mandates import valid_mandate
from payments.models import MandateCollection


@receiver(invoice_detail_context, dispatch_uid="payments.invoice_detail_mandate")
def invoice_detail_mandate(sender, *, invoice, client, **kwargs) -> dict:
    """The client's direct-debit mandate, and this invoice's collection by it if one is planned."""
    return {"mandate": valid_mandate(client),
            "collection": MandateCollection.objects.filter(invoice=invoice).first()}
