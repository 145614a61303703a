"""Queued work runs on a real worker over Redis."""
import time

from django.core.cache import cache

from portal.tasks import HEARTBEAT_KEY, beat_heartbeat


def test_heartbeat_is_run_by_a_real_worker(celery_worker_process):
    assert cache.get(HEARTBEAT_KEY) is None
    beat_heartbeat.delay()
    deadline = time.monotonic() + 20
    while cache.get(HEARTBEAT_KEY) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache.get(HEARTBEAT_KEY) is not None, "the worker never ran the task"

