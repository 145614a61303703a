"""Benchmark: the client's portal pages at a million invoices, beside the bare SQL of each page.

    .venv/bin/python bench/portal.py [--invoices 1000000] [--clients 1000] [--lines 5]
                                     [--audit-events 1000000] [--requests 100] [--exports 20]
                                     [--big-every 100]
                                     [--only TEXT] [--explain] [--fill-only] [--migrate-app APP]

Uses its own database (portal_bench_portal, on the embedded PostgreSQL unless DATABASE_URL is
set) and fills it once, set-based (INSERT ... SELECT FROM generate_series, in chunks of 100,000
invoices, one progress line per chunk and stage), as the table owner: --invoices invoices with
--lines lines each over --clients clients, of which one (the big one) holds one invoice in a
hundred (10,000 of 1,000,000; --big-every 20: one in twenty, 50,000), spread over the table as a
real client's would be; a payment and
its allocation for every paid and partly paid invoice; a credit note for one invoice in a hundred;
--audit-events audit events over the last year. A rerun with the same sizes skips the fill; an
interrupted fill resumes where it stopped; other sizes empty the tables and fill again.

Then, as the application role with row-level security on, for a signed-in contact of the big
client, through Django in this process (the test client: middleware, session, scope, view,
template; so server time, no network): the dashboard, the invoice list under each filter and
sort, a deep page, an invoice's detail and the CSV export of all its invoices, each --requests
times (the export --exports times), p50/p95/p99; beside it, in the same run, the bare SQL of the
same page: the statements that request sent, captured once, run again as the same role in the
same scope, in a transaction that is rolled back (the detail writes an audit event). Last, the
export's memory: the peak of Python allocations (tracemalloc) over an export of 10,000 rows and
of about 1,000. Prints a table for bench/README.md. --only measures the pages whose name holds
TEXT; --explain prints EXPLAIN ANALYZE of the slowest statement of a slow page.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named after the page it measures, as the `portal` package is: the project's root
# comes first on the path, bench/ (for first_load) last.
sys.path[0] = str(ROOT)
sys.path.append(str(ROOT / "bench"))

from first_load import use_bench_database  # noqa: E402

use_bench_database("portal_bench_portal")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from portal.compiled import server_bound_cursor  # noqa: E402
from portal.rls import APPLY_SQL, client_scope, staff_scope  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402

CHUNK = 100_000
BIG_EVERY = 100  # one invoice in a hundred is the big client's (--big-every)
MARK_TABLE = "invoices_invoice"


def _spec(args) -> str:
    spec = f"bench/portal.py invoices={args.invoices} clients={args.clients} lines={args.lines} " \
           f"audit={args.audit_events}"
    return spec + (f" big_every={args.big_every}" if args.big_every != BIG_EVERY else "")


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // max(total, 1)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _progress(stage: str, done: int, total: int, started: float) -> None:
    print(f"  {stage:<14} {_bar(done, total)} {done:>11,}/{total:,}  {time.perf_counter() - started:6.1f} s",
          flush=True)


def fill(args) -> None:
    """The bench data, once; as the owner (bulk inserts), in the staff scope (the owner is under
    row-level security too: FORCE)."""
    with as_owner() as alias, staff_scope():
        owner = connections[alias]
        with owner.cursor() as cursor:
            cursor.execute("SELECT obj_description(%s::regclass, 'pg_class')", [MARK_TABLE])
            mark = cursor.fetchone()[0] or ""
        spec = _spec(args)
        if mark == "filled: " + spec:
            # A migration since the fill may have rewritten a table (a stored column added): its
            # visibility map is then empty and no index-only scan is chosen until it is vacuumed,
            # as autovacuum would in time. A table vacuumed already is skipped through in moments.
            print(f"database already filled ({spec}); vacuum", flush=True)
            vacuum(owner)
            return
        if mark != "filling: " + spec:
            _start(owner, args, spec)
        _fill(owner, args)
        with owner.cursor() as cursor:
            cursor.execute(f"COMMENT ON TABLE {MARK_TABLE} IS %s", ["filled: " + spec])


def _start(owner, args, spec: str) -> None:
    print("emptying the bench tables; brand, clients", flush=True)
    with transaction.atomic(using=owner.alias), owner.cursor() as cursor:
        cursor.execute("TRUNCATE invoices_invoice, invoices_payment, portal_client, portal_brand, portal_auditevent,"
                       " portal_user CASCADE")
        cursor.execute("INSERT INTO portal_brand (name, slug, primary_colour, accent_colour, legal_footer, "
                       "support_email, bank_account_name, iban, bic, kvk_number, vat_number, address_line, "
                       "postal_code, city, country, is_default, allow_document_links, document_link_days, created_at,"
                       " logo, email_attach_pdf)"
                       " VALUES ('Bench B.V.', 'bench', '#1f4e79', '#f2a900', '', 'b@bench.test', 'Bench B.V.',"
                       " 'NL91ABNA0417164300', 'ABNANL2A', '', '', '', '', '', 'NL', true, false, 14, now(), '', true)")
        # Client 1 is the big one.
        cursor.execute("INSERT INTO portal_client (brand_id, name, kvk_number, vat_number, billing_email, address_line,"
                       " postal_code, city, country, default_currency, locale, time_zone, created_at)"
                       " SELECT (SELECT id FROM portal_brand), 'Client ' || g, '', '', 'c' || g || '@bench.test', '',"
                       " '', '', 'NL', 'EUR', 'en', 'Europe/Amsterdam', now() FROM generate_series(1, %s) g ORDER BY g",
                       [args.clients])
        cursor.execute(f"COMMENT ON TABLE {MARK_TABLE} IS %s", ["filling: " + spec])


# The n-th invoice (g): the big client's when g is a multiple of BIG_EVERY, else one of the
# others; its status, amount and dates from a hash of g (so a client's invoices mix).
INVOICES_SQL = """
INSERT INTO invoices_invoice (id, client_id, brand_id, number, external_id, issue_date, due_date, payment_terms_days,
    payment_terms_text, currency, purchase_order, notes, subtotal, tax_total, total, amount_paid, amount_credited,
    open_balance, amount_pending, pending_method, void_reason, status, voided_at, created_at, updated_at)
