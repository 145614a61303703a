"""Portal tasks: a heartbeat that shows the beat scheduler and a worker are alive."""
from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from portal import jobs
from portal.models import ScheduledRun
from portal.rls import staff_scope

HEARTBEAT_KEY = "beat:last-heartbeat"


def record_run(name: str, result: str = "") -> None:
    ScheduledRun.objects.update_or_create(name=name, defaults={"last_run_at": timezone.now(),
                                                               "last_result": str(result)[:300]})


@shared_task
def beat_heartbeat() -> str:
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    record_run("beat")
    return now


@shared_task(bind=True, max_retries=4, acks_late=True)
def send_notification_email(self, notification_id: int) -> str:
    """Send, record, and retry with a growing wait; the last failure is kept on the row."""
    from portal.models import Notification
    from portal.notifications import notification_email_record, notification_email_send
    from portal.rls import staff_scope

    with staff_scope():
        notification = Notification.objects.select_related("user", "client__brand", "document_link").filter(pk=notification_id).first()
        if notification is None or notification.email_status != Notification.EmailStatus.PENDING:
            return "skipped"
    try:
        notification_email_send(notification=notification)
    except Exception as exc:  # noqa: BLE001 - SMTP and network errors alike are retried
        with staff_scope():
            notification_email_record(notification_id=notification_id, error=f"{type(exc).__name__}: {exc}")
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=30 * 2 ** self.request.retries)
        return "failed"
    with staff_scope():
        notification_email_record(notification_id=notification_id)
    return "sent"


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
