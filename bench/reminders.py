"""Benchmark: one reminder scan over 1,000,000 invoices of which 100,000 are overdue, with
the send job ("reminder.send") it writes for each dispatch.

    .venv/bin/python bench/reminders.py [--invoices 1000000] [--overdue 100000]

Uses its own database (portal_bench) on the embedded server (or DATABASE_URL's server),
fills it once with generated data (shows progress), then times one scan and counts its
queries. The scan runs in a transaction that is rolled back, so every run measures the same
work. Target: under 10 seconds on these 2-core machines.
"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DATABASE_NAME", "portal_bench")  # make test runs it tiny, on a database of its own
if os.environ.get("DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + os.environ["DATABASE_NAME"]

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from portal.models import Job  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402

CHUNK = 100_000


def fill(total: int, overdue: int, clients: int = 1000) -> None:
    # Bulk inserts as the table owner (borrowed for the fill only; the scan runs as the application role).
    # The staff scope (signed, portal.rls): the owner is under row-level security too (FORCE).
    with as_owner() as alias, staff_scope():
        _fill(connections[alias], total, overdue, clients)


def _fill(owner, total: int, overdue: int, clients: int) -> None:
    with transaction.atomic(using=owner.alias), owner.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM invoices_invoice")
        have = cursor.fetchone()[0]
        if have >= total:
            print(f"database already holds {have:,} invoices")
            return
        cursor.execute("TRUNCATE invoices_invoice, portal_client, portal_brand, reminders_reminderpolicy CASCADE")
        cursor.execute("INSERT INTO portal_brand (name, slug, primary_colour, accent_colour, legal_footer, "
                       "support_email, bank_account_name, iban, bic, kvk_number, vat_number, address_line, "
                       "postal_code, city, country, is_default, allow_document_links, document_link_days, created_at, logo,"
                       " email_attach_pdf)"
                       " VALUES ('Bench B.V.', 'bench', '#1f4e79', '#f2a900', '', 'b@bench.test', '', '', '', '', '',"
                       " '', '', '', 'NL', true, false, 14, now(), '', true) RETURNING id")
        brand = cursor.fetchone()[0]
        cursor.execute("INSERT INTO portal_client (brand_id, name, kvk_number, vat_number, billing_email, address_line,"
                       " postal_code, city, country, default_currency, locale, time_zone, created_at)"
                       " SELECT %s, 'Client ' || g, '', '', 'c' || g || '@bench.test', '', '', '', 'NL', 'EUR', 'en',"
                       " 'Europe/Amsterdam', now() FROM generate_series(1, %s) g", [brand, clients])
        cursor.execute("INSERT INTO reminders_reminderpolicy (name, brand_id, business_days_only, enabled)"
                       " VALUES ('Bench', %s, false, true) RETURNING id", [brand])
        policy = cursor.fetchone()[0]
        for offset, level in ((-3, "friendly"), (1, "friendly"), (7, "firm"), (14, "final")):
            cursor.execute("INSERT INTO reminders_reminderstep (policy_id, offset_days, channel, level, subject_en,"
                           " body_en, subject_nl, body_nl, late_fee_fixed, late_fee_percent, attach_letter)"
                           " VALUES (%s, %s, 'email', %s, 's', 'b', 's', 'b', 0, 0, false)", [policy, offset, level])
        cursor.execute("SELECT min(id) FROM portal_client")
        first_client = cursor.fetchone()[0]
    for start in range(0, total, CHUNK):
        stop = min(total, start + CHUNK)
        with transaction.atomic(using=owner.alias), owner.cursor() as cursor:
                # Every tenth invoice is overdue (due 1-30 days ago) until `overdue` are; the rest fall due later.
            cursor.execute(f"""
                INSERT INTO invoices_invoice (client_id, brand_id, number, external_id, issue_date, due_date,
                    payment_terms_days, payment_terms_text, currency, purchase_order, notes, subtotal, tax_total,
                    total, amount_paid, amount_credited, open_balance, amount_pending, pending_method, void_reason,
                    status, created_at, updated_at, lines_revision)
                SELECT {first_client} + (g % {clients}), {brand}, 'B-' || g, '',
                       CURRENT_DATE - 60, CASE WHEN g % 10 = 0 AND g / 10 <= {overdue}
                                               THEN CURRENT_DATE - 1 - (g % 30) ELSE CURRENT_DATE + 20 END,
                       30, '', 'EUR', '', '', 100, 21, 121, 0, 0, 121, 0, '', '', 'open', now(), now(), 0
                FROM generate_series({start + 1}, {stop}) g""")
        print(f"  inserted {stop:,}/{total:,} invoices", flush=True)
    with owner.cursor() as cursor:
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--overdue", type=int, default=100_000)
    args = parser.parse_args()
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']})")
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, verbosity=0)
    fill(args.invoices, args.overdue)
    from reminders.services import reminders_scan

    for run in (1, 2):
        connection = connections["default"]
        with transaction.atomic():
            with staff_scope(), CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                created = reminders_scan(now=timezone.now())
                elapsed = time.perf_counter() - started
            with staff_scope():
                send_jobs = Job.objects.filter(kind="reminder.send").count()
            transaction.set_rollback(True)  # every run measures the same work
        print(f"run {run}: scan created {len(created):,} dispatches and {send_jobs:,} send jobs in {elapsed:.2f} s "
              f"with {len(queries.captured_queries)} queries")


if __name__ == "__main__":
    main()
