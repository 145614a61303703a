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


def wait_until_answering(request: urllib.request.Request | str, *, running, seconds: float = 90,
                         timeout: float = 2, interval: float = 0.2) -> bool:
    """Ask `request` until it answers: True once it has, False when `running()` says the server
    is gone or `seconds` have passed (a server's first page waits on its warm-up, portal/wsgi.py).
    The one wait for a started server: tests (gunicorn below) and the benches alike."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(request, timeout=timeout)
            return True
        except OSError:
            if not running() or time.monotonic() > deadline:
                return False
            time.sleep(interval)


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
    if not wait_until_answering(f"{url}/accounts/login/", running=lambda: server.poll() is None):
        server.kill()
        raise RuntimeError("gunicorn did not start")
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
