"""The two queues of background work: each kind's bell goes to its queue, a queue's drain claims
only its kinds (walking the index, as the claim of one kind does), and the sweep rings each
queue for its own due jobs even when the other has a backlog. With real workers: a backlog of
slow jobs does not delay a fast one (tests/faults/test_queues.py)."""
import datetime
import re

import pytest
from django.db import connection, transaction
from django.utils import timezone

from portal import jobs
from portal.models import Job
from portal.rls import staff_scope

RAN: list[str] = []


@jobs.handler("test.render", lease_seconds=900, queue=jobs.SLOW)
def _render(job):
    RAN.append(job.key)
    return "rendered"


@jobs.handler("test.send", lease_seconds=60)
def _send(job):
    RAN.append(job.key)
    return "sent"


class Bells:
    def __init__(self):
        self.sent: list[tuple] = []

    def send_task(self, name, args=None, kwargs=None, **options):
        self.sent.append((name, args, kwargs, options.get("queue")))


@pytest.fixture
def bells(committed, monkeypatch):
    RAN.clear()
    fake = Bells()
    monkeypatch.setattr(jobs.current_app, "send_task", fake.send_task)
    return fake


def _enqueue(kind, key, **kwargs) -> int:
    with staff_scope(), transaction.atomic():
        return jobs.job_enqueue(kind=kind, key=key, **kwargs)


def test_every_kind_belongs_to_a_queue_and_the_slow_ones_are_the_renders_and_syncs():
    real = {kind: jobs.handler_for(kind).queue for kind in jobs.kinds_of(jobs.FAST) + jobs.kinds_of(jobs.SLOW)
            if not kind.startswith("test.")}
    assert {kind for kind, queue in real.items() if queue == jobs.SLOW} == {
        "pdf.prerender", "exact.sync", "exact.hint", "twinfield.poll", "erp.pull"}
    for kind in ("accounting.event", "outbox.deliver", "gateway.event", "notification.email", "reminder.send",
                 "mandate.collect", "exact.connect", "twinfield.connect"):
        assert real[kind] == jobs.FAST, kind
    with pytest.raises(ValueError):
        jobs.handler("test.nowhere", queue="medium")
    # Celery knows both (a worker without -Q takes both); what is not a job's bell goes to "fast".
    assert set(jobs.current_app.conf.task_queues) == set(jobs.QUEUES)
    assert jobs.current_app.conf.task_default_queue == jobs.FAST


def test_a_jobs_bell_goes_to_its_kinds_queue(bells):
    render = _enqueue("test.render", "render:1")
    send = _enqueue("test.send", "send:1")
    assert bells.sent == [("portal.tasks.run_job", [render], None, "slow"),
                          ("portal.tasks.run_job", [send], None, "fast")]
    with staff_scope(), transaction.atomic():
        jobs.jobs_enqueue_bulk(kind="test.render", jobs=[("render:bulk", {}, "")])
    assert bells.sent[-1] == ("portal.tasks.drain_jobs", None, {"kind": "test.render"}, "slow")


def test_a_queues_drain_runs_only_that_queues_kinds_with_each_kinds_lease(bells):
    renders = [_enqueue("test.render", f"render:{n}") for n in range(3)]
    sends = [_enqueue("test.send", f"send:{n}") for n in range(3)]
    assert jobs.jobs_drain(queue=jobs.FAST) == 3
    assert sorted(RAN) == ["send:0", "send:1", "send:2"]
    with staff_scope():
        assert set(Job.objects.filter(pk__in=renders).values_list("state", flat=True)) == {Job.State.PENDING}
        assert set(Job.objects.filter(pk__in=sends).values_list("state", flat=True)) == {Job.State.DONE}
        # The queue's claim sets the claimed kind's own lease (the render's 15 minutes).
        claimed = jobs._claim(kinds=jobs.kinds_of(jobs.SLOW))
    assert claimed.kind == "test.render" and claimed.key == "render:0"
    lease = claimed.lease_expires_at - timezone.now()
    assert datetime.timedelta(minutes=14) < lease <= datetime.timedelta(minutes=15)
    assert jobs.jobs_drain(queue=jobs.SLOW) == 2
    assert RAN[-2:] == ["render:1", "render:2"]


def test_a_queues_claim_takes_the_earliest_ready_job_of_its_kinds(bells):
    later = _enqueue("test.send", "send:later", run_after=timezone.now() - datetime.timedelta(minutes=1))
    earlier = _enqueue("test.send", "send:earlier", run_after=timezone.now() - datetime.timedelta(minutes=5))
    with staff_scope():
        assert jobs._claim(kinds=jobs.kinds_of(jobs.FAST)).pk == earlier
        assert jobs._claim(kinds=jobs.kinds_of(jobs.FAST)).pk == later
        assert jobs._claim(kinds=jobs.kinds_of(jobs.FAST)) is None


def test_a_queues_claim_walks_each_kinds_index_not_the_whole_backlog(bells):
    """5,000 waiting in each queue: the claim reads the first ready job of each of the queue's kinds
    from job_due_kind and sorts those few, not the backlog."""
    with staff_scope(), transaction.atomic():
        for kind in ("test.send", "test.render"):
            jobs.jobs_enqueue_bulk(kind=kind, jobs=[(f"{kind}:{n}", {}, f"{kind}:{n % 500}") for n in range(5000)])
    kinds = jobs.kinds_of(jobs.FAST)
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        _analyze()
        for ready, order in jobs.READY:
            cursor.execute("EXPLAIN ANALYZE " + jobs.QUEUE_CLAIM_SQL.format(ready=ready, order=order),
                           {"now": timezone.now(), "kinds": kinds, "leases": [60.0] * len(kinds)})
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on portal_job j" not in plan, plan
            # Each kind's scan stops at its first ready job: one row a kind, never the backlog.
            scans = re.findall(r"Index Scan using \w+ on portal_job j .*actual time=\S+ rows=(\d+) loops=(\d+)", plan)
            assert scans and all(int(rows) <= 1 for rows, loops in scans), plan
        transaction.set_rollback(True)
    with staff_scope():
        first = jobs._claim(kinds=kinds)
    assert first.key == "test.send:0" and first.state == Job.State.RUNNING


def test_the_sweep_rings_each_queue_for_its_own_due_jobs_behind_the_others_backlog(bells, monkeypatch):
    monkeypatch.setattr(jobs, "SWEEP_LIMIT", 5)
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    with staff_scope(), transaction.atomic():
        jobs.jobs_enqueue_bulk(kind="test.render", jobs=[(f"render:{n}", {}, "") for n in range(30)])
        Job.objects.filter(kind="test.render").update(run_after=long_ago)
    send = _enqueue("test.send", "send:behind")
    bells.sent.clear()
    assert jobs.jobs_sweep() == 6  # five of the slow backlog (its limit), and the fast job behind it
    assert ("portal.tasks.run_job", [send], None, "fast") in bells.sent
    assert {queue for name, args, _, queue in bells.sent if args != [send]} == {"slow"}


def _analyze() -> None:
    """Statistics of the backlog as autovacuum would gather them (only the table's owner may)."""
    from django.db import connections

    from tests.support.owner import as_owner

    with as_owner() as alias, connections[alias].cursor() as owner:
        owner.execute("ANALYZE portal_job")
