"""Benchmark: the first load of a Twinfield office (issue 15): 10,000 sales invoices read from the
local Twinfield, stored as canonical events and applied to the ledger; time, memory and credits.

    .venv/bin/python bench/twinfield_sync.py [--invoices 10000] [--lines-per-invoice 5] [--customers 1000]

The local Twinfield (tests/fakes/twinfield.py) runs in a child process, so the memory and CPU
measured here are the portal's alone. It is filled with one office: N customers and the sales
invoices (daybook VRK), spread in date order over the periods the first load reads (the last
FIRST_LOAD_MONTHS months and this one), so every period has work and none comes near the fake's
browse_row_limit (5,000 rows, beyond which a browse is HTTP 524). Every fourth invoice is paid in
full in Twinfield (a bank transaction matched to it, in the same period), so the load also reads
payments' customer lines and makes payment events.

The portal side uses its own database (portal_bench_twinfield, bootstrapped, migrated and emptied
at each run, so every run is a first load) and one connected TwinfieldConnection with the tokens a
consent gives (the fake's `grant()`), the cluster and organisation discovery would find, and the
office chosen; TWINFIELD_LOGIN_URL points at the fake. Then, in this process:
1. poll: `integrations.twinfield.sync.poll` in the back office's scope, as the twinfield.poll job
   runs it: every customer (Finder DIM, each read), the customer lines of transactions (browse
   100) period by period, each sales invoice's transaction read whole, the VAT codes. The client
   sits out a spent minute itself (WAIT_IN_CALL); when it raises Throttled all the same the job
   would be retried then, so the benchmark sleeps until `until` and polls again; a poll cut off
   that stored nothing new means the first load cannot get further, and the benchmark stops
   there (exit 1);
2. apply (unless --no-apply): the stored "accounting.event" jobs, drained as the worker drains them
   (portal.jobs.jobs_drain), until none is due.

Twinfield's budget is 1,000 credits a minute (1 a query: a browse, a read, a Finder page), and
the client keeps to it itself (CREDITS_PER_MINUTE, counted on the connection's row). A first load
of this size needs more than 10,000 credits, and the portal calls faster than 1,000 a minute: at
the real budget the load spends part of each minute waiting for the next. So that the benchmark
measures the portal's work, --credits-per-minute (default 1,000,000) replaces both the fake's
limit and the client's constant IN THIS PROCESS ONLY; the figure that matters is the credits
spent, reported with the minutes of Twinfield's budget they take at 1,000 a minute.
`--credits-per-minute 1000` runs with Twinfield's real budget.

Bells (Celery messages) are counted, not sent. Prints a line per period browsed and per few
hundred reads while polling, and per few seconds of applying; then the figures: time per phase
(reading = HTTP round trips; waiting = the client sitting out a spent minute; the client's
bookkeeping = its database work per call: the token reload, the organisation lock, the credit
count; the client's XML = envelopes and parsing, the rest of its calls; storing = the rest of
the poll: mapping, lookups, events and their jobs, cursors), memory (the process's peak RSS after
each phase, and the fake's), the SOAP requests and credits the fake counted (by kind) and what
the connection recorded, and the invoices, lines, clients and paid invoices in the portal, which
must match what Twinfield holds (exit 1 otherwise).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.first_load import apply_all, prepare_database, rss_mb, start_fake, stop_fake, use_bench_database  # noqa: E402

CLIENT_ID = "bench-twinfield-app"
CLIENT_SECRET = "bench-twinfield-secret"
OFFICE = "NLA001"
# integrations.twinfield.sync.FIRST_LOAD_MONTHS (checked once Django is set up: the fake is
# filled in a child forked before, which cannot import the sync module).
FIRST_LOAD_MONTHS = 24
TWINFIELD_BUDGET = 1000  # credits a minute, Twinfield's fair-use figure
PRICES = ["12.50", "49.95", "120.00", "7.25", "310.40"]
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


# --- The fake, in a child process -------------------------------------------------------------

def invoice_dates(invoices: int, today: datetime.date) -> list[datetime.date]:
    """The invoices' dates in order, spread evenly over the periods the first load reads (oldest
    first), days spread within each month and none after today."""
    periods = FIRST_LOAD_MONTHS + 1
    first_month = today.year * 12 + today.month - 1 - FIRST_LOAD_MONTHS
    dates = []
    for n in range(invoices):
        month = first_month + n * periods // invoices
        start = datetime.date(month // 12, month % 12 + 1, 1)
        days = today.day if (start.year, start.month) == (today.year, today.month) else 28
        dates.append(start + datetime.timedelta(days=n % days))
    return dates


def fake_main(pipe, invoices: int, lines: int, customers: int, credits_per_minute: int) -> None:
    """Run the fake Twinfield: fill one office, send (addresses, tokens), then answer "counts" until
    "stop". Forked before Django is set up; leaves with os._exit so no inherited exit hook runs."""
    status = 0
    try:
        from tests.fakes.twinfield import FakeTwinfield

        with FakeTwinfield(CLIENT_ID, CLIENT_SECRET) as fake:
            fake.credit_limit_per_minute = credits_per_minute
            pipe.send(("url", {"base_url": fake.base_url, "cluster_url": fake.cluster_url,
                               "organisation": fake.organisation}))
            fake.add_office(OFFICE, "Bench Boekhouding B.V.")
            codes = [fake.add_customer(OFFICE, f"Klant {n} B.V.", email=f"klant{n}@bench.test",
                                       street=f"Oudegracht {n}", postcode="3511 AB", city="Utrecht")["code"]
                     for n in range(1, customers + 1)]
            dates = invoice_dates(invoices, datetime.datetime.now(AMSTERDAM).date())
            rows_per_period = Counter()
            paid = 0
            for n, on in enumerate(dates):
                made = fake.add_sales_invoice(
                    OFFICE, codes[n % customers],
                    [(f"Regel {k}", PRICES[(n + k) % len(PRICES)], "VH" if k % 3 else "VL")
                     for k in range(1, lines + 1)], date=on)
                rows_per_period[f"{on:%Y/%m}"] += 1  # its customer line, the one row browse 100 gives
                if n % 4 == 0:
                    total = next(line for line in made["lines"] if line["type"] == "total")
                    fake.pay(OFFICE, made["invoicenumber"], str(total["value"]), date=on)
                    rows_per_period[f"{on:%Y/%m}"] += 1  # the payment's customer line
                    paid += 1
                if (n + 1) % 1000 == 0:
                    print(f"  fake Twinfield: {n + 1:,}/{invoices:,} invoices", flush=True)
            busiest = max(rows_per_period.values(), default=0)
            if busiest > fake.browse_row_limit:
                raise SystemExit(f"{busiest:,} customer lines in one period: over the fake's browse_row_limit "
                                 f"({fake.browse_row_limit:,}); ask for fewer invoices")
            pipe.send(("ready", {"tokens": fake.grant(), "paid": paid, "periods": len(rows_per_period),
                                 "busiest_period": busiest}))
            while (command := pipe.recv()) != "stop":
                if command == "counts":
                    with fake.lock:
                        pipe.send({"credits": fake.credits_used, "requests": len(fake.requests),
                                   "by_action": dict(Counter(f"{r['service']} {r['action']}" for r in fake.requests)),
                                   "statuses": sorted({r["status"] for r in fake.requests}),
                                   "busiest_minute": max(fake.credits_per_minute.values(), default=0),
                                   "max_concurrent": max(fake.max_concurrent.values(), default=0),
                                   "token_calls": len(fake.token_calls),
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
    """Time in HTTP round trips, in the client's database bookkeeping and in its calls in all; the
    requests by kind (and so the credits); and the progress lines."""

    def __init__(self):
        self.http_seconds = 0.0
        self.bookkeeping_seconds = 0.0
        self.client_seconds = 0.0
        self.call_seconds = 0.0  # in the client's _call: its attempts and the waits it sits out between them
        self.attempt_seconds = 0.0
        self.http_requests = 0
        self.reads = Counter()  # what was asked: Finder pages, browses, reads by type
        self.browse_rows = 0
        self.depth = 0  # browse calls process: only the outermost call is timed

    def install(self) -> None:
        import requests

        from integrations import oauth
        from integrations.twinfield import tokens
        from integrations.twinfield.client import TwinfieldClient

        meter = self
        send = requests.Session.request

        def timed_request(session, method, url, *args, **kwargs):
            started = time.perf_counter()
            try:
                return send(session, method, url, *args, **kwargs)
            finally:
                meter.http_seconds += time.perf_counter() - started
                meter.http_requests += 1

        def bookkeeping(function):
            def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    meter.bookkeeping_seconds += time.perf_counter() - started
            return timed

        lock = oauth.lease

        @contextlib.contextmanager
        def timed_lock(*args, **kwargs):
            started = time.perf_counter()
            with lock(*args, **kwargs):
                meter.bookkeeping_seconds += time.perf_counter() - started
                yield
                started = time.perf_counter()
            meter.bookkeeping_seconds += time.perf_counter() - started

        def outermost(function, kind_of):
            def timed(client, *args, **kwargs):
                meter.depth += 1
                started = time.perf_counter()
                try:
                    return function(client, *args, **kwargs)
                finally:
                    meter.depth -= 1
                    if not meter.depth:
                        meter.client_seconds += time.perf_counter() - started
                        meter.counted(kind_of(*args, **kwargs))
            return timed

        browse = TwinfieldClient.browse

        def browse_and_tell(client, code, fields, filters):
            rows = browse(client, code, fields, filters)
            meter.browse_rows += len(rows)
            period = filters.get("fin.trs.head.yearperiod", ("", "since a moment"))[1]
            print(f"    browse {code}, period {period}: {len(rows):,} customer lines ({meter.browse_rows:,} so far, "
                  f"{time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)
            return rows

        def timed(function, field):
            def timed_call(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    setattr(meter, field, getattr(meter, field) + time.perf_counter() - started)
            return timed_call

        requests.Session.request = timed_request
        TwinfieldClient._call = timed(TwinfieldClient._call, "call_seconds")
        TwinfieldClient._call_once = timed(TwinfieldClient._call_once, "attempt_seconds")
        oauth.lease = timed_lock
        tokens.access_token = bookkeeping(tokens.access_token)
        TwinfieldClient._spend = bookkeeping(TwinfieldClient._spend)
        TwinfieldClient.process = outermost(TwinfieldClient.process, read_kind)
        TwinfieldClient.search = outermost(TwinfieldClient.search, lambda type, **options: f"Finder {type} page")
        TwinfieldClient.browse = outermost(browse_and_tell, lambda code, *rest: f"browse {code}")

    @property
    def waits_in_calls(self) -> float:
        """The waits the client sat out itself (a minute's credits spent, a 429 of a minute or less)."""
        return self.call_seconds - self.attempt_seconds

    def counted(self, kind: str) -> None:
        self.reads[kind] += 1
        every = {"read transaction": 1000, "read dimensions": 250}.get(kind)
        if every and self.reads[kind] % every == 0:
            print(f"    {kind}: {self.reads[kind]:,} ({self.http_requests:,} requests so far, "
                  f"{time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)


def read_kind(xml: str) -> str:
    """"read transaction", "read dimensions", "read vat": what a ProcessXml request asks."""
    from lxml import etree

    root = etree.fromstring(xml.encode())
    return f"{etree.QName(root).localname} {(root.findtext('type') or '').strip()}".strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--lines-per-invoice", type=int, default=5)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--no-apply", action="store_true",
                        help="poll only, and check the events stored: at 10,000 invoices applying them takes longer "
                             "than the poll, most of it claiming jobs (bench/README.md)")
    parser.add_argument("--credits-per-minute", type=int, default=1_000_000,
                        help="the fake's limit and the client's CREDITS_PER_MINUTE, in this process only "
                             f"(Twinfield: {TWINFIELD_BUDGET:,})")
    args = parser.parse_args()
    customers = min(args.customers, args.invoices) or 1

    fake, pipe, where = start_fake(fake_main, args.invoices, args.lines_per_invoice, customers,
                                   args.credits_per_minute)
    os.environ["TWINFIELD_LOGIN_URL"] = where["base_url"]
    use_bench_database("portal_bench_twinfield")
    try:
        return run(args, customers, pipe, where)
    finally:
        stop_fake(fake, pipe)


def run(args, customers: int, fake, where: dict) -> int:
    bells = prepare_database()

    from integrations.twinfield import client as twinfield_client
    from integrations.twinfield import sync

    if sync.FIRST_LOAD_MONTHS != FIRST_LOAD_MONTHS:
        raise SystemExit(f"integrations.twinfield.sync reads {sync.FIRST_LOAD_MONTHS} months back now; "
                         f"set FIRST_LOAD_MONTHS here to match")

    budget = (f"the client's CREDITS_PER_MINUTE {twinfield_client.CREDITS_PER_MINUTE:,} -> "
              f"{args.credits_per_minute:,} and the fake's credit_limit_per_minute -> {args.credits_per_minute:,}")
    if args.credits_per_minute != twinfield_client.CREDITS_PER_MINUTE:
        budget = f"credit budget PATCHED IN THIS PROCESS ONLY: {budget}"
        twinfield_client.CREDITS_PER_MINUTE = args.credits_per_minute
    else:
        budget = f"credit budget as Twinfield's: {budget}"
    print(budget, flush=True)
    meter = Meter()
    meter.install()

    print(f"filling the fake Twinfield: {customers:,} customers, {args.invoices:,} invoices with "
          f"{args.lines_per_invoice} lines each, every fourth paid", flush=True)
    started = time.perf_counter()
    message = fake.recv()
    if message[0] != "ready":
        print(f"the fake Twinfield did not start: {message!r}")
        return 1
    filled = message[1]
    print(f"  filled in {time.perf_counter() - started:.1f} s (waited for it after preparing the database): "
          f"{filled['periods']} periods, at most {filled['busiest_period']:,} customer lines in one", flush=True)
    twinfield = connect(filled["tokens"], where)

    figures = {"start_rss": rss_mb()}
    poll_seconds, waited, polls, stalled, counts = poll_all(twinfield)
    figures["poll_rss"] = rss_mb()
    apply_seconds, applied, retried = apply_all() if not (stalled or args.no_apply) else (0.0, 0, 0)
    figures["apply_rss"] = rss_mb()
    fake.send("counts")
    fake_counts = fake.recv()
    return report(args, customers, filled, twinfield, meter, figures, fake_counts, bells, budget=budget,
                  poll_seconds=poll_seconds, waited=waited, polls=polls, stalled=stalled, counts=counts,
                  apply_seconds=apply_seconds, applied=applied, retried=retried)


def connect(tokens: dict, where: dict):
    """One connection of kind Twinfield, connected as a consent leaves it (tokens, the cluster and
    organisation discovered), office chosen."""
    from django.utils import timezone

    from integrations.models import Connection
    from integrations.twinfield.models import TwinfieldConnection
    from portal.rls import staff_scope
    from tests.portal.factories import BrandFactory

    now = timezone.now()
    with staff_scope():
        link = Connection.objects.create(name="Bench Boekhouding", slug="bench-twinfield",
                                         kind=Connection.Kind.TWINFIELD,
                                         brand=BrandFactory(is_default=True, slug="bench-twinfield"),
                                         signing_secrets="whsec_unused")
        return TwinfieldConnection.objects.create(
            connection=link, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            state=TwinfieldConnection.State.CONNECTED, state_changed_at=now, access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], refreshed_at=now,
            access_expires_at=now + datetime.timedelta(seconds=int(tokens["expires_in"])),
            cluster_url=where["cluster_url"], organisation=where["organisation"], office=OFFICE,
            offices=[{"code": OFFICE, "name": "Bench Boekhouding B.V."}])


