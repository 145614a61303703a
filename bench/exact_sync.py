"""Benchmark: the first sync of an Exact Online division (issue 14): 10,000 sales invoices with
50,000 lines read through the Sync API, stored as canonical events and applied to the ledger.

    .venv/bin/python bench/exact_sync.py [--invoices 10000] [--lines-per-invoice 5] [--customers 1000]

The local Exact Online (tests/fakes/exact.py) runs in a child process, so the memory and CPU
measured here are the portal's alone (the fake holds every row of the division and builds each
page from them). It is filled with one division: N customers and the invoices, every fourth one
open (Status 20), the others processed (Status 50, so each also has its sales entry in
sync/Financial/TransactionLines, as in Exact: header, one line per invoice line, VAT).

The portal side uses its own database (portal_bench_exact, bootstrapped, migrated and emptied at
each run, so every run is an initial load) and one connected ExactConnection with the tokens a
consent gives (the fake's `grant()`), EXACT_BASE_URL pointing at the fake. Then, in this process:
1. sync: `sync_entity` for every entity from cursor 1, in the job's order (customers, invoices,
   transaction lines, deletions), as the "exact.sync" job runs it. When the client refuses a call
   because Exact's minute budget (60 calls) is spent it raises RateLimited; the job would be
   retried at the reset, so the benchmark sleeps until then and calls sync_entity again;
2. apply: the stored "accounting.event" jobs, drained as the worker drains them
   (portal.jobs.jobs_drain), until none is due.
Bells (Celery messages) are counted, not sent. Prints a line per page read and per few seconds
of applying, then the figures: time per phase (reading = HTTP round trips and JSON parsing;
storing = the rest of sync_entity: mapping, inserts, cursor; waiting for the minute's budget),
memory (the process's peak RSS after each phase, and the fake's), API calls (the fake's counts,
per endpoint and in all, against the 5,000-a-day budget, and what the connection recorded from
Exact's headers), and the invoices and lines in the portal, which must match what Exact holds
(exit 1 otherwise).

--claim-fix applies, in this process only, the one-condition change to portal/jobs.py's claim
query that bench/README.md proposes: as the code stands, a claim costs time in proportion to the
square of the jobs waiting, and the 11,000 events of the full size do not get applied in hours.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import traceback
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.first_load import apply_all, prepare_database, rss_mb, start_fake, stop_fake, use_bench_database  # noqa: E402

CLIENT_ID = "5b0f7c2e-1d44-4a8e-9f31-7c2d9e0a6b18"
CLIENT_SECRET = "bench-exact-secret"
WEBHOOK_SECRET = "BenchWebhookSecret"
DIVISION = 1234567
PRICES = [Decimal("12.50"), Decimal("49.95"), Decimal("120.00"), Decimal("7.25"), Decimal("310.40")]


# --- The fake, in a child process -------------------------------------------------------------

def fake_main(pipe, invoices: int, lines: int, customers: int, sync_page_size: int) -> None:
    """Run the fake Exact: fill one division, send (url, tokens), then answer "counts" until "stop".
    Forked before Django is set up; leaves with os._exit so no inherited exit hook runs."""
    status = 0
    try:
        from tests.fakes.exact import FakeExact

        with FakeExact(CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET) as fake:
            fake.sync_page_size = sync_page_size
            pipe.send(("url", fake.url))
            fake.add_division(DIVISION, "Bench Boekhouding B.V.")
            accounts = [fake.add_account(f"Klant {n}", email=f"klant{n}@bench.test", city="Utrecht")["ID"]
                        for n in range(1, customers + 1)]
            for n in range(invoices):
                fake.add_invoice(accounts[n % customers],
                                 [(f"Regel {k}", 1 + (n + k) % 4, PRICES[(n + k) % len(PRICES)], "2" if k % 3 else "5")
                                  for k in range(1, lines + 1)],
                                 status=20 if n % 4 == 3 else 50)
                if (n + 1) % 1000 == 0:
                    print(f"  fake Exact: {n + 1:,}/{invoices:,} invoices", flush=True)
            pipe.send(("ready", fake.grant()))
            while (command := pipe.recv()) != "stop":
                if command == "counts":
                    with fake.lock:
                        pipe.send({"calls": dict(fake.calls), "calls_today": fake.usage[DIVISION]["day_count"],
                                   "token_calls": len(fake.oauth.token_calls),
                                   "statuses": sorted({r["status"] for r in fake.requests}),
                                   "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
    except BaseException:  # noqa: BLE001 - the parent reports it
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


# --- Measuring --------------------------------------------------------------------------------

class Meter:
    """Time in HTTP round trips and JSON parsing (reading), rows per page, and progress lines."""

    def __init__(self):
        self.http_seconds = 0.0
        self.parse_seconds = 0.0
        self.pages = 0
        self.rows = 0
        self.endpoint = ""

    def install(self) -> None:
        import requests

        from integrations.exact import client as exact_client

        meter = self
        send = requests.Session.request

        def timed_request(session, method, url, *args, **kwargs):
            meter.endpoint = exact_client.endpoint_of(url).split("/api/v1/", 1)[-1].split("/", 1)[-1]
            started = time.perf_counter()
            try:
                return send(session, method, url, *args, **kwargs)
            finally:
                meter.http_seconds += time.perf_counter() - started

        parse = exact_client.loads

        def timed_loads(content):
            started = time.perf_counter()
            body = parse(content)
            meter.parse_seconds += time.perf_counter() - started
            found = body.get("d") if isinstance(body, dict) else None
            if isinstance(found, dict) and isinstance(found.get("results"), list):
                meter.pages += 1
                meter.rows += len(found["results"])
                print(f"    page {meter.pages} ({meter.endpoint}): {len(found['results']):,} rows "
                      f"({meter.rows:,} read so far, {time.strftime('%H:%M:%S', time.gmtime())} UTC)",
                      flush=True)
            return body

        requests.Session.request = timed_request
        exact_client.loads = timed_loads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--lines-per-invoice", type=int, default=5)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--sync-page-size", type=int, default=1000, help="rows per sync page (Exact: 1,000)")
    parser.add_argument("--claim-fix", action="store_true",
                        help="apply with the claim query fixed as bench/README.md proposes (this process only)")
    args = parser.parse_args()
    customers = min(args.customers, args.invoices) or 1

    fake, pipe, url = start_fake(fake_main, args.invoices, args.lines_per_invoice, customers, args.sync_page_size)
    os.environ["EXACT_BASE_URL"] = url
    use_bench_database("portal_bench_exact")
    try:
        return run(args, customers, pipe)
    finally:
        stop_fake(fake, pipe)


def run(args, customers: int, fake) -> int:
    bells = prepare_database()

    from portal import jobs

    if args.claim_fix:
        print(claim_fix(jobs), flush=True)
    meter = Meter()
    meter.install()

    print(f"filling the fake Exact: {customers:,} customers, {args.invoices:,} invoices with "
          f"{args.lines_per_invoice} lines each", flush=True)
    started = time.perf_counter()
    message = fake.recv()
    if message[0] != "ready":
        print(f"the fake Exact did not start: {message!r}")
        return 1
    tokens = message[1]
    print(f"  filled in {time.perf_counter() - started:.1f} s (waited for it after preparing the database)",
          flush=True)
    exact = connect(tokens)

    figures = {"start_rss": rss_mb()}
    sync_seconds, waited, per_entity = sync_all(exact, meter)
    figures["sync_rss"] = rss_mb()
    apply_seconds, applied, retried = apply_all()
    figures["apply_rss"] = rss_mb()
    fake.send("counts")
    counts = fake.recv()
    return report(args, customers, exact, meter, figures, counts, bells, sync_seconds=sync_seconds, waited=waited,
                  per_entity=per_entity, apply_seconds=apply_seconds, applied=applied, retried=retried)


# The job claim's "no earlier open job of the same subject" test, as portal/jobs.py writes it, can
# use no index on subject: the partial index job_open_subject holds only rows with a subject, and the
# planner cannot tell that from `e.subject = j.subject` alone. So each candidate's test scans every
# job with a lower id, for every candidate, at every claim (bench/README.md). Saying `e.subject <> ''`
# lets it probe that index instead.
CLAIM_TEST = "WHERE e.subject = j.subject AND e.id < j.id"
CLAIM_TEST_FIXED = "WHERE e.subject = j.subject AND e.subject <> '' AND e.id < j.id"


def claim_fix(jobs) -> str:
    if CLAIM_TEST_FIXED in jobs.CLAIM_SQL:
        return "claim fix: portal/jobs.py has it already"
    if CLAIM_TEST not in jobs.CLAIM_SQL:
        raise SystemExit("claim fix: portal/jobs.py's claim query changed; this flag no longer applies")
    jobs.CLAIM_SQL = jobs.CLAIM_SQL.replace(CLAIM_TEST, CLAIM_TEST_FIXED)
    return "claim fix: APPLIED IN THIS PROCESS ONLY (e.subject <> '' in the claim's subject test)"


def connect(tokens: dict):
    """One connection of kind Exact Online, connected (the tokens a consent gives), division chosen."""
    import datetime

    from django.utils import timezone

    from integrations.exact.models import ExactConnection
    from integrations.models import Connection
    from portal.rls import staff_scope
    from tests.portal.factories import BrandFactory

    now = timezone.now()
    with staff_scope():
        link = Connection.objects.create(name="Bench Boekhouding", slug="bench-exact",
                                         kind=Connection.Kind.EXACT_ONLINE,
                                         brand=BrandFactory(is_default=True, slug="bench-exact"),
                                         signing_secrets="whsec_unused")
        return ExactConnection.objects.create(
            connection=link, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_secret=WEBHOOK_SECRET,
            division=DIVISION, divisions=[{"code": DIVISION, "name": "Bench Boekhouding B.V."}], journal="20",
            state=ExactConnection.State.CONNECTED, state_changed_at=now, access_token=tokens["access_token"],
            access_expires_at=now + datetime.timedelta(seconds=int(tokens.get("expires_in", 600))),
            refresh_token=tokens["refresh_token"], refreshed_at=now)


def sync_all(exact, meter: Meter) -> tuple[float, float, dict]:
    """Every entity from its cursor, as the exact.sync jobs do; a RateLimited is waited out as the
    job's retry would (Retry(after=until)). Returns (seconds, seconds waited, rows per entity)."""
    from django.utils import timezone

    from integrations.exact.client import RateLimited
    from integrations.exact.models import ExactConnection
    from integrations.exact.sync import ORDER, sync_entity
    from portal.rls import staff_scope

    print("sync: every entity from cursor 1", flush=True)
    started = time.perf_counter()
    waited = 0.0
    per_entity = {}
    for entity in ORDER:
        rows_before = meter.rows
        print(f"  {entity}", flush=True)
        while True:
            with staff_scope():
                fresh = ExactConnection.objects.get(pk=exact.pk)  # as a job reads it
                try:
                    sync_entity(fresh, entity)
                    break
                except RateLimited as limited:
                    wait = max(0.0, (limited.until - timezone.now()).total_seconds()) + 0.2
                    why = str(limited)
            print(f"    rate-limited ({why}); waiting {wait:.1f} s, as the job's retry would", flush=True)
            time.sleep(wait)
            waited += wait
        per_entity[entity] = meter.rows - rows_before
    return time.perf_counter() - started, waited, per_entity


