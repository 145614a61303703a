"""Benchmark: a burst of new invoices for one contact (the first of the month, or an accounting
system sending a year at once), and what telling them by email costs: with every invoice an
email of its own (NOTIFICATION_DIGEST_AFTER=0, as before 2026-11-29) and with the burst held and
sent as one email (the default).

    .venv/bin/python bench/burst.py [--invoices 200]

Uses its own database (portal_bench_burst) on the embedded server (or DATABASE_URL's server),
with the test settings, as the first-load benchmarks (bench/first_load.py).
For each way, from empty tables: one brand that attaches PDFs to its emails, one client, one
contact; the invoices made one after the other as the accounting intake makes them (each in
its transaction, with its notification and its email job); then the held emails' wait is over
(their jobs made due, as time passing would) and the email jobs are run in this process as a
worker runs them (portal.jobs.jobs_drain), with the emails kept in memory. Reported per way:
the emails the contact got, the PDFs rendered for them, and the email jobs' wall and CPU time.
Then what a storm leaves on every page: the header's count of a contact's unread notifications
(`--unread`), read as a page reads it, beside counting them all; and the notifications page's
read of the newest 50. Last, a client with a long history (`--history` invoices over 700 days):
a statement of ten days, and of a month, which holds more movements than a statement may.
"""
import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.first_load import prepare_database, use_bench_database  # noqa: E402

use_bench_database("portal_bench_burst")  # the test settings: emails kept in django.core.mail.outbox
os.environ.pop("TEST_EMAIL_DIR", None)  # (which would send them to files)
prepare_database()  # the job bells recorded, not rung: this process runs the jobs

from django.conf import settings  # noqa: E402
from django.core import mail  # noqa: E402
from django.db import connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from invoices.documents.statement import StatementTooLong, statement_data  # noqa: E402
from portal.jobs import jobs_drain  # noqa: E402
from portal.models import Job, Notification  # noqa: E402
from portal.notifications import EMAIL_JOB  # noqa: E402
from portal.rls import client_scope, staff_scope  # noqa: E402
from portal.selectors import UNREAD_COUNTED, memberships_for, notifications_for  # noqa: E402
from tests.invoices.factories import line, make_invoice  # noqa: E402
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402


def _cpu() -> float:
    usage = os.times()
    return usage.user + usage.system


def empty() -> None:
    """From empty tables: brands, contacts and jobs, with all that hangs from them (as the owner:
    the application role may not truncate)."""
    with as_owner() as owner, connections[owner].cursor() as cursor:
        cursor.execute("TRUNCATE portal_job, portal_brand, portal_user CASCADE")


