"""The one background-job mechanism: claimed once, run with no transaction open, recorded
fenced by the attempt, retried with backoff, dead after the last attempt, replayed, swept."""
import datetime
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from portal import jobs
from portal.models import AuditEvent, Job, ScheduledRun
from portal.rls import staff_scope

CALLS: list[tuple[str, int]] = []
FAILURES: dict[str, int] = {}


@jobs.handler("test.record", max_attempts=3, backoff_seconds=10)
def _record_call(job):
    # Network work would go here: the guard proves no transaction is open.
    assert not connection.in_atomic_block
    CALLS.append((job.key, job.attempts))
    if FAILURES.get(job.key, 0) > 0:
        FAILURES[job.key] -= 1
        raise ConnectionError("the remote end answered 500")
    if job.payload.get("sleep"):
        time.sleep(job.payload["sleep"])
    return "ok"


DEAD: list[tuple[str, str]] = []


@jobs.handler("test.lost", max_attempts=2, on_dead=lambda job, reason: DEAD.append((job.key, reason)))
def _never_reached(job):
    raise AssertionError("a job whose worker was lost on its last attempt is not run again")


@jobs.handler("test.final", max_attempts=5)
def _permanent(job):
    raise jobs.Permanent("the remote end says this will never work")


@jobs.handler("test.db", transactional=True)
def _db_only(job):
    ScheduledRun.objects.create(name=job.key, last_run_at=timezone.now())
    if job.payload.get("fail"):
        raise ValueError("half-way")
    return "written"


@pytest.fixture(autouse=True)
def _clean():
    CALLS.clear()
    FAILURES.clear()


def _enqueue(**kwargs) -> int:
    with staff_scope(), transaction.atomic():
        return jobs.job_enqueue(**kwargs)


def _job(pk) -> Job:
    with staff_scope():
        return Job.objects.get(pk=pk)


def _make_due(pk) -> None:
    with staff_scope():
        Job.objects.filter(pk=pk).update(run_after=timezone.now())


def test_a_job_runs_once_and_a_second_bell_changes_nothing(committed):
    pk = _enqueue(kind="test.record", key="one")
    assert _enqueue(kind="test.record", key="one") is None  # same key: no second job
    assert jobs.job_run(pk) == Job.State.DONE
    assert jobs.job_run(pk) is None
    assert CALLS == [("one", 1)]
    job = _job(pk)
    assert (job.state, job.attempts, job.result, job.lease_expires_at) == (Job.State.DONE, 1, "ok", None)
    assert job.finished_at is not None


def test_failures_wait_with_backoff_then_die_with_the_reason_and_replay_runs_it_once(committed):
    from tests.portal.factories import UserFactory

    staff = committed.create(lambda: UserFactory(is_staff=True, email="staff@portal.test"))
    FAILURES["flaky"] = 3
    pk = _enqueue(kind="test.record", key="flaky")
    assert jobs.job_run(pk) == Job.State.RETRYING
    job = _job(pk)
    assert "answered 500" in job.last_error
    wait = (job.run_after - timezone.now()).total_seconds()
    assert 10 * 0.7 < wait <= 10 * 1.25  # first backoff: the base, with jitter
    assert jobs.job_run(pk) is None  # not due yet
    _make_due(pk)
    assert jobs.job_run(pk) == Job.State.RETRYING
    assert (_job(pk).run_after - timezone.now()).total_seconds() > 20 * 0.7  # doubled
    _make_due(pk)
    assert jobs.job_run(pk) == Job.State.DEAD
    job = _job(pk)
    assert job.attempts == 3 and "answered 500" in job.last_error
    with staff_scope():
        assert jobs.job_replay(job=job, actor=staff) is True
        assert jobs.job_replay(job=job, actor=staff) is False  # no longer dead
        assert AuditEvent.objects.filter(action=AuditEvent.Action.JOB_REPLAYED, object_id=str(pk)).count() == 1
    assert jobs.job_run(pk) == Job.State.DONE
    assert [attempt for key, attempt in CALLS] == [1, 2, 3, 1]


def test_a_permanent_failure_is_dead_at_once(committed):
    pk = _enqueue(kind="test.final", key="never")
    assert jobs.job_run(pk) == Job.State.DEAD
    assert _job(pk).last_error == "the remote end says this will never work"