def report(args, customers: int, exact, meter: Meter, figures: dict, counts: dict, bells: list, *,
           sync_seconds: float, waited: float, per_entity: dict, apply_seconds: float, applied: int,
           retried: int) -> int:
    from django.db.models import Count

    from integrations.exact.models import ExactConnection
    from integrations.models import ClientLink
    from invoices.models import Invoice, InvoiceLine
    from portal.models import Job, WebhookRequest
    from portal.rls import staff_scope

    with staff_scope():
        exact = ExactConnection.objects.get(pk=exact.pk)
        invoices = Invoice.objects.filter(connection_id=exact.connection_id).count()
        lines = InvoiceLine.objects.filter(invoice__connection_id=exact.connection_id).count()
        clients = ClientLink.objects.filter(connection_id=exact.connection_id).count()
        stored = WebhookRequest.objects.filter(source="exact-sync").count()
        not_done = dict(Job.objects.filter(kind="accounting.event").exclude(state=Job.State.DONE)
                        .values_list("state").annotate(n=Count("id")))
        others = dict(Job.objects.exclude(kind="accounting.event").values_list("kind").annotate(n=Count("id")))
    reading = meter.http_seconds + meter.parse_seconds
    storing = sync_seconds - waited - reading
    calls = sum(counts["calls"].values())
    print()
    print(f"{customers:,} customers, {args.invoices:,} invoices with {args.invoices * args.lines_per_invoice:,} "
          f"lines in Exact; {meter.rows:,} rows read in {meter.pages} pages "
          f"({', '.join(f'{entity} {rows:,}' for entity, rows in per_entity.items())})")
    print()
    print("| phase | time | peak RSS after it |")
    print("|---|---|---|")
    print(f"| reading from Exact (HTTP {meter.http_seconds:.1f} s, JSON {meter.parse_seconds:.1f} s) "
          f"| {reading:.1f} s | |")
    print(f"| storing {stored:,} events and their jobs | {storing:.1f} s | |")
    print(f"| waiting for Exact's minute budget (60 calls) | {waited:.1f} s | |")
    print(f"| sync in all | {sync_seconds:.1f} s | {figures['sync_rss'][1]:.0f} MB "
          f"(was {figures['start_rss'][0]:.0f} MB before) |")
    print(f"| applying {applied:,} events to the ledger ({retried} retried attempts) | {apply_seconds:.1f} s | "
          f"{figures['apply_rss'][1]:.0f} MB |")
    print(f"| initial load in all | {sync_seconds + apply_seconds:.1f} s | |")
    print()
    print(f"API calls: {calls:,} of the 5,000-a-day budget ({calls / 50:.1f} %), token calls {counts['token_calls']}; "
          f"Exact counted {counts['calls_today']:,} today; the connection recorded "
          f"day_remaining {exact.day_remaining} of {exact.day_limit}")
    print("  by endpoint: " + ", ".join(f"{name} {n}" for name, n in sorted(counts["calls"].items())))
    print(f"  answers: {counts['statuses']}; bells counted, not sent: {len(bells):,}; other jobs written (not run "
          f"here): {', '.join(f'{kind} {n:,}' for kind, n in sorted(others.items())) or 'none'}")
    print(f"memory: the portal's process peaked at {figures['apply_rss'][1]:.0f} MB RSS; "
          f"the fake Exact's at {counts['maxrss_kb'] / 1024:.0f} MB")
    expected_lines = args.invoices * args.lines_per_invoice
    print(f"portal holds {invoices:,} invoices with {lines:,} lines and {clients:,} clients "
          f"(Exact: {args.invoices:,}, {expected_lines:,}, {customers:,})")
    problems = []
    if (invoices, lines, clients) != (args.invoices, expected_lines, customers):
        problems.append("the portal does not hold what Exact holds")
    if not_done:
        problems.append(f"events not applied: {not_done}")
    if counts["calls_today"] != exact.day_limit - (exact.day_remaining or 0):
        problems.append("the connection's day_remaining disagrees with Exact's count")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
