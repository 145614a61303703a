"""Benchmark: page loads against the running app, counting errors and database connections.

    .venv/bin/python bench/connections.py [--sequential 1000] [--concurrent 200] [--shape make-run --shape compose]

For each shape, starts web, worker and beat on a database of its own (portal_bench_connections,
bootstrapped, migrated as the owner and filled by `load_demo`, as `make run` does), logs in the
demo client alice@northwind.test, then loads her dashboard and her invoice list, alternately,
N times one after the other and C times all at once (C threads released together). Meanwhile
it reads pg_stat_activity for that database ten times a second, as the superuser.

Shapes:
Both on the embedded servers (or DATABASE_URL's and REDIS_URL's), Redis on databases 14 and 15
(BENCH_REDIS_DB) so a `make run` or test run beside it keeps its queue.
- make-run: the commands and environments `make run` uses (portal.stack.run_commands: gunicorn,
  2 processes x 4 threads, --reload; Celery worker, concurrency 2; beat), development settings.
- compose: the web command and pool sizes of docker-compose.yml's web, worker and beat services
  (gunicorn 2 processes x 4 threads, pools of 4, 2 and 1), with the development settings and
  DEBUG off: the production settings refuse the embedded PostgreSQL and Redis and redirect plain
  HTTP to HTTPS, and a TLS proxy is not what is measured here.

A page load counts as an error unless it answers 200 with the client's name on the page (a 500,
a redirect to the login page, a refused or dropped connection, a client timeout of 60 s).
Connection-slot failures are lines in web's and worker's output that say PostgreSQL refused a
connection ("too many clients", "remaining connection slots") or the pool had none to give
(PoolTimeout). It checks that every connection to the database while the app ran belonged to
the application role. Prints its progress, a table, and writes the figures as JSON to
var/bench/connections.json. Exits 1 on any error, slot failure or connection by another role.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_NAME", "portal_bench_connections")  # `make test` runs it on one of its own
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ.pop("DJANGO_DB_ROLE", None)

from portal import stack  # noqa: E402
from tests.support.servers import wait_until_answering  # noqa: E402

LOGIN = ("alice@northwind.test", "portal-demo-2026")  # portal/stack.py DEMO_LOGINS: a client, one company
CLIENT_NAME = "Northwind Traders B.V."
PAGES = ("/", "/invoices/")  # her dashboard and her invoice list
SLOT_FAILURES = re.compile(r"too many clients|remaining connection slots|PoolTimeout|couldn't get a connection",
                           re.IGNORECASE)
RESULTS = ROOT / "var" / "bench" / "connections.json"


# --- the app -------------------------------------------------------------------------------

def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def compose_commands(port: str) -> dict[str, tuple[list[str], dict]]:
    """docker-compose.yml's web, workers (one per queue) and beat: their commands and pool sizes, here."""
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {}
    for name in ("web", "worker", "worker-slow", "beat"):
        command = list(services[name]["command"])
        if name == "web":
            command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
        if "-s" in command:  # beat's schedule file: start() gives it one of its own
            command = command[:command.index("-s")]
        env = {**stack.runtime_environ(), "DEBUG": "false",
               **{key: str(value) for key, value in services[name]["environment"].items()
                  if key.startswith("DATABASE_POOL") or key == "DATABASE_APPLICATION_NAME"}}
        commands[name] = ([sys.executable, "-m", *command], env)
    return commands


def start(shape: str, logs: Path) -> tuple[str, dict[str, subprocess.Popen]]:
    port = _free_port()
    commands = stack.run_commands(port) if shape == "make-run" else compose_commands(port)
    processes = {}
    for name, (command, env) in commands.items():
        if name == "beat":  # not the schedule file of a `make run` on this machine
            command = [*command, "-s", str(logs / f"{shape}-celerybeat-schedule")]
        out = (logs / f"{shape}-{name}.log").open("w")
        processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def dead() -> list[str]:
        return [name for name, process in processes.items() if process.poll() is not None]

    if wait_until_answering(f"{url}/accounts/login/", running=lambda: not dead(), seconds=60, timeout=5,
                            interval=0.3):
        return url, processes
    stop(processes)
    raise RuntimeError(f"{shape}: {dead() or 'web'} did not start; see {logs}")