SELECT g, CASE WHEN g %% {big_every} = 0 THEN {first_client} ELSE {first_client} + 1 + (h2 %% {others}) END, {brand},
       'INV-' || lpad(g::text, 7, '0'), '', issued, issued + 30, 30, '', 'EUR',
       CASE WHEN g %% 3 = 0 THEN 'PO-' || (h2 %% 100000) ELSE '' END, '',
       subtotal, tax, subtotal + tax,
       CASE WHEN s < 60 THEN subtotal + tax WHEN s < 66 THEN round((subtotal + tax) / 2, 2) ELSE 0 END,
       CASE WHEN s = 66 THEN round((subtotal + tax) / 4, 2) ELSE 0 END,
       CASE WHEN s < 60 OR s IN (67, 68) THEN 0 WHEN s < 66 THEN subtotal + tax - round((subtotal + tax) / 2, 2)
            WHEN s = 66 THEN subtotal + tax - round((subtotal + tax) / 4, 2) ELSE subtotal + tax END,
       0, '', CASE WHEN s IN (67, 68) THEN 'voided' ELSE '' END,
       CASE WHEN s < 60 THEN 'paid' WHEN s <= 66 THEN 'partially_paid' WHEN s <= 68 THEN 'void' ELSE 'open' END,
       CASE WHEN s IN (67, 68) THEN issued + time '12:00' END, issued + time '09:00', issued + time '09:00'
