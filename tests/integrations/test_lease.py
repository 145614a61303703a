"""integrations.oauth.lease: one holder at a time per key across workers, kept in a row and not in
a database session (so it holds behind PgBouncer in transaction mode), renewed while its holder
lives and free again soon after a holder dies. Committed for real: each thread has its own
database connection, as each worker does."""
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from integrations import oauth
from integrations.models import Lease
from portal.rls import staff_scope


class Refused(Exception):
    """The caller's own error class, which a wait that runs out raises."""


def in_thread(target):
    """Run `target` on a thread of its own (its own database connection, closed after)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = target()
        except Exception as exc:  # handed to the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def take(key: str, *, wait: float) -> str:
    """Take the lease and give it back at once."""
    with oauth.lease(key, wait=wait, error=Refused):
        return "held"


def leases():
    with staff_scope():
        return list(Lease.objects.values_list("key", flat=True))


def test_a_second_worker_waits_for_the_first_and_then_holds_it(committed):
    order = []
    held = threading.Event()

    def first():
        with oauth.lease("exact-token:1"):
            held.set()
            order.append("first in")
            time.sleep(0.4)
            order.append("first out")

    def second():
        held.wait(5)
        with oauth.lease("exact-token:1", wait=5):
            order.append("second in")

    threads = [in_thread(first), in_thread(second)]
    for thread, outcome in threads:
        thread.join(10)
        assert "error" not in outcome
    assert order == ["first in", "first out", "second in"]
    assert leases() == []  # both released


def test_a_wait_that_runs_out_raises_the_callers_error_and_leaves_the_holder_holding(committed):
    with oauth.lease("twinfield-org:ACME"):
        thread, outcome = in_thread(lambda: take("twinfield-org:ACME", wait=0.3))
        thread.join(10)
        assert isinstance(outcome["error"], Refused)
        assert "twinfield-org" in str(outcome["error"]) and "0.3 s" in str(outcome["error"])
        assert leases() == ["twinfield-org:ACME"]
    assert leases() == []


def test_other_keys_do_not_wait(committed):
    with oauth.lease("exact-token:1"):
        thread, outcome = in_thread(lambda: take("exact-token:2", wait=0.2))
        thread.join(10)
        assert outcome == {"value": "held"}


def test_the_lease_is_released_when_the_guarded_call_fails(committed):
    with pytest.raises(ZeroDivisionError):
        with oauth.lease("erp-token:7"):
            1 / 0
    assert leases() == []


def test_a_living_holder_keeps_it_past_its_hold_by_renewing(committed):
    """hold 1 s, renewed every third of it: a call of 3 s keeps it throughout. (With a hold of
    0.3 s a loaded 2-core machine once let a renewal come late and the other thread in.)"""
    with oauth.lease("exact-token:3", hold=1.0):
        started = time.monotonic()
        thread, outcome = in_thread(lambda: take("exact-token:3", wait=3.0))
        thread.join(15)
        assert time.monotonic() - started >= 3.0
        assert isinstance(outcome.get("error"), Refused)


def test_a_dead_holders_lease_is_free_again_once_its_hold_has_run_out(committed):
    """A worker killed while it held the lease renews it no more: its row stays, and runs out."""
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(oauth.CLAIM_SQL, {"key": "exact-token:4", "holder": uuid.uuid4(), "hold": 0.5})
    started = time.monotonic()
    with oauth.lease("exact-token:4", wait=5):
        waited = time.monotonic() - started
    assert 0.3 < waited < 3


def test_the_lease_outlives_the_database_connection_that_took_it(committed):
    """Behind PgBouncer in transaction mode the next statement may run on another server
    connection: a session-level lock would be gone with the first one; the row is not."""
    with oauth.lease("twinfield-org:ACME"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
            assert cursor.fetchone() == (0,)
        connection.close()
        thread, outcome = in_thread(lambda: take("twinfield-org:ACME", wait=0.3))
        thread.join(10)
        assert isinstance(outcome.get("error"), Refused)
    assert leases() == []


def test_leases_are_the_back_offices_only(committed):
    with oauth.lease("exact-token:5"):
        assert Lease.objects.count() == 0  # outside the staff scope: no rows
        assert leases() == ["exact-token:5"]
