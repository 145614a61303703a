"""Reminder sequences: what goes out when, exactly once, and what stops or holds them."""
import datetime
import threading
from decimal import Decimal

import pytest
from django.core import mail

from invoices import services as ledger
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount
from portal.models import Job, Notification, NotificationKind
from portal.rls import staff_scope
from reminders.models import ReminderDelivery, ReminderDispatch, ReminderHold, ReminderPolicy, ReminderStep
from reminders.services import reminder_send, reminders_scan
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal
ISSUED = datetime.date(2026, 11, 2)  # a Monday; due 14 days later
UTC = datetime.timezone.utc


def _policy(brand, business_days_only=False):
    with staff_scope():
        policy = ReminderPolicy.objects.create(name="Default", brand=brand, business_days_only=business_days_only)
        for offset, level, channel in ((-3, "friendly", "email"), (1, "friendly", "both"), (7, "firm", "both"),
                                       (14, "final", "both")):
            ReminderStep.objects.create(
                policy=policy, offset_days=offset, level=level, channel=channel,
                subject_en=f"[{level}] Invoice {{{{ invoice_number }}}}: {{{{ open_balance }}}}",
                body_en="Dear {{ client }}, invoice {{ invoice_number }} of {{ open_balance }} was due "
                        "{{ due_date }} ({{ days_overdue }} days ago). Pay: {{ pay_link }}",
                subject_nl=f"[{level}] Factuur {{{{ invoice_number }}}}", body_nl="Beste {{ client }}")
    return policy


@pytest.fixture
def world(db):
    brand = BrandFactory(is_default=True)
    policy = _policy(brand)
    client = ClientFactory(brand=brand, name="Alpha B.V.", locale="en", billing_email="ap@alpha.test")
    MembershipFactory(client=client, user__email="anna@alpha.test")
    invoice = make_invoice(client, number="R-1", issue_date=ISSUED, due_days=14, lines=[line(unit_price="100.00")])
    return {"brand": brand, "policy": policy, "client": client, "invoice": invoice}


def _day(invoice, offset):
    return datetime.datetime.combine(invoice.due_date + datetime.timedelta(days=offset), datetime.time(10), UTC)


def _scan_and_send(now):
    with staff_scope():
        created = reminders_scan(now=now)
        for pk in created:
            reminder_send(dispatch_id=pk)
        return [ReminderDispatch.objects.get(pk=pk).step.offset_days for pk in created]


def test_a_whole_sequence_from_a_week_before_to_a_month_after(world, time_machine):
    sent = {}
    for offset in range(-7, 31):
        time_machine.move_to(_day(world["invoice"], offset))
        for step in _scan_and_send(_day(world["invoice"], offset)):
            sent.setdefault(offset, []).append(step)
    assert sent == {-3: [-3], 1: [1], 7: [7], 14: [14]}
    # One message per recipient (the billing address and the contact), each step once.
    assert [(m.subject, m.to) for m in mail.outbox] == [
        (f"[{level}] Invoice R-1: €121.00", [address]) for level in ("friendly", "friendly", "firm", "final")
        for address in ("anna@alpha.test", "ap@alpha.test")]
    assert "(7 days ago)" in mail.outbox[4].body and "/invoices/" in mail.outbox[4].body
    with staff_scope():  # email-only step: no in-app; the others: in-app too
        assert Notification.objects.filter(kind=NotificationKind.REMINDER).count() == 3
        assert set(ReminderDispatch.objects.values_list("status", flat=True)) == {"sent"}
        assert ReminderDelivery.objects.filter(channel="email", sent_at__isnull=False).count() == 8
        assert ReminderDelivery.objects.filter(channel="in_app", sent_at__isnull=False).count() == 3


def test_the_scan_writes_one_send_job_per_dispatch_and_a_rerun_none(world):
    with staff_scope():
        created = reminders_scan(now=_day(world["invoice"], 1))
        assert reminders_scan(now=_day(world["invoice"], 1)) == []
        jobs = list(Job.objects.filter(kind="reminder.send").values_list("key", "payload", "state"))
    assert jobs == [(f"reminder:{created[0]}", {"dispatch": created[0]}, "pending")]


def test_after_downtime_only_the_latest_due_step_goes_out(world):
    assert _scan_and_send(_day(world["invoice"], 10)) == [7]
    assert _scan_and_send(_day(world["invoice"], 11)) == []
    assert _scan_and_send(_day(world["invoice"], 14)) == [14]