FROM (SELECT g, abs(hashint4(g)::bigint) %% 100 AS s, abs(hashint4(g + 7)::bigint) AS h2,
             CURRENT_DATE - (abs(hashint4(g + 3)::bigint) %% 1095)::int AS issued,
             5 * (100 + abs(hashint4(g + 5)::bigint) %% 20000) / 100.0 AS subtotal,
             round(5 * (100 + abs(hashint4(g + 5)::bigint) %% 20000) / 100.0 * 0.21, 2) AS tax
      FROM generate_series({start}, {stop}) g) n
"""
LINES_SQL = """
INSERT INTO invoices_invoiceline (client_id, invoice_id, position, description, quantity, unit, unit_price,
    discount_percent, tax_rate, net_amount, tax_amount, line_total)
SELECT i.client_id, i.id, p, 'Consulting, week ' || p, 1, 'hour', i.subtotal / {lines}, 0, 21, i.subtotal / {lines},
       round(i.subtotal / {lines} * 0.21, 2), i.subtotal / {lines} + round(i.subtotal / {lines} * 0.21, 2)
FROM invoices_invoice i CROSS JOIN generate_series(1, {lines}) p WHERE i.id BETWEEN {start} AND {stop}
"""
# A payment for each paid or partly paid invoice (its id the invoice's), allocated to it.
PAYMENTS_SQL = """
INSERT INTO invoices_payment (id, client_id, brand_id, amount, currency, source, method, reference, received_at,
    external_id, created_at, gateway_payment_id, number)
SELECT id, client_id, brand_id, amount_paid, currency, 'manual', 'bank_transfer', number,
       issue_date + 10 + time '10:00', '', issue_date + 10 + time '10:00', '', ''
FROM invoices_invoice WHERE id BETWEEN {start} AND {stop} AND amount_paid > 0
"""
ALLOCATIONS_SQL = """
INSERT INTO invoices_paymentallocation (client_id, payment_id, invoice_id, kind, amount, created_at)
SELECT client_id, id, id, 'allocation', amount, received_at FROM invoices_payment WHERE id BETWEEN {start} AND {stop}
"""
CREDIT_NOTES_SQL = """
INSERT INTO invoices_creditnote (client_id, brand_id, invoice_id, number, external_id, issue_date, currency, reason,
    subtotal, tax_total, total, amount_applied, amount_to_credit, status, created_at)
SELECT client_id, brand_id, id, 'CN-' || lpad(id::text, 7, '0'), '', issue_date + 5, currency, 'Discount',
       round(amount_credited / 1.21, 2), amount_credited - round(amount_credited / 1.21, 2), amount_credited,
       amount_credited, 0, 'applied', issue_date + 5 + time '09:00'
FROM invoices_invoice WHERE id BETWEEN {start} AND {stop} AND amount_credited > 0
"""
AUDIT_SQL = """
INSERT INTO portal_auditevent (client_id, actor_id, actor_email, action, object_type, object_id, object_repr,
    ip_address, user_agent, details, created_at)
SELECT {first_client} + abs(hashint4(g)::bigint) %% {clients}, NULL, 'contact@bench.test',
       (ARRAY['record.viewed', 'record.downloaded', 'auth.login', 'invoice.created', 'payment.recorded'])[1 + g %% 5],
       'invoices.invoice', (1 + abs(hashint4(g + 1)::bigint) %% {invoices})::text, '', '192.0.2.1', 'bench', '{{}}',
       now() - (g %% 525600) * interval '1 minute' - (g %% 60) * interval '1 second'
