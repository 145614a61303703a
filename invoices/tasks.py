"""Scheduled ledger work (thin wrappers that run the services in the staff scope) and the job
that pre-renders a document's PDF."""
from celery import shared_task

from invoices import services
from invoices.documents.render import document_pdf
from invoices.models import CreditNote, Invoice
from portal.jobs import SLOW, handler
from portal.rls import staff_scope


@shared_task
def mark_overdue() -> int:
    with staff_scope():
        return services.invoice_mark_overdue()


@shared_task
def generate_recurring_invoices() -> int:
    with staff_scope():
        return services.recurring_generate_due()


# Slow queue: a render takes seconds of CPU each, and a batch of invoices writes hundreds at once.
@handler(services.PRERENDER_JOB, max_attempts=3, backoff_seconds=60, queue=SLOW)
def prerender_pdf(job) -> str:
    """Key `pdf:<kind>:<id>:<transaction>`, subject the document: render and store its PDF ahead
    of the first download. Rendering again when nothing changed finds it stored (a fingerprint)."""
    model = CreditNote if job.payload["kind"] == "credit_note" else Invoice
    document = model.objects.select_related("client", "brand").filter(pk=job.payload["pk"]).first()
    if document is None:
        return "gone"
    return "rendered" if document_pdf(document).rendered_now else "current"
