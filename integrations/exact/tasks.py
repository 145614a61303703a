"""Exact Online's background work, as portal.jobs handlers: "exact.sync" (one entity of one
connection, from its cursor), "exact.hint" (the same, asked by a webhook), the periodic safety
sync (a Celery beat task that only writes "exact.sync" jobs) and the outbox delivery of an Exact
connection (booking.py).

Syncs of one connection and entity share a subject (`exact:<pk>:<entity>`), so one runs at a time.
What stops them:
- RateLimited / EndpointBlocked: retried when Exact's budget is back (Retry(after=until));
- NeedsReauthorisation: the job is dead at once with a reason starting with STOPPED. Nothing is
  lost: the cursors only moved past what was stored, and outbox messages stay unbooked. Once staff
  connect again, `exact_resume` (called by the admin's connect job) replays those jobs and writes a
  sync of every entity from its cursor.
"""
from __future__ import annotations

import logging
import time

from celery import shared_task
from django.db import transaction

from integrations.exact import booking
from integrations.exact.client import EndpointBlocked, ExactRefused, ExactUnreachable, NeedsReauthorisation, \
    RateLimited
from integrations.exact.models import ExactConnection
from integrations.exact.sync import ORDER, WaitForInvoice, sync_entity
from integrations.exact.webhooks import JOB_KIND as HINT_JOB, SYNC_JOB, content_of, hinted_entity, \
    sync_subject, sync_waiting
from integrations.models import OutboxMessage
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from portal.webhooks import parse_json, webhook_for

log = logging.getLogger(__name__)
STOPPED = "Exact Online needs re-authorisation:"
OUTBOX_JOB = "outbox.deliver"


# --- Writing syncs ---------------------------------------------------------------------------

def sync_enqueue(*, exact: ExactConnection, entity: str) -> int | None:
    """A sync of one entity from its cursor, in the caller's transaction; none when one is
    already waiting to start (it will read everything new). Returns the job id or None."""
    if sync_waiting(exact.pk, entity):
        return None
    return jobs.job_enqueue(kind=SYNC_JOB, key=f"{SYNC_JOB}:{exact.pk}:{entity}:at:{time.time_ns()}",
                            payload={"exact": exact.pk, "entity": entity}, subject=sync_subject(exact.pk, entity))


def sync_all_enqueue(*, exact: ExactConnection) -> int:
    """A sync of every entity, customers first (their invoices name them)."""
    with transaction.atomic():
        return sum(sync_enqueue(exact=exact, entity=entity) is not None for entity in ORDER)


@shared_task
def sync_exact_connections() -> int:
    """The periodic safety sync (webhooks are hints and may be lost): every connected connection,
    every entity, from its cursor. Only writes jobs."""
    from portal.tasks import record_run

    written = 0
    with staff_scope():
        for exact in ExactConnection.objects.filter(state=ExactConnection.State.CONNECTED, division__isnull=False,
                                                    connection__enabled=True):
            written += sync_all_enqueue(exact=exact)
    record_run("exact safety sync", f"{written} syncs written")
    return written


def exact_resume(*, exact: ExactConnection, actor=None) -> int:
    """After a new consent: the syncs and bookings stopped for re-authorisation get another round
    (audited replays), and every entity is synced from its cursor. Returns how many jobs resume."""
    messages = list(OutboxMessage.objects.filter(connection_id=exact.connection_id).values_list("pk", flat=True))
    dead = Job.objects.filter(state=Job.State.DEAD, last_error__startswith=STOPPED)
    stopped = (dead.filter(kind__in=[SYNC_JOB, HINT_JOB], subject__startswith=f"exact:{exact.pk}:")
               | dead.filter(kind=OUTBOX_JOB, payload__message__in=messages))
    resumed = sum(jobs.job_replay(job=job, actor=actor) for job in stopped.order_by("pk"))
    return resumed + sync_all_enqueue(exact=exact)


# --- Running them ----------------------------------------------------------------------------

def _exact(pk: int) -> ExactConnection:
    with transaction.atomic():
        exact = ExactConnection.objects.select_related("connection").filter(pk=pk).first()
    if exact is None:
        raise jobs.Permanent(f"Exact Online connection {pk} no longer exists")
    return exact


def _sync(exact: ExactConnection, entity: str) -> str:
    if exact.state == ExactConnection.State.REAUTHORISE:
        raise jobs.Permanent(f"{STOPPED} {exact.state_reason or 'connect again in admin'}")
    if exact.state != ExactConnection.State.CONNECTED or not exact.division:
        raise jobs.Permanent("Exact Online is not connected yet (or has no division chosen)")
    try:
        counts = sync_entity(exact, entity)
    except NeedsReauthorisation as exc:
        raise jobs.Permanent(f"{STOPPED} {exc}") from None
    except (RateLimited, EndpointBlocked) as exc:
        raise jobs.Retry(str(exc), until=exc.until) from None
    except WaitForInvoice as exc:
        raise jobs.Retry(str(exc)) from None
    return f"{entity}: " + ", ".join(f"{name} {count}" for name, count in counts.items())


# Slow queue: a sync pages through an entity (minutes under Exact's rate limit); so does a hint,
# which syncs the entity its webhook names.
@jobs.handler(SYNC_JOB, max_attempts=8, backoff_seconds=30, lease_seconds=900, queue=jobs.SLOW)
def exact_sync(job) -> str:
    """Payload {"exact": pk, "entity": ...}; subject exact:<pk>:<entity>."""
    return _sync(_exact(job.payload["exact"]), job.payload["entity"])


@jobs.handler(HINT_JOB, max_attempts=8, backoff_seconds=30, lease_seconds=900, queue=jobs.SLOW)
def exact_hint(job) -> str:
    """A webhook from Exact (stored by the intake, key webhook:<id>): sync the entity it names."""
    with transaction.atomic():
        webhook = webhook_for(job)
        exact = ExactConnection.objects.select_related("connection").filter(connection__slug=webhook.account).first()
    if exact is None:
        raise jobs.Permanent(f"connection {webhook.account!r} no longer exists")
    content, _ = content_of(webhook.body.encode())
    entity = hinted_entity(parse_json(content))
    return _sync(exact, entity)


# --- Outbox -------------------------------------------------------------------------------------

def outbox_deliver_exact(*, message: OutboxMessage, job) -> str:
    """The outbox delivery of an Exact connection (integrations.outbox dispatches by kind)."""
    with transaction.atomic():
        exact = ExactConnection.objects.filter(connection_id=message.connection_id).first()
    if exact is None:
        raise jobs.Permanent(f"connection {message.connection.slug!r} has no Exact Online settings")
    try:
        return booking.outbox_book(exact=exact, message=message, job=job)
    except NeedsReauthorisation as exc:
        raise jobs.Permanent(f"{STOPPED} {exc}") from None
    except (RateLimited, EndpointBlocked) as exc:
        raise jobs.Retry(str(exc), until=exc.until) from None
    except ExactUnreachable as exc:
        # Exact may have booked it: the next attempt looks for it by our reference first.
        raise jobs.Retry(str(exc)) from None
    except ExactRefused as exc:
        # Another try would be refused again (and count against the endpoint's error budget).
        raise jobs.Permanent(f"Exact Online refused the bank entry: {exc.message or exc.status}") from None
