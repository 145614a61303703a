"""Staff see background work by kind and state with counts per day, read stored webhooks,
and replay dead jobs (audited)."""
import pytest
from django.utils import timezone

from portal.models import AuditEvent, Job, WebhookRequest
from portal.rls import staff_scope


@pytest.fixture
def work(db):
    now = timezone.now()
    with staff_scope():
        dead = Job.objects.create(kind="outbox.deliver", key="outbox:msg_1", state=Job.State.DEAD, attempts=6,
                                  run_after=now, last_error="HTTP 500: accounting is down")
        Job.objects.create(kind="outbox.deliver", key="outbox:msg_2", state=Job.State.DONE, attempts=1, run_after=now)
        Job.objects.create(kind="reminder.send", key="reminder:1", state=Job.State.RETRYING, attempts=2, run_after=now)
        hook = WebhookRequest.objects.create(source="mollie", account="3", status="rejected", body="id=nonsense",
                                             error="not a Mollie payment id")
    return dead, hook


def test_staff_see_jobs_per_day_kind_and_state(client, staff, work):
    client.force_login(staff)
    page = client.get("/admin/portal/job/")
    assert page.status_code == 200
    figures = {row["kind"]: row for row in page.context["figures"]}
    assert figures["outbox.deliver"]["total"] == 2 and figures["outbox.deliver"]["dead"] == 1
    assert figures["reminder.send"]["retrying"] == 1
    assert b"HTTP 500: accounting is down" in page.content
    assert client.get("/admin/portal/job/?state__exact=dead").context["cl"].result_count == 1


def test_staff_replay_a_dead_job_and_the_audit_log_says_who(client, staff, work):
    dead, _ = work
    client.force_login(staff)
    page = client.post("/admin/portal/job/", {"action": "replay_dead_jobs", "_selected_action": [dead.pk]},
                       follow=True)
    assert b"1 replayed; 0 skipped" in page.content
    with staff_scope():
        dead.refresh_from_db()
        assert (dead.state, dead.attempts) == (Job.State.PENDING, 0)
        event = AuditEvent.objects.get(action=AuditEvent.Action.JOB_REPLAYED)
    assert event.actor_email == staff.email and event.details["last_error"] == "HTTP 500: accounting is down"


def test_staff_read_a_rejected_webhook_with_its_reason(client, staff, work):
    _, hook = work
    client.force_login(staff)
    page = client.get(f"/admin/portal/webhookrequest/{hook.pk}/change/")
    assert page.status_code == 200
    assert b"not a Mollie payment id" in page.content and b"id=nonsense" in page.content


def test_health_page_shows_the_job_figures(client, staff, work):
    client.force_login(staff)
    page = client.get("/admin/health/")
    assert page.status_code == 200
    assert b"outbox.deliver" in page.content and b"reminder.send" in page.content


def test_clients_cannot_reach_the_job_admin(client, work):
    from tests.portal.factories import MembershipFactory

    client.force_login(MembershipFactory().user)
    assert client.get("/admin/portal/job/").status_code == 302
