"""Fault drills, shared by tests/faults and bench/faults.py: the three faults (Redis stopped while
jobs arrive; workers killed with SIGKILL mid-job; the remote end failing every attempt, then a
replay from admin), run on any job kind that has a KindScenario (tests/faults/kinds/), each
ending in an Outcome: of N jobs, how many were done once, lost or duplicated.

Counting, per job: "done once" is a job in state done whose remote end acted on it exactly once;
"duplicated" a job the remote acted on more than once (whatever its state); "lost" the rest (not
done in the end, or done with nothing happening at the remote). The machinery (our Redis, the
workers, the sweep, time passing) is in tests/faults/harness.py."""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

from tests.faults.harness import (FaultCheckFailed, FaultStack, all_in, check, expire_leases, hold_retries, job_rows,
                                  make_due, quiet, staff_client, states, sweep, wait_until)


class KindScenario:
    """How one job kind is exercised. Subclasses (tests/faults/kinds/) say how jobs of the kind
    are written the way the app writes them (a webhook arriving, a send being decided), which fake
    remote end they call, and how to count what that remote did for a job.

    The remote must offer `fail_next(n, status)` and `delay_next(n, seconds)` (answer later, after
    acting); `calls_per_attempt` is how many requests one attempt makes to it. A kind with no
    remote end (database-only work) offers a stand-in with the same two methods (see
    kinds/accounting.py). The hooks below have the defaults every HTTP remote end wants."""

    kind: str = ""
    client_timeout: float = 2.0  # how long the kind's client waits for the remote
    calls_per_attempt: int = 1
    faults: tuple[str, ...] | None = None  # the faults that apply to the kind (None: all)
    fault_labels: dict[str, str] = {}  # what a fault amounts to for the kind, in the table
    # The remote cannot recognise a repeat (SMTP has no idempotency key): a worker killed after the
    # remote took a call and before it answered leaves a job whose retry makes a second copy.
    kill_may_duplicate: bool = False
    # The remote cannot hand back what it did for a call the kill cut off (an OAuth code exchange:
    # the code is used, the tokens it gave are lost): such a job ends dead with its reason.
    kill_may_lose: bool = False
    # What the reason of a job dead after the remote-failing drill says (its last attempt's error).
    dead_reason: str = "timed out"

    def __init__(self, remote=None):
        self.shared_remote = remote  # a remote started by the caller (tests share one per module)

    def remote(self):
        """A context manager giving the started fake (the shared one, if the caller gave one)."""
        if self.shared_remote is not None:
            return contextlib.nullcontext(self.shared_remote)
        return self.start_remote()

    def start_remote(self):
        """A context manager starting a fake of the kind's own."""
        raise NotImplementedError

    def worker_env(self, remote) -> dict:
        """What the workers need to reach the fake (e.g. MOLLIE_API_ENDPOINT)."""
        return {}

    def prepare(self, remote, count: int) -> None:
        """Before a fault is armed: what `count` jobs will need (clients, invoices, a connection),
        so that setting it up neither meets the fault nor counts as the remote being called."""

    def write(self, remote, count: int, *, tag: str) -> list[int]:
        """Write `count` jobs of the kind, each in its own transaction as the app would; their ids."""
        raise NotImplementedError

    def effects(self, remote, job) -> int:
        """How many times the remote acted on this job (booked, charged, sent)."""
        raise NotImplementedError

    def requests(self, remote, job) -> int:
        """How many requests for this job reached the remote, whatever it answered."""
        raise NotImplementedError

    def requests_total(self, remote) -> int:
        """How many requests reached the remote in all (to see a call arrive)."""
        raise NotImplementedError

    def acted_on_some(self, remote, job) -> bool:
        """Whether the remote has acted on any part of the job's work (one email of two, say)."""
        return self.effects(remote, job) >= 1

    def lost_to_kill(self, remote, job) -> bool:
        """For a kind that `kill_may_lose`: whether the kill cut this orphan off in such a call."""
        return False

    def hold_next(self, remote, seconds: float) -> None:
        """The worker-killed drill: the next call is held (the remote acts, then waits `seconds`
        before it answers), so that the kill lands while the job is in the middle of it."""
        remote.delay_next(1, seconds=seconds)

    def fail_again(self, remote, calls: int, *, attempt: int, last: bool) -> str:
        """The remote-failing drill, attempts after the first: how the remote fails this time.
        The second and the last time out; the others answer 500 (a timeout costs the client's
        whole wait, and a kind may have a dozen attempts)."""
        if attempt == 2 or last:
            remote.delay_next(calls, seconds=self.client_timeout + 0.5)
            return "the remote times out"
        remote.fail_next(calls, 500)
        return "the remote answers 500"

    def heal(self, remote) -> None:
        """The remote answers normally again (faults not yet used up are dropped)."""
        with remote.lock:
            remote.failures.clear()
            remote.delays.clear()

    def remark(self, remote, outcome: "Outcome", rows: list) -> str:
        """A note for the bench's table about what the figures mean for this kind ("" for none)."""
        return ""

    def applies(self, fault_name: str) -> bool:
        return self.faults is None or fault_name in self.faults

    def label(self, fault_name: str) -> str:
        return self.fault_labels.get(fault_name, fault_name)


