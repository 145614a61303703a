"""The hourly scan, and the job that sends one reminder (portal.jobs)."""
from celery import shared_task

from portal.jobs import Retry, handler
from portal.rls import staff_scope
from portal.tasks import record_run
from reminders import services


@shared_task
def scan_reminders() -> int:
    with staff_scope():
        created = len(services.reminders_scan())
        record_run("reminder scanner", f"{created} reminders due")
    return created


def _send_dead(job, reason: str) -> None:
    services.reminder_send_dead(dispatch_id=job.payload["dispatch"], reason=reason)


@handler(services.SEND_JOB, max_attempts=services.MAX_ATTEMPTS, backoff_seconds=60, on_dead=_send_dead)
def send_reminder(job) -> str:
    """Key `reminder:<dispatch id>`. Reaches each recipient once: a retry sends only to whom the
    reminder has not gone yet; after the last attempt the dispatch shows failed, with the reasons."""
    try:
        return services.reminder_send(dispatch_id=job.payload["dispatch"], final=job.attempts >= job.max_attempts)
    except services.NotDelivered as exc:
        raise Retry(str(exc)) from exc
