"""Benchmark: 200 clients at once (issue 17, point 5). Locust (bench/locustfile.py) signs each in
through the login form and has it read its invoices (overview, filtered and sorted lists, an
invoice, its PDF, the open page's poll) against gunicorn with the production settings.

    .venv/bin/python bench/clients.py [--users 200] [--spawn-rate 10] [--seconds 60]
                                      [--shapes 2x4] [--invoices 10] [--think 5,15]
                                      [--signed-in] [--each 30] [--profile 200]

Uses its own database (portal_bench_clients, bootstrapped and migrated as the owner; the clients
are made once and kept) and Redis databases 12 and 13 (BENCH_REDIS_DB). It makes one client
company per simulated user, each with one contact (a verified address and an Argon2id password, as
production hashes it) and --invoices invoices of three lines, some paid, some overdue; and a
stored PDF for every invoice, so a download takes the cached path (one PDF is rendered, and its
bytes are stored, encrypted, under each invoice's own fingerprint: a download finds, decrypts and
sends a real PDF of the usual size, as it would after the worker's pre-render).

Then, per gunicorn shape WORKERSxTHREADS (each process's pool of THREADS database connections,
opened at start and kept), it starts gunicorn as docker-compose.yml's web does: DJANGO_ENV=
production and its settings, given through the environment only (the secrets this checkout's
database and files were made with, the embedded PostgreSQL and Redis as DATABASE_URL and
REDIS_URL, TRUSTED_PROXIES=127.0.0.1 for the proxy Locust plays, static files collected into
var/bench/clients/<database>/static by `collectstatic` with the manifest and compression). Locust runs
headless and bounded (-u users -r spawn rate -t seconds, and a timeout). Meanwhile it samples
pg_stat_activity five times a second for the server's connections (its application_name) and
reads gunicorn's CPU time, and the CPU time of the database backends serving it, from /proc.
--signed-in: the clients arrive with a session each, made before the clock starts, so the run is
browsing alone (without it every client signs in first: one scrypt hash each, 0.1-0.3 s of CPU).
Prints a table row per shape for bench/README.md; exits 1 on any failed request or a PDF
rendered during the run (the cached path was not what was measured).
--each N: before the first load, each kind of request N times one after the other through the first
shape's server: gunicorn's CPU per request (what a request costs, however loaded the machine is).
--profile N: where the time of N overview pages goes (cProfile, Django's test client, this process).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from first_load import use_bench_database  # noqa: E402

use_bench_database("portal_bench_clients")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.core.files.storage import storages  # noqa: E402
from django.core.management import call_command  # noqa: E402

from invoices.documents.render import fingerprint, render_document  # noqa: E402
from invoices.models import Invoice, RenderedDocument  # noqa: E402
from portal import embedded  # noqa: E402
from portal.models import Membership  # noqa: E402
from portal.passwords import Argon2idPasswordHasher  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.invoices.factories import line, make_invoice, pay  # noqa: E402
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402
from tests.support.servers import cpu_seconds, wait_until_answering  # noqa: E402

PASSWORD = "bench-clients-2026"
DOMAIN = "bench-clients.test"
OUT = ROOT / "var" / "bench" / "clients" / os.environ["DATABASE_NAME"]  # logs, figures, static files
APPLICATION_NAME = "portal-bench-clients"


def prepare(users: int, invoices: int) -> list[dict]:
    """The clients, contacts and invoices (made once, what is missing added), a stored PDF for
    every invoice that has no current one; returns the sign-ins for Locust."""
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']})", flush=True)
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, interactive=False, verbosity=0)
    with staff_scope():
        have = {m.user.email: m for m in Membership.objects.select_related("user", "client")
                .filter(user__email__endswith=f"@{DOMAIN}")}
        from portal.models import Brand

        brand = Brand.objects.filter(slug="bench-clients").first()
    if brand is None:
        brand = BrandFactory(name="Bench Accounting B.V.", slug="bench-clients", iban="NL91ABNA0417164300",
                             bic="ABNANL2A", address_line="Keizersgracht 1", postal_code="1015 CC", city="Amsterdam")
    hasher = Argon2idPasswordHasher()  # production's (portal/passwords.py); the test settings' is MD5
    hashed = hasher.encode(PASSWORD, hasher.salt())  # once: the same for all
    today = datetime.date.today()
    logins, made = [], 0
    for n in range(users):
        email = f"contact{n}@{DOMAIN}"
        membership = have.get(email)
        if membership is None:
            client = ClientFactory(brand=brand, name=f"Bench client {n:04d} B.V.")
            membership = MembershipFactory(client=client, user__email=email)
            for k in range(invoices):
                issued = today - datetime.timedelta(days=9 * k)  # the older ones past their 30 days: overdue
                invoice = make_invoice(client, number=f"BC-{n:04d}-{k:03d}", issue_date=issued, lines=[
                    line("Advice", quantity="8", unit_price=f"{95 + k}.00"),
                    line("Travel", quantity="1", unit_price="42.50", tax_rate="9"),
                    line("Licence", quantity="3", unit_price="19.99", unit="piece")])
                if k % 4 == 3:
                    pay(client, [(invoice, invoice.total)])
            made += 1
            if made % 20 == 0:
                print(f"  made {made} clients", flush=True)
        with staff_scope():
            membership.user.password = hashed
            membership.user.save(update_fields=["password"])
        logins.append({"email": email, "password": PASSWORD, "client": membership.client.name})
    if made:
        print(f"  made {made} clients with {invoices} invoices each", flush=True)
    store_pdfs([login["email"] for login in logins])
    return logins


def store_pdfs(emails: list[str]) -> None:
    """A current stored PDF for every invoice of these contacts' clients: one rendered, its bytes
    stored under each invoice's fingerprint (the rows loaded as the download view loads them)."""
    storage = storages["encrypted"]
    with staff_scope():
        documents = list(Invoice.objects.select_related("brand", "client")
                         .filter(client__memberships__user__email__in=emails).order_by("pk"))
        current = set(RenderedDocument.objects.filter(invoice__in=documents).values_list("invoice_id", "fingerprint"))
        missing = [(doc, version) for doc in documents if (doc.pk, version := fingerprint(doc)) not in current]
        if not missing:
            return
        print(f"  storing {len(missing)} PDFs", flush=True)
        pdf = render_document(missing[0][0])
        for document, version in missing:
            RenderedDocument.objects.filter(invoice=document).delete()
            name = storage.save(f"documents/{document.client_id}/invoice-{document.pk}-{version[:24]}.pdf",
                                ContentFile(pdf))
            RenderedDocument.objects.create(client=document.client, invoice=document, fingerprint=version,
                                            file_name=name, size=len(pdf))


