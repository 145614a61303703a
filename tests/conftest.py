"""Shared fixtures: a real PostgreSQL as the application role (RLS always on), Redis, mail."""
import io

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction
from django.utils import translation

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
    # A database that does not exist yet is copied from the session's template (tests/support/
    # template.py), made by the first worker (from its own, if it has just made that from nothing).
    import fasteners
    from django.conf import settings

    from tests.support import template

    lock = fasteners.InterProcessLock(str(settings.VAR_DIR / "test-db-setup.lock"))
    with lock, django_db_blocker.unblock():
        with as_owner() as owner:
            said = io.StringIO()
            call_command("db_bootstrap", template=template.current() or "", stdout=said)
            call_command("migrate", database=owner, interactive=False, verbosity=0)
        name = settings.DATABASES["default"]["NAME"]
        template.ensure(source=name, fresh=f"created database {name}\n" in said.getvalue())
        _commits_without_waiting_for_the_disk(name)


def _commits_without_waiting_for_the_disk(name: str) -> None:
    """synchronous_commit off for the test database alone (its sessions from now on: this
    process's, and the web servers' and workers' the tests start). A commit is as visible and as
    atomic as before; it only does not wait for its WAL to reach the disk, which a crash of the
    server could lose and a test database never needs back. Each commit then costs about 0.2 ms
    instead of 2 (an fdatasync on these machines), and the suite commits tens of thousands of
    times (webhook fuzz, committed tests, fault drills, browser tests). The benchmarks' databases
    keep the server's setting: their figures are meant to be production's."""
    import psycopg
    from django.conf import settings
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    admin = make_conninfo(**{**conninfo_to_dict(settings.DATABASE_ADMIN_URL), "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit TO off").format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def _own_encrypted_files(settings, tmp_path):
    # The database rolls back after each test; files would not. Each test gets its own folder.
    settings.STORAGES = {**settings.STORAGES, "encrypted": {
        "BACKEND": "portal.crypto.EncryptedFileStorage", "OPTIONS": {"location": str(tmp_path / "encrypted")}}}


@pytest.fixture(autouse=True)
def _default_language():
    # A request as a Dutch contact leaves Dutch active in this thread (the portal's middleware
    # activates the contact's language; nothing deactivates it in a test): no test inherits it.
    yield
    translation.activate(settings.LANGUAGE_CODE)


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
def erp_server():
    """A local custom ERP (REST and GraphQL flavours, tests/fakes/erp.py), shared by the session:
    a test that uses it calls `erp_server.reset()` first. The portal reaches it by the endpoint
    stored on the pull connection (`erp_server.rest_url`, `erp_server.graphql_url`)."""
    from tests.fakes.erp import FakeErp

    with FakeErp() as fake:
        yield fake


PEPPOL_AP_TEST_KEY = "einv_test_portal_0123456789"
PEPPOL_AP_TEST_WEBHOOK_SECRET = "whsec_peppol_portal_0123456789"


@pytest.fixture(scope="session")
def peppol_ap_server():
    """A local Peppol access point shaped like e-invoice.be's REST API (tests/fakes/peppol_ap.py),
    shared by the session: a test that uses it calls `peppol_ap_server.reset()` first, registers the
    participants it needs and sets `webhook_url`. Key PEPPOL_AP_TEST_KEY, webhook secret
    PEPPOL_AP_TEST_WEBHOOK_SECRET."""
    from tests.fakes.peppol_ap import FakePeppolAccessPoint

    with FakePeppolAccessPoint(PEPPOL_AP_TEST_KEY, PEPPOL_AP_TEST_WEBHOOK_SECRET) as fake:
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


class Committed:
    @staticmethod
    def create(build):
        with transaction.atomic(), staff_scope():
            return build()


@pytest.fixture
def committed(request, django_db_setup, django_db_blocker):
    """Rows that other processes (the web server, a worker) can see: committed for real,
    and wiped afterwards through the owner role (the app role may not truncate).
    Not with `db`: inside its test transaction nothing would really commit."""
    if "db" in request.fixturenames:
        pytest.fail("`committed` cannot be combined with `db` (or a fixture that uses it)")
    with django_db_blocker.unblock():
        yield Committed()
        _wipe()


@pytest.fixture(scope="module")
def module_committed(django_db_setup, django_db_blocker):
    """Rows committed once for the whole module (`committed` for a module whose tests share them:
    building them per test would cost seconds each); every table emptied (as the owner) at its end.
    A test may still use `db` on top: what it writes is then rolled back."""
    with django_db_blocker.unblock():
        yield Committed()
        _wipe()


def _wipe(attempts: int = 10) -> None:
    """Empty every table. A worker may still be busy with this test's rows (pre-rendering a
    PDF, sending an email): drop its queue, and retry if our TRUNCATE loses a deadlock to it."""
    import time

    from django.core.management.color import no_style
    from django.db import OperationalError, connections

    from portal.celery import app

    app.control.purge()
    with as_owner() as owner:  # the application role may not truncate
        connection = connections[owner]
        # As `flush`, but the content types and permissions, which no test changes, are kept:
        # `flush` empties them and then makes them again (post_migrate), half of its time.
        tables = [table for table in connection.introspection.django_table_names(only_existing=True)
                  if table not in KEPT_TABLES]
        statements = connection.ops.sql_flush(no_style(), tables)
        for attempt in range(attempts):
            try:
                connection.ops.execute_sql_flush(statements)
                return
            except OperationalError:  # a lost deadlock
                connection.close()
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)


