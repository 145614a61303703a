"""Payments are tested committed for real, as in production: a webhook's job, a mandate sync and
a collection run only with no transaction open, so the `db` fixture's test transaction would not
let them run."""
import pytest
from django.utils import timezone

from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.mollie import FakeMollie

API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"
KINDS = ("gateway.event", "mandate.sync", "mandate.collect")


class Worker:
    """Stands in for the Celery worker. Bells are recorded, not sent (a real worker that another
    test left running cannot take this test's jobs); `run()` does every payments job that is due,
    as a worker does when rung, until none is left. `broker_down()` makes every bell fail, as
    when Redis is down."""

    def __init__(self):
        self.bells: list[tuple] = []
        self.down = False

    def send_task(self, name, args=None, kwargs=None, **options):
        if self.down:
            raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")
        self.bells.append((name, args, kwargs))

    def broker_down(self, down: bool = True) -> None:
        self.down = down

    def run(self) -> int:
        total = 0
        while ran := sum(jobs.jobs_drain(kind=kind, seconds=60) for kind in KINDS):
            total += ran
        return total

    @staticmethod
    def make_due(**filters) -> None:
        """Time passes: the backoff of the matching jobs is over."""
        with staff_scope():
            Job.objects.filter(**filters).update(run_after=timezone.now())

    @staticmethod
    def jobs(**filters) -> list[Job]:
        with staff_scope():
            return list(Job.objects.filter(**filters).order_by("id"))


@pytest.fixture
def worker(committed, monkeypatch):
    fake = Worker()
    monkeypatch.setattr(jobs.current_app, "send_task", fake.send_task)
    return fake


@pytest.fixture
def mollie(settings):
    with FakeMollie(API_KEY) as fake:
        settings.MOLLIE_API_ENDPOINT = fake.url
        yield fake


@pytest.fixture
def staff_user(committed):
    from tests.portal.factories import UserFactory

    return committed.create(lambda: UserFactory(is_staff=True, is_superuser=True, email="staff@portal.test"))
