"""What the first-load benchmarks of the accounting systems share (bench/exact_sync.py,
bench/twinfield_sync.py), and bench/burst.py the database part of: the local fake in a child process started before Django, the bench's
own database, the bells recorded instead of rung, memory, and draining the stored events as the
worker does. Imported by those scripts (run from the project's root; bench/ is their path)."""
from __future__ import annotations

import multiprocessing
import os
import resource
import time


def start_fake(target, *args):
    """The fake first, before Django (a forked child must not inherit open connections): returns
    (process, pipe, what the fake sent first: where it listens)."""
    pipe, child_end = multiprocessing.Pipe()
    fake = multiprocessing.get_context("fork").Process(target=target, args=(child_end, *args), daemon=True)
    fake.start()
    child_end.close()  # so a fake that dies is an EOFError here, not a wait
    _, where = pipe.recv()
    return fake, pipe, where


def stop_fake(fake, pipe) -> None:
    try:
        pipe.send("stop")
    except OSError:
        pass
    fake.join(timeout=10)


def use_bench_database(name: str) -> None:
    """The test settings on a database of the bench's own (make test runs it tiny, on another)."""
    os.environ.setdefault("DATABASE_NAME", name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")
    os.environ["TEST_REDIS_DB"] = os.environ.get("BENCH_REDIS_DB", os.environ.get("TEST_REDIS_DB", "12"))
    if os.environ.get("DATABASE_URL"):
        os.environ["TEST_DATABASE_NAME"] = os.environ["DATABASE_NAME"]


def prepare_database() -> list:
    """Django set up, the bench database bootstrapped, migrated and emptied; returns the list the
    job bells are recorded in (no worker is rung: the bench drains the jobs itself)."""
    import django

    django.setup()

    from django.core.management import call_command

    from portal import jobs
    from tests.support.owner import as_owner

    print(f"preparing the bench database ({os.environ['DATABASE_NAME']}): bootstrap, migrate, empty", flush=True)
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, interactive=False, verbosity=0)
        call_command("flush", database=owner, interactive=False, verbosity=0)
    bells = []
    jobs.current_app.send_task = lambda name, args=None, kwargs=None, **options: bells.append(name)
    return bells


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    current = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def apply_all() -> tuple[float, int, int]:
    """Drain the stored events as the worker does; an event retried with backoff is made due at
    once (time passing). Returns (seconds, jobs run, attempts that failed)."""
    from django.utils import timezone

    from portal import jobs
    from portal.models import Job
    from portal.rls import staff_scope

    with staff_scope():
        total = Job.objects.filter(kind="accounting.event").count()
    print(f"apply: {total:,} stored events (accounting.event jobs)", flush=True)
    claim, claiming = jobs._claim, [0.0]

    def timed_claim(**kwargs):
        claim_started = time.perf_counter()
        try:
            return claim(**kwargs)
        finally:
            claiming[0] += time.perf_counter() - claim_started

    jobs._claim = timed_claim
    started = time.perf_counter()
    ran = 0
    while True:
        chunk_started = time.perf_counter()
        done = jobs.jobs_drain(kind="accounting.event", seconds=5)
        ran += done
        if done:
            print(f"    {ran:,}/{total:,} applied ({done / (time.perf_counter() - chunk_started):,.0f}/s; "
                  f"{claiming[0]:.1f} s claiming so far)", flush=True)
            continue
        with staff_scope():
            waiting = Job.objects.filter(kind="accounting.event", state=Job.State.RETRYING)
            if not waiting.exists():
                break
            print(f"    {waiting.count():,} events wait for a retry: made due now", flush=True)
            waiting.update(run_after=timezone.now())
    with staff_scope():
        retried = sum(attempts - 1 for attempts in Job.objects.filter(kind="accounting.event")
                      .values_list("attempts", flat=True))
    return time.perf_counter() - started, ran, retried