def test_payment_stops_the_sequence_and_a_partial_one_shows_the_new_balance(world):
    _scan_and_send(_day(world["invoice"], 1))
    pay(world["client"], [(world["invoice"], "21.00")])
    _scan_and_send(_day(world["invoice"], 7))
    assert "€100.00" in mail.outbox[-1].subject
    pay(world["client"], [(world["invoice"], "100.00")])
    assert _scan_and_send(_day(world["invoice"], 14)) == []


def test_void_credit_pause_and_dispute_stop_it(world):
    others = [make_invoice(world["client"], number=f"R-{n}", issue_date=ISSUED, due_days=14) for n in (2, 3, 4)]
    with staff_scope():
        ledger.invoice_void(invoice=world["invoice"])
        ledger.credit_note_create(invoice=others[0], number="CN-R", issue_date=ISSUED, lines=[line()])
        ReminderHold.objects.create(client=world["client"], invoice=others[1], reason="paused")
        ReminderHold.objects.create(client=world["client"], invoice=others[2], reason="disputed")
    assert _scan_and_send(_day(world["invoice"], 1)) == []


def test_a_pending_gateway_payment_holds_it_until_it_fails(world):
    with staff_scope():
        gateway = GatewayAccount.objects.create(brand=world["brand"], provider="sandbox")
        attempt = CheckoutAttempt.objects.create(client=world["client"], gateway=gateway, method="sepa_direct_debit",
                                                 amount=D("121.00"), currency="EUR", status="pending")
        CheckoutItem.objects.create(client=world["client"], attempt=attempt, invoice=world["invoice"],
                                    amount=D("121.00"))
    assert _scan_and_send(_day(world["invoice"], 1)) == []
    with staff_scope():
        CheckoutAttempt.objects.filter(pk=attempt.pk).update(status="failed")
    assert _scan_and_send(_day(world["invoice"], 1)) == [1]


def test_business_days_only_waits_for_monday(db):
    brand = BrandFactory(is_default=True)
    _policy(brand, business_days_only=True)
    client = ClientFactory(brand=brand)
    invoice = make_invoice(client, issue_date=datetime.date(2026, 11, 13), due_days=14)  # due Friday 27 Nov
    saturday = datetime.datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert _scan_and_send(saturday) == []
    assert _scan_and_send(saturday + datetime.timedelta(days=2)) == [1]
    assert invoice.pk


