"""A fresh start looks alive: `make run` runs every scheduled task once right after starting the
worker (portal.stack.run_schedules_once -> manage.py run_schedules), so overdue invoices have
their reminders on the way and the back office's health page is green at once."""
import datetime
import io

from django.core.management import call_command
from django.test import Client as HttpClient

from portal import stack
from portal.models import Job, ScheduledRun
from portal.rls import staff_scope
from reminders.models import ReminderDispatch
from tests.invoices.factories import make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory
from tests.reminders.test_scanner import _policy


def test_the_start_up_run_sends_due_reminders_and_turns_the_health_page_green(committed):
    def build():
        brand = BrandFactory()
        _policy(brand)
        client = ClientFactory(brand=brand, locale="en")
        MembershipFactory(client=client)
        today = datetime.date.today()
        make_invoice(client, number="START-1", issue_date=today - datetime.timedelta(days=20), due_days=14)
        return UserFactory(is_staff=True, is_superuser=True)

    staff = committed.create(build)
    http = HttpClient()
    http.force_login(staff)
    assert "quiet-warning" in http.get("/admin/health/").text  # never run: what a fresh start showed

    out = io.StringIO()
    call_command("run_schedules", stdout=out)

    assert "scan-reminders: 1" in out.getvalue(), out.getvalue()
    with staff_scope():
        dispatch = ReminderDispatch.objects.select_related("step", "invoice").get()
        assert dispatch.invoice.number == "START-1" and dispatch.step.offset_days == 1
        assert Job.objects.filter(kind="reminder.send", key=f"reminder:{dispatch.pk}").exists()  # the worker sends it
        assert set(ScheduledRun.objects.values_list("name", flat=True)) >= {"beat", "reminder scanner", "job sweep"}
    page = http.get("/admin/health/")
    assert page.status_code == 200 and "quiet-warning" not in page.text


def test_make_run_starts_the_schedules_once_as_the_application_role(monkeypatch):
    calls = []
    monkeypatch.setenv("DATABASE_OWNER_PASSWORD", "not for the runtime")
    monkeypatch.setattr(stack.subprocess, "run", lambda command, **kwargs: calls.append((command, kwargs)) or
                        type("Done", (), {"returncode": 0})())
    stack.run_schedules_once([])
    [(command, kwargs)] = calls
    assert command[-2:] == ["manage.py", "run_schedules"]
    assert "DATABASE_OWNER_PASSWORD" not in kwargs["env"]
    assert kwargs["env"]["DJANGO_SETTINGS_MODULE"] == "portal.settings"