def stored_events() -> int:
    from portal.models import WebhookRequest
    from portal.rls import staff_scope

    with staff_scope():
        return WebhookRequest.objects.filter(source="twinfield-poll").count()


def poll_all(twinfield) -> tuple[float, float, int, bool, dict]:
    """Poll until a poll completes, as the twinfield.poll job would: a Throttled is waited out as
    the job's retry would. Stops when a poll was cut off without storing anything new (the first
    load cannot progress). Returns (seconds, seconds waited, polls, stalled, the last poll's counts)."""
    from django.utils import timezone

    from integrations.twinfield.client import Throttled
    from integrations.twinfield.models import TwinfieldConnection
    from integrations.twinfield.sync import poll
    from portal.rls import staff_scope

    print("poll: the first load (customers, then the transactions period by period)", flush=True)
    started = time.perf_counter()
    waited, polls = 0.0, 0
    while True:
        polls += 1
        before = stored_events()
        with staff_scope():
            fresh = TwinfieldConnection.objects.get(pk=twinfield.pk)  # as a job reads it
            try:
                counts = poll(fresh)
                return time.perf_counter() - started, waited, polls, False, counts
            except Throttled as throttled:
                wait = max(0.0, (throttled.until - timezone.now()).total_seconds()) + 0.2
                why = str(throttled)
        new = stored_events() - before
        print(f"    poll {polls} throttled ({why}) having stored {new:,} new events", flush=True)
        if not new:
            print("    a whole minute's budget stored nothing new: the first load cannot get further", flush=True)
            return time.perf_counter() - started, waited, polls, True, {}
        print(f"    waiting {wait:.1f} s, as the job's retry would", flush=True)
        time.sleep(wait)
        waited += wait


