"""The integrations' background work, as portal.jobs handlers (no Celery tasks of their own:
portal.tasks rings for every kind, and its sweep catches up on what was never rung)."""
from integrations import outbox, services
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
