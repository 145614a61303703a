"""Background work, done one way for every kind (webhooks, outbox deliveries, reminder and
notification sends, direct-debit collections, PDF pre-renders, syncs).

A job is a row (`portal.models.Job`), written in the same transaction as the change that
needs it, so both happen or neither. The life of one attempt:

1. claim: one committed statement (`UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP
   LOCKED)`) moves it to running with a lease; two workers never hold the same job;
2. work: the kind's handler runs with no transaction open, so it may call out (HTTP, SMTP,
   a gateway SDK) and open short transactions of its own around what it reads and records;
3. outcome: recorded in another transaction, fenced by the attempt number, so a worker
   whose lease ran out cannot overwrite what the next one did. A failure waits with
   exponential backoff and jitter; after the last attempt the job is dead, with its reason,
   until staff replay it (audited).

Celery only rings the bell (`run_job`, `drain_jobs`): a lost message changes nothing, because
the beat sweep rings for every job that is due, or whose lease expired with its worker.
Each kind belongs to a queue (`handler(..., queue=...)`): FAST (webhooks, outbox deliveries,
emails, collections: seconds each, someone waiting) or SLOW (PDF renders, syncs and polls:
minutes each). Its bells go to that Celery queue, a drain for a queue claims only that queue's
kinds, and each queue has workers of its own, so a backlog of one never delays the other.
Handlers marked `transactional` (database-only work) run inside the same transaction that
records their outcome: done exactly once. The others make their outside calls idempotent
with the job's key.
"""
from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import random
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count
from django.db.models.fields.json import JSONField
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from portal.compiled import server_bound_cursor
from portal.models import AuditEvent, Job
from portal.rls import staff_scope
from portal.services import audit_record

log = logging.getLogger(__name__)
State = Job.State
OPEN_STATES = (State.PENDING, State.RUNNING, State.RETRYING)
MAX_BACKOFF = datetime.timedelta(hours=6)
SWEEP_LIMIT = 1000
# The Celery queues (README, "Background work: one mechanism"). FAST is also Celery's default
# queue (settings: CELERY_TASK_DEFAULT_QUEUE), where beat's own tasks go: they only write jobs.
FAST, SLOW = "fast", "slow"
QUEUES = (FAST, SLOW)


class Retry(Exception):
    """Not done yet, try again later (counts as an attempt): e.g. a reference not known yet.
    `after` seconds, or `until` a moment the remote named (its rate limit's reset), at least 1 s."""

    def __init__(self, reason: str, *, after: float | None = None, until: datetime.datetime | None = None):
        super().__init__(reason)
        if until is not None:
            after = max(1.0, (until - timezone.now()).total_seconds())
        self.after = after


class Permanent(Exception):
    """No further attempt can help: the job is dead at once, with this reason."""


class LeaseLost(Exception):
    """Another worker has taken the job over (this one's lease ran out): its outcome is not ours."""


@dataclass(frozen=True)
class Handler:
    kind: str
    run: Callable[[Job], str | None]
    max_attempts: int
    lease: datetime.timedelta
    backoff: float
    transactional: bool
    on_dead: Callable[[Job, str], None] | None = None
    queue: str = FAST


HANDLERS: dict[str, Handler] = {}
_discovered = False


def handler(kind: str, *, max_attempts: int = 6, lease_seconds: int = 300, backoff_seconds: float = 30,
            transactional: bool = False, on_dead: Callable[[Job, str], None] | None = None, queue: str = FAST):
    """Register the function that does one kind of job. It gets the claimed Job and returns a
    short result (or None); it raises Retry, Permanent or any exception to fail the attempt.
    `transactional`: the work is database-only and runs in the transaction that records it.
    `on_dead(job, reason)`: called once the job is dead, however it died (also when its worker
    was lost on the last attempt and the handler never got to say so), to mark what it was for.
    `queue`: FAST for work of seconds that someone waits for, SLOW for work of minutes (renders,
    syncs); each queue has workers of its own, so a backlog in one does not delay the other."""
    if queue not in QUEUES:
        raise ValueError(f"job kind {kind}: queue {queue!r} is not one of {QUEUES}")

    def register(function):
        HANDLERS[kind] = Handler(kind, function, max_attempts, datetime.timedelta(seconds=lease_seconds),
                                 backoff_seconds, transactional, on_dead, queue)
        return function

    return register


