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
