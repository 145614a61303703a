"""The two queues with real Celery workers, one per queue as `make run` and docker-compose run
them: a backlog of slow jobs does not delay a fast job written after it."""
from django.db import transaction

from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.faults.harness import FaultStack, all_in, wait_until
from tests.support.tasks import QUICK, SLEEP

BACKLOG, SECONDS = 50, 0.3  # 15 s of slow work for the slow worker, one job at a time


def _count(kind: str, state: str) -> int:
    with staff_scope():
        return Job.objects.filter(kind=kind, state=state).count()


def test_a_backlog_of_slow_jobs_does_not_delay_a_fast_job(process_env, tmp_path, committed):
    with FaultStack(tmp_path / "queues", workers=0, base_env=process_env) as stack:
        stack.start_queue_worker(jobs.FAST)
        stack.start_queue_worker(jobs.SLOW)
        with staff_scope(), transaction.atomic():
            jobs.jobs_enqueue_bulk(kind=SLEEP, jobs=[(f"slow:{n}", {"seconds": SECONDS}, "") for n in range(BACKLOG)])
        with staff_scope():
            slow = list(Job.objects.filter(kind=SLEEP).values_list("pk", flat=True))
        wait_until(lambda: _count(SLEEP, Job.State.DONE) >= 1, timeout=30, what="the slow worker under way",
                   ids=slow, sweeping=False, stack=stack)

        with staff_scope(), transaction.atomic():
            fast = jobs.job_enqueue(kind=QUICK, key="quick:after-the-backlog")
        took = wait_until(all_in([fast], Job.State.DONE), timeout=30, what="the fast job", ids=[fast],
                          sweeping=False, stack=stack)
        slow_done = _count(SLEEP, Job.State.DONE)
        # Done at once, by its own worker, while most of the backlog still waits (in one queue it
        # would have waited for all 50: 15 s).
        assert took < 5, took
        assert slow_done < BACKLOG * 0.8, slow_done

        wait_until(all_in(slow, Job.State.DONE), timeout=120, what="the slow backlog", ids=slow, stack=stack)
        with staff_scope():
            assert set(Job.objects.filter(kind=SLEEP).values_list("attempts", flat=True)) == {1}