def _discover() -> None:
    global _discovered
    if not _discovered:
        autodiscover_modules("tasks")  # every app registers its handlers in its tasks module
        _discovered = True


def handler_for(kind: str) -> Handler:
    if kind not in HANDLERS:
        _discover()
    return HANDLERS[kind]


def queue_of(kind: str) -> str:
    """The queue a kind's bells go to (FAST for a kind no handler claims any more: it fails there)."""
    try:
        return handler_for(kind).queue
    except KeyError:
        return FAST


def kinds_of(queue: str) -> list[str]:
    """The kinds whose jobs the workers of `queue` run, sorted."""
    _discover()
    return sorted(kind for kind, spec in HANDLERS.items() if spec.queue == queue)


# --- Writing jobs ------------------------------------------------------------------------

INSERT_SQL = """
INSERT INTO portal_job (kind, key, subject, payload, state, attempts, max_attempts, run_after, last_error, result,
                        created_at)
VALUES (%s, %s, %s, %s, 'pending', 0, %s, %s, '', '', %s)
ON CONFLICT (key) DO NOTHING
RETURNING id
"""


def job_enqueue(*, kind: str, key: str, payload: dict | None = None, subject: str = "",
                run_after: datetime.datetime | None = None) -> int | None:
    """Write a job in the caller's transaction (the change and its job commit together) and
    ring once that commits. A key already used changes nothing: returns None then."""
    now = timezone.now()
    max_attempts = handler_for(kind).max_attempts
    with transaction.atomic(savepoint=False), server_bound_cursor(connection) as cursor:  # prepared
        cursor.execute(INSERT_SQL, [kind, key[:200], subject[:100],
                                    JSONField().get_db_prep_value(payload or {}, connection),
                                    max_attempts, run_after or now, now])
        row = cursor.fetchone()
    if row is None:
        return None
    if run_after is None or run_after <= now:
        job_written(row[0], kind)
    return row[0]


# A job written by the statement that writes what it is for (portal.webhooks: a stored request
# and its job, one round trip): an INSERT for a data-modifying CTE, over the rows of an earlier
# one (`source`), whose key and payload are SQL expressions over such a row. Its other values
# are the named parameters job_params() gives. Once the statement has run, job_written().
INSERT_FROM_SQL = """
INSERT INTO portal_job (kind, key, subject, payload, state, attempts, max_attempts, run_after, last_error, result,
                        created_at)
SELECT %(job_kind)s, {key}, %(job_subject)s, {payload}, 'pending', 0, %(job_max_attempts)s, %(job_now)s, '', '',
       %(job_now)s
FROM {source}
ON CONFLICT (key) DO NOTHING
RETURNING id
"""


def job_params(*, kind: str, subject: str = "") -> dict:
    """The parameters of INSERT_FROM_SQL: a job of `kind`, due now."""
    return {"job_kind": kind, "job_subject": subject[:100], "job_max_attempts": handler_for(kind).max_attempts,
            "job_now": timezone.now()}


def job_written(job_id: int, kind: str) -> None:
    """A due job was written in the current transaction: ring for it once that commits."""
    transaction.on_commit(lambda: ring_soon(job_id, kind))


BULK_INSERT_SQL = """
INSERT INTO portal_job (kind, key, subject, payload, state, attempts, max_attempts, run_after, last_error, result,
                        created_at)
SELECT %(kind)s, j.key, j.subject, j.payload::jsonb, 'pending', 0, %(max_attempts)s, %(run_after)s, '', '', %(now)s
FROM unnest(%(keys)s::text[], %(payloads)s::text[], %(subjects)s::text[]) AS j(key, payload, subject)
ON CONFLICT (key) DO NOTHING
"""


def jobs_enqueue_bulk(*, kind: str, jobs: list[tuple[str, dict, str]],
                      run_after: datetime.datetime | None = None) -> int:
    """Many jobs of one kind at once, [(key, payload, subject)], in the caller's transaction and
    in one statement (100,000 in about a second), due now or at `run_after`; after commit one bell
    drains those due now (the sweep rings for the later ones). Keys already used are skipped.
    Returns how many were written."""
    if not jobs:
        return 0
    now = timezone.now()
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(BULK_INSERT_SQL, {
            "kind": kind, "max_attempts": handler_for(kind).max_attempts, "now": now, "run_after": run_after or now,
            "keys": [key[:200] for key, _, _ in jobs], "payloads": [json.dumps(payload) for _, payload, _ in jobs],
            "subjects": [subject[:100] for _, _, subject in jobs]})
        written = cursor.rowcount
    if run_after is None or run_after <= now:
        transaction.on_commit(lambda: ring_kind(kind))
    return written


