"""Every benchmark under bench/ runs here at a tiny size, so none can rot when the schema
changes (the real figures are run by hand; bench/README.md). bench/faults.py has its own
test in tests/faults/test_bench.py."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bench_env(django_db_setup):
    """The environment a benchmark runs in here: a database of its own named after the test
    database (two test runs on one server keep apart), made, when it does not exist yet, as a
    copy of the session's migrated template (tests/support/template.py) instead of migrating from
    nothing; the Redis databases of this test process (not those of another run beside it)."""
    from django.conf import settings

    from tests.support import template

    inherited = {key: value for key, value in os.environ.items() if key != "PYTEST_XDIST_WORKER"}
    redis_db = re.search(r"(\d+)$", settings.CACHES["default"]["LOCATION"]).group(1)  # the cache's; the broker's is next

    def env(name: str) -> dict:
        return {**inherited, "DATABASE_NAME": f"{template.base_name()}_bench_{name}",
                "DATABASE_TEMPLATE": template.current() or "", "BENCH_REDIS_DB": redis_db}

    return env


def test_the_reminder_scan_benchmark_runs_at_a_tiny_size(bench_env):
    env = bench_env("reminders")
    result = subprocess.run([sys.executable, "bench/reminders.py", "--invoices", "300", "--overdue", "30"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run 2: scan created 30 dispatches and 30 send jobs" in result.stdout, result.stdout


def test_the_burst_benchmark_runs_at_a_tiny_size(bench_env):
    env = bench_env("burst")
    result = subprocess.run([sys.executable, "bench/burst.py", "--invoices", "6", "--unread", "150",
                             "--history", "1500"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| an email each") or line.startswith("| held")}
    # way, invoices, email jobs, emails, PDFs, time, jobs not done
    assert rows["an email each"][1:5] == ["6", "6", "6", "6"], rows
    assert rows["held and sent together"][1:5] == ["6", "6", "4", "3"], rows  # three on their own, then one
    assert rows["an email each"][6] == rows["held and sent together"][6] == "0"
    assert "the page header of a contact with 150 unread: it says 99+;" in result.stdout
    # 1,500 invoices over 700 days: ten days hold 20 or so, and a month is under the bound (read, not refused).
    assert re.search(r"a statement of a client with 1,500 invoices: ten days \(\d+ movements\) read in \d+ ms; "
                     r"a month read in \d+ ms", result.stdout), result.stdout[-2000:]


def test_the_job_claim_benchmark_runs_at_a_tiny_size(bench_env):
    env = bench_env("jobs")
    result = subprocess.run([sys.executable, "bench/jobs.py", "--backlog", "2000", "--claims", "20", "--subjects", "500"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| 2,000 waiting | 20 claims |"))
    assert "any kind" in row and "Execution Time" in row, row


def test_the_connections_benchmark_runs_at_a_tiny_size(bench_env):
    # make run's shape and docker compose's, each with web, worker and beat on a database of its own.
    env = bench_env("connections")
    result = subprocess.run([sys.executable, "bench/connections.py", "--sequential", "20", "--concurrent", "10"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for shape in ("make-run", "compose"):
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {shape} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1].startswith("20, 0,") and cells[2].startswith("10, 0,"), row  # loads, errors
        assert cells[3] == "0" and cells[5] == "portal_app", row  # no slot failures; the app role only


def test_the_live_poll_benchmark_runs_at_a_tiny_size(bench_env):
    env = bench_env("live")
    result = subprocess.run([sys.executable, "bench/live.py", "--clients", "3", "--concurrent", "2", "--seconds", "1",
                             "--sequential", "10"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "10 idle polls one after the other" in result.stdout and " 0 errors" in result.stdout, result.stdout


def test_the_concurrent_clients_benchmark_runs_at_a_tiny_size(bench_env):
    # Locust's 5 clients for 5 s against gunicorn with the production settings: every request
    # answered as the page should, no PDF rendered on the way (the cached path is what it measures).
    env = bench_env("clients")
    result = subprocess.run([sys.executable, "bench/clients.py", "--users", "5", "--spawn-rate", "5", "--seconds", "5",
                             "--shapes", "1x2", "--invoices", "2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| 1x2 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert int(cells[1].replace(",", "")) > 0 and cells[2] == "0", row  # requests, failed
    assert "PDFs rendered during the run: 0" in result.stdout, result.stdout


def test_the_exact_sync_benchmark_runs_at_a_tiny_size(bench_env):
    # 30 invoices of 3 lines in pages of 40 rows: several pages per entity, every entity read once.
    env = bench_env("exact")
    result = subprocess.run([sys.executable, "bench/exact_sync.py", "--invoices", "30", "--lines-per-invoice", "3",
                             "--customers", "5", "--sync-page-size", "40"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "portal holds 30 invoices with 90 lines and 5 clients (Exact: 30, 90, 5)" in result.stdout, result.stdout
    # 1 page of customers, 3 of invoice rows, the VAT codes, 3 of transaction lines, 1 of deletions.
    assert "API calls: 9 of the 5,000-a-day budget" in result.stdout, result.stdout
    assert "day_remaining 4991 of 5000" in result.stdout, result.stdout
    assert "page 4 (sync/SalesInvoice/SalesInvoices): 40 rows" in result.stdout, result.stdout


def test_the_twinfield_sync_benchmark_runs_at_a_tiny_size(bench_env):
    # 20 invoices of 3 lines from 5 customers, every fourth paid, over the 25 periods the first load browses.
    env = bench_env("twinfield")
    result = subprocess.run([sys.executable, "bench/twinfield_sync.py", "--invoices", "20", "--lines-per-invoice", "3",
                             "--customers", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("portal holds 20 invoices with 60 lines, 5 clients, 5 invoices paid by 5 payments "
            "(Twinfield: 20, 60, 5, 5)") in result.stdout, result.stdout
    # 1 Finder page and 5 reads of customers, 25 browses, 20 transactions, 2 VAT codes: 1 credit each.
    assert "credits: 53 spent, 0.1 minutes of Twinfield's budget" in result.stdout, result.stdout
    assert "the connection recorded 53 today" in result.stdout, result.stdout
    assert "PATCHED IN THIS PROCESS ONLY" in result.stdout, result.stdout


def test_the_pdf_benchmark_runs_at_a_tiny_size(bench_env):
    # A cached download through the view, warm renders of 1 and 3 pages, memory, and Chromium warm and cold.
    env = bench_env("pdf")
    result = subprocess.run([sys.executable, "bench/pdf.py", "--downloads", "5", "--renders", "1", "--pages", "2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1. cached downloads through the view, 5 one after the other" in result.stdout, result.stdout
    assert "of which the PDF's part (fingerprint, lookup, decrypt)" in result.stdout, result.stdout
    assert re.search(r"   3 pages: median \d+ ms, p95 \d+ ms \(CPU median \d+ ms\)", result.stdout), result.stdout
    assert "chromium, 1 page, launched for it: median" in result.stdout, result.stdout
    row = result.stdout.strip().splitlines()[-1]
    assert row.startswith("| ") and row.count("|") == 8, row


def test_the_webhook_intake_benchmark_runs_at_a_tiny_size(bench_env):
    # One gunicorn shape, the bare view and the intake, a few dozen requests each, one profiled.
    env = bench_env("webhooks")
    result = subprocess.run([sys.executable, "bench/webhooks.py", "--shapes", "1x2", "--connections", "2",
                             "--requests", "30", "--warmup", "5", "--seconds", "10", "--profile", "2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "  bare view: 30 in " in result.stdout and "  intake: 30 in " in result.stdout, result.stdout
    # The scope, and the stored request with its job checking the connection the process remembers.
    assert "one accepted webhook, in this process: 4 SQL statements (2 besides BEGIN and COMMIT)" in result.stdout, \
        result.stdout
    assert re.search(r"intake: .*CPU a request: gunicorn [0-9.]+ ms, PostgreSQL [0-9.]+ ms, load generator", result.stdout)
    row = result.stdout.strip().splitlines()[-1]
    assert row.startswith("| 1x2 | 2 | ") and row.count(", 0 | ") == 2 and row.count("|") == 8, row


def test_the_portal_pages_benchmark_runs_at_a_tiny_size(bench_env):
    # 2,000 invoices over 10 clients, the big one holding one in twenty (100: --big-every, the share
    # of the 50,000-invoice run); every page a few times beside its bare SQL.
    env = bench_env("portal")
    result = subprocess.run([sys.executable, "bench/portal.py", "--invoices", "2000", "--clients", "10",
                             "--audit-events", "2000", "--requests", "3", "--exports", "2", "--big-every", "20"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Filled with a progress bar per stage, or found filled at these sizes by a run before.
    assert re.search(r"invoices +\[#{30}\] +2,000/2,000|already filled \(bench/portal.py invoices=2000 clients=10 ",
                     result.stdout), result.stdout
    assert "measuring as portal_app for client" in result.stdout, result.stdout  # the application role
    assert "CSV export, peak Python allocations while it is read" in result.stdout, result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]  # after the header
    assert names[:2] == ["dashboard", "list (newest first)"] and "CSV export (100 rows)" in names, names
    assert sum(name.startswith("list sort=") for name in names) == 12, names
    assert all(row.count("|") == 12 for row in rows), rows


def test_the_einvoice_rules_benchmark_runs_at_a_tiny_size(bench_env):
    # The portal's own UBL and CII of a 2-line and a 5-line invoice, each checked by every official rule.
    env = bench_env("einvoice")
    result = subprocess.run([sys.executable, "bench/einvoice.py", "--runs", "3", "--lines", "5"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for document in ("UBL 1-page", "CII 1-page", "UBL 5-line", "CII 5-line"):
        assert f"{document}: " in result.stdout and f"{document} (" in result.stdout, result.stdout
    assert "| 3 |" in result.stdout.splitlines()[-1], result.stdout
