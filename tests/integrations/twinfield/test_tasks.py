"""Twinfield's polls as jobs: the beat task writes one per connection whose interval has passed
(and none while one waits), the poll job runs the poll, and a connection that needs
re-authorisation stops its polls with the reason until it is connected again."""
import datetime

from django.utils import timezone

from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor
from integrations.twinfield.tasks import POLL_JOB, STOPPED, poll_twinfield_connections, twinfield_resume
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.integrations.twinfield.test_client import OFFICE, fake, twinfield  # noqa: F401 - fixtures


def _polls() -> list[Job]:
    with staff_scope():
        return list(Job.objects.filter(kind=POLL_JOB).order_by("pk"))


def test_beat_writes_a_poll_when_the_interval_has_passed_and_not_twice(fake, twinfield, worker):
    assert poll_twinfield_connections() == 1  # never polled
    assert poll_twinfield_connections() == 0  # one waits already
    [job] = _polls()
    assert job.payload == {"app": twinfield.pk} and worker.rung_for(job)

    fake.add_sales_invoice(OFFICE, fake.add_customer(OFFICE, "Klant B.V.", email="a@klant.test")["code"],
                           [("Advies", "100.00", "VH")])
    assert jobs.jobs_drain(kind=POLL_JOB, seconds=30) == 1
    with staff_scope():
        job.refresh_from_db()
    assert job.state == Job.State.DONE and "invoices 1" in job.result
    assert poll_twinfield_connections() == 0  # polled just now; the interval (5 minutes) has not passed
    with staff_scope():
        TwinfieldCursor.objects.filter(twinfield=twinfield).update(
            polled_at=timezone.now() - datetime.timedelta(minutes=5))
    assert poll_twinfield_connections() == 1


def test_a_connection_needing_re_authorisation_stops_its_polls_until_connected_again(fake, twinfield, worker):
    poll_twinfield_connections()
    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(
            state=TwinfieldConnection.State.REAUTHORISE, state_reason="Twinfield refused the refresh token")
    jobs.jobs_drain(kind=POLL_JOB, seconds=30)
    [job] = _polls()
    assert job.state == Job.State.DEAD and job.last_error.startswith(STOPPED)
    assert poll_twinfield_connections() == 0  # none written for a stopped connection

    with staff_scope():
        TwinfieldConnection.objects.filter(pk=twinfield.pk).update(state=TwinfieldConnection.State.CONNECTED)
        twinfield.refresh_from_db()
        assert twinfield_resume(twinfield=twinfield) == 1  # the stopped poll replayed (it takes the new poll's place)
    jobs.jobs_drain(kind=POLL_JOB, seconds=30)
    assert [j.state for j in _polls()] == [Job.State.DONE]