FROM generate_series({start}, {stop}) g
"""


def _fill(owner, args) -> None:
    started = time.perf_counter()
    with owner.cursor() as cursor:
        cursor.execute("SELECT min(id), count(*) FROM portal_client")
        first_client, clients = cursor.fetchone()
        cursor.execute("SELECT id FROM portal_brand")
        brand = cursor.fetchone()[0]
        cursor.execute("SELECT coalesce(max(id), 0) FROM invoices_invoice")
        have = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM portal_auditevent")
        audit_have = cursor.fetchone()[0]
    if have:
        print(f"resuming: {have:,} invoices there", flush=True)
    params = dict(first_client=first_client, clients=clients, others=clients - 1, brand=brand,
                  big_every=args.big_every, lines=args.lines, invoices=args.invoices)
    # The lines' trigger counts each invoice's lines revision up (a PDF's fingerprint): these
    # invoices are new, their revision 0 stays right; switched off for the fill alone.
    with owner.cursor() as cursor:
        cursor.execute("ALTER TABLE invoices_invoiceline DISABLE TRIGGER invoices_invoiceline_inserted")
    try:
        for start in range(have + 1, args.invoices + 1, CHUNK):
            stop = min(args.invoices, start + CHUNK - 1)
            with transaction.atomic(using=owner.alias), owner.cursor() as cursor:
                for sql in (INVOICES_SQL, LINES_SQL, PAYMENTS_SQL, ALLOCATIONS_SQL, CREDIT_NOTES_SQL):
                    cursor.execute(sql.format(start=start, stop=stop, **params).replace("%%", "%"))
            _progress("invoices", stop, args.invoices, started)
    finally:
        with owner.cursor() as cursor:
            cursor.execute("ALTER TABLE invoices_invoiceline ENABLE TRIGGER invoices_invoiceline_inserted")
    for start in range(audit_have + 1, args.audit_events + 1, CHUNK * 5):
        stop = min(args.audit_events, start + CHUNK * 5 - 1)
        with transaction.atomic(using=owner.alias), owner.cursor() as cursor:
            cursor.execute(AUDIT_SQL.format(start=start, stop=stop, **params).replace("%%", "%"))
        _progress("audit events", stop, args.audit_events, started)
    with owner.cursor() as cursor:
        for table in ("invoices_invoice", "invoices_payment", "invoices_creditnote"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    print(f"  vacuum and analyze ({time.perf_counter() - started:.0f} s so far)", flush=True)
    vacuum(owner)
    print(f"filled in {time.perf_counter() - started:.0f} s", flush=True)


def vacuum(owner) -> None:
    """VACUUM (visibility map: index-only scans) and ANALYZE, as the owner and outside any
    transaction (straight through psycopg: the scope wrapper would open one)."""
    owner.ensure_connection()
    raw = owner.connection
    raw.autocommit = True
    for table in ("invoices_invoice", "invoices_invoiceline", "invoices_payment", "invoices_paymentallocation",
                  "invoices_creditnote", "portal_auditevent", "portal_client"):
        raw.execute(f"VACUUM (ANALYZE) {table}")


CONTACT = "contact@big.bench.test"


def big_client_contact():
    """The big client (the first) and a signed-in contact of it (made once)."""
    from portal.models import Client, User
    from tests.portal.factories import MembershipFactory

    with staff_scope():
        client = Client.objects.order_by("id").first()
        user = User.objects.filter(email=CONTACT).first()
        if user is None:
            user = MembershipFactory(client=client, user__email=CONTACT, user__language="en").user
    browser = HttpClient()
    browser.force_login(user)
    assert browser.get("/").status_code == 200  # the session remembers the company
    return client, user, browser


def pages(client) -> list[tuple[str, str]]:
    """(what, URL) of each page measured: the list under each filter and sort, and the rest."""
    from invoices.filters import SORT_CHOICES
    from invoices.models import Invoice

    with client_scope(client.pk):
        invoices = Invoice.objects.filter(client=client)
        newest = invoices.order_by("-issue_date", "-id").values_list("issue_date", flat=True).first()
        paid = invoices.filter(status="paid").order_by("id").first()
        count = invoices.count()
        middle = invoices.order_by("id").values_list("number", flat=True)[count // 2]
    month_ago, two_months_ago = newest - datetime.timedelta(days=30), newest - datetime.timedelta(days=60)
    listed = reverse("invoices:list")
    result = [("dashboard", "/"), ("list (newest first)", listed)]
    for status in ("open", "overdue", "partially_paid", "partly_credited", "paid", "void"):
        result.append((f"list status={status}", f"{listed}?status={status}"))
    result += [
        ("list issued in one month", f"{listed}?issued_from={month_ago}&issued_to={newest}"),
        ("list due in one month", f"{listed}?due_from={two_months_ago}&due_to={month_ago}"),
        ("list amount 500-1000", f"{listed}?amount_min=500&amount_max=1000"),
        ("list search, whole number", f"{listed}?q={middle}"),
        ("list search, number prefix", f"{listed}?q={middle[:6]}"),
        ("list search, no match", f"{listed}?q=NO-SUCH"),
    ]
    for sort in sorted(SORT_CHOICES, key=lambda key: (key.lstrip("-"), key)):
        result.append((f"list sort={sort}", f"{listed}?sort={sort}"))
    last_page = max(1, (count + 19) // 20)
    result += [(f"list page {last_page} (last)", f"{listed}?page={last_page}"),
               ("list status=open, sort=-total, page 2", f"{listed}?status=open&sort=-total&page=2"),
               ("detail (paid, 5 lines)", reverse("invoices:detail", args=[paid.pk])),
               (f"CSV export ({count:,} rows)", reverse("invoices:export_csv"))]
    return result


def _get(browser, url: str) -> tuple[int, int]:
    """One request, its body read to the end as a server sends it (a streamed body chunk by
    chunk, kept by no one): (status, bytes)."""
    response = browser.get(url)
    if response.streaming:
        size = sum(len(chunk) for chunk in response.streaming_content)
        response.close()
    else:
        size = len(response.content)
    return response.status_code, size


def percentile(timings: list[float], q: float) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))] * 1000


def page_times(browser, url: str, count: int) -> tuple[list[float], list[float], list[str]]:
    """Server time of each request (wall clock) and this process's CPU time in it (Django's
    own work: what other load on a shared machine inflates least), and the statements it sent."""
    for _ in range(3):  # warm: templates, translations, this process's caches
        status, _size = _get(browser, url)
        assert status == 200, (url, status)
    with CaptureQueriesContext(connection) as captured:
        _get(browser, url)
    statements = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if sql.startswith(APPLY_SQL.split("%s")[0]) or sql in ("BEGIN", "COMMIT"):
            continue  # the replay applies the scope and opens its transaction itself
        if sql.startswith("DECLARE ") and " CURSOR FOR " in sql:
            sql = sql.split(" CURSOR FOR ", 1)[1]  # a server-side cursor's query, read whole
        # A statement bound on the server (portal.compiled) is logged with its values beside it.
        statements.append((sql, query.get("params")))
    timings, cpu = [], []
    for _ in range(count):
        started, started_cpu = time.perf_counter(), time.process_time()
        _get(browser, url)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return timings, cpu, statements


def bare_times(statements: list[tuple[str, list | None]], client_id: int, user_id: int, count: int) -> tuple[list[float], float, tuple]:
    """The page's statements again, straight through a cursor, as the application role in the
    client's scope, in one transaction rolled back: (timings, the slowest statement's median
    ms, its text)."""
    timings, each = [], [[] for _ in statements]
    for _ in range(count):
        with client_scope(client_id, user_id=user_id):
            started = time.perf_counter()
            with transaction.atomic(), connection.cursor() as cursor, server_bound_cursor(connection) as bound:
                for n, (sql, params) in enumerate(statements):
                    statement_started = time.perf_counter()
                    # As the page sent it: spelled out, or bound on the server (and so prepared).
                    used = cursor if params is None else bound
                    used.execute(sql, params)
                    if used.description:
                        used.fetchall()
                    each[n].append(time.perf_counter() - statement_started)
                transaction.set_rollback(True)
            timings.append(time.perf_counter() - started)
    medians = [statistics.median(t) for t in each] or [0.0]
    slowest = max(range(len(medians)), key=medians.__getitem__) if statements else 0
    return timings, medians[slowest] * 1000, statements[slowest] if statements else ("", None)


def explain(statement: tuple[str, list | None], client_id: int, user_id: int) -> str:
    sql, params = statement
    with client_scope(client_id, user_id=user_id), transaction.atomic(), (
            connection.cursor() if params is None else server_bound_cursor(connection)) as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def export_memory(browser, url: str) -> tuple[float, int]:
    """Peak Python allocations (MiB) over one export read to the end, and its size in bytes."""
    _get(browser, url)
    tracemalloc.start()
    _status, size = _get(browser, url)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, size


def measure(args) -> None:
    client, user, browser = big_client_contact()
    load_before = os.getloadavg()
    print(f"measuring as {connection.settings_dict['USER']} for client {client.pk} "
          f"(load average {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f})", flush=True)
    rows = []
    for what, url in pages(client):
        if args.only and args.only not in what:
            continue
        count = args.exports if what.startswith("CSV") else args.requests
        timings, cpu, statements = page_times(browser, url, count)
        bare, slowest_ms, slowest = bare_times(statements, client.pk, user.pk, count)
        p95, bare95 = percentile(timings, 95), percentile(bare, 95)
        met = "yes" if p95 < 25 and p95 <= 3 * bare95 else "no"
        rows.append((what, count, len(statements), timings, cpu, bare, slowest_ms, met))
        print(f"  {what}: {len(statements)} statements, p50 {percentile(timings, 50):.1f} ms, p95 {p95:.1f} ms, "
              f"p99 {percentile(timings, 99):.1f} ms; bare SQL p95 {bare95:.1f} ms "
              f"(slowest statement {slowest_ms:.1f} ms)", flush=True)
        if args.explain and (p95 >= 25 or slowest_ms > 5):
            print(f"    {url}\n    slowest: {slowest[0]}\n" + explain(slowest, client.pk, user.pk), flush=True)
    listed = reverse("invoices:export_csv")
    with client_scope(client.pk):
        from invoices.models import Invoice

        dates = list(Invoice.objects.filter(client=client).order_by("-issue_date").values_list("issue_date", flat=True)
                     [:1000])
    memory_small = export_memory(browser, f"{listed}?issued_from={dates[-1]}")
    memory_all = export_memory(browser, listed)
    load_after = os.getloadavg()
    print(f"\nCSV export, peak Python allocations while it is read: {memory_small[0]:.2f} MiB for "
          f"{memory_small[1]:,} bytes (about 1,000 rows), {memory_all[0]:.2f} MiB for {memory_all[1]:,} bytes "
          f"(all rows)")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)\n")
    print("| page | requests | statements | p50 ms | p95 ms | p99 ms | Django CPU p50 ms "
          "| bare SQL p50 / p95 / p99 ms | slowest statement ms | p95 / bare p95 | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for what, count, statements, timings, cpu, bare, slowest_ms, met in rows:
        print(f"| {what} | {count} | {statements} | {percentile(timings, 50):.1f} | {percentile(timings, 95):.1f} "
              f"| {percentile(timings, 99):.1f} | {percentile(cpu, 50):.1f} | {percentile(bare, 50):.1f} / "
              f"{percentile(bare, 95):.1f} / {percentile(bare, 99):.1f} | {slowest_ms:.1f} "
              f"| {percentile(timings, 95) / percentile(bare, 95):.1f}x | {met} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--big-every", type=int, default=BIG_EVERY,
                        help="the big client holds one invoice in this many (100: 10,000 of a million; 20: 50,000)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--exports", type=int, default=20)
    parser.add_argument("--fill-only", action="store_true")
    parser.add_argument("--migrate-app", help="migrate this app (and what it needs) only, not every app")
    parser.add_argument("--only", help="measure only the pages whose name holds this text")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest statement of a slow page")
    args = parser.parse_args()
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']}): bootstrap, migrate", flush=True)
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", *([args.migrate_app] if args.migrate_app else []), database=owner, interactive=False,
                     verbosity=0)
    fill(args)
    if args.fill_only:
        return
    measure(args)


if __name__ == "__main__":
    main()
