"""Benchmark by hand: every fault on every job kind that has a scenario, with real workers on a
real Redis of its own, and a table of what came of it.

    .venv/bin/python bench/faults.py [--jobs 200] [--kind accounting.event ...] [--fault "worker killed" ...]
                                     [--workers 2]

Faults (tests/faults/drills.py): Redis stopped while the jobs are written, then started again;
the workers killed with SIGKILL mid-job (the lease runs out, the job finishes once); the remote
end answering 500 and timing out on every attempt (dead after the last, replayed from admin).
For a kind with no remote end the third is the handler failing instead (accounting.event: an
invoice arriving before its client), or does not apply (pdf.prerender).
Kinds: those in portal.jobs.HANDLERS with a scenario in tests/faults/kinds/ (SCENARIOS), which
say how the app writes their jobs and what "done once" means for each.

Uses the test settings on a database of its own (portal_bench_faults, created and migrated if
needed, emptied before the run) on the embedded PostgreSQL (or DATABASE_URL's server), and starts
its own Redis, workers (tests/faults/settings.py: mail by SMTP to a local mail server, the remote
ends' clients waiting 1 s) and fakes; the sweep is played by this process about once a second.
Prints its progress, then the table: kind, fault, jobs, done once, lost, duplicated, with a note
under it where a row needs one. Exits 1 if a job was lost, or duplicated beyond what the kind
cannot avoid (an email whose worker was killed after the mail server took it: counted, and
named in the note), or a check on the way failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DATABASE = "portal_bench_faults"


def _configure() -> None:
    """Django with the test settings on the bench's own database (unless a caller set it up)."""
    from django.apps import apps

    if apps.ready:  # called from a test: its settings and database stand
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings_test"
    os.environ["DATABASE_NAME"] = DATABASE
    os.environ["TEST_DATABASE_NAME"] = DATABASE  # with DATABASE_URL: settings_test's name for the test database
    import django

    django.setup()
    _prepare_database()


def _prepare_database() -> None:
    import io

    from django.core.management import call_command

    from tests.support.owner import as_owner

    print(f"database {DATABASE}: bootstrapping, migrating, emptying", flush=True)
    call_command("db_bootstrap", stdout=io.StringIO())
    with as_owner() as owner:
        call_command("migrate", database=owner, interactive=False, verbosity=0)
        call_command("flush", database=owner, interactive=False, verbosity=0)


def main(argv: list[str] | None = None, *, base_env: dict | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per kind and fault (default 200)")
    parser.add_argument("--kind", action="append", help="only this kind (repeatable)")
    parser.add_argument("--fault", action="append", help="only this fault (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="solo workers side by side (default 2)")
    args = parser.parse_args(argv)
    _configure()

    from django.utils.module_loading import autodiscover_modules

    from portal.jobs import HANDLERS
    from tests.faults.drills import FAULTS, run_kind, table
    from tests.faults.harness import FaultStack
    from tests.faults.kinds import SCENARIOS

    autodiscover_modules("tasks")  # every kind registers its handler in its app's tasks module
    kinds = [kind for kind in (args.kind or sorted(HANDLERS)) if kind in SCENARIOS]
    without = sorted(set(HANDLERS) - set(SCENARIOS))
    faults = args.fault or list(FAULTS)
    unknown = [name for name in faults if name not in FAULTS]
    if unknown or not kinds:
        parser.error(f"no such fault {unknown}; faults: {list(FAULTS)}" if unknown else
                     f"no kind with a scenario; scenarios: {sorted(SCENARIOS)}")
    if without:
        print(f"kinds without a scenario yet (skipped): {', '.join(without)}", flush=True)

    started = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as directory:
        with FaultStack(Path(directory), workers=args.workers, base_env=base_env, say=_say) as stack:
            _say(f"Redis of our own on port {stack.redis.port}; {args.workers} solo worker(s); "
                 f"{args.jobs} jobs per kind and fault")
            for kind in kinds:
                _say(f"{kind}:")
                outcomes += run_kind(stack, SCENARIOS[kind](), args.jobs, faults=faults, say=_say)
    print(f"\n{table(outcomes)}\n\n{len(outcomes)} runs in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
