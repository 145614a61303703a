"""Benchmark: what idle open pages cost (portal/live.py): each asks "anything new since version
V?" every LIVE_POLL_SECONDS (15 s) and, when nothing changed, gets a 204.

    .venv/bin/python bench/live.py [--clients 200] [--concurrent 16] [--seconds 20]

Uses its own database (portal_bench_live, bootstrapped and migrated as the owner) and Redis
databases 12 and 13 (BENCH_REDIS_DB), makes N clients with one signed-in contact each, and
starts one gunicorn as `make run` does (1 process x 4 threads, a pool of 4). Then:
1. counts the database queries of one idle poll (in this process, through Django's test client);
2. times idle polls one after the other (ms per poll, as one page sees it);
3. has C pollers ask as fast as they can for S seconds, each cycling through the N clients'
   sessions over keep-alive connections (requests/s, median and p95 ms): the most idle polls
   one web process answers, so (requests/s x 15 s) open pages per process at the default interval;
4. for scale, the dashboard page itself, one after the other.
Prints a table row for bench/README.md.
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_NAME", "portal_bench_live")  # make test runs it tiny, on a database of its own
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")  # no debug pages; Redis db below
os.environ["TEST_REDIS_DB"] = os.environ.get("BENCH_REDIS_DB", "12")
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "4")  # make run's web: one pooled connection per thread
if os.environ.get("DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + os.environ["DATABASE_NAME"]

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from portal.models import Membership  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.invoices.factories import make_invoice  # noqa: E402
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402
from tests.support.servers import gunicorn  # noqa: E402

VERSION = re.compile(r'data-live-version="(\d+)"')


def prepare(clients: int) -> list[HttpClient]:
    """N clients with two invoices and one contact each (made once), each contact signed in."""
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, verbosity=0)
    with staff_scope():
        memberships = list(Membership.objects.select_related("user", "client").order_by("pk")[:clients])
    missing = clients - len(memberships)
    if missing > 0:
        brand = BrandFactory(name="Bench B.V.", slug=f"bench-{time.time_ns()}")
        for n in range(len(memberships), clients):
            client = ClientFactory(brand=brand, name=f"Bench client {n}")
            memberships.append(MembershipFactory(client=client, user__email=f"bench{n}-{time.time_ns()}@live.test"))
            make_invoice(client, number=f"BL-{n}-1")
            make_invoice(client, number=f"BL-{n}-2")
        print(f"  made {missing} clients", flush=True)
    sessions = []
    for membership in memberships:
        browser = HttpClient()
        browser.force_login(membership.user)
        sessions.append(browser)
    return sessions


def _timed(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie, "Accept": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sequential", type=int, default=500)
    args = parser.parse_args()
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']})", flush=True)
    sessions = prepare(args.clients)

    pages = []  # (cookie, poll path) per client: the version their dashboard was rendered with
    for browser in sessions:
        page = browser.get("/")
        assert page.status_code == 200, page.status_code
        pages.append((f"sessionid={browser.cookies['sessionid'].value}", f"/live/?v={VERSION.search(page.text).group(1)}"))

    browser = sessions[0]
    browser.get(pages[0][1])
    with CaptureQueriesContext(connection) as queries:
        assert browser.get(pages[0][1]).status_code == 204
    print(f"1. an idle poll makes {len(queries.captured_queries)} queries "
          f"(sign-in and scope lookups; the check itself reads the cache)", flush=True)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_OWNER_PASSWORD"}
    with gunicorn(port=port, env=env, threads=4):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        timings = []
        for n in range(args.sequential):
            cookie, path = pages[n % len(pages)]
            status, ms = _timed(conn, path, cookie)
            assert status == 204, f"an idle poll answered {status}"
            timings.append(ms)
        print(f"2. {args.sequential} idle polls one after the other: median {statistics.median(timings):.2f} ms, "
              f"p95 {_p95(timings):.2f} ms", flush=True)

        results: list[float] = []
        errors = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def poller(offset: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine, n = [], offset
            while time.monotonic() < stop_at:
                cookie, path = pages[n % len(pages)]
                n += args.concurrent
                try:
                    status, ms = _timed(conn, path, cookie)
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(repr(exc))
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    continue
                if status != 204:
                    errors.append(status)
                mine.append(ms)
            with lock:
                results.extend(mine)

        started = time.monotonic()
        threads = [threading.Thread(target=poller, args=(i,)) for i in range(args.concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        rate = len(results) / elapsed
        print(f"3. {args.concurrent} pollers for {elapsed:.1f} s over {len(pages)} clients: {len(results)} polls, "
              f"{rate:.0f} polls/s, median {statistics.median(results):.1f} ms, p95 {_p95(results):.1f} ms, "
              f"{len(errors)} errors {errors[:3]}", flush=True)

        page_ms = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # the idle one was closed meanwhile
        for n in range(min(50, args.sequential)):
            cookie, _path = pages[n % len(pages)]
            status, ms = _timed(conn, "/", cookie)
            assert status == 200, status
            page_ms.append(ms)
        print(f"4. the dashboard page, one after the other: median {statistics.median(page_ms):.1f} ms", flush=True)
    print(f"| {len(pages)} | {len(queries.captured_queries)} | {statistics.median(timings):.2f} ms | "
          f"{rate:.0f} polls/s ({args.concurrent} pollers) | {statistics.median(results):.1f} / {_p95(results):.1f} ms | "
          f"{statistics.median(page_ms):.1f} ms | ~{rate * 15:,.0f} |")
    return 1 if errors else 0


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


if __name__ == "__main__":
    sys.exit(main())
