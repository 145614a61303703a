"""The health page per queue: a worker of each queue takes its heartbeat, and how long the
oldest due job of each queue has waited (fast work must not hide behind slow work)."""
import datetime

from django.conf import settings
from django.utils import timezone

from invoices.services import PRERENDER_JOB
from portal import jobs
from portal.models import Job, ScheduledRun
from portal.rls import staff_scope
from portal.tasks import worker_heartbeat, worker_run_name


def _queues(page) -> dict:
    return {queue["queue"]: queue for queue in page.context["queues"]}


def test_health_page_reports_each_queues_worker_and_oldest_waiting_job(client, staff, db):
    now = timezone.now()
    with staff_scope():
        Job.objects.create(kind="outbox.deliver", key="outbox:1", run_after=now - datetime.timedelta(minutes=10))
        Job.objects.create(kind="outbox.deliver", key="outbox:2", state=Job.State.RETRYING,
                           run_after=now - datetime.timedelta(seconds=20))
        Job.objects.create(kind="outbox.deliver", key="outbox:later", run_after=now + datetime.timedelta(hours=1))
        Job.objects.create(kind="outbox.deliver", key="outbox:done", state=Job.State.DONE,
                           run_after=now - datetime.timedelta(days=1))
        Job.objects.create(kind=PRERENDER_JOB, key="render:1", run_after=now - datetime.timedelta(minutes=3))
        ScheduledRun.objects.create(name=worker_run_name(jobs.SLOW), last_run_at=now - datetime.timedelta(seconds=30),
                                    last_result="slow@worker-2")
    client.force_login(staff)
    page = client.get("/admin/health/")
    assert page.status_code == 200
    queues = _queues(page)
    fast, slow = queues[jobs.FAST], queues[jobs.SLOW]
    # Fast: two due (the later one and the done one do not count), the oldest ten minutes: behind,
    # and no worker has taken its heartbeat.
    assert fast["waiting"] == 2 and fast["oldest"] < now - datetime.timedelta(minutes=9)
    assert fast["slow"] and fast["no_worker"]
    # Slow: one render due for three minutes (within its half hour), and a worker took its heartbeat.
    assert slow["waiting"] == 1 and not slow["slow"] and not slow["no_worker"]
    html = page.content.decode()
    assert html.count("heartbeat for over five minutes") == 1
    assert html.count("Behind: add workers to this queue") == 1
    assert "slow@worker-2" in html


def test_beat_sends_a_heartbeat_to_each_queue_that_only_a_worker_records(db):
    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values()
               if entry["task"] == "portal.tasks.worker_heartbeat"]
    assert sorted(entry["options"]["queue"] for entry in entries) == sorted(jobs.QUEUES)
    assert all(entry["args"] == (entry["options"]["queue"],) for entry in entries)
    # Run in-process (manage.py run_schedules), it records nothing: no worker took it.
    assert worker_heartbeat.apply(args=(jobs.SLOW,)).result == "not run by a worker"
    with staff_scope():
        assert not ScheduledRun.objects.filter(name=worker_run_name(jobs.SLOW)).exists()
