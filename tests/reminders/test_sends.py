"""Reminder sends as jobs ("reminder.send"): each recipient gets one email and one portal
notification however often a send is retried, and a send that never gets through ends failed,
with its reasons, until staff replay it."""
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import OperationalError
from django.utils import timezone

from portal import jobs
from portal.models import Job, Notification, NotificationKind
from portal.rls import staff_scope
from reminders import services
from reminders.models import ReminderDelivery, ReminderDispatch
from reminders.services import reminders_scan
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory
from tests.reminders.test_scanner import ISSUED, _day, _policy


@pytest.fixture
def bells(monkeypatch):
    """The test runs the jobs itself: no bell reaches a worker (one may be running for the
    end-to-end tests, and would take them)."""
    rung = []
    monkeypatch.setattr(jobs.current_app, "send_task",
                        lambda name, args=None, kwargs=None, **options: rung.append(name))
    return rung


class Smtp:
    """The mail server: refuses the addresses in `refuse`, delivers the rest (locmem outbox)."""

    def __init__(self):
        self.refuse: set[str] = set()


@pytest.fixture
def smtp(monkeypatch):
    server = Smtp()
    deliver = EmailBackend.send_messages

    def send_messages(backend, messages):
        for message in messages:
            refused = server.refuse & set(message.recipients())
            if refused:
                raise smtplib.SMTPRecipientsRefused({address: (550, b"mailbox unavailable") for address in refused})
        return deliver(backend, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", send_messages)
    return server


def _world():
    brand = BrandFactory(is_default=True)
    _policy(brand)  # the +1 step goes by email and in the portal
    client = ClientFactory(brand=brand, name="Alpha B.V.", locale="en", billing_email="ap@alpha.test")
    anna = MembershipFactory(client=client, user__email="anna@alpha.test").user
    erik = MembershipFactory(client=client, user__email="erik@alpha.test").user
    invoice = make_invoice(client, number="R-1", issue_date=ISSUED, due_days=14, lines=[line(unit_price="100.00")])
    return {"client": client, "anna": anna, "erik": erik, "invoice": invoice}


def _scan(invoice, offset=1) -> tuple[int, int]:
    with staff_scope():
        [dispatch_id] = reminders_scan(now=_day(invoice, offset))  # commits, with its job
        return dispatch_id, Job.objects.get(kind="reminder.send", key=f"reminder:{dispatch_id}").pk


def _make_due(job_id):
    with staff_scope():
        Job.objects.filter(pk=job_id).update(run_after=timezone.now())


def _job(job_id) -> Job:
    with staff_scope():
        return Job.objects.get(pk=job_id)


def _dispatch(dispatch_id) -> ReminderDispatch:
    with staff_scope():
        return ReminderDispatch.objects.get(pk=dispatch_id)


def _emailed() -> list[str]:
    """Every address a reminder email went to, once per message (sorted)."""
    return sorted(address for message in mail.outbox if message.subject.startswith("[") for address in message.to)


def _portal_reminders(world) -> dict[str, int]:
    with staff_scope():
        return {name: Notification.objects.filter(user=world[name], kind=NotificationKind.REMINDER).count()
                for name in ("anna", "erik")}


def _deliveries(dispatch_id) -> dict[tuple[str, str], bool]:
    with staff_scope():
        return {(d.channel, d.recipient): d.sent_at is not None
                for d in ReminderDelivery.objects.filter(dispatch_id=dispatch_id)}


def test_a_send_failing_half_way_is_retried_and_each_recipient_gets_it_exactly_once(committed, bells, smtp):
    world = committed.create(_world)
    dispatch_id, job_id = _scan(world["invoice"])
    smtp.refuse = {"ap@alpha.test"}  # the second of three addresses
    assert jobs.job_run(job_id) == Job.State.RETRYING
    assert _emailed() == ["anna@alpha.test", "erik@alpha.test"]
    assert _portal_reminders(world) == {"anna": 1, "erik": 1}
    anna, erik = str(world["anna"].pk), str(world["erik"].pk)
    assert _deliveries(dispatch_id) == {
        ("email", "anna@alpha.test"): True, ("email", "ap@alpha.test"): False, ("email", "erik@alpha.test"): True,
        ("in_app", anna): True, ("in_app", erik): True}
    dispatch = _dispatch(dispatch_id)
    assert (dispatch.status, dispatch.attempts) == ("queued", 1)
    assert dispatch.error.startswith("ap@alpha.test: SMTPRecipientsRefused")
    assert "ap@alpha.test" in _job(job_id).last_error

    smtp.refuse.clear()
    _make_due(job_id)
    assert jobs.job_run(job_id) == Job.State.DONE
    assert _emailed() == ["anna@alpha.test", "ap@alpha.test", "erik@alpha.test"]  # only ap's went out again
    assert _portal_reminders(world) == {"anna": 1, "erik": 1}
    assert all(_deliveries(dispatch_id).values())
    dispatch = _dispatch(dispatch_id)
    assert (dispatch.status, dispatch.attempts, dispatch.error) == ("sent", 2, "")
    assert dispatch.sent_at is not None
    assert jobs.job_run(job_id) is None  # a late bell changes nothing
    assert _emailed() == ["anna@alpha.test", "ap@alpha.test", "erik@alpha.test"]


def test_a_send_that_keeps_failing_is_dead_after_its_last_attempt_shows_failed_and_can_be_replayed(
        committed, bells, smtp, client):
    world = committed.create(_world)
    dispatch_id, job_id = _scan(world["invoice"])
    smtp.refuse = {"ap@alpha.test"}
    outcomes = []
    for _ in range(services.MAX_ATTEMPTS):
        _make_due(job_id)
        outcomes.append(jobs.job_run(job_id))
    assert outcomes == [Job.State.RETRYING] * (services.MAX_ATTEMPTS - 1) + [Job.State.DEAD]
    dispatch = _dispatch(dispatch_id)
    assert (dispatch.status, dispatch.attempts) == ("failed", services.MAX_ATTEMPTS)
    assert dispatch.error.startswith("ap@alpha.test: SMTPRecipientsRefused") and "mailbox unavailable" in dispatch.error
    assert dispatch.error in _job(job_id).last_error
    assert _emailed() == ["anna@alpha.test", "erik@alpha.test"]  # six attempts, still one each
    assert _portal_reminders(world) == {"anna": 1, "erik": 1}

    staff = committed.create(lambda: UserFactory(is_staff=True, is_superuser=True, email="staff@portal.test"))
    client.force_login(staff)
    page = client.get(f"/admin/reminders/reminderdispatch/{dispatch_id}/change/")
    assert page.status_code == 200 and "Failed" in page.text and "mailbox unavailable" in page.text
    assert f"Dead ({services.MAX_ATTEMPTS}/{services.MAX_ATTEMPTS})" in page.text  # its send job, to replay

    smtp.refuse.clear()  # the address works again: staff replay the dead job
    with staff_scope():
        assert jobs.job_replay(job=_job(job_id), actor=staff)
    assert jobs.job_run(job_id) == Job.State.DONE
    assert _dispatch(dispatch_id).status == "sent"
    assert _emailed() == ["anna@alpha.test", "ap@alpha.test", "erik@alpha.test"]


def test_portal_notifications_commit_with_their_delivery_records_or_not_at_all(committed, bells, smtp,
                                                                               monkeypatch):
    world = committed.create(_world)
    dispatch_id, job_id = _scan(world["invoice"])
    notify = services.notify_client
    calls = []

    def notify_then_lose_the_connection(**kwargs):
        created = notify(**kwargs)
        calls.append(len(created))
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return created

    monkeypatch.setattr(services, "notify_client", notify_then_lose_the_connection)
    assert jobs.job_run(job_id) == Job.State.RETRYING
    assert calls == [2] and _portal_reminders(world) == {"anna": 0, "erik": 0}  # rolled back with the records
    assert "OperationalError" in _dispatch(dispatch_id).error
    _make_due(job_id)
    assert jobs.job_run(job_id) == Job.State.DONE
    assert _portal_reminders(world) == {"anna": 1, "erik": 1}
    assert _emailed() == ["anna@alpha.test", "ap@alpha.test", "erik@alpha.test"]
