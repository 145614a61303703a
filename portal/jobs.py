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
Handlers marked `transactional` (database-only work) run inside the same transaction that
records their outcome: done exactly once. The others make their outside calls idempotent
with the job's key.
"""
from __future__ import annotations

import datetime
import json
import logging
import random
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from celery import current_app
from django.db import connection, transaction
from django.db.models import Count
from django.db.models.fields.json import JSONField
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from portal.models import AuditEvent, Job
from portal.rls import staff_scope
from portal.services import audit_record

log = logging.getLogger(__name__)
State = Job.State
OPEN_STATES = (State.PENDING, State.RUNNING, State.RETRYING)
MAX_BACKOFF = datetime.timedelta(hours=6)
SWEEP_LIMIT = 1000


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


HANDLERS: dict[str, Handler] = {}
_discovered = False


def handler(kind: str, *, max_attempts: int = 6, lease_seconds: int = 300, backoff_seconds: float = 30,
            transactional: bool = False, on_dead: Callable[[Job, str], None] | None = None):
    """Register the function that does one kind of job. It gets the claimed Job and returns a
    short result (or None); it raises Retry, Permanent or any exception to fail the attempt.
    `transactional`: the work is database-only and runs in the transaction that records it.
    `on_dead(job, reason)`: called once the job is dead, however it died (also when its worker
    was lost on the last attempt and the handler never got to say so), to mark what it was for."""

    def register(function):
        HANDLERS[kind] = Handler(kind, function, max_attempts, datetime.timedelta(seconds=lease_seconds),
                                 backoff_seconds, transactional, on_dead)
        return function

    return register


def handler_for(kind: str) -> Handler:
    global _discovered
    if kind not in HANDLERS and not _discovered:
        autodiscover_modules("tasks")  # every app registers its handlers in its tasks module
        _discovered = True
    return HANDLERS[kind]


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
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, [kind, key[:200], subject[:100],
                                    JSONField().get_db_prep_value(payload or {}, connection),
                                    max_attempts, run_after or now, now])
        row = cursor.fetchone()
    if row is None:
        return None
    if run_after is None or run_after <= now:
        transaction.on_commit(lambda: ring(row[0]))
    return row[0]


BULK_INSERT_SQL = """
INSERT INTO portal_job (kind, key, subject, payload, state, attempts, max_attempts, run_after, last_error, result,
                        created_at)
SELECT %(kind)s, j.key, j.subject, j.payload::jsonb, 'pending', 0, %(max_attempts)s, %(now)s, '', '', %(now)s
FROM unnest(%(keys)s::text[], %(payloads)s::text[], %(subjects)s::text[]) AS j(key, payload, subject)
ON CONFLICT (key) DO NOTHING
"""


def jobs_enqueue_bulk(*, kind: str, jobs: list[tuple[str, dict, str]]) -> int:
    """Many jobs of one kind at once, [(key, payload, subject)], in the caller's transaction and
    in one statement (100,000 in about a second); after commit one bell drains them. Keys
    already used are skipped. Returns how many were written."""
    if not jobs:
        return 0
    now = timezone.now()
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(BULK_INSERT_SQL, {
            "kind": kind, "max_attempts": handler_for(kind).max_attempts, "now": now,
            "keys": [key[:200] for key, _, _ in jobs], "payloads": [json.dumps(payload) for _, payload, _ in jobs],
            "subjects": [subject[:100] for _, _, subject in jobs]})
        written = cursor.rowcount
    transaction.on_commit(lambda: ring_kind(kind))
    return written


def ring(job_id: int) -> None:
    """Tell a worker that a job is waiting. Losing this message loses nothing (the sweep)."""
    try:
        current_app.send_task("portal.tasks.run_job", args=[job_id])
    except Exception:  # noqa: BLE001 - the broker is down: the sweep rings again
        log.warning("could not ring for job %s; the sweep will", job_id, exc_info=True)


def ring_kind(kind: str | None) -> None:
    try:
        current_app.send_task("portal.tasks.drain_jobs", kwargs={"kind": kind})
    except Exception:  # noqa: BLE001 - the broker is down: the sweep rings again
        log.warning("could not ring for %s jobs; the sweep will", kind, exc_info=True)


# --- Running jobs ------------------------------------------------------------------------

CLAIM_SQL = """
UPDATE portal_job SET state = 'running', attempts = attempts + 1, lease_expires_at = %(now)s + %(lease)s
WHERE id = (
    SELECT j.id FROM portal_job j
    WHERE ((j.state IN ('pending', 'retrying') AND j.run_after <= %(now)s)
           OR (j.state = 'running' AND j.lease_expires_at <= %(now)s))
      AND (%(id)s::bigint IS NULL OR j.id = %(id)s::bigint)
      AND (%(kind)s::text IS NULL OR j.kind = %(kind)s::text)
      AND (j.subject = '' OR NOT EXISTS (
            -- "e.subject <> ''" says what the partial index job_open_subject covers, so the
            -- planner looks the earlier jobs up in it instead of scanning every job below j.id
            -- (a claim grew with the square of the backlog: 800 ms with 3,000 jobs waiting).
            SELECT 1 FROM portal_job e
            WHERE e.subject = j.subject AND e.subject <> '' AND e.id < j.id
              AND e.state IN ('pending', 'running', 'retrying')))
    ORDER BY j.run_after, j.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING *
"""
# The longest lease of any kind: a claim for "any kind" uses it.
DEFAULT_LEASE = datetime.timedelta(minutes=10)


def _claim(*, job_id: int | None = None, kind: str | None = None) -> Job | None:
    lease = handler_for(kind).lease if kind else DEFAULT_LEASE
    if job_id is not None:
        kind_of_job = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
        if kind_of_job is None:
            return None
        lease = handler_for(kind_of_job).lease
    claimed = list(Job.objects.raw(CLAIM_SQL, {"now": timezone.now(), "lease": lease, "id": job_id, "kind": kind}))
    return claimed[0] if claimed else None


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


def jobs_drain(*, kind: str | None = None, seconds: float = 50.0) -> int:
    """Claim and run due jobs (of one kind, or any) until none is left or time is up; then,
    if some remain, ring again so another message carries on. Returns how many ran."""
    _no_transaction_open()
    deadline = time.monotonic() + seconds
    count = 0
    with staff_scope():
        while time.monotonic() < deadline:
            job = _claim(kind=kind)
            if job is None:
                return count
            _run(job)
            count += 1
    ring_kind(kind)
    return count


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
                 .order_by("id").values_list("pk", "run_after").first())
    if following and following[1] <= timezone.now():
        ring(following[0])


# --- Sweep, replay, figures --------------------------------------------------------------

def jobs_due(*, now: datetime.datetime | None = None) -> list[tuple[int, str]]:
    """(id, kind) of jobs whose turn has come: never rung (Redis was down), waiting for a
    retry, or held by a worker whose lease ran out."""
    now = now or timezone.now()
    due = Job.objects.filter(state__in=[State.PENDING, State.RETRYING], run_after__lte=now)
    expired = Job.objects.filter(state=State.RUNNING, lease_expires_at__lte=now)
    rows = list(due.order_by("run_after", "id").values_list("pk", "kind")[:SWEEP_LIMIT])
    rows += list(expired.order_by("lease_expires_at").values_list("pk", "kind")[:SWEEP_LIMIT])
    return rows


def jobs_sweep(*, now: datetime.datetime | None = None) -> int:
    """Ring for every job that is due. Few of a kind: one bell each; many: one drain per kind."""
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
                ring(pk)
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
        transaction.on_commit(lambda: ring(job.pk))
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