STOP_GRACE = 5.0  # seconds


def stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to each process group, and SIGKILL to what still runs STOP_GRACE seconds later. A
    warm shutdown of the worker waits for the task in hand, and just after `load_demo` that is
    a drain of the demo's jobs (PDFs, emails) for up to 20 s; how the app stops is not what is
    measured, and the next shape's worker finishes those jobs once their leases run out."""
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- a browser, more or less ----------------------------------------------------------------

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def log_in(url: str) -> str:
    """The session cookie of the demo client, through the login form (CSRF token and all)."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{url}/accounts/login/", timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "login": LOGIN[0], "password": LOGIN[1]})
    opener.open(urllib.request.Request(f"{url}/accounts/login/", data=form.encode(),
                                       headers={"Referer": f"{url}/accounts/login/"}), timeout=30).read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise RuntimeError(f"logging in as {LOGIN[0]} failed")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def load(url: str, path: str, cookie: str) -> str | None:
    """One page load; None when it shows the client's page, else what went wrong."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(f"{url}{path}", headers={"Cookie": cookie}), timeout=60) as answer:
            body = answer.read().decode()
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.headers.get('Location', '')}".strip()
    except OSError as error:
        return type(error).__name__
    return None if CLIENT_NAME in body else "200 without the client's page"


# --- pg_stat_activity ----------------------------------------------------------------------

