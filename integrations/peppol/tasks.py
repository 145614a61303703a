"""Peppol's background work, as portal.jobs handlers (registered by integrations.tasks)."""
from __future__ import annotations

from celery import shared_task

from integrations.peppol import services
from integrations.peppol.models import PeppolConnection
from integrations.peppol.webhooks import status_event
from portal import jobs
from portal.rls import staff_scope
from portal.webhooks import Rejected, webhook_for


# An access point that cannot be reached is asked again for about fourteen hours (30 s, doubling,
# at most 6 hours apart); then the delivery fails with the reason, for staff to try again.
@jobs.handler(services.JOB_KIND, max_attempts=12, backoff_seconds=30, lease_seconds=120,
              on_dead=services.delivery_dead)
def deliver_peppol_document(job) -> str:
    """Discovery, the rules, the submission: each call with no transaction open. Key:
    peppol:<invoice|credit_note>:<pk>[:r<round>], also the uploaded draft's file name (the
    provider has no idempotency key: services.delivery_send records the draft before sending)."""
    return services.delivery_send(job=job)


@jobs.handler(services.STATUS_JOB, max_attempts=8, backoff_seconds=30, lease_seconds=120)
def apply_peppol_status(job) -> str:
    """A failed event asks the access point for its reason (no transaction open); the event is
    recorded in a short transaction, and a replay changes nothing. Key: webhook:<stored request>."""
    webhook = webhook_for(job)
    connection = PeppolConnection.objects.filter(slug=webhook.account).first()
    if connection is None:
        raise jobs.Permanent(f"Peppol connection {webhook.account!r} no longer exists")
    try:
        event = status_event(connection, webhook.headers, webhook.body.encode())
    except Rejected as exc:
        raise jobs.Permanent(exc.reason) from None
    return services.status_receive(connection=connection, event=event)


@jobs.handler(services.POLL_JOB, max_attempts=6, backoff_seconds=60, lease_seconds=120)
def poll_peppol_delivery(job) -> str:
    """The webhook's back-up: where a delivery stands, by GET. Key: peppol:poll:<delivery>:<hour>."""
    return services.delivery_poll(job=job)


@shared_task
def poll_peppol_deliveries() -> int:
    """Every hour (beat): a poll of each delivery the network has had for over an hour without
    news. Only writes jobs."""
    from portal.tasks import record_run

    with staff_scope():
        written = services.polls_enqueue()
    record_run("peppol polls", f"{written} polls written")
    return written
