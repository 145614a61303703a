"""What the real kinds' scenarios share: the fault workers' environment, waiting for the jobs a
scenario's set-up wrote, and finding the jobs the app wrote."""
from __future__ import annotations

import threading

from tests.faults.harness import states, wait_until

# How long every remote end's client waits in the fault workers (tests/faults/settings.py).
CLIENT_TIMEOUT = 1.0


def worker_env(**extra: str) -> dict:
    """The fault workers' settings (mail by SMTP, short client timeouts) and what a kind adds."""
    return {"DJANGO_SETTINGS_MODULE": "tests.faults.settings", "FAULTS_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
            **extra}


def last_job_id() -> int:
    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        return Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def settle(since: int, *, what: str, timeout: float = 180) -> None:
    """Wait, sweeping, until every job written after job `since` (a set-up's own: the PDF
    pre-render of an invoice it made, ...) has finished, so that a drill starts from quiet
    workers and no fault it arms is met by set-up work."""
    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        ids = list(Job.objects.filter(pk__gt=since).values_list("pk", flat=True))
    if not ids:
        return

    def finished() -> bool:
        waiting = states(ids)
        return not any(waiting[state] for state in (Job.State.PENDING, Job.State.RUNNING, Job.State.RETRYING))

    wait_until(finished, timeout=timeout, what=f"the set-up's jobs ({what}) finished", ids=ids)


def job_ids(*, kind: str, keys: list[str]) -> list[int]:
    """The ids of the jobs of `kind` with these keys, in the order of the keys."""
    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        found = dict(Job.objects.filter(kind=kind, key__in=keys).values_list("key", "pk"))
    return [found.get(key) for key in keys]


class Prepared:
    """What `prepare` made for the coming jobs, handed out to the writers (each takes its share)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list = []

    def put(self, items: list) -> None:
        with self.lock:
            self.items.extend(items)

    def peek(self) -> list:
        with self.lock:
            return list(self.items)

    def take(self, count: int) -> list:
        with self.lock:
            taken, self.items = self.items[:count], self.items[count:]
        if len(taken) < count:
            raise RuntimeError(f"{count} prepared items wanted, {len(taken)} left: prepare() was not called")
        return taken
