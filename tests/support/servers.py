"""A real gunicorn serving the portal for a test, started and stopped in one place."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def gunicorn(*, port: int, env: dict, threads: int):
    """One gunicorn worker with `threads` threads on 127.0.0.1:`port`; yields its URL once the
    login page answers (90 s at most: a worker warms up before its first request, portal/wsgi.py,
    and on a machine busy with the rest of the suite that and the first page took over 30 s)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", str(threads), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) used so far by a process and its descendants still running:
    a gunicorn's master and its workers (bench/webhooks.py, bench/clients.py)."""
    pids, seen = [pid], 0
    while seen < len(pids):
        try:
            children = Path(f"/proc/{pids[seen]}/task/{pids[seen]}/children").read_text().split()
        except OSError:
            children = []
        pids.extend(int(child) for child in children)
        seen += 1
    ticks = 0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
