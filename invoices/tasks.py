"""Scheduled ledger work: thin wrappers that run the services in the staff scope."""
from celery import shared_task

from invoices import services
from invoices.documents.render import document_pdf
from invoices.models import CreditNote, Invoice
from portal.rls import staff_scope


@shared_task
def mark_overdue() -> int:
    with staff_scope():
        return services.invoice_mark_overdue()


@shared_task
def generate_recurring_invoices() -> int:
    with staff_scope():
        return services.recurring_generate_due()


@shared_task(acks_late=True)
def prerender_pdf(kind: str, pk: int) -> bool:
    """Render and store a document's PDF ahead of the first download. True if it rendered."""
    model = CreditNote if kind == "credit_note" else Invoice
    with staff_scope():
        document = model.objects.select_related("client", "brand").filter(pk=pk).first()
        if document is None:
            return False
        return document_pdf(document).rendered_now
