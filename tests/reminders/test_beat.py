"""The schedule for real: celery beat enqueues the scan, a real worker runs it and sends."""
import datetime
import subprocess
import sys
import time
from pathlib import Path

from django.test import Client as HttpClient

from portal.models import ScheduledRun
from portal.rls import staff_scope
from reminders.models import ReminderDispatch
from tests.invoices.factories import make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory
from tests.reminders.test_scanner import _policy

ROOT = Path(__file__).resolve().parents[2]


def test_beat_schedules_the_scan_and_a_worker_sends_the_reminder(committed, celery_worker_process, process_env,
                                                                  tmp_path):
    def build():
        brand = BrandFactory()
        _policy(brand)
        client = ClientFactory(brand=brand, locale="en")
        MembershipFactory(client=client)
        today = datetime.date.today()
        return make_invoice(client, number="BEAT-1", issue_date=today - datetime.timedelta(days=20), due_days=14)

    committed.create(build)
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "warning", "-s", str(tmp_path / "schedule")],
        cwd=ROOT, env={**process_env, "REMINDER_SCAN_INTERVAL": "1", "HEARTBEAT_INTERVAL": "1", "JOB_SWEEP_INTERVAL": "1"})
    try:
        deadline = time.monotonic() + 40
        sent = None
        while time.monotonic() < deadline and sent is None:
            with staff_scope():
                sent = ReminderDispatch.objects.filter(status="sent").select_related("step").first()
            time.sleep(0.5)
    finally:
        beat.terminate()
        beat.wait(timeout=15)
        time.sleep(1.5)  # let the worker finish what beat queued before the tables are wiped
    assert sent is not None, "beat and worker did not send the reminder"
    assert sent.step.offset_days == 1  # due 6 days ago: the +1 step, not yet +7
    with staff_scope():
        assert set(ScheduledRun.objects.values_list("name", flat=True)) >= {"beat", "reminder scanner", "job sweep"}
    staff = committed.create(lambda: UserFactory(is_staff=True, is_superuser=True))
    http = HttpClient()
    http.force_login(staff)
    page = http.get("/admin/health/")
    assert page.status_code == 200 and "quiet-warning" not in page.text