@dataclass
class Outcome:
    """What came of one fault on one kind: a row of the bench's table."""

    kind: str
    fault: str
    jobs: int
    done_once: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    error: str = ""  # a check that failed on the way (the bench shows it; a test fails)
    notes: dict = field(default_factory=dict)
    # Duplicates the kind cannot avoid (KindScenario.kill_may_duplicate): counted in `duplicated`
    # all the same, and named in `remark`.
    known_duplicates: int = 0
    # Losses the kind cannot avoid (KindScenario.kill_may_lose): counted in `lost`, and named.
    known_lost: int = 0
    remark: str = ""

    @property
    def ok(self) -> bool:
        return (not self.error and self.lost <= self.known_lost and self.duplicated <= self.known_duplicates
                and self.done_once + self.duplicated == self.jobs)


def count_outcome(scenario: KindScenario, remote, fault: str, jobs: int, ids: list[int], started: float,
                  notes: dict | None = None) -> Outcome:
    from portal.models import Job

    notes = notes or {}
    outcome = Outcome(scenario.kind, scenario.label(fault), jobs, seconds=time.monotonic() - started, notes=notes,
                      known_duplicates=notes.get("known_duplicates", 0), known_lost=notes.get("known_lost", 0))
    rows = job_rows(ids)
    for job in rows:
        effects = scenario.effects(remote, job)
        if effects > 1:
            outcome.duplicated += 1
        elif job.state == Job.State.DONE and effects == 1:
            outcome.done_once += 1
        else:
            outcome.lost += 1
    outcome.lost += jobs - len(rows)  # never written, or a row that vanished
    outcome.remark = scenario.remark(remote, outcome, rows)
    return outcome


def write_concurrently(scenario: KindScenario, remote, count: int, *, tag: str, threads: int = 8) -> list[int]:
    """Jobs arriving side by side, as webhooks and sends do: `threads` writers, each its own connection."""
    from django.db import connections

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(min(threads, count))]
    results: list[list[int]] = [[] for _ in shares]
    errors: list[BaseException] = []

    def writer(index: int, share: int) -> None:
        try:
            results[index] = scenario.write(remote, share, tag=f"{tag}-{index}")
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller
            errors.append(exc)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=writer, args=(i, share)) for i, share in enumerate(shares)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    if errors:
        raise errors[0]
    return [pk for part in results for pk in part]


