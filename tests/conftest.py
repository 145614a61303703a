"""Shared fixtures: a real PostgreSQL as the application role (RLS always on), Redis, mail."""
import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction

from portal.rls import staff_scope


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker):
    # `make test` has created the roles and the test database and migrated it as the
    # owner; doing it again here is a fast no-op that lets `pytest` run on its own too.
    with django_db_blocker.unblock():
        call_command("db_bootstrap", stdout=io.StringIO())
        call_command("migrate", database="owner", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def _own_encrypted_files(settings, tmp_path):
    # The database rolls back after each test; files would not. Each test gets its own folder.
    settings.STORAGES = {**settings.STORAGES, "encrypted": {
        "BACKEND": "portal.crypto.EncryptedFileStorage", "OPTIONS": {"location": str(tmp_path / "encrypted")}}}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Rate limits and login codes live in the Redis cache: no test inherits another's.
    cache.clear()
    yield


@pytest.fixture
def staff(db):
    from tests.portal.factories import UserFactory

    return UserFactory(is_staff=True, is_superuser=True, email="staff@portal.test")


MOLLIE_TEST_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"


@pytest.fixture(scope="session")
def live_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mollie_server():
    """A fake Mollie for the processes a browser test starts (web server and worker)."""
    from tests.fakes.mollie import FakeMollie

    with FakeMollie(MOLLIE_TEST_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def process_env(live_port, mollie_server, test_email_dir):
    """The environment of the web server and worker the tests start: test settings, the fakes'
    addresses, mail into files, and links that point at the test web server."""
    import os

    return {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings_test", "TEST_EMAIL_DIR": str(test_email_dir),
            "MOLLIE_API_ENDPOINT": mollie_server.url, "SITE_URL": f"http://127.0.0.1:{live_port}"}


@pytest.fixture(scope="session")
def test_email_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mail")


@pytest.fixture(scope="session")
def celery_worker_process(process_env):
    """A real Celery worker on the test broker (Redis), in its own process."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from portal.celery import app

    app.control.purge()  # messages left by tests that never had a worker
    env = process_env
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "-l", "warning",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"test-{os.getpid()}@%h"],
        cwd=Path(__file__).resolve().parent.parent, env=env,
    )
    deadline = time.monotonic() + 30
    while not app.control.inspect(timeout=0.5).ping():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise RuntimeError("the Celery worker did not start")
    yield worker
    worker.terminate()
    worker.wait(timeout=15)


@pytest.fixture
def committed(request, django_db_setup, django_db_blocker):
    """Rows that other processes (the web server, a worker) can see: committed for real,
    and wiped afterwards through the owner role (the app role may not truncate).
    Not with `db`: inside its test transaction nothing would really commit."""
    if "db" in request.fixturenames:
        pytest.fail("`committed` cannot be combined with `db` (or a fixture that uses it)")

    class Committed:
        @staticmethod
        def create(build):
            with transaction.atomic(), staff_scope():
                return build()

    with django_db_blocker.unblock():
        yield Committed()
        _wipe()


def _wipe(attempts: int = 10) -> None:
    """Empty every table. A worker may still be busy with this test's rows (pre-rendering a
    PDF, sending an email): drop its queue, and retry if our TRUNCATE loses a deadlock to it."""
    import time

    from django.core.management.base import CommandError
    from django.db import OperationalError, connections

    from portal.celery import app

    app.control.purge()
    for attempt in range(attempts):
        try:
            call_command("flush", database="owner", interactive=False, verbosity=0)
            return
        except (OperationalError, CommandError):  # flush reports a lost deadlock as a CommandError
            connections["owner"].close()
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
