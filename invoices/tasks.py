"""Scheduled ledger work: thin wrappers that run the services in the staff scope."""
from celery import shared_task

from invoices import services
from portal.rls import staff_scope


@shared_task
def mark_overdue() -> int:
    with staff_scope():
        return services.invoice_mark_overdue()


@shared_task
def generate_recurring_invoices() -> int:
    with staff_scope():
        return services.recurring_generate_due()
