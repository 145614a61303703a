"""Peppol listens to the ledger: an issued invoice or credit note is planned for delivery in the
ledger's own transaction, and the client's document pages show how its delivery stands."""
from __future__ import annotations

from django.db.models import OuterRef, Subquery
from django.dispatch import receiver

from integrations.peppol.models import PeppolDelivery
from integrations.peppol.services import delivery_plan
from invoices.models import Invoice
from invoices.signals import (credit_note_detail_context, credit_note_issued, document_detail_annotations,
                              invoice_detail_context, invoice_issued)

State = PeppolDelivery.State
# What a client reads of each state: delivered, or on its way; a failed, refused or skipped one
# is staff's to handle and says nothing to the client (it still has the document in the portal).
CLIENT_SHOWN = {State.PENDING: "on_its_way", State.SUBMITTED: "on_its_way", State.ACCEPTED: "on_its_way",
                State.DELIVERED: "delivered"}


@receiver(invoice_issued, dispatch_uid="integrations.peppol.invoice_issued")
def invoice_issued_to_peppol(sender, *, invoice, **kwargs) -> None:
    delivery_plan(document=invoice)


@receiver(credit_note_issued, dispatch_uid="integrations.peppol.credit_note_issued")
def credit_note_issued_to_peppol(sender, *, credit_note, **kwargs) -> None:
    delivery_plan(document=credit_note)


@receiver(document_detail_annotations, dispatch_uid="integrations.peppol.detail_annotations")
def peppol_delivery_annotations(sender, **kwargs) -> dict:
    """The document's delivery, read with the document on its page (one row at most: unique)."""
    delivery = PeppolDelivery.objects.filter(**{"invoice" if sender is Invoice else "credit_note": OuterRef("pk")})
    return {f"peppol_{name}": Subquery(delivery.values(name)[:1]) for name in ("state", "skip", "delivered_at")}


def _shown(document) -> dict:
    """What the client reads, from the delivery's state read with the document
    (peppol_delivery_annotations: the invoice and credit note pages' queries carry it)."""
    state, skip = document.peppol_state, document.peppol_skip
    if state is None:
        return {"peppol": None}
    if state == State.SKIPPED and skip == PeppolDelivery.Skip.SENT_BY_EXACT:
        return {"peppol": {"shown": "sent_by_accounting", "delivered_at": document.peppol_delivered_at}}
    shown = CLIENT_SHOWN.get(state)
    return {"peppol": {"shown": shown, "delivered_at": document.peppol_delivered_at} if shown else None}


@receiver(invoice_detail_context, dispatch_uid="integrations.peppol.invoice_detail")
def invoice_detail_peppol(sender, *, invoice, client, **kwargs) -> dict:
    return _shown(invoice)


@receiver(credit_note_detail_context, dispatch_uid="integrations.peppol.credit_note_detail")
def credit_note_detail_peppol(sender, *, credit_note, client, **kwargs) -> dict:
    return _shown(credit_note)
