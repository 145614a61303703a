"""The integrations' background work, as portal.jobs handlers (no Celery tasks of their own:
portal.tasks rings for every kind, and its sweep catches up on what was never rung)."""
from integrations import outbox, services
from integrations.erp.tasks import pull_erp_connections  # noqa: F401 - registers "erp.pull" and its beat task
from integrations.peppol.tasks import (apply_peppol_status, deliver_peppol_document,  # noqa: F401 - "peppol.*"
                                       poll_peppol_deliveries, poll_peppol_delivery)
from portal import jobs


@jobs.handler(services.JOB_KIND, max_attempts=6, backoff_seconds=30, transactional=True)
def apply_accounting_event(job) -> str:
    """Database-only: applied in the transaction that records the job done, so exactly once.
    Key: webhook:<stored request>; subject: the invoice, client, payment or credit note."""
    return services.accounting_event_apply(job=job)


@jobs.handler(outbox.JOB_KIND, max_attempts=6, backoff_seconds=30, lease_seconds=120)
def deliver_outbox_message(job) -> str:
    """Posts outside with no transaction open; the message id (webhook-id) makes a second post
    of the same message recognisable to the receiver. Key: outbox:<message id>."""
    return outbox.outbox_deliver(job=job)


__all__ = ["apply_accounting_event", "apply_peppol_status", "deliver_outbox_message", "deliver_peppol_document",
           "poll_peppol_deliveries", "poll_peppol_delivery", "pull_erp_connections"]
