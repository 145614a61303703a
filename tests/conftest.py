"""Shared fixtures: a real PostgreSQL as the application role (RLS always on), Redis, mail."""
import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction

from portal import txguard
from portal.rls import staff_scope
from tests.support.owner import as_owner


# The transaction guard (portal/txguard.py): no HTTP call or email may start while a transaction of
# the code's own is open. Installed for the whole run; a test fails on any record made during it,
# also when the code swallowed the exception. The web server and worker the tests start install
# it too (PortalConfig.ready(), through TXGUARD_LOG) and write their records to a directory that
# is checked when the session ends.
_txguard_log_dir = None
_txguard_subprocess_seen: dict[str, dict] = {}  # record id -> record, with the test it happened in
_txguard_subprocess_report: list[dict] = []


def fail_on_txguard_violations() -> None:
    found = txguard.take_violations()
    if found:
        pytest.fail("External calls while a database transaction was open:\n" + txguard.describe(found),
                    pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _txguard_installed():
    txguard.install()


@pytest.fixture(autouse=True)
def _no_external_calls_in_transactions(request, _txguard_installed):
    txguard.violations.clear()
    yield
    if _txguard_log_dir is not None:  # what the web server and worker wrote while this test ran
        for record in txguard.read_log(_txguard_log_dir):
            _txguard_subprocess_seen.setdefault(record["id"], {**record, "test": request.node.nodeid})
    fail_on_txguard_violations()


@pytest.fixture(scope="session")
def txguard_log_dir(tmp_path_factory):
    global _txguard_log_dir
    _txguard_log_dir = tmp_path_factory.mktemp("txguard")
    return _txguard_log_dir


def pytest_sessionfinish(session, exitstatus):
    if _txguard_log_dir is None:
        return
    records = [_txguard_subprocess_seen.get(r["id"], {**r, "test": "after the last test"})
               for r in txguard.read_log(_txguard_log_dir)]
    if records:
        _txguard_subprocess_report[:] = records
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _txguard_subprocess_report:
        terminalreporter.section("external calls in transactions (web server, worker)", red=True, bold=True)
        terminalreporter.write_line(txguard.describe(_txguard_subprocess_report))


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker):
    # `make test` has created the roles and the test database and migrated it as the
    # owner; doing it again here is a fast no-op that lets `pytest` run on its own too.
    # The owner is borrowed for this alone (the settings have the application role only).
    # The pytest-xdist workers take turns: roles are shared by the whole server, and two
    # workers altering one role at once fail ("tuple concurrently updated").
    import fasteners
    from django.conf import settings

    lock = fasteners.InterProcessLock(str(settings.VAR_DIR / "test-db-setup.lock"))
    with lock, django_db_blocker.unblock(), as_owner() as owner:
        call_command("db_bootstrap", stdout=io.StringIO())
        call_command("migrate", database=owner, interactive=False, verbosity=0)


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


@pytest.fixture(autouse=True)
def _staff_force_login_includes_second_factor(monkeypatch):
    # Admin needs a second factor used in the session (portal/staff_mfa.py). `force_login` stands
    # for a completed login, so for staff it enrols TOTP and records its use (tests/staff_mfa.py).
    from django.test import Client

    from tests.staff_mfa import force_login_with_mfa

    monkeypatch.setattr(Client, "force_login", force_login_with_mfa)


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


STRIPE_TEST_KEY = "sk_test_portal_e2e_0123456789"
STRIPE_TEST_WEBHOOK_SECRET = "whsec_portal_e2e_0123456789"


@pytest.fixture(scope="session")
def stripe_server():
    """A fake Stripe (its API and its Stripe.js) for the processes a browser test starts."""
    from tests.fakes.stripe import FakeStripe

    with FakeStripe(STRIPE_TEST_KEY, STRIPE_TEST_WEBHOOK_SECRET) as fake:
        yield fake


@pytest.fixture(scope="session")
def exact_server(live_port):
    """A fake Exact Online for the processes a browser test starts (web server and worker)."""
    from tests.fakes.exact import FakeExact

    with FakeExact("e2e-exact-app", "e2e-exact-secret", "e2e-exact-webhook-secret",
                   redirect_uri=f"http://127.0.0.1:{live_port}/admin/integrations/exactconnection/callback/") as fake:
        yield fake


@pytest.fixture(scope="session")
def twinfield_server(live_port):
    """A local Twinfield (login and cluster) for the processes a test starts (web server and worker)."""
    from tests.fakes.twinfield import FakeTwinfield

    with FakeTwinfield("e2e-twinfield-app", "e2e-twinfield-secret",
                       redirect_uri=f"http://127.0.0.1:{live_port}/admin/integrations/twinfieldconnection/callback/") \
            as fake:
        yield fake


@pytest.fixture(scope="session")
def process_env(live_port, mollie_server, stripe_server, exact_server, twinfield_server, test_email_dir,
                txguard_log_dir):
    """The environment of the web server and worker the tests start: test settings, the fakes'
    addresses, mail into files, links that point at the test web server, and the transaction
    guard's directory."""
    import os

    # Not the first user's name; not the owner's password (web and worker connect as the application role).
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "DATABASE_OWNER_PASSWORD")}
    return {**inherited, "DJANGO_SETTINGS_MODULE": "portal.settings_test", "TEST_EMAIL_DIR": str(test_email_dir),
            "MOLLIE_API_ENDPOINT": mollie_server.url, "MOLLIE_JS_URL": f"{mollie_server.base_url}/v1/mollie.js",
            "EXACT_BASE_URL": exact_server.url, "TWINFIELD_LOGIN_URL": twinfield_server.base_url, "STRIPE_API_BASE": stripe_server.base_url, "STRIPE_JS_URL": f"{stripe_server.base_url}/dahlia/stripe.js",
            "SITE_URL": f"http://127.0.0.1:{live_port}",
            "TXGUARD_LOG": str(txguard_log_dir)}


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
    with as_owner() as owner:  # the application role may not truncate
        for attempt in range(attempts):
            try:
                call_command("flush", database=owner, interactive=False, verbosity=0)
                return
            except (OperationalError, CommandError):  # flush reports a lost deadlock as a CommandError
                connections[owner].close()
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: two workers, worksteal), the three long webhook fuzz runs
    go first, on both workers: worksteal hands each worker a contiguous half of this list, so two
    head the first half and one the second, and the rest is balanced around them by stealing.
    Left where they are, the three ran one after another on one worker at the end."""
    import os

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    heavy = [item for item in items if "test_webhook_fuzz.py::test_ten_thousand" in item.nodeid]
    if len(heavy) < 2:
        return
    heavy_ids = {id(item) for item in heavy}
    rest = [item for item in items if id(item) not in heavy_ids]
    first, second = heavy[0::2], heavy[1::2]
    cut = max(0, len(items) // 2 - len(first))
    items[:] = first + rest[:cut] + second + rest[cut:]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser), for every test that drives a
    page: the browser tests (tests/e2e) and the fakes' own script tests."""
    import os

    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        pytest.fail(f"Chromium not found at {chromium}: `.ci/run` installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()
