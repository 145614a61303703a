"""Every benchmark under bench/ runs here at a tiny size, so none can rot when the schema
changes (the real figures are run by hand; bench/README.md). bench/faults.py has its own
test in tests/faults/test_bench.py."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_reminder_scan_benchmark_runs_at_a_tiny_size():
    env = {**os.environ, "DATABASE_NAME": "portal_bench_tiny"}
    result = subprocess.run([sys.executable, "bench/reminders.py", "--invoices", "300", "--overdue", "30"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run 2: scan created 30 dispatches and 30 send jobs" in result.stdout, result.stdout


def test_the_connections_benchmark_runs_at_a_tiny_size():
    # make run's shape and docker compose's, each with web, worker and beat on a database of its own.
    env = {**os.environ, "DATABASE_NAME": "portal_bench_connections_tiny"}
    result = subprocess.run([sys.executable, "bench/connections.py", "--sequential", "20", "--concurrent", "10"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for shape in ("make-run", "compose"):
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {shape} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1].startswith("20, 0,") and cells[2].startswith("10, 0,"), row  # loads, errors
        assert cells[3] == "0" and cells[5] == "portal_app", row  # no slot failures; the app role only


def test_the_live_poll_benchmark_runs_at_a_tiny_size():
    env = {**os.environ, "DATABASE_NAME": "portal_bench_live_tiny"}
    result = subprocess.run([sys.executable, "bench/live.py", "--clients", "3", "--concurrent", "2", "--seconds", "1",
                             "--sequential", "10"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "10 idle polls one after the other" in result.stdout and " 0 errors" in result.stdout, result.stdout


def test_the_exact_sync_benchmark_runs_at_a_tiny_size():
    # 30 invoices of 3 lines in pages of 40 rows: several pages per entity, every entity read once.
    env = {**os.environ, "DATABASE_NAME": "portal_bench_exact_tiny"}
    result = subprocess.run([sys.executable, "bench/exact_sync.py", "--invoices", "30", "--lines-per-invoice", "3",
                             "--customers", "5", "--sync-page-size", "40"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "portal holds 30 invoices with 90 lines and 5 clients (Exact: 30, 90, 5)" in result.stdout, result.stdout
    # 1 page of customers, 3 of invoice rows, the VAT codes, 3 of transaction lines, 1 of deletions.
    assert "API calls: 9 of the 5,000-a-day budget" in result.stdout, result.stdout
    assert "day_remaining 4991 of 5000" in result.stdout, result.stdout
    assert "page 4 (sync/SalesInvoice/SalesInvoices): 40 rows" in result.stdout, result.stdout


def test_the_twinfield_sync_benchmark_runs_at_a_tiny_size():
    # 20 invoices of 3 lines from 5 customers, every fourth paid, over the 25 periods the first load browses.
    env = {**os.environ, "DATABASE_NAME": "portal_bench_twinfield_tiny"}
    result = subprocess.run([sys.executable, "bench/twinfield_sync.py", "--invoices", "20", "--lines-per-invoice", "3",
                             "--customers", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("portal holds 20 invoices with 60 lines, 5 clients, 5 invoices paid by 5 payments "
            "(Twinfield: 20, 60, 5, 5)") in result.stdout, result.stdout
    # 1 Finder page and 5 reads of customers, 25 browses, 20 transactions, 2 VAT codes: 1 credit each.
    assert "credits: 53 spent, 0.1 minutes of Twinfield's budget" in result.stdout, result.stdout
    assert "the connection recorded 53 today" in result.stdout, result.stdout
    assert "PATCHED IN THIS PROCESS ONLY" in result.stdout, result.stdout