def test_two_workers_ringing_for_one_job_run_it_once(committed):
    pk = _enqueue(kind="test.record", key="contended", payload={"sleep": 0.3})
    results = []

    def worker():
        results.append(jobs.job_run(pk))
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [None, None, None, None, Job.State.DONE]
    assert CALLS == [("contended", 1)]


def test_a_lost_worker_is_taken_over_when_its_lease_expires_and_its_late_outcome_is_dropped(committed):
    pk = _enqueue(kind="test.record", key="orphan")
    with staff_scope():
        stale = jobs._claim(job_id=pk)  # a worker claims it, then dies
    assert jobs.job_run(pk) is None  # the lease still holds
    with staff_scope():
        Job.objects.filter(pk=pk).update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
        assert (pk, "test.record") in jobs.jobs_due()
    assert jobs.job_run(pk) == Job.State.DONE
    with staff_scope():
        assert jobs._record(stale, Job.State.DEAD, error="late") == Job.State.RUNNING  # fenced: dropped
    job = _job(pk)
    assert (job.state, job.attempts) == (Job.State.DONE, 2)


def test_a_worker_lost_on_the_last_attempt_leaves_the_job_dead_not_running_forever(committed):
    pk = _enqueue(kind="test.record", key="poison")
    with staff_scope():
        Job.objects.filter(pk=pk).update(state=Job.State.RUNNING, attempts=3,
                                         lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert jobs.job_run(pk) == Job.State.DEAD
    assert "worker was lost" in _job(pk).last_error
    assert CALLS == []


def test_the_kind_hears_when_its_job_dies_even_when_the_worker_was_lost(committed):
    DEAD.clear()
    pk = _enqueue(kind="test.lost", key="lost-on-last")
    with staff_scope():
        Job.objects.filter(pk=pk).update(state=Job.State.RUNNING, attempts=2, last_error="SMTP timeout",
                                         lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert jobs.job_run(pk) == Job.State.DEAD
    assert DEAD == [("lost-on-last", "the worker was lost during attempt 2; last error: SMTP timeout")]


def test_jobs_of_one_subject_run_in_the_order_written(committed):
    FAILURES["first"] = 1
    first = _enqueue(kind="test.record", key="first", subject="payment:1")
    second = _enqueue(kind="test.record", key="second", subject="payment:1")
    other = _enqueue(kind="test.record", key="other", subject="payment:2")
    assert jobs.job_run(second) is None  # waits: the first is still pending
    assert jobs.job_run(first) == Job.State.RETRYING
    assert jobs.job_run(second) is None  # still waits while the first retries
    assert jobs.job_run(other) == Job.State.DONE  # another subject is not held up
    _make_due(first)
    assert jobs.job_run(first) == Job.State.DONE
    assert jobs.job_run(second) == Job.State.DONE
    assert [key for key, _ in CALLS] == ["first", "other", "first", "second"]


def test_a_transactional_job_is_done_with_its_work_or_not_at_all(committed):
    failing = _enqueue(kind="test.db", key="db-fail", payload={"fail": True})
    assert jobs.job_run(failing) == Job.State.RETRYING
    with staff_scope():
        assert not ScheduledRun.objects.filter(name="db-fail").exists()  # rolled back with the failure
    ok = _enqueue(kind="test.db", key="db-ok")
    assert jobs.job_run(ok) == Job.State.DONE
    with staff_scope():
        assert ScheduledRun.objects.filter(name="db-ok").count() == 1


def test_jobs_refuse_to_run_inside_a_transaction(committed):
    pk = _enqueue(kind="test.record", key="nested")
    with transaction.atomic(), pytest.raises(RuntimeError, match="no transaction open"):
        jobs.job_run(pk)


def test_a_bell_lost_with_the_broker_down_is_rung_again_by_the_sweep(committed, monkeypatch):
    rung = []

    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(jobs.current_app, "send_task", broker_down)
    pk = _enqueue(kind="test.record", key="unrung")  # commits; the bell fails, quietly
    assert _job(pk).state == Job.State.PENDING
    monkeypatch.setattr(jobs.current_app, "send_task",
                        lambda name, args=None, kwargs=None, **options: rung.append((name, args)))
    assert jobs.jobs_sweep() >= 1
    assert ("portal.tasks.run_job", [pk]) in rung
    assert jobs.job_run(pk) == Job.State.DONE


class _Broker:
    """Records each bell with the moment it was sent, and whether the job was committed then."""

    def __init__(self):
        self.bells: list[tuple] = []
        self.lock = threading.Lock()

    def send_task(self, name, args=None, kwargs=None, **options):
        with self.lock:
            self.bells.append((name, args, kwargs, time.monotonic()))

    def wait_for(self, count: int, seconds: float = 5.0) -> list[tuple]:
        deadline = time.monotonic() + seconds
        while len(self.bells) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return [bell[:3] for bell in self.bells]


def test_batched_bells_ring_once_after_the_commits_and_not_while_a_drain_waits(committed, monkeypatch, settings):
    from django.core.cache import cache

    settings.JOB_BELL_BATCH_MS = 60
    cache.delete(jobs.DRAIN_WAITING_KEY.format(kind="test.record"))
    broker = _Broker()
    monkeypatch.setattr(jobs.current_app, "send_task", broker.send_task)
    drain = ("portal.tasks.drain_jobs", None, {"kind": "test.record"})
    committed_at = time.monotonic()
    first = [_enqueue(kind="test.record", key=f"batched-{n}") for n in range(3)]
    assert broker.bells == []  # not at the commits: within the window
    assert broker.wait_for(1) == [drain]  # then one drain for the batch
    assert broker.bells[0][3] >= committed_at + 0.06
    # More jobs while that drain still waits for a worker: it will see them, no other bell.
    second = _enqueue(kind="test.record", key="batched-while-waiting")
    time.sleep(0.2)
    assert len(broker.bells) == 1
    # A worker begins the drain: it claims everything committed so far, and a job committed
    # after that rings again (no wake-up is lost).
    assert jobs.jobs_drain(kind="test.record") == 4
    assert {_job(pk).state for pk in [*first, second]} == {Job.State.DONE}
    late = _enqueue(kind="test.record", key="batched-late")
    assert broker.wait_for(2) == [drain, drain]
    assert jobs.jobs_drain(kind="test.record") == 1 and _job(late).state == Job.State.DONE


def test_a_batched_bell_is_rung_for_a_commit_only(committed, monkeypatch, settings):
    settings.JOB_BELL_BATCH_MS = 20
    broker = _Broker()
    monkeypatch.setattr(jobs.current_app, "send_task", broker.send_task)
    with pytest.raises(ValueError), staff_scope(), transaction.atomic():
        jobs.job_enqueue(kind="test.record", key="batched-rolled-back")
        raise ValueError("the change failed")
    time.sleep(0.1)
    assert broker.bells == []


def test_a_job_is_written_with_the_change_or_not_at_all(committed):
    with pytest.raises(ValueError), staff_scope(), transaction.atomic():
        jobs.job_enqueue(kind="test.record", key="rolled-back")
        raise ValueError("the change failed")
    with staff_scope():
        assert not Job.objects.filter(key="rolled-back").exists()


@pytest.mark.parametrize("kind", [None, "test.record"])
def test_a_claim_walks_an_index_to_the_first_ready_job_not_the_whole_backlog(committed, monkeypatch, kind):
    """A claim under a webhook storm: with thousands waiting, each of the claim's statements reads
    its partial index in order and stops at the first job it may take (no scan, no sort of them all)."""
    monkeypatch.setattr(jobs, "ring_kind", lambda kind: None)
    with transaction.atomic(), staff_scope():
        jobs.jobs_enqueue_bulk(kind="test.record", jobs=[(f"storm:{n}", {}, f"storm:{n % 500}") for n in range(5000)])
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        _analyze()
        for ready, order in jobs.READY:
            only = " AND j.kind = %(kind)s" if kind else ""
            cursor.execute("EXPLAIN " + jobs.CLAIM_SQL.format(ready=ready, only=only, order=order),
                           {"now": timezone.now(), "lease": datetime.timedelta(minutes=5), "id": None, "kind": kind})
            plan = "\n".join(row[0] for row in cursor.fetchall())
            # An index in the claim's order; at most an incremental sort on what it already orders.
            assert "Seq Scan on portal_job j" not in plan and "->  Sort" not in plan, plan
    with staff_scope():
        first = jobs._claim(kind=kind)
    assert first.key == "storm:0" and first.state == Job.State.RUNNING


def _analyze() -> None:
    """Statistics of the backlog as autovacuum would gather them (only the table's owner may)."""
    from django.db import connections

    from tests.support.owner import as_owner

    with as_owner() as alias, connections[alias].cursor() as owner:
        owner.execute("ANALYZE portal_job")