def sessions(logins: list[dict]) -> None:
    """A signed-in session for each contact (Django's test client, this database and SECRET_KEY, as
    the production server reads them), so that --signed-in measures browsing without sign-ins."""
    from django.test import Client as HttpClient

    from portal.models import User

    with staff_scope():
        users = {user.email: user for user in User.objects.filter(email__in=[login["email"] for login in logins])}
    for login in logins:
        browser = HttpClient()
        browser.force_login(users[login["email"]])
        login["session"] = browser.cookies["sessionid"].value


def production_env(port: int, threads: int) -> dict:
    """gunicorn's environment: the production settings, with what they require from the
    environment set to this checkout's servers and secrets (the database's rows and files were
    made with them), and nothing else changed."""
    redis_db = int(os.environ["TEST_REDIS_DB"])
    url = urlsplit(settings.DATABASE_ADMIN_URL)  # the embedded server's, or DATABASE_URL's server
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_OWNER_PASSWORD", "DJANGO_DB_ROLE", "DEBUG", "TEST_DATABASE_NAME")}
    redis_env = ({"REDIS_URL": f"redis+socket://{embedded.REDIS_SOCKET}?virtual_host={redis_db + 1}",
                  "CACHE_URL": f"unix://{embedded.REDIS_SOCKET}?db={redis_db}"} if settings.EMBEDDED_REDIS else
                 {"REDIS_URL": settings.CELERY_BROKER_URL, "CACHE_URL": settings.CACHE_URL})
    env.update(redis_env)
    env.update(
        DJANGO_ENV="production", DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=f"{url.scheme}://{url.netloc.rpartition('@')[2]}/{settings.DATABASES['default']['NAME']}"
                     + (f"?{url.query}" if url.query else ""),  # no credentials: web has none
        DATABASE_APP_PASSWORD=settings.DATABASES["default"]["PASSWORD"] or "unused-the-server-trusts-local",
        DATABASE_APPLICATION_NAME=APPLICATION_NAME,
        DATABASE_POOL_MIN_SIZE=str(threads), DATABASE_POOL_MAX_SIZE=str(threads),
        SECRET_KEY=settings.SECRET_KEY, ENCRYPTION_KEYS=settings.ENCRYPTION_KEYS, RLS_SCOPE_KEY=settings.RLS_SCOPE_KEY,
        ALLOWED_HOSTS="127.0.0.1", SITE_URL=f"https://127.0.0.1:{port}", EMAIL_URL="consolemail://",
        TRUSTED_PROXIES="127.0.0.1", MEDIA_ROOT=str(settings.MEDIA_ROOT), STATIC_ROOT=str(OUT / "static"),
    )
    return env