class _FailedBells(logging.Handler):
    """Counts the bells that could not be rung (portal.jobs logs each one, with its traceback)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("could not ring"):
            self.count += 1


@contextlib.contextmanager
def failed_bells() -> Iterator[_FailedBells]:
    """Count failed bells instead of printing a traceback for each (only while Redis is down)."""
    logger = logging.getLogger("portal.jobs")
    counter, propagate = _FailedBells(), logger.propagate
    logger.addHandler(counter)
    logger.propagate = False
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.propagate = propagate


@dataclass
class Run:
    """One fault on one kind as it goes: the jobs written so far and what was seen on the way."""

    stack: FaultStack
    scenario: KindScenario
    remote: object
    count: int
    say: Callable[[str], None]
    ids: list[int] = field(default_factory=list)
    notes: dict = field(default_factory=dict)

    def write(self, tag: str) -> list[int]:
        self.ids = write_concurrently(self.scenario, self.remote, self.count, tag=f"{tag}-{uuid.uuid4().hex[:6]}")
        check(len(self.ids) == self.count and None not in self.ids, f"{self.count} jobs written: {self.ids}")
        return self.ids

    def wait(self, condition: Callable[[], bool], what: str, *, timeout: float | None = None,
             ids: list[int] | None = None, poll: float = 0.1) -> float:
        return wait_until(condition, timeout=timeout or 60 + self.count, what=what, ids=ids or self.ids,
                          say=self.say, stack=self.stack, poll=poll)


FAULTS: dict[str, Callable[..., Outcome]] = {}


def fault(name: str):
    """Register a fault: `function(run)` drives it and raises FaultCheckFailed when an expectation on
    the way fails. Called as `fault_function(stack, scenario, remote, count, say=print)`, it returns
    the Outcome; a failed check is raised with its Outcome attached (`exc.outcome`) for the bench."""

    def register(function: Callable[[Run], None]):
        @functools.wraps(function)
        def run_fault(stack: FaultStack, scenario: KindScenario, remote, count: int, *,
                      say: Callable[[str], None] = quiet) -> Outcome:
            run = Run(stack, scenario, remote, count, say)
            scenario.prepare(remote, count)
            started = time.monotonic()
            try:
                function(run)
            except FaultCheckFailed as exc:
                exc.outcome = _outcome(run, name, started)
                exc.outcome.error = str(exc).splitlines()[0][:200]
                raise
            return _outcome(run, name, started)

        FAULTS[name] = run_fault
        return run_fault

    return register


def _outcome(run: Run, name: str, started: float) -> Outcome:
    return count_outcome(run.scenario, run.remote, name, run.count, run.ids, started, run.notes)


@fault("redis stopped")
def redis_stopped(run: Run) -> None:
    """Redis stops while jobs arrive: every bell fails quietly, each job is written and stays
    pending with nothing run; Redis starts again (empty); the sweep rings; every job is done once."""
    from portal.models import Job

    kind, count = run.scenario.kind, run.count
    called_before = run.scenario.requests_total(run.remote)
    run.stack.redis.stop()
    run.say(f"  {kind}: Redis stopped; writing {count} jobs")
    writing = time.monotonic()
    with failed_bells() as bells:
        run.write("redis")
    run.notes.update(seconds_writing=round(time.monotonic() - writing, 1), bells_failed=bells.count)
    run.say(f"  {kind}: {count} jobs written in {run.notes['seconds_writing']} s; "
            f"{bells.count} bells failed quietly")
    time.sleep(0.5)
    pending = states(run.ids)
    run.notes["pending_while_down"] = pending[Job.State.PENDING]
    check(pending == Counter({Job.State.PENDING: count}) and run.scenario.requests_total(run.remote) == called_before,
          f"with Redis down every job stays pending and nothing runs; states {dict(pending)}")
    run.stack.redis.start()
    run.say(f"  {kind}: Redis started again (empty); sweeping until all {count} are done")
    run.notes["seconds_to_done"] = round(run.wait(all_in(run.ids, Job.State.DONE), "all done"), 1)


@fault("worker killed")
def worker_killed(run: Run) -> None:
    """The workers are killed with SIGKILL while the remote is still answering one job (for a
    kind with no remote, while the job is held inside its transaction or rendering); new ones
    start. That job keeps its lease (no worker takes it while it holds); once it runs out (time
    passing) the sweep rings and the job finishes once: the remote heard it at most twice per
    call and acted once, or, where it cannot recognise a repeat (SMTP), twice: a duplicate,
    counted as one and expected (`known_duplicates`). Where the remote cannot give again what it
    did for a call the kill cut off (`kill_may_lose`: an OAuth code exchange), that job ends dead
    with its reason instead: lost, counted as such and expected (`known_lost`)."""
    from portal.models import Job

    kind, scenario, remote = run.scenario.kind, run.scenario, run.remote
    before = scenario.requests_total(remote)
    scenario.hold_next(remote, seconds=scenario.client_timeout + 5)  # the workers are killed long before
    run.say(f"  {kind}: writing {run.count} jobs; the first call to the remote hangs")
    killer = threading.Thread(target=_kill_on_arrival, args=(run, before), daemon=True)
    killer.start()  # the jobs are still being written when the first call arrives: kill at once
    run.write("killed")
    killer.join(timeout=30)
    check(run.notes.get("killed_after") is not None, "a call reached the remote within 30 s")
    scenario.heal(remote)  # what is held need not be held longer: its worker is gone
    orphans = [job.pk for job in job_rows(run.ids) if job.state == Job.State.RUNNING]
    run.say(f"  {kind}: workers killed with SIGKILL {run.notes['killed_after'] * 1000:.0f} ms after the call "
            f"arrived, {len(orphans)} job(s) left running; new workers")
    check(len(orphans) >= 1, f"a job is left running by a killed worker; states {dict(states(run.ids))}")
    late = [job.pk for job in job_rows(run.ids) if job.state == Job.State.RETRYING]
    check(not late, f"the workers were killed before the client gave up on the call (jobs {late} had failed)")
    # What the remote had taken of the orphans' work when they died: for a remote that cannot
    # recognise a repeat (SMTP), each of these is sent again by the retry, a duplicate.
    taken = sum(1 for job in job_rows(orphans) if scenario.acted_on_some(remote, job))
    run.notes["orphans_taken_by_the_remote"] = taken
    if scenario.kill_may_duplicate:
        run.notes["known_duplicates"] = taken
    # Orphans the kill cut off in a call whose result the remote cannot give again: they end dead.
    cut_off = [job.pk for job in job_rows(orphans) if scenario.kill_may_lose and scenario.lost_to_kill(remote, job)]
    run.notes["known_lost"] = len(cut_off)
    run.stack.restart_workers()
    others = [pk for pk in run.ids if pk not in orphans]
    if others:
        run.wait(all_in(others, Job.State.DONE), "the jobs not in flight done", ids=others)
    rows = job_rows(orphans)
    check(all(job.state == Job.State.RUNNING and job.attempts == 1 for job in rows),
          "while its lease holds, a killed worker's job is not taken over: "
          + ", ".join(f"{job.pk}: {job.state} attempt {job.attempts}" for job in rows))
    run.say(f"  {kind}: the lease runs out (time passing); the sweep rings")
    expire_leases(orphans)
    kept = [pk for pk in run.ids if pk not in cut_off]
    run.wait(all_in(kept, Job.State.DONE), "all done", ids=kept)
    if cut_off:
        run.wait(all_in(cut_off, Job.State.DEAD), "the jobs cut off dead, with their reason", ids=cut_off)
    rows = job_rows(orphans)
    heard = [scenario.requests(remote, job) for job in rows]
    run.notes.update(orphans=len(orphans), orphan_attempts=[job.attempts for job in rows], orphan_requests=heard)
    check(all(n <= 2 * scenario.calls_per_attempt for n in heard),
          f"the remote heard a killed worker's job at most twice per call: {heard}")


def _kill_on_arrival(run: Run, before: int) -> None:
    from django.db import connections

    try:
        deadline = time.monotonic() + 30
        while run.scenario.requests_total(run.remote) <= before:
            if time.monotonic() > deadline:
                return
            time.sleep(0.002)
        arrived = time.monotonic()
        run.stack.kill_workers()
        run.notes["killed_after"] = time.monotonic() - arrived
    finally:
        connections.close_all()  # this thread's, if counting asked the database


@fault("remote 500 / timeout")
def remote_failing(run: Run) -> None:
    """The remote fails every attempt: the second and the last time out (the remote acts, but
    answers after the client gave up), the others answer 500 (KindScenario.fail_again says what
    failing means for a kind). Each failure waits to retry; after the last attempt the job is
    dead with its reason; staff replay it from admin (audited) with the remote healthy; done once."""
    from portal.jobs import handler_for
    from portal.models import AuditEvent, Job
    from portal.rls import staff_scope

    kind, scenario, remote, count = run.scenario.kind, run.scenario, run.remote, run.count
    attempts = handler_for(kind).max_attempts
    calls = count * scenario.calls_per_attempt
    run.notes["errors"] = {}
    remote.fail_next(calls, 500)
    run.say(f"  {kind}: writing {count} jobs; the remote answers 500")
    run.write("failing")
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            failure = scenario.fail_again(remote, calls, attempt=attempt, last=attempt == attempts)
            run.say(f"  {kind}: attempt {attempt} of {attempts}: {failure}; the backoff passes")
            make_due(run.ids)
            sweep()
        last = attempt == attempts
        failed_all = all_in(run.ids, Job.State.DEAD if last else Job.State.RETRYING, attempts=attempt)

        def round_over(attempt=attempt, failed_all=failed_all) -> bool:
            hold_retries(run.ids, attempts=attempt)
            return failed_all()

        run.wait(round_over, f"attempt {attempt} failed for all", timeout=60 + count * scenario.client_timeout * 2)
        run.notes["errors"][attempt] = sorted({job.last_error.splitlines()[0][:120] for job in job_rows(run.ids)})
    check(all(job.last_error and job.finished_at for job in job_rows(run.ids)),
          "a dead job keeps its reason and when it died")
    scenario.heal(remote)
    run.say(f"  {kind}: all {count} dead; the remote is healthy again; staff replay them from admin")
    run.notes["dead_reasons"] = sorted({job.last_error.splitlines()[0][:300] for job in job_rows(run.ids)})
    client, staff = staff_client()
    page = client.post("/admin/portal/job/", {"action": "replay_dead_jobs", "_selected_action": run.ids})
    check(page.status_code == 302, f"admin's replay action answers with a redirect, not {page.status_code}")
    with staff_scope():
        audited = AuditEvent.objects.filter(action=AuditEvent.Action.JOB_REPLAYED, actor=staff,
                                            object_id__in=[str(pk) for pk in run.ids]).count()
    run.notes["replays_audited"] = audited
    check(audited == count, f"each replay is audited with who did it: {audited} of {count}")
    run.wait(all_in(run.ids, Job.State.DONE), "all done after the replay")


def run_kind(stack: FaultStack, scenario: KindScenario, count: int, *, faults: list[str] | None = None,
             say: Callable[[str], None] = quiet) -> list[Outcome]:
    """Every fault on one kind: its fake started, workers that reach it, a row per fault. A failed
    check becomes its row's error, and the next fault starts from a running Redis and workers."""
    outcomes = []
    with scenario.remote() as remote:
        stack.start_workers(scenario.worker_env(remote))
        try:
            for name in [name for name in (faults or list(FAULTS)) if scenario.applies(name)]:
                try:
                    outcome = FAULTS[name](stack, scenario, remote, count, say=say)
                except FaultCheckFailed as exc:
                    outcome = exc.outcome
                    if not stack.redis.running:
                        stack.redis.start()
                    stack.restart_workers()
                    scenario.heal(remote)
                outcomes.append(outcome)
                say(f"  {scenario.kind} / {outcome.fault}: {outcome.done_once} of {count} done once, "
                    f"{outcome.lost} lost, {outcome.duplicated} duplicated ({outcome.seconds:.1f} s)"
                    + (f"; FAILED: {outcome.error}" if outcome.error else ""))
        finally:
            stack.stop_workers()
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table: kind, fault, jobs, done once, lost, duplicated (and the time it took)."""
    lines = ["| kind | fault | jobs | done once | lost | duplicated | time |", "|---|---|---|---|---|---|---|"]
    remarks = []
    for o in outcomes:
        took = f"{o.seconds:.1f} s" + (f" (FAILED: {o.error})" if o.error else "")
        mark = ""
        if o.remark:
            remarks.append(f"[{len(remarks) + 1}] {o.kind} / {o.fault}: {o.remark}")
            mark = f" [{len(remarks)}]"
        lines.append(f"| {o.kind} | {o.fault}{mark} | {o.jobs} | {o.done_once} | {o.lost} | {o.duplicated} | {took} |")
    return "\n".join(lines + ([""] + remarks if remarks else []))
