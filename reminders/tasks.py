"""The hourly scan and the sends it enqueues."""
from celery import shared_task

from portal.rls import staff_scope
from portal.tasks import record_run
from reminders import services


@shared_task
def scan_reminders() -> int:
    with staff_scope():
        created = len(services.reminders_scan())
        record_run("reminder scanner", f"{created} reminders due")
    return created


@shared_task(bind=True, max_retries=services.MAX_ATTEMPTS, acks_late=True)
def send_reminders(self, dispatch_ids: list[int]) -> int:
    sent, again = 0, []
    for dispatch_id in dispatch_ids:
        with staff_scope():
            outcome = services.reminder_send(dispatch_id=dispatch_id)
        if outcome == "retry":
            again.append(dispatch_id)
        elif outcome == "sent":
            sent += 1
    if again:
        raise self.retry(args=[again], countdown=60 * 2 ** self.request.retries)
    return sent