def ring(job_id: int, kind: str) -> None:
    """Tell a worker of the kind's queue that a job is waiting. Losing this message loses
    nothing (the sweep)."""
    try:
        current_app.send_task("portal.tasks.run_job", args=[job_id], queue=queue_of(kind))
    except Exception:  # noqa: BLE001 - the broker is down: the sweep rings again
        log.warning("could not ring for job %s; the sweep will", job_id, exc_info=True)


class _BellBatch:
    """The bells of one process's committed jobs, rung together: each at most
    settings.JOB_BELL_BATCH_MS after its commit, as one drain of each kind in the batch
    (ring_drain), and not even that while a drain of the kind waits for a worker already. A bell
    costs a Celery publish (1.5 to 2 ms of CPU); at a thousand webhooks a second one bell each was
    more than all the rest a webhook cost. A wake-up is never lost to the batching: every job's
    bell goes out after its commit, and a drain that waits has not yet begun to claim, so it will
    see the job. One thread per process rings (its cache connection kept: a thread of its own
    per batch would connect to Redis anew each time); a process that exits rings for what it
    holds first (atexit); one that dies within the window leaves it to the sweep, as a bell lost
    with the broker."""

    def __init__(self):
        self.forget()

    def forget(self) -> None:
        """Nothing waiting and no thread: at start, and in a forked child (the parent's thread is
        not there; the parent rings for what it held)."""
        self.lock = threading.Lock()
        self.waiting: set[str] = set()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, kind: str) -> None:
        with self.lock:
            self.waiting.add(kind)
            if self.thread is None:
                self.thread = threading.Thread(target=self._ring_in_batches, name="job bells", daemon=True)
                self.thread.start()
        self.wake.set()

    def _ring_in_batches(self) -> None:
        while True:
            self.wake.wait()
            time.sleep(settings.JOB_BELL_BATCH_MS / 1000)  # what is committed meanwhile joins the batch
            self.ring()

    def ring(self) -> None:
        with self.lock:
            waiting, self.waiting = self.waiting, set()
            self.wake.clear()
        for kind in sorted(waiting):
            ring_drain(kind)


_bells = _BellBatch()
os.register_at_fork(after_in_child=_bells.forget)
atexit.register(_bells.ring)


def ring_soon(job_id: int, kind: str) -> None:
    """Ring for a job that has just been committed: at once, or within JOB_BELL_BATCH_MS with
    the other bells of this process (_BellBatch)."""
    if settings.JOB_BELL_BATCH_MS <= 0:
        ring(job_id, kind)
    else:
        _bells.add(kind)


DRAIN_WAITING_KEY = "jobs:drain-waiting:{kind}"
# How long a drain bell is taken to be waiting for a worker: a lost message or a worker that died
# before it began holds the next bells of its kind back at most this long (the sweep rings too).
DRAIN_WAITING_SECONDS = 10


def ring_drain(kind: str) -> None:
    """Ask a worker to drain `kind`, unless a drain of it is waiting for a worker already: a
    marker in the cache (SET NX: a round trip, where a bell is a Celery publish) that jobs_drain
    removes before it claims anything, so a job committed before the marker was found is seen by
    that drain. While workers drain a burst each new batch finds no marker and rings again, so
    every worker of the queue joins in; at most one drain of a kind waits in the queue."""
    try:
        if not cache.add(DRAIN_WAITING_KEY.format(kind=kind), 1, timeout=DRAIN_WAITING_SECONDS):
            return
    except Exception:  # noqa: BLE001 - no cache: ring anyway
        log.warning("could not mark a drain of %s as waiting; ringing regardless", kind, exc_info=True)
    ring_kind(kind)


def ring_kind(kind: str | None) -> None:
    """Ask a worker of the kind's queue to drain that kind's due jobs (no kind: every queue its own)."""
    if kind is None:
        for queue in QUEUES:
            ring_queue(queue)
        return
    try:
        current_app.send_task("portal.tasks.drain_jobs", kwargs={"kind": kind}, queue=queue_of(kind))
    except Exception:  # noqa: BLE001 - the broker is down: the sweep rings again
        log.warning("could not ring for %s jobs; the sweep will", kind, exc_info=True)


