"""No owner at run time: web, worker and beat connect as the application role only, through a
pool, and row-level security holds on a pooled connection that serves one client after another."""
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.invoices.factories import make_invoice
from tests.portal.factories import PASSWORD, BrandFactory, ClientFactory, MembershipFactory
from tests.portal.test_settings import PRODUCTION_ENV
from tests.support.owner import as_owner
from tests.support.servers import gunicorn

ROOT = Path(__file__).resolve().parents[2]
SHOW_DATABASES = ("import json, django; django.setup(); from django.conf import settings as s; "
                  "print(json.dumps({'aliases': list(s.DATABASES), 'user': s.DATABASES['default']['USER'], "
                  "'pool': s.DATABASES['default']['OPTIONS'].get('pool'), "
                  "'settings': repr({k: getattr(s, k) for k in dir(s) if k.isupper()})}))")


def _settings_of(env: dict, *, code: str = SHOW_DATABASES) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k not in PRODUCTION_ENV}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          env={**base, "DJANGO_SETTINGS_MODULE": "portal.settings", **env}, capture_output=True,
                          text=True, timeout=120)


def test_the_runtime_settings_hold_the_application_role_and_nothing_of_the_owner():
    # Even with the owner's password in the environment by mistake, the settings of a process that
    # is not a set-up command have one alias, the application role, and not that password.
    leaked = "owner-" + secrets.token_hex(8)
    result = _settings_of({"DATABASE_OWNER_PASSWORD": leaked})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.splitlines()[-1])
    assert shown["aliases"] == ["default"]
    assert shown["user"] == "portal_app"
    assert shown["pool"] == {"min_size": 1, "max_size": 4, "timeout": 10.0}
    assert leaked not in shown["settings"]


def test_only_a_set_up_command_connects_as_the_owner_unpooled():
    result = _settings_of({"DJANGO_DB_ROLE": "owner"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.splitlines()[-1])
    assert (shown["aliases"], shown["user"], shown["pool"]) == (["default"], "portal_owner", None)


def test_production_wants_the_owner_password_for_set_up_only():
    runtime = {k: v for k, v in PRODUCTION_ENV.items() if k != "DATABASE_OWNER_PASSWORD"}
    result = _settings_of(runtime)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["user"] == "portal_app"

    result = _settings_of({**runtime, "DJANGO_DB_ROLE": "owner"})
    assert result.returncode != 0
    assert "DATABASE_OWNER_PASSWORD must be set when DJANGO_ENV=production" in result.stderr


# --- live processes ---------------------------------------------------------------------------

def _connections(application_name: str) -> list[tuple[str, int]]:
    """(role, backend pid) of every connection a process opened, by the name it gave them. Read
    as the owner: the application role may not read pg_stat_activity (db_bootstrap)."""
    from django.db import connections

    with as_owner() as owner, connections[owner].cursor() as cursor:
        cursor.execute("SELECT usename, pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid",
                       [application_name])
        return cursor.fetchall()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    def __init__(self, url: str):
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> str:
        return self.opener.open(f"{self.url}{path}", timeout=30).read().decode()

    def log_in(self, email: str) -> None:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get("/accounts/login/")).group(1)
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "login": email, "password": PASSWORD})
        self.opener.open(f"{self.url}/accounts/login/", data=form.encode(), timeout=30).read()


@pytest.fixture
def pooled_web(process_env):
    """gunicorn with one thread and a pool of one: every request, whoever makes it, runs on the
    same PostgreSQL connection."""
    name, port = f"test-web-{uuid.uuid4().hex[:8]}", _free_port()
    env = {**process_env, "DATABASE_APPLICATION_NAME": name, "DATABASE_POOL_MIN_SIZE": "1",
           "DATABASE_POOL_MAX_SIZE": "1"}
    with gunicorn(port=port, env=env, threads=1) as url:
        yield url, name


def test_a_pooled_connection_serves_each_client_only_its_own_rows(committed, pooled_web):
    url, name = pooled_web

    def build():
        brand = BrandFactory(is_default=True)
        alpha, bravo = ClientFactory(brand=brand, name="Alpha B.V."), ClientFactory(brand=brand, name="Bravo B.V.")
        MembershipFactory(client=alpha, user__email="alice@alpha.test")
        MembershipFactory(client=bravo, user__email="bob@bravo.test")
        make_invoice(alpha, number="ALPHA-0001")
        make_invoice(bravo, number="BRAVO-0001")

    committed.create(build)
    alice, bob = Browser(url), Browser(url)
    alice.log_in("alice@alpha.test")
    bob.log_in("bob@bravo.test")
    [(role, pid)] = _connections(name)
    for _ in range(3):  # one after the other on the one connection
        mine, theirs = alice.get("/invoices/"), bob.get("/invoices/")
        assert "ALPHA-0001" in mine and "BRAVO-0001" not in mine
        assert "BRAVO-0001" in theirs and "ALPHA-0001" not in theirs
    # Still one connection, the same one (so it was pooled, not reopened), as the application role.
    assert _connections(name) == [("portal_app", pid)]


def test_a_worker_connects_as_the_application_role_only(committed, process_env):
    from portal.celery import app
    from portal.models import ScheduledRun
    from portal.rls import staff_scope

    name, queue = f"test-worker-{uuid.uuid4().hex[:8]}", f"connections-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "-l", "warning", "-Q", queue,
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"{name}@%h"],
        cwd=ROOT, env={**process_env, "DATABASE_APPLICATION_NAME": name})
    try:
        app.send_task("portal.tasks.sweep_jobs", queue=queue)  # reads jobs, writes a scheduled run
        deadline = time.monotonic() + 60
        while True:
            with staff_scope():
                if ScheduledRun.objects.filter(name="job sweep").exists():
                    break
            assert worker.poll() is None and time.monotonic() < deadline, "the worker did not run the task"
            time.sleep(0.3)
        roles = {role for role, _ in _connections(name)}
        assert roles == {"portal_app"}
    finally:
        worker.terminate()
        worker.wait(timeout=15)
