"""Integrations are tested committed for real, as in production: a job runs only with no
transaction open, so the `db` fixture's test transaction would not let one run."""
import pytest
from django.utils import timezone

from integrations.models import Connection
from integrations.signing import generate_secret
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.portal.factories import BrandFactory, UserFactory


@pytest.fixture
def secret():
    return generate_secret()


@pytest.fixture
def connection(committed, secret):
    return committed.create(lambda: Connection.objects.create(
        name="Custom ERP", slug="erp", brand=BrandFactory(is_default=True), signing_secrets=secret))


@pytest.fixture
def staff(committed):
    return committed.create(lambda: UserFactory(is_staff=True, is_superuser=True, email="staff@portal.test"))


class Worker:
    """Stands in for the Celery worker. Bells are recorded, not sent, so a real worker that
    another test left running cannot take this test's jobs; `run()` does every integrations job
    that is due, as the worker does when rung (other kinds, such as PDF pre-renders, are left)."""

    kinds = ("accounting.event", "outbox.deliver")

    def __init__(self):
        self.bells: list[tuple] = []

    def send_task(self, name, args=None, kwargs=None, **options):
        self.bells.append((name, args, kwargs))

    def rung_for(self, job: Job) -> bool:
        return ("portal.tasks.run_job", [job.pk], None) in self.bells

    def run(self) -> int:
        return sum(jobs.jobs_drain(kind=kind, seconds=60) for kind in self.kinds)

    @staticmethod
    def make_due(job: Job) -> None:
        """Time passes: the job's backoff is over."""
        with staff_scope():
            Job.objects.filter(pk=job.pk).update(run_after=timezone.now())


@pytest.fixture
def worker(committed, monkeypatch):
    fake = Worker()
    monkeypatch.setattr(jobs.current_app, "send_task", fake.send_task)
    return fake