def ring_queue(queue: str) -> None:
    """Ask a worker of `queue` to drain the due jobs of that queue's kinds."""
    try:
        current_app.send_task("portal.tasks.drain_jobs", kwargs={"queue": queue}, queue=queue)
    except Exception:  # noqa: BLE001 - the broker is down: the sweep rings again
        log.warning("could not ring the %s queue; the sweep will", queue, exc_info=True)


# --- Running jobs ------------------------------------------------------------------------

_SUBJECT_FREE = """
      AND (j.subject = '' OR NOT EXISTS (
            -- "e.subject <> ''" says what the partial index job_open_subject covers, so the
            -- planner looks the earlier jobs up in it instead of scanning every job below j.id
            -- (a claim grew with the square of the backlog: 800 ms with 3,000 jobs waiting).
            SELECT 1 FROM portal_job e
            WHERE e.subject = j.subject AND e.subject <> '' AND e.id < j.id
              AND e.state IN ('pending', 'running', 'retrying')))"""
CLAIM_SQL = """
UPDATE portal_job SET state = 'running', attempts = attempts + 1, lease_expires_at = %(now)s + %(lease)s
WHERE id = (
    SELECT j.id FROM portal_job j
    WHERE {ready}{only}""" + _SUBJECT_FREE + """
    ORDER BY {order}, j.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING *
"""
# A queue's claim: the first ready job of each of its kinds, each found by walking that kind's
# place in the index (job_due_kind) as the claim of one kind does, and of those the earliest.
# "j.kind = ANY(%(kinds)s)" instead made PostgreSQL read and sort every ready job of the queue's
# kinds (6.6 ms with 5,000 waiting, growing with the backlog). Each kind's first is locked (SKIP
# LOCKED) for this one statement; another claim meanwhile takes the next of that kind.
QUEUE_CLAIM_SQL = """
UPDATE portal_job SET state = 'running', attempts = attempts + 1,
    lease_expires_at = %(now)s + make_interval(secs => (%(leases)s::float8[])[array_position(%(kinds)s::text[], kind)])
WHERE id = (
    SELECT first.id FROM unnest(%(kinds)s::text[]) AS queue(kind) CROSS JOIN LATERAL (
        SELECT j.id, {order} AS turn FROM portal_job j
        WHERE j.kind = queue.kind AND {ready}""" + _SUBJECT_FREE + """
        ORDER BY {order}, j.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED) AS first
    ORDER BY first.turn, first.id
    LIMIT 1)
RETURNING *
"""
# Two ways a job is ready, each claimed by its own statement walking its own partial index in
# order (job_due, job_due_kind; job_leased) and stopping at the first it may take. One statement
# with "due OR lease expired" made PostgreSQL read and sort every ready job on every claim: 33 ms
# a claim with 20,000 waiting, where this takes well under one.
READY = (
    # Held by a worker whose lease ran out (it died): taken back first.
    ("j.state = 'running' AND j.lease_expires_at <= %(now)s", "j.lease_expires_at"),
    ("j.state IN ('pending', 'retrying') AND j.run_after <= %(now)s", "j.run_after"),
)
# The longest lease of any kind: a claim for "any kind" uses it.
DEFAULT_LEASE = datetime.timedelta(minutes=10)


def _claim(*, job_id: int | None = None, kind: str | None = None, kinds: list[str] | None = None) -> Job | None:
    """One job: this one, or the first ready of `kind`, of `kinds` (a queue's), or of any kind."""
    lease = handler_for(kind).lease if kind else DEFAULT_LEASE
    if kinds is not None and not kinds:
        return None
    if job_id is not None:
        kind_of_job = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
        if kind_of_job is None:
            return None
        lease = handler_for(kind_of_job).lease
    only = (" AND j.id = %(id)s" if job_id is not None else "") + (" AND j.kind = %(kind)s" if kind else "")
    params = {"now": timezone.now(), "lease": lease, "id": job_id, "kind": kind, "kinds": kinds,
              "leases": [handler_for(k).lease.total_seconds() for k in kinds or ()]}
    sql = QUEUE_CLAIM_SQL if kinds is not None else CLAIM_SQL
    for ready, order in READY:
        claimed = list(Job.objects.raw(sql.format(ready=ready, only=only, order=order), params))
        if claimed:
            return claimed[0]
    return None


