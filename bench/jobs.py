"""Benchmark: claiming background jobs under a backlog (the first of the month's webhook storm
leaves tens of thousands of accounting events waiting).

    .venv/bin/python bench/jobs.py [--backlog 100000] [--claims 500] [--subjects 20000]

Uses its own database (portal_bench_jobs) on the embedded server (or DATABASE_URL's server):
writes `--backlog` due jobs in one statement (as the intake and the reminder scan do), then
times `--claims` claims as a worker makes them (portal.jobs._claim, one job of any kind, then
one of a kind), each recorded done at once, and prints the time per claim and the claim's plan.
Target: a claim costs the same with 100,000 waiting as with 1,000 (well under 5 ms).
"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DATABASE_NAME", "portal_bench_jobs")  # make test runs it tiny, on a database of its own
if os.environ.get("DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + os.environ["DATABASE_NAME"]

import django  # noqa: E402

django.setup()

import datetime  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from portal import jobs  # noqa: E402
from portal.models import Job  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402

KIND = "accounting.event"
CHUNK = 50_000


def fill(backlog: int, subjects: int) -> None:
    with as_owner() as alias, staff_scope(), connections[alias].cursor() as cursor:
        cursor.execute("TRUNCATE portal_job")
    jobs.ring_kind = lambda kind: None  # no worker here: the bell would only go to Redis
    for start in range(0, backlog, CHUNK):
        stop = min(backlog, start + CHUNK)
        with transaction.atomic(), staff_scope():
            jobs.jobs_enqueue_bulk(kind=KIND, jobs=[(f"bench:{n}", {"webhook": n}, f"bench:{n % subjects}")
                                                    for n in range(start, stop)])
        print(f"  wrote {stop:,}/{backlog:,} jobs", flush=True)
    with as_owner() as alias, connections[alias].cursor() as cursor:  # only the owner may
        cursor.execute("ANALYZE portal_job")


def claims(count: int, kind: str | None) -> float:
    started = time.perf_counter()
    with staff_scope():
        for _ in range(count):
            job = jobs._claim(kind=kind)
            if job is None:
                raise SystemExit("the backlog ran out: ask for fewer claims")
            Job.objects.filter(pk=job.pk).update(state=Job.State.DONE, lease_expires_at=None)
    return (time.perf_counter() - started) / count * 1000


def plan() -> str:
    ready, order = jobs.READY[1]
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN ANALYZE " + jobs.CLAIM_SQL.format(ready=ready, only="", order=order),
                       {"now": timezone.now(), "lease": datetime.timedelta(minutes=5), "id": None, "kind": None})
        lines = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return next(line.strip() for line in lines if "Execution Time" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--subjects", type=int, default=20_000, help="distinct subjects (events of one invoice "
                                                                     "share one)")
    args = parser.parse_args()
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']})", flush=True)
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, verbosity=0)
    fill(args.backlog, args.subjects)
    any_kind = claims(args.claims, None)
    one_kind = claims(args.claims, KIND)
    print(f"| {args.backlog:,} waiting | {args.claims:,} claims | any kind {any_kind:.2f} ms | "
          f"one kind {one_kind:.2f} ms | the claim statement alone: {plan()} |")


if __name__ == "__main__":
    main()