def collect_static() -> None:
    """The static files as production serves them: hashed names and compressed copies (once: again
    when a file under static/ or an installed package is newer than the manifest)."""
    manifest = OUT / "static" / "staticfiles.json"
    sources = [path.stat().st_mtime for path in (ROOT / "static").rglob("*") if path.is_file()]
    sources += [stamp.stat().st_mtime for stamp in (ROOT / ".venv").glob(".installed-*")]
    if manifest.exists() and manifest.stat().st_mtime > max(sources, default=0):
        return
    env = production_env(0, 1)
    started = time.monotonic()
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
                   cwd=ROOT, env=env, check=True)
    print(f"collectstatic (manifest, compressed) into {OUT / 'static'}: {time.monotonic() - started:.1f} s", flush=True)


def serve(workers: int, threads: int, log: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--log-level", "warning"],
        cwd=ROOT, env=production_env(port, threads), stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)  # its own process group: stopped with its workers, whatever they are doing
    request = urllib.request.Request(f"http://127.0.0.1:{port}/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    if not wait_until_answering(request, running=lambda: server.poll() is None, timeout=5, interval=0.3):
        stop(server)
        raise RuntimeError(f"gunicorn did not start; see {log}")
    return server, port


def stop(server) -> None:
    """gunicorn stopped: gracefully within 15 s (requests still queued from Locust's last
    moments are answered or dropped), else killed with its workers."""
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait(timeout=15)


class Sampler(threading.Thread):
    """pg_stat_activity five times a second (as the superuser): the server's connections, how many
    of them were running a statement, and the CPU time of the backends behind them."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.connections: list[int] = []
        self.active: list[int] = []
        self.backend_ticks: dict[int, list[int]] = {}  # pid: [first seen, last seen]

    def run(self):
        with psycopg.connect(settings.DATABASE_ADMIN_URL, autocommit=True) as conn:
            while not self.stop.wait(0.2):
                rows = conn.execute("SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND application_name = %s", [APPLICATION_NAME]).fetchall()
                self.connections.append(len(rows))
                self.active.append(sum(state == "active" for _, state in rows))
                for pid, _ in rows:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    ticks = int(fields[11]) + int(fields[12])
                    self.backend_ticks.setdefault(pid, [ticks, ticks])[1] = ticks

    def backend_cpu_seconds(self) -> float:
        return sum(last - first for first, last in self.backend_ticks.values()) / os.sysconf("SC_CLK_TCK")


def run_locust(port: int, args, prefix: Path, logins: Path) -> tuple[dict, list[dict], list[dict]]:
    """Locust, headless and bounded; (the aggregated row, the rows per request name, the failures)."""
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
               "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.seconds}s", "--stop-timeout", "5",
               "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"]
    think_min, think_max = args.think.split(",")
    env = {**os.environ, "BENCH_CLIENTS_LOGINS": str(logins), "BENCH_THINK_MIN": think_min, "BENCH_THINK_MAX": think_max}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, env=env, timeout=args.seconds + 120, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"  locust's own CPU: {after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.1f} s "
          "(on the same cores)", flush=True)
    if not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"locust wrote no figures: {done.stderr[-3000:]}")
    with open(f"{prefix}_stats.csv") as stats:
        rows = list(csv.DictReader(stats))
    with open(f"{prefix}_failures.csv") as failures:
        failed = list(csv.DictReader(failures))
    total = next(row for row in rows if row["Name"] == "Aggregated")
    return total, [row for row in rows if row["Name"] != "Aggregated"], failed


def profile_overview(count: int, logins: list[dict]) -> None:
    """Where the time of `count` overview pages goes, in this process (the test settings: DEBUG off,
    the cached template loader)."""
    import cProfile
    import pstats

    from django.db import connection
    from django.test import Client as HttpClient
    from django.test.utils import CaptureQueriesContext

    from portal.models import User

    browser = HttpClient()
    with staff_scope():
        browser.force_login(User.objects.get(email=logins[0]["email"]))
    assert browser.get("/").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        browser.get("/")
    print(f"one overview page: {len(queries.captured_queries)} queries", flush=True)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(count):
        browser.get("/")
    profiler.disable()
    print(f"{count} overview pages in this process: {(time.perf_counter() - started) / count * 1000:.2f} ms each "
          "(under the profiler)", flush=True)
    profiler.dump_stats(OUT / "overview.prof")  # for pstats' callers and callees
    print(f"(the whole profile: {OUT / 'overview.prof'})")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def cpu_each(server, port: int, logins: list[dict], count: int) -> list[tuple[str, float, float]]:
    """Each kind of request of the scenario, `count` times one after the other through the running
    server: (kind, gunicorn's CPU ms a request, median wall ms). One at a time, so the CPU is what a
    request costs the server whatever else the machine runs; the wall time is not."""
    import http.cookiejar
    import re
    import statistics
    import urllib.parse

    base, origin = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{port}"
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.255.0.1", "Accept-Encoding": "gzip, br"}

    def browser():
        jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(secure_protocols=("https", "wss", "http")))
        return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def sign_in(opener, login: dict, number: int) -> None:
        # Each from an address of its own, as Locust's clients: the login limit counts per address.
        own = {**proxy, "X-Forwarded-For": f"10.254.{number // 256 % 256}.{number % 256}"}
        form = opener.open(urllib.request.Request(f"{base}/accounts/login/", headers=own)).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode({"login": login["email"], "password": login["password"],
                                       "csrfmiddlewaretoken": token}).encode()
        answer = opener.open(urllib.request.Request(f"{base}/accounts/login/", data=data, headers={
            **own, "Referer": f"{origin}/accounts/login/", "Origin": origin}))
        assert login["client"] in answer.read().decode(), "the sign-in did not reach the overview"

    opener = browser()
    sign_in(opener, logins[0], 0)
    overview = opener.open(urllib.request.Request(f"{base}/", headers=proxy)).read().decode()
    invoice = re.search(r'href="/invoices/(\d+)/"', overview).group(1)
    style = re.search(r'href="(/static/[^"]+\.css)"', overview).group(1)
    kinds = [("overview", "/"), ("invoice list, filtered", "/invoices/?status=open&sort=due"),
             ("invoice", f"/invoices/{invoice}/"), ("invoice PDF (stored)", f"/invoices/{invoice}/pdf/"),
             ("open page's poll", "/live/?v=0"), ("static file (compressed)", style)]
    results = []
    for kind, path in kinds:
        walls, cpu = [], cpu_seconds(server.pid)
        for _ in range(count):
            started = time.perf_counter()
            opener.open(urllib.request.Request(base + path, headers=proxy)).read()
            walls.append((time.perf_counter() - started) * 1000)
        results.append((kind, (cpu_seconds(server.pid) - cpu) * 1000 / count, statistics.median(walls)))
    walls, cpu = [], cpu_seconds(server.pid)
    for n in range(count):  # the form and the sign-in (a scrypt hash), then the overview it leads to
        started = time.perf_counter()
        sign_in(browser(), logins[n % len(logins)], n + 1)
        walls.append((time.perf_counter() - started) * 1000)
    results.append(("sign-in (form, sign in, overview)", (cpu_seconds(server.pid) - cpu) * 1000 / count,
                    statistics.median(walls)))
    return results


def _ms(value: str) -> str:
    return f"{float(value):,.0f}" if value not in ("", "N/A") else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    # 200 clients signing in within 20 s, then reading a page every 5 to 15 s: people reading
    # invoices, not a script (bench/README.md, "200 concurrent clients", has 20/s and 1-3 s too).
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--shapes", default="2x4", help="gunicorn WORKERSxTHREADS, comma-separated")
    parser.add_argument("--invoices", type=int, default=10, help="invoices per client")
    parser.add_argument("--profile", type=int, default=0, help="profile this many overview pages in this process")
    parser.add_argument("--think", default="5,15", help="seconds a client reads between pages: MIN,MAX (uniform)")
    parser.add_argument("--signed-in", action="store_true",
                        help="the clients arrive signed in (a session each, made before the clock starts): browsing alone")
    parser.add_argument("--each", type=int, default=0,
                        help="before the load, each kind of request this many times one at a time: server CPU per request")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    logins = prepare(args.users, args.invoices)
    if args.signed_in:
        sessions(logins)
    logins_file = OUT / f"logins-{os.getpid()}.json"
    logins_file.write_text(json.dumps(logins))
    collect_static()
    rows, failed, each = [], False, []
    try:
        for shape in [shape for shape in args.shapes.split(",") if shape]:
            workers, threads = (int(part) for part in shape.lower().split("x"))
            with staff_scope():
                stored_before = RenderedDocument.objects.count()
            log = OUT / f"gunicorn-{shape}.log"
            print(f"gunicorn {workers} workers x {threads} threads (production settings, a pool of {threads} per "
                  f"process): starting", flush=True)
            server, port = serve(workers, threads, log)
            sampler = Sampler()
            try:
                if args.each and not each:
                    each = cpu_each(server, port, logins, args.each)
                    for kind, cpu_ms, wall_ms in each:
                        print(f"    {kind}: gunicorn CPU {cpu_ms:.1f} ms a request, median {wall_ms:.1f} ms "
                              f"(one at a time, {args.each} times)", flush=True)
                load_before = os.getloadavg()
                cpu_before, started = cpu_seconds(server.pid), time.monotonic()
                sampler.start()
                print(f"  locust: {args.users} users, {args.spawn_rate:g} a second, {args.seconds} s; load average "
                      f"{load_before[0]:.2f}", flush=True)
                total, per_name, failures = run_locust(port, args, OUT / f"locust-{shape}", logins_file)
                elapsed = time.monotonic() - started
                server_cpu = cpu_seconds(server.pid) - cpu_before
                sampler.stop.set()
                sampler.join()
                load_after = os.getloadavg()
            finally:
                sampler.stop.set()
                stop(server)
            with staff_scope():
                rendered = RenderedDocument.objects.count() - stored_before
            errors_logged = log.read_text().count("Traceback")
            requests, failures_count = int(total["Request Count"]), int(total["Failure Count"])
            for row in per_name:
                print(f"    {row['Name']}: {row['Request Count']} requests, {row['Failure Count']} failed, p50 "
                      f"{_ms(row['50%'])} / p95 {_ms(row['95%'])} / p99 {_ms(row['99%'])} ms", flush=True)
            for failure in failures[:5]:
                print(f"    failed {failure['Occurrences']}x: {failure['Name']}: {failure['Error'][:200]}", flush=True)
            cpu_ms = server_cpu * 1000 / max(1, requests)
            print(f"  {requests:,} requests, {failures_count} failed, {float(total['Requests/s']):.0f}/s; p50 "
                  f"{_ms(total['50%'])}, p95 {_ms(total['95%'])}, p99 {_ms(total['99%'])}, max "
                  f"{_ms(total['Max Response Time'])} ms; gunicorn CPU {server_cpu:.1f} s ({server_cpu / elapsed * 100:.0f}% "
                  f"of a core, {cpu_ms:.1f} ms a request), database backends' CPU {sampler.backend_cpu_seconds():.1f} s; "
                  f"connections {min(sampler.connections, default=0)}-{max(sampler.connections, default=0)} "
                  f"(at most {max(sampler.active, default=0)} running a statement); PDFs rendered during the run: "
                  f"{rendered}; tracebacks in gunicorn's log: {errors_logged}; load average {load_before[0]:.1f} -> "
                  f"{load_after[0]:.1f}", flush=True)
            failed = failed or failures_count > 0 or rendered > 0 or errors_logged > 0 or requests == 0
            rows.append(
                f"| {workers}x{threads} | {requests:,} | {failures_count} | {float(total['Requests/s']):.0f} | "
                f"{_ms(total['50%'])} / {_ms(total['95%'])} / {_ms(total['99%'])} | {server_cpu:.0f} s "
                f"({server_cpu / elapsed * 100:.0f}%), {cpu_ms:.1f} ms/req | {sampler.backend_cpu_seconds():.0f} s | "
                f"{max(sampler.connections, default=0)} ({max(sampler.active, default=0)} active) | "
                f"{load_before[0]:.1f} -> {load_after[0]:.1f} |")
    finally:
        logins_file.unlink(missing_ok=True)
    if args.profile:
        profile_overview(args.profile, logins)
    print(f"{os.cpu_count()} cores; {args.users} users, {args.spawn_rate:g}/s, {args.seconds} s, reading {args.think} s "
          f"between pages{', signed in before the clock started' if args.signed_in else ''}")
    print("| shape (workers x threads) | requests | failed | requests/s | p50 / p95 / p99 ms | gunicorn CPU "
          "(of one core) | database backends' CPU | connections (running a statement) | load average |")
    for row in rows:
        print(row)
    if each:
        print("| request (one at a time) | gunicorn CPU a request | median time |")
        for kind, cpu_ms, wall_ms in each:
            print(f"| {kind} | {cpu_ms:.1f} ms | {wall_ms:.1f} ms |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
