"""Portal tasks: the heartbeat that shows beat and a worker are alive, the bells of the job
mechanism (portal.jobs) and its sweep, and the notification email job."""
from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from portal import jobs, notifications, webhooks
from portal.models import ScheduledRun
from portal.rls import staff_scope

HEARTBEAT_KEY = "beat:last-heartbeat"


def record_run(name: str, result: str = "") -> None:
    """When a scheduled task last ran (the back office's health page reads it)."""
    with staff_scope():
        ScheduledRun.objects.update_or_create(name=name, defaults={"last_run_at": timezone.now(),
                                                                   "last_result": str(result)[:300]})


@shared_task
def beat_heartbeat() -> str:
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    record_run("beat")
    return now


def _email_dead(job, reason: str) -> None:
    notifications.notification_email_dead(notification_id=job.payload["notification"], reason=reason)


@jobs.handler(notifications.EMAIL_JOB, max_attempts=5, backoff_seconds=30, on_dead=_email_dead)
def email_notification(job) -> str:
    """Key `notification:<id>`: one notification's email, sent once (a retry after it went out
    skips); after the last attempt the notification shows failed, with the reason."""
    return notifications.notification_email_deliver(notification_id=job.payload["notification"],
                                      final=job.attempts >= job.max_attempts)


# The one mechanism for background work (portal.jobs): these tasks only ring the bell.
@shared_task(acks_late=True)
def run_job(job_id: int):
    return jobs.job_run(job_id)


@shared_task(acks_late=True)
def drain_jobs(kind: str | None = None) -> int:
    return jobs.jobs_drain(kind=kind)


@shared_task
def sweep_jobs() -> int:
    count = jobs.jobs_sweep()
    with staff_scope():
        record_run("job sweep", f"{count} jobs due")
    return count


@shared_task
def prune_webhook_samples() -> int:
    removed = webhooks.webhook_samples_prune()
    record_run("webhook samples pruned", f"{removed} removed")
    return removed