def _no_transaction_open() -> None:
    if connection.in_atomic_block:
        raise RuntimeError("jobs run with no transaction open: claim, work and outcome each commit on their own")


def job_run(job_id: int) -> str | None:
    """Claim one job and run it. Returns its new state, or None if it was not claimable now
    (done already, not due, held by a live worker, or waiting for an earlier job of its subject)."""
    _no_transaction_open()
    with staff_scope():
        job = _claim(job_id=job_id)
        return _run(job) if job else None


def jobs_drain(*, kind: str | None = None, queue: str | None = None, seconds: float = 50.0) -> int:
    """Claim and run due jobs (of one kind, of one queue's kinds, or any) until none is left or
    time is up; then, if some remain, ring again so another message carries on. Returns how many ran."""
    _no_transaction_open()
    deadline = time.monotonic() + seconds
    kinds = kinds_of(queue) if queue is not None and kind is None else None
    if kind is not None:
        _drain_begins(kind)
    count = 0
    with staff_scope():
        while time.monotonic() < deadline:
            job = _claim(kind=kind, kinds=kinds)
            if job is None:
                return count
            _run(job)
            count += 1
    if queue is not None and kind is None:
        ring_queue(queue)
    else:
        ring_kind(kind)
    return count


def _drain_begins(kind: str) -> None:
    """A drain of `kind` no longer waits (ring_drain): a job committed from now on rings again."""
    try:
        cache.delete(DRAIN_WAITING_KEY.format(kind=kind))
    except Exception:  # noqa: BLE001 - the marker expires by itself
        log.warning("could not clear the waiting drain of %s", kind, exc_info=True)


