"""The hourly scan and the sends it enqueues."""
from celery import shared_task

from portal.rls import staff_scope
from reminders import services


@shared_task
def scan_reminders() -> int:
    from portal.tasks import record_run

    with staff_scope():
        created = len(services.reminders_scan())
        record_run("reminder scanner", f"{created} reminders due")
    return created


@shared_task(bind=True, max_retries=services.MAX_ATTEMPTS - 1, acks_late=True)
def send_reminders(self, dispatch_ids: list[int]) -> int:
    sent, failed = 0, []
    for dispatch_id in dispatch_ids:
        try:
            with staff_scope():
                services.reminder_send(dispatch_id=dispatch_id)
            sent += 1
        except Exception:  # noqa: BLE001 - recorded on the dispatch; retried below
            failed.append(dispatch_id)
    if failed and self.request.retries < self.max_retries:
        raise self.retry(args=[failed], countdown=60 * 2 ** self.request.retries)
    return sent