KEPT_TABLES = {"django_content_type", "auth_permission"}


# The tests that take longest, by what each took in a whole run on two workers on a shared
# 2-core machine, rounded (`--durations`); the first pattern a test's id contains counts. Every
# other test takes seconds at most. Only the order of the run comes from this.
LONG_TESTS = {
    "tests/security/test_webhook_fuzz.py::test_ten_thousand": 30,
    "tests/test_benchmarks.py::test_the_connections_benchmark": 28,
    "tests/test_benchmarks.py::test_the_pdf_benchmark": 17,
    "tests/faults/test_bench.py::": 15,
    "tests/test_benchmarks.py::test_the_live_poll_benchmark": 11,
    "tests/e2e/test_layout.py::test_every_client_page_fits": 8,
    "tests/portal/test_admin.py::test_every_back_office_list_and_detail_page_opens": 9,
    "tests/integrations/erp/test_api.py::test_a_hundred_invoices": 9,
    "tests/test_benchmarks.py::": 5,
}


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: three workers on 2 cores, worksteal), the long tests start first, shared
    out so that each worker starts with about as many of their seconds (the longest first, each to
    the worker with fewer so far). Worksteal hands each worker a contiguous part of this list at
    the start (the first worker the first half), and a worker that runs out takes tests from the
    end of another's: so each part begins with its long tests, and what is left to steal at the
    end is short. Left in place, long tests met late kept one core busy while the other idled.
    Every worker orders the same collection the same way, as xdist requires."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2:
        return

    def cost(item) -> int:
        return next((seconds for pattern, seconds in LONG_TESTS.items() if pattern in item.nodeid), 0)

    long = sorted((item for item in items if cost(item)), key=cost, reverse=True)
    if not long:
        return
    heads: list[list] = [[] for _ in range(workers)]
    seconds = [0] * workers
    for item in long:
        worker = seconds.index(min(seconds))
        heads[worker].append(item)
        seconds[worker] += cost(item)
    long_ids = {id(item) for item in long}
    rest = [item for item in items if id(item) not in long_ids]
    ordered, taken = [], 0
    for worker in range(workers):  # worksteal's first hand-out: what is left, shared by the workers left
        share = (len(items) - len(ordered)) // (workers - worker)
        fill = max(0, share - len(heads[worker]))
        ordered += heads[worker] + rest[taken:taken + fill]
        taken += fill
    items[:] = ordered + rest[taken:]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser), for every test that drives a
    page: the browser tests (tests/e2e) and the fakes' own script tests."""
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on the main thread; the ORM calls the tests make
    # next to it are still plain synchronous calls (set here, not only for tests/e2e: the fakes'
    # script tests use this browser too, and a run of tests/payments alone met Django's check).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
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
