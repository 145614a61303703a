"""`make run` and `make test`: start what is missing, prepare the database, run.

    python -m portal.stack run     web + a Celery worker per queue + beat, until Ctrl-C
    python -m portal.stack test    the whole test suite (extra arguments go to pytest)

With no DATABASE_URL / REDIS_URL the embedded PostgreSQL and Redis are started
(and stopped again when this process and everything it started have exited).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from portal import embedded

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEMO_LOGINS = """\
  Back office (Django admin):  admin@example.com      / portal-demo-2026
  Client, one company:         alice@northwind.test   / portal-demo-2026
  Client, two companies:       bob@globex.test        / portal-demo-2026
  GraphQL API (/api/graphql/):  Authorization: Bearer ptk_demo-acme-erp-graphql-api-development-only
                                (Acme's demo ERP; docs/integrations/custom-erp.md)
  (emails, such as login codes, are printed by the web process;
   the back office asks staff to set up an authenticator app on the first visit)"""


def _say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def _manage(*args: str, settings: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings}
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def start_services() -> None:
    """Start the embedded servers this process will need, and hold them until it exits."""
    if not os.environ.get("DATABASE_URL"):
        _say("starting embedded PostgreSQL (var/pgdata)")
        embedded.postgres_uri()
        embedded.register()
    if not os.environ.get("REDIS_URL"):
        _say("starting embedded Redis (var/run/redis.sock)")
        embedded.redis_urls()
        embedded.register()


def prepare_database(settings: str, *, demo: bool) -> None:
    _say("creating database roles and database")
    _manage("db_bootstrap", settings=settings)
    _say("migrating (as the owner role: set-up only; web, worker and beat use the application role)")
    _manage("migrate", "--no-input", "-v", "0", settings=settings)
    if demo:
        _say("loading demo data")
        _manage("load_demo", settings=settings)


def runtime_environ() -> dict:
    """This environment without what only set-up may hold: the owner's password and the
    credentials in DATABASE_URL (web, worker and beat need its host, port and database only)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_OWNER_PASSWORD"}
    if env.get("DATABASE_URL"):
        url = urlsplit(env["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(url._replace(netloc=url.netloc.rpartition("@")[2]))
    return env


def web_command(port: str, threads: int, workers: int = 2) -> list[str]:
    """gunicorn, as in production, not runserver: runserver starts a thread per request, so 200
    requests at once are 200 threads waiting on the connection pool (and timing out there);
    gunicorn's fixed threads, each with one pooled connection, queue the rest in its socket
    backlog. --reload restarts it when the code changes, as runserver did.

    2 processes x 4 threads, docker-compose.yml's shape for 2 cores (bench/README.md, "200
    concurrent clients"): a page is mostly Python (gunicorn's CPU 14-16 ms a request against the
    database's 3-4 ms), which one process runs on one core at a time, so a process per core;
    4 threads each keep it busy while others wait on PostgreSQL or a sign-in's password hash."""
    return [PYTHON, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--reload", "--access-logfile", "-"]


def site_url(port: str) -> str:
    """Where links in emails lead: SITE_URL when set (the address the public reaches), else the
    address this serves."""
    return os.environ.get("SITE_URL") or f"http://127.0.0.1:{port}"


def worker_command(queue: str, concurrency: int) -> list[str]:
    """A Celery worker taking one queue only, named after it (fast@host, slow@host)."""
    return [PYTHON, "-m", "celery", "-A", "portal", "worker", "-Q", queue, "-n", f"{queue}@%h", "-l", "info",
            "--concurrency", str(concurrency)]


def run_commands(port: str) -> dict[str, tuple[list[str], dict]]:
    """What `make run` starts: each process with the environment it runs in. All connect as the
    application role (the set-up before them alone used the owner), each with a pool
    (portal/settings.py) and a name of its own in pg_stat_activity.

    One worker per queue (portal.jobs.QUEUES): "worker" takes the fast queue (webhooks, outbox,
    emails, collections; and beat's tasks), "worker-slow" the slow one (PDF renders, syncs). Not
    one worker taking both: its processes are shared, so renders enough to fill them all would
    hold back every webhook until one finished (Celery has no concurrency per queue)."""
    threads = int(os.environ.get("WEB_THREADS", "4"))
    workers = int(os.environ.get("WEB_WORKERS", "2"))
    pool = os.environ.get("DATABASE_POOL_MAX_SIZE", "")

    def env(name: str, pool_size: int) -> dict:
        return {**runtime_environ(), "DATABASE_APPLICATION_NAME": f"portal-{name}",
                "DATABASE_POOL_MAX_SIZE": pool or str(pool_size), "SITE_URL": site_url(port)}

    return {
        "web": (web_command(port, threads, workers), env("web", threads)),
        "worker": (worker_command("fast", 2), env("worker", 2)),
        "worker-slow": (worker_command("slow", 1), env("worker-slow", 1)),
        "beat": ([PYTHON, "-m", "celery", "-A", "portal", "beat", "-l", "info"], env("beat", 1)),
    }


def run_schedules_once(processes) -> None:
    """Every beat task once, now, as the application role (`manage.py run_schedules`): a fresh
    start shows sent reminders and a green health page at once, not after the first hour. The
    worker, just started, does the jobs this leaves (the reminders' emails)."""
    _say("running the scheduled tasks once (reminder scan, recurring invoices, overdue, job sweep)")
    env = {**runtime_environ(), "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_APPLICATION_NAME": "portal-start"}
    try:
        done = subprocess.run([PYTHON, "manage.py", "run_schedules"], cwd=ROOT, env=env)
    except KeyboardInterrupt:
        _stop(processes)
        raise SystemExit(130)
    if done.returncode:
        _say("a scheduled task failed at start (see above); beat runs it again on its schedule")


def run() -> int:
    start_services()
    prepare_database("portal.settings", demo=True)
    port = os.environ.get("PORT", "8000")
    processes = {name: subprocess.Popen(cmd, cwd=ROOT, env=env) for name, (cmd, env) in run_commands(port).items()}
    run_schedules_once(processes.values())
    time.sleep(2)
    _say(f"portal running at http://127.0.0.1:{port}/  (admin: http://127.0.0.1:{port}/admin/)")
    _say(f"links in emails lead to {site_url(port)}/ (SITE_URL)")
    print(DEMO_LOGINS, flush=True)
    _say("Ctrl-C stops everything")
    status = 0
    try:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    # 0 or death by SIGINT/SIGTERM: Ctrl-C reached that child first.
                    if process.returncode not in (0, 130, -signal.SIGINT, -signal.SIGTERM):
                        _say(f"{name} exited with {process.returncode}; stopping the rest")
                        status = process.returncode
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(processes.values())
    _say("stopped")
    return status


def _stop(processes) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def lint_imports() -> int:
    """The import contracts in pyproject.toml (apps depend downward only); prints the report."""
    _say("checking import boundaries (lint-imports)")
    return subprocess.run([str(Path(PYTHON).parent / "lint-imports"), "--cache-dir", "var/import_linter_cache"],
                          cwd=ROOT).returncode


def test(pytest_args: list[str]) -> int:
    if lint_imports() != 0:
        _say("import contracts broken: see above")
        return 1
    start_services()
    prepare_database("portal.settings_test", demo=False)
    _say("running the test suite")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings_test"}
    # One pytest-xdist worker more than there are cores (TEST_WORKERS=1: one process); each worker
    # has a database and Redis databases of its own (portal/settings_test.py). About half of the
    # suite's time is waiting (browsers, servers, workers, a drill's backoff), so on 2 cores a third
    # worker fills it: 634 s against 700 s with two, and 695 s with four, whose CPU-bound tests
    # (the webhook fuzz) then took twice as long (bench/README.md, "The suite's time").
    workers = os.environ.get("TEST_WORKERS", str(min(3, (os.cpu_count() or 1) + 1)))
    parallel = ["-n", workers, "--dist", "worksteal"] if workers != "1" else []
    # The slowest tests at the end of each run: the suite is kept under 10 minutes on 2 cores.
    return subprocess.run([PYTHON, "-m", "pytest", *parallel, "--durations=25", *pytest_args], cwd=ROOT,
                          env=env).returncode


def _terminate_on_sigterm() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    _terminate_on_sigterm()
    if not argv or argv[0] not in ("run", "test", "setup"):
        print(__doc__)
        return 2
    if argv[0] == "run":
        return run()
    if argv[0] == "setup":
        start_services()
        prepare_database("portal.settings", demo=True)
        return 0
    try:
        return test(argv[1:])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