def run(way: str, invoices: int, digest_after: int) -> dict:
    empty()
    settings.NOTIFICATION_DIGEST_AFTER = digest_after
    mail.outbox = []
    with staff_scope():
        brand = BrandFactory(name="Burst B.V.", email_attach_pdf=True, allow_document_links=False)
        client = ClientFactory(brand=brand, name="Many Invoices B.V.")
        MembershipFactory(client=client, user__email="contact@many.test", user__language="en")
    started = time.perf_counter()
    for number in range(1, invoices + 1):
        make_invoice(client, number=f"BURST-{number:06d}", lines=[line(unit_price="100.00")])
        if number % max(1, invoices // 10) == 0 or number == invoices:
            print(f"  {way}: {number:,}/{invoices:,} invoices made", flush=True)
    made = time.perf_counter() - started
    with staff_scope():  # the held emails' wait is over
        Job.objects.filter(kind=EMAIL_JOB).update(run_after=timezone.now())
        jobs_count = Job.objects.filter(kind=EMAIL_JOB).count()
    started, cpu = time.perf_counter(), _cpu()
    ran = 0
    while True:
        done = jobs_drain(kind=EMAIL_JOB, seconds=5)
        ran += done
        print(f"  {way}: {ran:,}/{jobs_count:,} email jobs run", flush=True)
        if not done:
            break
    wall, cpu = time.perf_counter() - started, _cpu() - cpu
    emails = [message for message in mail.outbox if message.to == ["contact@many.test"]]
    with staff_scope():
        left = Job.objects.filter(kind=EMAIL_JOB).exclude(state=Job.State.DONE).count()
    return {"way": way, "invoices": invoices, "made": made, "jobs": jobs_count, "emails": len(emails),
            "pdfs": sum(len(message.attachments) for message in emails), "wall": wall, "cpu": cpu, "left": left}


def header(unread: int, samples: int = 50) -> dict:
    """After a storm a contact has many unread notifications, and every page's header counts them
    (portal.selectors.memberships_for, in the client's scope as a page reads it): its p50, beside
    the same count without its bound, in the same run."""
    empty()
    with staff_scope():
        client = ClientFactory(brand=BrandFactory(name="Unread B.V."), name="Unread Many B.V.")
        user = MembershipFactory(client=client, user__email="unread@many.test").user
    with as_owner() as owner, staff_scope(), connections[owner].cursor() as cursor:
        cursor.execute("""
            INSERT INTO portal_notification (client_id, user_id, kind, title, message, message_args, url, pay_url,
                                             attachment, email_status, email_attempts, email_error, created_at)
            SELECT %s, %s, 'invoice_issued', 'New invoice ' || g, '', '{}', '/', '', '', 'sent', 1, '', now()
            FROM generate_series(1, %s) g""", [client.pk, user.pk, unread])
        cursor.execute("ANALYZE portal_notification")
    print(f"  {unread:,} unread notifications for one contact", flush=True)

    def p50(read) -> float:
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            read()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    with client_scope(client.pk, user_id=user.pk):
        [membership] = memberships_for(user=user)
        bounded = p50(lambda: memberships_for(user=user))
        whole = p50(lambda: Notification.objects.filter(user=user, client=client, read_at__isnull=True).count())
        listed = p50(lambda: notifications_for(user=user, client=client))
    return {"unread": unread, "shown": membership.unread, "bounded": bounded, "whole": whole, "listed": listed}


def statement(invoices: int) -> dict:
    """A client with `invoices` over the last 700 days (about 71 a day): the statement of ten
    days (its data: the opening balance summed by the database, the period's movements read),
    and of a month, which holds more than a statement may (refused before anything is read)."""
    empty()
    with staff_scope():
        brand = BrandFactory(name="History B.V.")
        client = ClientFactory(brand=brand, name="Long History B.V.")
    with as_owner() as owner, staff_scope(), connections[owner].cursor() as cursor:
        cursor.execute("""
            INSERT INTO invoices_invoice (client_id, brand_id, number, external_id, issue_date, due_date,
                payment_terms_days, payment_terms_text, currency, purchase_order, notes, subtotal, tax_total,
                total, amount_paid, amount_credited, open_balance, amount_pending, pending_method, void_reason,
                status, created_at, updated_at, lines_revision)
            SELECT %(client)s, %(brand)s, 'H-' || g, '', %(last)s - (g %% 700), %(last)s - (g %% 700) + 30, 30, '',
                   'EUR', '', '', 100, 21, 121, 121, 0, 0, 0, '', '', 'paid', now(), now(), 0
            FROM generate_series(1, %(n)s) g""", {"client": client.pk, "brand": brand.pk, "n": invoices,
                                                    "last": datetime.date(2026, 11, 1)})
        cursor.execute("ANALYZE invoices_invoice")
    print(f"  {invoices:,} invoices for one client", flush=True)
    with client_scope(client.pk):
        started = time.perf_counter()
        data = statement_data(client=client, start=datetime.date(2026, 10, 1), end=datetime.date(2026, 10, 10))
        ten_days = time.perf_counter() - started
        started = time.perf_counter()
        try:
            statement_data(client=client, start=datetime.date(2026, 10, 1), end=datetime.date(2026, 10, 31))
            refused = None
        except StatementTooLong as too_long:
            refused = too_long.entries
        month = time.perf_counter() - started
    return {"invoices": invoices, "entries": len(data.entries), "ten_days": ten_days, "refused": refused,
            "month": month}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=200, help="invoices in the burst (200)")
    parser.add_argument("--unread", type=int, default=50_000, help="unread notifications for the header (50,000)")
    parser.add_argument("--history", type=int, default=50_000, help="invoices of the client of the statement (50,000)")
    args = parser.parse_args()
    results = [run("an email each", args.invoices, 0), run("held and sent together", args.invoices, 3)]
    counted = header(args.unread)
    statements = statement(args.history)
    empty()
    print("\n| way | invoices | email jobs | emails to the contact | PDFs rendered and attached "
          "| email jobs' time: wall / CPU | jobs not done |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['way']} | {r['invoices']:,} | {r['jobs']:,} | {r['emails']:,} | {r['pdfs']:,} "
              f"| {r['wall']:.1f} s / {r['cpu']:.1f} s | {r['left']} |")
    print(f"\nthe page header of a contact with {counted['unread']:,} unread: it says "
          f"{min(counted['shown'], UNREAD_COUNTED - 1)}{'+' if counted['shown'] >= UNREAD_COUNTED else ''}; "
          f"memberships and count (to {UNREAD_COUNTED}) "
          f"p50 {counted['bounded']:.2f} ms; counting them all p50 {counted['whole']:.2f} ms\n"
          f"the notifications page's read of the newest 50 of them: p50 {counted['listed']:.2f} ms\n"
          f"a statement of a client with {statements['invoices']:,} invoices: ten days ({statements['entries']:,} "
          f"movements) read in {statements['ten_days'] * 1000:.0f} ms; a month "
          + (f"read in {statements['month'] * 1000:.0f} ms" if statements["refused"] is None else
             f"refused ({statements['refused']:,} movements) in {statements['month'] * 1000:.0f} ms"))
    return 0 if all(r["left"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
