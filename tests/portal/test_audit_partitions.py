"""The audit log partitioned by month (portal/audit_partitions.py, migration 0025): where events
land, the partitions made ahead, retention, and row-level security through the parent."""
import datetime

import psycopg
import pytest
import time_machine
from django.db import DatabaseError, connection, connections, transaction

from portal.audit_partitions import DEFAULT_PARTITION, audit_partitions, audit_partitions_maintain
from portal.models import AuditEvent
from portal.rls import client_scope, staff_scope
from portal.services import audit_record
from portal.tasks import maintain_audit_partitions
from tests.portal.factories import BrandFactory, ClientFactory
from tests.support.owner import as_owner

UTC = datetime.timezone.utc


def _month_name(day: datetime.date) -> str:
    return f"portal_auditevent_y{day:%Y}m{day:%m}"


def _months_from_now(months: int) -> datetime.date:
    today = datetime.datetime.now(UTC).date().replace(day=1)
    index = today.year * 12 + today.month - 1 + months
    return datetime.date(index // 12, index % 12 + 1, 1)


def _partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM portal_auditevent WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def _recorded_at(moment: datetime.datetime) -> int:
    """An event written at `moment` (an event with no client: the scope token is signed at the
    travelled time, which the database's clock may find expired; such an insert needs none)."""
    with time_machine.travel(moment, tick=False):
        audit_record(action=AuditEvent.Action.KEYS_ROTATED, details={"at": moment.isoformat()})
    with staff_scope():
        return AuditEvent.objects.get(details__at=moment.isoformat()).pk


def test_an_event_lands_in_its_months_partition(db):
    with staff_scope():
        audit_partitions_maintain()  # a test database migrated months ago has this month's too
    this_month, in_two_months = _months_from_now(0), _months_from_now(2)
    now = datetime.datetime.combine(this_month, datetime.time(12), UTC)
    later = datetime.datetime.combine(in_two_months, datetime.time(0, 0, 1), UTC)
    first, second = _recorded_at(now), _recorded_at(later)
    with staff_scope():
        assert _partition_of(first) == _month_name(this_month)
        assert _partition_of(second) == _month_name(in_two_months)  # made ahead


def test_an_event_of_a_month_with_no_partition_lands_in_the_default_one(db):
    event_id = _recorded_at(datetime.datetime(2001, 5, 10, 9, 30, tzinfo=UTC))
    with staff_scope():
        assert _partition_of(event_id) == DEFAULT_PARTITION
        # Read through the parent like any other.
        assert AuditEvent.objects.get(pk=event_id).created_at.year == 2001


def test_the_daily_task_makes_the_coming_months(db):
    with staff_scope():
        done = audit_partitions_maintain(months_ahead=6)
        names = audit_partitions()
    for months in range(0, 7):
        assert _month_name(_months_from_now(months)) in names
    assert names[-1] == DEFAULT_PARTITION
    assert f"created {_month_name(_months_from_now(6))}" in done
    # The task the beat runs: everything in place now, so nothing to do.
    assert maintain_audit_partitions() == []


def test_the_daily_task_does_not_make_a_month_whose_events_sit_in_the_default_partition(db):
    far = _months_from_now(12)
    event_id = _recorded_at(datetime.datetime.combine(far, datetime.time(8), UTC))
    with staff_scope():
        assert _partition_of(event_id) == DEFAULT_PARTITION
        done = audit_partitions_maintain(months_ahead=12)
        assert f"kept {_month_name(far)} in the default partition (it holds events of that month)" in done
        assert _month_name(_months_from_now(11)) in audit_partitions()
        assert _partition_of(event_id) == DEFAULT_PARTITION


def _owner_connection() -> psycopg.Connection:
    """The table owner, on a connection of its own outside Django (the application role may not
    make or drop a partition, and the test's own connection must not hold the table meanwhile)."""
    with as_owner() as owner:
        params = connections[owner].get_connection_params()
    return psycopg.connect(**{key: value for key, value in params.items() if key != "cursor_factory"})


def test_retention_drops_whole_months_past_it_and_nothing_newer(settings):
    assert settings.AUDIT_RETENTION_MONTHS == 84
    past = {months: _months_from_now(-months) for months in (100, 86, 85, 84, 83)}
    with _owner_connection() as owner, owner.transaction(force_rollback=True), owner.cursor() as cursor:
        for month in past.values():
            cursor.execute("SELECT public.audit_partition_create(%s)", [month])
        cursor.execute("SELECT public.audit_partitions_maintain(3)")
        [done] = cursor.fetchone()
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'portal_auditevent'::regclass")
        left = {name for (name,) in cursor.fetchall()}
    # A month is dropped once all of it is more than 84 months old: 85 months back and older.
    assert sorted(done) == sorted(f"dropped {_month_name(past[m])}" for m in (100, 86, 85))
    assert {_month_name(past[84]), _month_name(past[83]), _month_name(_months_from_now(0))} <= left
    assert not {_month_name(past[m]) for m in (100, 86, 85)} & left


def test_the_application_role_sees_its_clients_events_only_and_no_partition_by_name(db):
    brand = BrandFactory(is_default=True)
    alpha, bravo = ClientFactory(brand=brand, name="Alpha B.V."), ClientFactory(brand=brand, name="Bravo B.V.")
    with staff_scope():
        for client in (alpha, bravo):
            audit_record(action=AuditEvent.Action.RECORD_VIEWED, client=client, details={"of": client.name})
    with client_scope(alpha.pk):
        assert [e.details["of"] for e in AuditEvent.objects.filter(action=AuditEvent.Action.RECORD_VIEWED)] == [
            "Alpha B.V."]
        # A client's scope cannot write another client's event either.
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            audit_record(action=AuditEvent.Action.RECORD_VIEWED, client=bravo)
    # A partition by its own name is closed to the application role: policies and grants are the parent's.
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            cursor.execute(f'SELECT count(*) FROM "{_month_name(_months_from_now(0))}"')
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            cursor.execute(f'SELECT count(*) FROM "{DEFAULT_PARTITION}"')


def test_the_application_role_cannot_change_the_retention_nor_make_or_drop_a_month(db):
    statements = [
        "CREATE OR REPLACE FUNCTION public.audit_retention_months() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$",
        "SELECT public.audit_partition_create('1999-01-01')",
        "DROP TABLE portal_auditevent_default",
        "ALTER TABLE portal_auditevent DETACH PARTITION portal_auditevent_default",
        "DELETE FROM portal_auditevent",
    ]
    with staff_scope():
        for statement in statements:
            with pytest.raises(DatabaseError, match="permission denied|must be owner"), transaction.atomic(), \
                    connection.cursor() as cursor:
                cursor.execute(statement)


def test_a_month_is_made_before_the_default_partition_exists(db):
    """Migration 0025 makes a partition for every month that holds events before it makes the
    default one; the function must not name the default partition in a statement planned then."""
    month = _months_from_now(30)
    with _owner_connection() as owner, owner.transaction(force_rollback=True), owner.cursor() as cursor:
        cursor.execute(f'ALTER TABLE portal_auditevent DETACH PARTITION "{DEFAULT_PARTITION}"')
        cursor.execute("SELECT public.audit_partition_create(%s)", [month])
        assert cursor.fetchone()[0] == f"created {_month_name(month)}"
