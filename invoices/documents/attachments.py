"""The PDF a notification's email carries: its `attachment` names an invoice, a credit note or
a payment's receipt (portal.notifications.email_attachment_wanted). The stored PDF when it is
current (the pre-render job stores it), else rendered here, in the email job, with no
transaction open."""
from __future__ import annotations

from django.dispatch import receiver

from invoices.documents.receipt import receipt_pdf
from invoices.documents.render import render_document, stored_pdf
from invoices.models import CreditNote, Invoice, Payment
from invoices.selectors import client_payment_get
from portal.notifications import email_attachment_wanted

MODELS = {"invoice": Invoice, "credit_note": CreditNote}


@receiver(email_attachment_wanted, dispatch_uid="invoices.document_pdf_attachment")
def document_pdf_attachment(sender, notification, **kwargs):
    kind, _, pk = notification.attachment.partition(":")
    if kind == "receipt" and pk.isdigit():
        try:
            payment = client_payment_get(client=notification.client, pk=int(pk))
        except Payment.DoesNotExist:
            return None
        content, name = receipt_pdf(payment)
        return name, content, "application/pdf"
    model = MODELS.get(kind)
    if model is None or not pk.isdigit():
        return None
    document = (model.objects.select_related("client", "brand")
                .filter(pk=int(pk), client_id=notification.client_id).first())
    if document is None:
        return None
    stored = stored_pdf(document)
    return f"{document.number}.pdf", stored.content if stored else render_document(document), "application/pdf"