def _run(job: Job) -> str:
    spec = handler_for(job.kind)
    if job.attempts > job.max_attempts:
        # The lease of the last allowed attempt ran out: its worker died mid-job.
        return _record(job, State.DEAD, error=f"the worker was lost during attempt {job.max_attempts}; "
                                              f"last error: {job.last_error[:1500]}")
    try:
        if spec.transactional:
            with transaction.atomic():
                result = spec.run(job)
                if _record(job, State.DONE, result=result) != State.DONE:
                    raise LeaseLost(job.pk)
            _after_finish(job)
            return State.DONE
        result = spec.run(job)
    except LeaseLost:
        log.warning("job %s was taken over by another worker; this attempt's outcome is dropped", job.pk)
        return State.RUNNING
    except Permanent as exc:
        return _record(job, State.DEAD, error=str(exc))
    except Retry as exc:
        return _failed(job, spec, str(exc), after=exc.after)
    except Exception as exc:  # noqa: BLE001 - any failure of the work is an attempt that failed
        log.warning("job %s (%s) attempt %s failed: %s", job.pk, job.kind, job.attempts, exc)
        return _failed(job, spec, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
    return _record(job, State.DONE, result=result)


def _failed(job: Job, spec: Handler, error: str, *, after: float | None = None) -> str:
    if job.attempts >= job.max_attempts:
        return _record(job, State.DEAD, error=error)
    return _record(job, State.RETRYING, error=error, run_after=timezone.now() + backoff(job.attempts, spec.backoff,
                                                                                          after=after))


def backoff(attempts: int, base: float, *, after: float | None = None) -> datetime.timedelta:
    """Exponential, with jitter (±25%) so that jobs failing together do not retry together. A wait
    the remote named (`after`: until its rate limit resets) is never shortened, only spread (+25%)."""
    seconds = after if after is not None else base * 2 ** max(0, attempts - 1)
    seconds = min(seconds, MAX_BACKOFF.total_seconds())
    return datetime.timedelta(seconds=seconds * random.uniform(1.0 if after is not None else 0.75, 1.25))


def _record(job: Job, state: str, *, error: str = "", result: str | None = None,
            run_after: datetime.datetime | None = None) -> str:
    now = timezone.now()
    fields = {"state": state, "lease_expires_at": None, "result": (result or "")[:300]}
    if error or state == State.DONE:
        fields["last_error"] = error[:4000]
    if state in (State.DONE, State.DEAD):
        fields["finished_at"] = now
    if run_after is not None:
        fields["run_after"] = run_after
    # Fenced by the attempt number: only the holder of the current attempt records.
    updated = Job.objects.filter(pk=job.pk, state=State.RUNNING, attempts=job.attempts).update(**fields)
    if not updated:
        log.warning("job %s: outcome %s of attempt %s dropped (taken over)", job.pk, state, job.attempts)
        return State.RUNNING
    if state == State.DEAD:
        log.error("job %s (%s) is dead after %s attempts: %s", job.pk, job.kind, job.attempts, error[:300])
        _tell_dead(job, error)
    if state in (State.DONE, State.DEAD) and not connection.in_atomic_block:
        _after_finish(job)
    return state


def _tell_dead(job: Job, reason: str) -> None:
    on_dead = handler_for(job.kind).on_dead
    if on_dead is None:
        return
    try:
        with transaction.atomic():
            on_dead(job, reason)
    except Exception:  # noqa: BLE001 - the job is dead and says why; this only decorates it
        log.exception("job %s (%s): its on_dead hook failed", job.pk, job.kind)


def _after_finish(job: Job) -> None:
    """The next job of the same subject may go now: ring for it rather than wait for the sweep."""
    if not job.subject:
        return
    following = (Job.objects.filter(subject=job.subject, state__in=[State.PENDING, State.RETRYING], id__gt=job.pk)
                 .order_by("id").values_list("pk", "run_after", "kind").first())
    if following and following[1] <= timezone.now():
        ring(following[0], following[2])


# --- Sweep, replay, figures --------------------------------------------------------------

def jobs_due(*, now: datetime.datetime | None = None) -> list[tuple[int, str]]:
    """(id, kind) of jobs whose turn has come: never rung (Redis was down), waiting for a
    retry, or held by a worker whose lease ran out. Up to SWEEP_LIMIT of each for each queue,
    so a backlog in one queue does not hide the other's due jobs from the sweep."""
    now = now or timezone.now()
    slow = kinds_of(SLOW)
    rows = []
    for queue in QUEUES:
        jobs = Job.objects.filter(kind__in=slow) if queue == SLOW else Job.objects.exclude(kind__in=slow)
        due = jobs.filter(state__in=[State.PENDING, State.RETRYING], run_after__lte=now)
        expired = jobs.filter(state=State.RUNNING, lease_expires_at__lte=now)
        rows += list(due.order_by("run_after", "id").values_list("pk", "kind")[:SWEEP_LIMIT])
        rows += list(expired.order_by("lease_expires_at").values_list("pk", "kind")[:SWEEP_LIMIT])
    return rows


def jobs_sweep(*, now: datetime.datetime | None = None) -> int:
    """Ring for every job that is due, each on its kind's queue. Few of a kind: one bell each;
    many: one drain per kind."""
    with staff_scope():
        due = jobs_due(now=now)
    by_kind: dict[str, list[int]] = {}
    for pk, kind in due:
        by_kind.setdefault(kind, []).append(pk)
    for kind, ids in by_kind.items():
        if len(ids) > 20:
            ring_kind(kind)
        else:
            for pk in ids:
                ring(pk, kind)
    return len(due)


def job_replay(*, job: Job, actor=None, request=None) -> bool:
    """Staff give a dead job a new round of attempts (audited). False if it was not dead."""
    with transaction.atomic():
        replayed = Job.objects.filter(pk=job.pk, state=State.DEAD).update(
            state=State.PENDING, attempts=0, run_after=timezone.now(), finished_at=None)
        if not replayed:
            return False
        audit_record(action=AuditEvent.Action.JOB_REPLAYED, actor=actor, request=request, obj=job,
                     details={"kind": job.kind, "key": job.key, "last_error": job.last_error[:500]})
        transaction.on_commit(lambda: ring(job.pk, job.kind))
    return True


def jobs_figures(*, days: int = 7) -> list[dict]:
    """Jobs written per day and kind, counted by state, newest day first: one row per day and
    kind, {"day", "kind", "total", <state>: count, ...} (the admin's and health page's figures)."""
    since = timezone.now() - datetime.timedelta(days=days)
    rows: dict[tuple, dict] = {}
    for row in (Job.objects.filter(created_at__gte=since).annotate(day=TruncDate("created_at"))
                .values("day", "kind", "state").annotate(count=Count("id")).order_by("-day", "kind")):
        figure = rows.setdefault((row["day"], row["kind"]), {"day": row["day"], "kind": row["kind"], "total": 0,
                                                             **{state: 0 for state in State.values}})
        figure[row["state"]] += row["count"]
        figure["total"] += row["count"]
    return list(rows.values())
