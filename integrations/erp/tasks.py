"""The pull adapter's background work, as portal.jobs handlers: "erp.pull" (one pull of one
ERP: integrations.erp.pull) and the beat task that writes them, each connection at its own
interval.

Pulls of one connection share a subject (`erp:<pk>:pull`), so one runs at a time; a pull waiting
to start takes the place of the next. A pull whose time ran out writes the next one, which goes on
where it stopped. What stops them:
- ErpThrottled (429, Retry-After): retried when the ERP says;
- ErpAuthRefused (credentials refused, also after a fresh OAuth2 token): dead at once with a
  reason starting with STOPPED; staff fix the credentials and replay it (nothing is lost: the
  feeds only moved past what was stored);
- anything else (no answer, a 5xx): retried with backoff, dead after the last attempt.
"""
from __future__ import annotations

import time

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.erp import pull as erp_pull
from integrations.erp.client import ErpAuthRefused, ErpError, ErpThrottled
from integrations.erp.models import ErpPull
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope

PULL_JOB = "erp.pull"
STOPPED = "The ERP refused the credentials:"


def pull_subject(pk: int) -> str:
    return f"erp:{pk}:pull"


def pull_enqueue(*, erp: ErpPull) -> int | None:
    """A pull of the ERP, in the caller's transaction; none when one is already waiting to start
    (it will read everything new). Returns the job id or None."""
    if Job.objects.filter(kind=PULL_JOB, subject=pull_subject(erp.pk), state=Job.State.PENDING,
                          attempts=0).exists():
        return None
    return jobs.job_enqueue(kind=PULL_JOB, key=f"{PULL_JOB}:{erp.pk}:at:{time.time_ns()}", payload={"erp": erp.pk},
                            subject=pull_subject(erp.pk))


def pull_running(erp: ErpPull) -> Job | None:
    """The pull of this ERP that is running or waiting to run, if there is one."""
    return Job.objects.filter(kind=PULL_JOB, subject=pull_subject(erp.pk),
                              state__in=jobs.OPEN_STATES).order_by("pk").first()


@shared_task
def pull_erp_connections() -> int:
    """Every minute (beat): a pull of each ERP that is pulling and whose last pull is older than
    its interval. Only writes jobs."""
    from portal.tasks import record_run

    written = 0
    now = timezone.now()
    with staff_scope():
        for erp in ErpPull.objects.filter(enabled=True, connection__enabled=True):
            if erp.last_pull_at is None or now - erp.last_pull_at >= timezone.timedelta(minutes=erp.poll_minutes):
                with transaction.atomic():
                    written += pull_enqueue(erp=erp) is not None
    record_run("erp pulls", f"{written} pulls written")
    return written


def _note_error(erp_pk: int, reason: str) -> None:
    with transaction.atomic():
        ErpPull.objects.filter(pk=erp_pk).update(last_error=reason[:500])


def _pull_dead(job, reason: str) -> None:
    ErpPull.objects.filter(pk=job.payload.get("erp")).update(last_error=reason[:500])


# Slow queue: a pull pages through the ERP's invoices (minutes).
@jobs.handler(PULL_JOB, max_attempts=8, backoff_seconds=30, lease_seconds=1800, on_dead=_pull_dead,
              queue=jobs.SLOW)
def erp_pull_run(job) -> str:
    """Payload {"erp": pk}; subject erp:<pk>:pull."""
    with transaction.atomic():
        erp = ErpPull.objects.select_related("connection").filter(pk=job.payload["erp"]).first()
    if erp is None:
        raise jobs.Permanent(f"ERP pull connection {job.payload['erp']} no longer exists")
    if not erp.enabled or not erp.connection.enabled:
        return "not pulling (turned off)"
    try:
        counts, finished = erp_pull.pull(erp)
    except ErpAuthRefused as exc:
        _note_error(erp.pk, str(exc))
        raise jobs.Permanent(f"{STOPPED} {exc}") from None
    except ErpThrottled as exc:
        _note_error(erp.pk, str(exc))
        raise jobs.Retry(str(exc), until=exc.until) from None
    except ErpError as exc:
        _note_error(erp.pk, str(exc))
        raise
    if not finished:
        with transaction.atomic():
            jobs.job_enqueue(kind=PULL_JOB, key=f"{PULL_JOB}:{erp.pk}:after:{job.pk}", payload={"erp": erp.pk},
                             subject=pull_subject(erp.pk))
    summary = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
    return (summary or "nothing new") + ("" if finished else " (goes on in the next pull)")