class Sampler(threading.Thread):
    """Connections to the bench database, by role and application name, ten times a second
    (client backends: not autovacuum, which has no role)."""

    def __init__(self, admin_uri: str, database: str):
        super().__init__(daemon=True)
        self.admin_uri, self.database = admin_uri, database
        self.peak_total = 0
        self.peak_by: dict[tuple[str, str], int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            while not self.stopping.is_set():
                rows = conn.execute(
                    "SELECT usename, application_name, count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                    "GROUP BY 1, 2", [self.database]).fetchall()
                self.peak_total = max(self.peak_total, sum(count for *_, count in rows))
                for role, name, count in rows:
                    self.peak_by[(role, name)] = max(self.peak_by.get((role, name), 0), count)
                conn.execute("SELECT pg_stat_clear_snapshot()")
                time.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def admin_uri(database: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from portal import embedded

    if os.environ.get("DATABASE_URL"):
        return make_conninfo(**{**conninfo_to_dict(os.environ["DATABASE_URL"]), "dbname": database})
    return embedded.postgres_uri(database)


# --- the runs ------------------------------------------------------------------------------

def sequential(url: str, cookie: str, count: int) -> tuple[dict[str, int], float]:
    errors: dict[str, int] = {}
    started = time.monotonic()
    for i in range(count):
        problem = load(url, PAGES[i % len(PAGES)], cookie)
        if problem:
            errors[problem] = errors.get(problem, 0) + 1
        if (i + 1) % max(1, count // 10) == 0:
            print(f"    sequential {i + 1:,}/{count:,}, {sum(errors.values())} errors", flush=True)
    return errors, time.monotonic() - started


def concurrent(url: str, cookie: str, count: int) -> tuple[dict[str, int], float]:
    errors: dict[str, int] = {}
    lock = threading.Lock()
    gate = threading.Barrier(count + 1)

    def one(i: int) -> None:
        gate.wait()
        problem = load(url, PAGES[i % len(PAGES)], cookie)
        if problem:
            with lock:
                errors[problem] = errors.get(problem, 0) + 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    gate.wait()  # all at once
    started = time.monotonic()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    print(f"    concurrent {count:,} at once, {sum(errors.values())} errors", flush=True)
    return errors, elapsed


def run_shape(shape: str, args, logs: Path, app_role: str) -> dict:
    database = os.environ["DATABASE_NAME"]
    print(f"{shape}: starting web, worker and beat", flush=True)
    url, processes = start(shape, logs)
    sampler = Sampler(admin_uri(database), database)
    sampler.start()
    try:
        cookie = log_in(url)
        print(f"  logged in as {LOGIN[0]} at {url}", flush=True)
        seq_errors, seq_time = sequential(url, cookie, args.sequential)
        con_errors, con_time = concurrent(url, cookie, args.concurrent)
        time.sleep(0.5)
    finally:
        sampler.stop()
        stop(processes)
    output = "".join((logs / f"{shape}-{name}.log").read_text(errors="replace") for name in processes)
    slot_failures = len(SLOT_FAILURES.findall(output))
    roles = sorted({role for role, _ in sampler.peak_by})
    result = {
        "shape": shape, "sequential": args.sequential, "sequential_errors": seq_errors,
        "sequential_seconds": round(seq_time, 1), "concurrent": args.concurrent, "concurrent_errors": con_errors,
        "concurrent_seconds": round(con_time, 1), "slot_failures": slot_failures,
        "peak_connections": sampler.peak_total, "roles": roles,
        "peak_by_process": {name: count for (_, name), count in sorted(sampler.peak_by.items())},
    }
    result["ok"] = (not seq_errors and not con_errors and not slot_failures and roles == [app_role])
    return result


def table(results: list[dict]) -> str:
    lines = ["| shape | sequential: loads, errors, time | concurrent: loads, errors, time | slot failures "
             "| peak connections (by process) | roles seen |", "|---|---|---|---|---|---|"]
    for r in results:
        by = ", ".join(f"{name} {count}" for name, count in r["peak_by_process"].items())
        lines.append(
            f"| {r['shape']} | {r['sequential']:,}, {sum(r['sequential_errors'].values())}, {r['sequential_seconds']} s "
            f"| {r['concurrent']:,}, {sum(r['concurrent_errors'].values())}, {r['concurrent_seconds']} s "
            f"| {r['slot_failures']} | {r['peak_connections']} ({by}) | {', '.join(r['roles'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=1000, help="page loads one after the other (1000)")
    parser.add_argument("--concurrent", type=int, default=200, help="page loads all at once (200)")
    parser.add_argument("--shape", action="append", choices=["make-run", "compose"],
                        help="make-run, compose (repeatable; default both)")
    args = parser.parse_args(argv)
    shapes = args.shape or ["make-run", "compose"]

    stack.start_services()  # held until this process exits, like `make run`
    if not os.environ.get("REDIS_URL"):
        # The embedded Redis, on databases of its own: not the queue and cache (0 and 1) of a
        # `make run` on this machine, nor a test run's.
        from portal import embedded

        broker, redis_url = embedded.redis_urls()
        number = int(os.environ.get("BENCH_REDIS_DB", "14"))
        os.environ["REDIS_URL"] = f"{broker}?virtual_host={number}"
        os.environ["CACHE_URL"] = f"{redis_url}?db={number + 1}"
    print(f"database {os.environ['DATABASE_NAME']}: roles, migrations (as the owner), demo data", flush=True)
    stack.prepare_database("portal.settings", demo=True)
    app_role = os.environ.get("DATABASE_APP_ROLE", "portal_app")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as directory:
        for shape in shapes:
            results.append(run_shape(shape, args, Path(directory), app_role))
            for kind in ("sequential_errors", "concurrent_errors"):
                for problem, count in results[-1][kind].items():
                    print(f"  {kind.replace('_', ' ')}: {count} x {problem}", flush=True)
            if results[-1]["slot_failures"]:
                log = Path(directory)
                print("  connection-slot failures in the output of web/worker:\n" + "\n".join(
                    line for name in ("web", "worker") for line in (log / f"{shape}-{name}.log").read_text(
                        errors="replace").splitlines() if SLOT_FAILURES.search(line))[:5000], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\n{table(results)}\n\nwritten to {RESULTS.relative_to(ROOT)}", flush=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
