"""Twinfield's background work, as portal.jobs handlers: "twinfield.poll" (one poll of one
connection: integrations.twinfield.sync) and the beat task that writes them, each connection at
its own interval. "twinfield.connect" is in integrations.twinfield.connect.

Polls of one connection share a subject (`twinfield:<pk>:poll`), so one runs at a time; a poll
waiting to start takes the place of the next. What stops them:
- Throttled (Twinfield's credits or its 429): retried when Twinfield says (Retry(after=...));
- NeedsReauthorisation: the job is dead at once with a reason starting with STOPPED. Nothing is
  lost: the cursor only moved past what was stored. Connecting again (the connect job) replays
  those jobs and writes a poll (`twinfield_resume`).
"""
from __future__ import annotations

import time

from celery import shared_task
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.twinfield import sync
from integrations.twinfield.client import NeedsReauthorisation, Throttled
from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope

POLL_JOB = "twinfield.poll"
STOPPED = "Twinfield needs re-authorisation:"


def poll_subject(pk: int) -> str:
    return f"twinfield:{pk}:poll"


def poll_enqueue(*, twinfield: TwinfieldConnection) -> int | None:
    """A poll of the connection, in the caller's transaction; none when one is already waiting to
    start (it will read everything new). Returns the job id or None."""
    if Job.objects.filter(kind=POLL_JOB, subject=poll_subject(twinfield.pk), state=Job.State.PENDING,
                          attempts=0).exists():
        return None
    return jobs.job_enqueue(kind=POLL_JOB, key=f"{POLL_JOB}:{twinfield.pk}:at:{time.time_ns()}",
                            payload={"app": twinfield.pk}, subject=poll_subject(twinfield.pk))


@shared_task
def poll_twinfield_connections() -> int:
    """Every minute (beat): a poll of each connected connection whose last one is older than its
    interval. Only writes jobs."""
    from portal.tasks import record_run

    written = 0
    now = timezone.now()
    with staff_scope():
        ready = TwinfieldConnection.objects.filter(state=TwinfieldConnection.State.CONNECTED,
                                                   connection__enabled=True).exclude(office="")
        for twinfield in ready:
            last = TwinfieldCursor.objects.filter(twinfield=twinfield, entity=TwinfieldCursor.Entity.TRANSACTIONS) \
                .values_list("polled_at", flat=True).first()
            if last is None or now - last >= timezone.timedelta(minutes=twinfield.poll_minutes):
                with transaction.atomic():
                    written += poll_enqueue(twinfield=twinfield) is not None
    record_run("twinfield polls", f"{written} polls written")
    return written


def twinfield_resume(*, twinfield: TwinfieldConnection, actor=None) -> int:
    """After a new consent: the polls stopped for re-authorisation get another round (audited
    replays), and a poll is written. Returns how many jobs resume."""
    stopped = Job.objects.filter(Q(kind=POLL_JOB, subject=poll_subject(twinfield.pk)), state=Job.State.DEAD,
                                 last_error__startswith=STOPPED)
    resumed = sum(jobs.job_replay(job=job, actor=actor) for job in stopped.order_by("pk"))
    return resumed + (poll_enqueue(twinfield=twinfield) is not None)


# Slow queue: a poll reads every office's changes (minutes, within Twinfield's credits).
@jobs.handler(POLL_JOB, max_attempts=8, backoff_seconds=30, lease_seconds=1800, queue=jobs.SLOW)
def twinfield_poll(job) -> str:
    """Payload {"app": pk}; subject twinfield:<pk>:poll."""
    with transaction.atomic():
        twinfield = TwinfieldConnection.objects.select_related("connection").filter(pk=job.payload["app"]).first()
    if twinfield is None:
        raise jobs.Permanent(f"Twinfield connection {job.payload['app']} no longer exists")
    if twinfield.state == TwinfieldConnection.State.REAUTHORISE:
        raise jobs.Permanent(f"{STOPPED} {twinfield.state_reason or 'connect again in admin'}")
    if twinfield.state != TwinfieldConnection.State.CONNECTED or not twinfield.office:
        raise jobs.Permanent("Twinfield is not connected yet (or has no office chosen)")
    try:
        counts = sync.poll(twinfield)
    except NeedsReauthorisation as exc:
        raise jobs.Permanent(f"{STOPPED} {exc}") from None
    except Throttled as exc:
        raise jobs.Retry(str(exc), until=exc.until) from None
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def outbox_deliver_twinfield(*, message, job) -> str:
    """The outbox delivery of a Twinfield connection (integrations.outbox dispatches by kind)."""
    from integrations.twinfield import booking
    from integrations.twinfield.client import TwinfieldUnreachable

    with transaction.atomic():
        twinfield = TwinfieldConnection.objects.filter(connection_id=message.connection_id).first()
    if twinfield is None:
        raise jobs.Permanent(f"connection {message.connection.slug!r} has no Twinfield settings")
    try:
        return booking.outbox_book(twinfield=twinfield, message=message, job=job)
    except NeedsReauthorisation as exc:
        raise jobs.Permanent(f"{STOPPED} {exc}") from None
    except Throttled as exc:
        raise jobs.Retry(str(exc), until=exc.until) from None
    except TwinfieldUnreachable as exc:
        # Twinfield may have booked it: the next attempt looks for it by our message id first.
        raise jobs.Retry(str(exc)) from None
