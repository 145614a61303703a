"""What payments adds to the ledger's pages, through the ledger's signals (the ledger never
imports payments)."""
from django.db.models import F, FilteredRelation, Q
from django.dispatch import receiver

from invoices.signals import invoice_detail_context
from payments.models import Mandate, MandateCollection


@receiver(invoice_detail_context, dispatch_uid="payments.invoice_detail_mandate")
def invoice_detail_mandate(sender, *, invoice, client, **kwargs) -> dict:
    """The client's direct-debit mandate, and this invoice's collection by it if one is planned,
    read in one query: the client's valid mandates and the one collecting this invoice (an
    invoice has one collection at most), each joined to this invoice's collection if it has it."""
    fields = [f.attname for f in MandateCollection._meta.concrete_fields]
    rows = list(Mandate.objects
                .annotate(this_invoice=FilteredRelation("collections", condition=Q(collections__invoice=invoice)))
                .filter(Q(client=client, status=Mandate.Status.VALID) | Q(this_invoice__isnull=False))
                .annotate(**{f"collected_{name}": F(f"this_invoice__{name}") for name in fields})
                .select_related("gateway"))
    mandate = next((m for m in rows if m.status == Mandate.Status.VALID and m.client_id == client.pk), None)
    collection = None
    for row in rows:
        if getattr(row, "collected_id") is not None:
            collection = MandateCollection.from_db(row._state.db, fields,
                                                  [getattr(row, f"collected_{n}") for n in fields])
            collection.mandate = row
    return {"mandate": mandate, "collection": collection}