def report(args, customers: int, filled: dict, twinfield, meter: Meter, figures: dict, fake: dict, bells: list, *,
           budget: str, poll_seconds: float, waited: float, polls: int, stalled: bool, counts: dict,
           apply_seconds: float, applied: int, retried: int) -> int:
    from django.db.models import Count

    from integrations.models import ClientLink
    from integrations.twinfield.models import TwinfieldConnection
    from invoices.models import Invoice, InvoiceLine, Payment
    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        twinfield = TwinfieldConnection.objects.get(pk=twinfield.pk)
        held = Invoice.objects.filter(connection_id=twinfield.connection_id)
        invoices = held.count()
        paid = held.filter(status=Invoice.Status.PAID).count()
        lines = InvoiceLine.objects.filter(invoice__connection_id=twinfield.connection_id).count()
        clients = ClientLink.objects.filter(connection_id=twinfield.connection_id).count()
        payments = Payment.objects.filter(connection_id=twinfield.connection_id).count()
        not_done = dict(Job.objects.filter(kind="accounting.event").exclude(state=Job.State.DONE)
                        .values_list("state").annotate(n=Count("id")))
        others = dict(Job.objects.exclude(kind="accounting.event").values_list("kind").annotate(n=Count("id")))
    stored = stored_events()
    xml = meter.client_seconds - meter.http_seconds - meter.bookkeeping_seconds - meter.waits_in_calls
    storing = poll_seconds - waited - meter.client_seconds
    credits = fake["credits"]
    print()
    print(f"{customers:,} customers, {args.invoices:,} invoices with {args.invoices * args.lines_per_invoice:,} "
          f"lines ({filled['paid']:,} paid) in Twinfield over {filled['periods']} periods; {polls} poll(s)"
          f"{'' if not counts else ', the last one counted ' + ', '.join(f'{k} {v:,}' for k, v in counts.items())}")
    print()
    print("| phase | time | peak RSS after it |")
    print("|---|---|---|")
    print(f"| reading from Twinfield ({meter.http_requests:,} HTTP round trips) | {meter.http_seconds:.1f} s | |")
    print(f"| the client's database bookkeeping per call (token reload, organisation lock, credits) "
          f"| {meter.bookkeeping_seconds:.1f} s | |")
    print(f"| the client's XML (envelopes, parsing) | {xml:.1f} s | |")
    print(f"| storing {stored:,} events and their jobs (and the lookups) | {storing:.1f} s | |")
    print(f"| waiting for the minute's credits (in the client's calls {meter.waits_in_calls:.1f} s, between polls "
          f"{waited:.1f} s) | {meter.waits_in_calls + waited:.1f} s | |")
    print(f"| poll in all | {poll_seconds:.1f} s | {figures['poll_rss'][1]:.0f} MB "
          f"(was {figures['start_rss'][0]:.0f} MB before) |")
    print(f"| applying {applied:,} events to the ledger ({retried} retried attempts) | {apply_seconds:.1f} s | "
          f"{figures['apply_rss'][1]:.0f} MB |")
    print(f"| first load in all | {poll_seconds + apply_seconds:.1f} s | |")
    print()
    print(f"credits: {credits:,} spent, {credits / TWINFIELD_BUDGET:.1f} minutes of Twinfield's budget at "
          f"{TWINFIELD_BUDGET:,}/min; the connection recorded {twinfield.credits_today:,} today; the busiest minute "
          f"took {fake['busiest_minute']:,}")
    print(f"  {budget}")
    print("  asked: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(meter.reads.items())))
    print(f"SOAP requests: {fake['requests']:,} (" + ", ".join(f"{kind} {n:,}" for kind, n in
                                                            sorted(fake["by_action"].items())) +
          f"); answers {fake['statuses']}; at most {fake['max_concurrent']} at once; token calls {fake['token_calls']}")
    print(f"  bells counted, not sent: {len(bells):,}; other jobs written (not run here): "
          f"{', '.join(f'{kind} {n:,}' for kind, n in sorted(others.items())) or 'none'}")
    print(f"memory: the portal's process peaked at {figures['apply_rss'][1]:.0f} MB RSS; "
          f"the fake Twinfield's at {fake['maxrss_kb'] / 1024:.0f} MB")
    expected_lines = args.invoices * args.lines_per_invoice
    print(f"portal holds {invoices:,} invoices with {lines:,} lines, {clients:,} clients, {paid:,} invoices paid "
          f"by {payments:,} payments (Twinfield: {args.invoices:,}, {expected_lines:,}, {customers:,}, "
          f"{filled['paid']:,})")
    problems = []
    if stalled:
        problems.append(f"the first load did not complete: {polls} polls, the last one cut off by the minute's "
                        f"credits having stored nothing new (each poll starts again at the first period)")
    if args.no_apply:
        if stored != customers + args.invoices + filled["paid"]:
            problems.append(f"{stored:,} events stored, not one per customer, invoice and payment")
    elif (invoices, lines, clients, paid, payments) != (args.invoices, expected_lines, customers, filled["paid"],
                                                         filled["paid"]):
        problems.append("the portal does not hold what Twinfield holds")
    elif not_done:
        problems.append(f"events not applied: {not_done}")
    if credits != twinfield.credits_today:
        problems.append("the connection's credits_today disagrees with Twinfield's count (a run across midnight?)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
