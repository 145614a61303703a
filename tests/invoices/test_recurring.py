"""Recurring schedules: one invoice per period, exactly once, catching up after downtime."""
import datetime
from decimal import Decimal

import pytest

from invoices import services
from invoices.errors import InvalidTransition
from invoices.models import Invoice, RecurringSchedule
from invoices.tasks import generate_recurring_invoices
from portal.models import AuditEvent
from portal.rls import staff_scope
from tests.invoices.factories import line

D = Decimal
R = RecurringSchedule.Status


def _schedule(client, **kwargs):
    defaults = dict(name="Hosting", lines=[line("Hosting", unit_price="49.00")], next_date=datetime.date(2026, 1, 31))
    with staff_scope():
        return services.recurring_create(client=client, brand=client.brand, **(defaults | kwargs))


def _generated(schedule):
    with staff_scope():
        return list(Invoice.objects.filter(recurring_schedule=schedule).order_by("period_start")
                    .values_list("period_start", "number", "total", "due_date"))


def test_monthly_schedule_catches_up_after_downtime_exactly_once(client_a):
    schedule = _schedule(client_a)
    with staff_scope():
        # The scheduler was down from January to the end of April: four periods are owed.
        assert services.recurring_generate_due(today=datetime.date(2026, 4, 30)) == 4
        assert services.recurring_generate_due(today=datetime.date(2026, 4, 30)) == 0
    generated = _generated(schedule)
    assert [g[0] for g in generated] == [datetime.date(2026, 1, 31), datetime.date(2026, 2, 28),
                                         datetime.date(2026, 3, 31), datetime.date(2026, 4, 30)]
    assert [g[1] for g in generated] == ["REC-2026-00001", "REC-2026-00002", "REC-2026-00003", "REC-2026-00004"]
    assert {g[2] for g in generated} == {D("59.29")}
    assert generated[0][3] == datetime.date(2026, 2, 14)  # 14 days' terms
    with staff_scope():
        schedule.refresh_from_db()
        assert schedule.next_date == datetime.date(2026, 5, 31)
        assert AuditEvent.objects.filter(action=AuditEvent.Action.RECURRING_GENERATED).count() == 4


def test_quarterly_and_yearly_and_every_n_days(client_a):
    quarterly = _schedule(client_a, interval_count=3, next_date=datetime.date(2026, 1, 1))
    yearly = _schedule(client_a, name="Licence", interval_count=12, next_date=datetime.date(2025, 6, 1))
    fortnightly = _schedule(client_a, name="Cleaning", interval_unit=RecurringSchedule.Unit.DAYS, interval_count=14,
                            next_date=datetime.date(2026, 11, 1))
    with staff_scope():
        services.recurring_generate_due(today=datetime.date(2026, 11, 25))
    assert [g[0].month for g in _generated(quarterly)] == [1, 4, 7, 10]
    assert [g[0] for g in _generated(yearly)] == [datetime.date(2025, 6, 1), datetime.date(2026, 6, 1)]
    assert [g[0].day for g in _generated(fortnightly)] == [1, 15]


def test_schedule_ends_after_its_count_or_end_date(client_a):
    counted = _schedule(client_a, next_date=datetime.date(2026, 1, 1), remaining_count=2)
    dated = _schedule(client_a, name="Until March", next_date=datetime.date(2026, 1, 1),
                      end_date=datetime.date(2026, 3, 15))
    with staff_scope():
        services.recurring_generate_due(today=datetime.date(2026, 11, 25))
        counted.refresh_from_db()
        dated.refresh_from_db()
    assert len(_generated(counted)) == 2 and counted.status == R.ENDED
    assert len(_generated(dated)) == 3 and dated.status == R.ENDED


def test_paused_schedule_issues_nothing_and_state_machine_is_enforced(client_a):
    schedule = _schedule(client_a)
    with staff_scope():
        services.recurring_transition(schedule=schedule, to=R.PAUSED)
        assert services.recurring_generate_due(today=datetime.date(2026, 3, 1)) == 0
        services.recurring_transition(schedule=schedule, to=R.ACTIVE)
        services.recurring_transition(schedule=schedule, to=R.ENDED)
        with pytest.raises(InvalidTransition, match="cannot go from ended to active"):
            services.recurring_transition(schedule=schedule, to=R.ACTIVE)
        trail = AuditEvent.objects.filter(action=AuditEvent.Action.RECURRING_STATUS, object_id=str(schedule.pk))
        assert [(e.details["from"], e.details["to"]) for e in trail.order_by("id")] == [
            ("active", "paused"), ("paused", "active"), ("active", "ended")]


def test_the_beat_task_generates_in_the_staff_scope(client_a, time_machine):
    time_machine.move_to(datetime.datetime(2026, 2, 1, 9, tzinfo=datetime.timezone.utc))
    schedule = _schedule(client_a)
    assert generate_recurring_invoices() == 1
    assert len(_generated(schedule)) == 1