def test_two_scanners_at_once_send_one_reminder(committed):
    def build():
        brand = BrandFactory()
        _policy(brand)
        client = ClientFactory(brand=brand)
        return make_invoice(client, issue_date=ISSUED, due_days=14)

    invoice = committed.create(build)
    from django.db import connection

    results, barrier = [], threading.Barrier(2)

    def scan():
        barrier.wait()
        try:
            with staff_scope():
                results.append(reminders_scan(now=_day(invoice, 1)))
        finally:
            connection.close()

    threads = [threading.Thread(target=scan) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(len(r) for r in results) == [0, 1]
    with staff_scope():
        assert ReminderDispatch.objects.count() == 1
        assert Job.objects.filter(kind="reminder.send").count() == 1


def test_admin_previews_policies_and_shows_delivery_rates(world, client, staff):
    _scan_and_send(_day(world["invoice"], 1))
    pay(world["client"], [(world["invoice"], "121.00")])
    client.force_login(staff)
    policy_page = client.get(f"/admin/reminders/reminderpolicy/{world['policy'].pk}/change/")
    assert "[firm] Invoice INV-2026-00042: €1,208.33" in policy_page.text
    rates = client.get("/admin/reminders/reminderdispatch/rates/")
    assert rates.status_code == 200 and "100.0%" in rates.text and "121.00" in rates.text


def test_health_page_warns_when_the_scanner_has_gone_quiet(db, client, staff):
    from django.utils import timezone

    from portal.models import ScheduledRun

    with staff_scope():
        # update_or_create: a worker from an earlier test may have recorded a run already.
        ScheduledRun.objects.update_or_create(name="beat", defaults={"last_run_at": timezone.now()})
        ScheduledRun.objects.update_or_create(name="job sweep", defaults={"last_run_at": timezone.now()})
        ScheduledRun.objects.update_or_create(name="reminder scanner", defaults={
            "last_run_at": timezone.now() - datetime.timedelta(hours=3)})
    client.force_login(staff)
    page = client.get("/admin/health/")
    assert page.text.count("Has not run for over two hours") == 1


def test_a_late_fee_step_raises_one_fee_invoice_and_tells_accounting(world):
    from integrations.models import ClientLink, Connection, OutboxMessage
    from invoices.models import Invoice

    with staff_scope():
        ReminderStep.objects.filter(policy=world["policy"], offset_days=7).update(
            late_fee_fixed=D("15.00"), late_fee_percent=D("2.00"))
        erp = Connection.objects.create(name="ERP", slug="erp", brand=world["brand"], signing_secrets="whsec_x",
                                        outbound_url="https://erp.example.test/hook")
        ClientLink.objects.create(connection=erp, external_id="C-1", client=world["client"])
    assert _scan_and_send(_day(world["invoice"], 7)) == [7]
    assert _scan_and_send(_day(world["invoice"], 8)) == []  # no second fee for the same step
    with staff_scope():
        dispatch = ReminderDispatch.objects.get(step__offset_days=7)
        fee = dispatch.fee_invoice
        assert (fee.number, fee.total, fee.status) == ("R-1-FEE+7", D("17.42"), "open")  # 15.00 + 2% of 121.00
        assert Invoice.objects.filter(number__contains="FEE").count() == 1
        [message] = OutboxMessage.objects.filter(event_type="invoice.created")
        assert message.payload["data"]["related_invoice_number"] == "R-1"


def test_a_final_step_can_attach_a_reminder_letter_in_the_brands_look(world):
    import io

    from pypdf import PdfReader

    with staff_scope():
        ReminderStep.objects.filter(policy=world["policy"], offset_days=14).update(attach_letter=True)
    _scan_and_send(_day(world["invoice"], 14))
    assert sorted(m.to[0] for m in mail.outbox) == ["anna@alpha.test", "ap@alpha.test"]
    for message in mail.outbox:  # the letter is rendered once and goes to each recipient
        [(name, content, mime)] = message.attachments
        assert (name, mime) == ("reminder-R-1.pdf", "application/pdf")
        assert content == mail.outbox[0].attachments[0][1]
    text = PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert "[final] Invoice R-1" in text and "€121.00" in text and world["brand"].name in text


def test_business_hours_follow_the_clients_time_zone(db):
    brand = BrandFactory(is_default=True)
    policy = _policy(brand)
    with staff_scope():
        ReminderPolicy.objects.filter(pk=policy.pk).update(business_hours_start=datetime.time(9),
                                                           business_hours_end=datetime.time(17))
    tokyo = ClientFactory(brand=brand, time_zone="Asia/Tokyo")
    amsterdam = ClientFactory(brand=brand, time_zone="Europe/Amsterdam")
    make_invoice(tokyo, number="TYO", issue_date=ISSUED, due_days=14)
    make_invoice(amsterdam, number="AMS", issue_date=ISSUED, due_days=14)
    # 09:30 in Amsterdam is 17:30 in Tokyo: only the Amsterdam client is reminded now.
    morning = datetime.datetime(2026, 11, 17, 8, 30, tzinfo=UTC)
    with staff_scope():
        created = reminders_scan(now=morning)
        assert list(ReminderDispatch.objects.filter(pk__in=created).values_list("invoice__number", flat=True)) == [
            "AMS"]
        # The next morning in Tokyo (09:30 there) it is Tokyo's turn.
        created = reminders_scan(now=datetime.datetime(2026, 11, 18, 0, 30, tzinfo=UTC))
        assert list(ReminderDispatch.objects.filter(pk__in=created).values_list("invoice__number", flat=True)) == [
            "TYO"]


def test_a_reminder_settled_before_it_went_out_is_not_sent(world):
    with staff_scope():
        [pk] = reminders_scan(now=_day(world["invoice"], 1))
    pay(world["client"], [(world["invoice"], "121.00")])
    with staff_scope():
        assert reminder_send(dispatch_id=pk) == "skipped"
        dispatch = ReminderDispatch.objects.get(pk=pk)
    assert (dispatch.status, dispatch.error) == ("failed", "settled before it went out")
    assert mail.outbox == []


def test_staff_can_mark_a_bounce_and_a_bounced_reminder_is_not_sent_again(world, client, staff):
    with staff_scope():
        [pk] = reminders_scan(now=_day(world["invoice"], 1))
    client.force_login(staff)
    client.post("/admin/reminders/reminderdispatch/", {"action": "mark_bounced", "_selected_action": [pk]})
    with staff_scope():
        assert ReminderDispatch.objects.get(pk=pk).status == "bounced"
        assert reminder_send(dispatch_id=pk) == "bounced"
    assert mail.outbox == []
