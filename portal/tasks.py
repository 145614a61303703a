"""Portal tasks: the heartbeat that shows beat and a worker are alive, the bells of the job
mechanism (portal.jobs) and its sweep, and the notification email job."""
from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from portal import audit_partitions, jobs, notifications, webhooks
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


def worker_run_name(queue: str) -> str:
    return f"{queue} queue worker"


@shared_task(bind=True)
def worker_heartbeat(self, queue: str) -> str:
    """Sent by beat to each queue (settings: CELERY_BEAT_SCHEDULE): a worker that consumes the
    queue runs it, and the health page shows when one last did."""
    if self.request.is_eager:  # run in-process (manage.py run_schedules): no worker took it
        return "not run by a worker"
    record_run(worker_run_name(queue), self.request.hostname or "")
    return queue


def _email_dead(job, reason: str) -> None:
    notifications.notification_email_dead(notification_id=job.payload["notification"], reason=reason)


@jobs.handler(notifications.EMAIL_JOB, max_attempts=5, backoff_seconds=30, on_dead=_email_dead)
def email_notification(job) -> str:
    """Key `notification:<id>`: one notification's email, sent once (a retry after it went out
    skips); after the last attempt the notification shows failed, with the reason."""
    return notifications.notification_email_deliver(notification_id=job.payload["notification"],
                                      final=job.attempts >= job.max_attempts)


# The one mechanism for background work (portal.jobs): these tasks only ring the bell. They are
# sent to the queue of the job's kind (portal.jobs.ring), not routed by name.
@shared_task(acks_late=True)
def run_job(job_id: int):
    return jobs.job_run(job_id)


@shared_task(acks_late=True)
def drain_jobs(kind: str | None = None, queue: str | None = None) -> int:
    return jobs.jobs_drain(kind=kind, queue=queue)


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


@shared_task
def maintain_audit_partitions() -> list[str]:
    """The audit log's partitions for the coming months, and the months past retention dropped
    (portal/audit_partitions.py). Staff scope: it looks for events already in the default
    partition, which policies would otherwise hide."""
    with staff_scope():
        done = audit_partitions.audit_partitions_maintain()
    record_run("audit partitions", "; ".join(done) or "all in place")
    return done
