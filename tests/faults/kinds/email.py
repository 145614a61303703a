"""The kinds that send email: `notification.email` (one notification's email) and `reminder.send`
(one reminder to each of an invoice's recipients), through SMTP to the drills' own mail server
(tests/faults/smtp.py), counted per recipient and subject.

Email cannot be made idempotent at the server. What the app promises is that a retry never
repeats a send that succeeded (the send is recorded right after it, with no transaction open, and
a retry skips what is recorded). A worker killed between the server taking a message and that
record leaves a job whose retry sends the message again: the kill drill lands there on purpose
(the server holds its answer to the message's data), and the duplicates are counted as such."""
from __future__ import annotations

import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_noop

from portal.jobs import ring
from portal.models import Job, Notification, NotificationKind
from portal.notifications import EMAIL_JOB, notify_client
from portal.rls import staff_scope
from reminders.models import ReminderDispatch, ReminderPolicy, ReminderStep
from reminders.services import SEND_JOB, reminders_scan
from tests.faults.drills import KindScenario
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, job_ids, last_job_id, settle, worker_env
from tests.faults.smtp import FakeSmtp
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


class EmailScenario(KindScenario):
    client_timeout = CLIENT_TIMEOUT  # EMAIL_TIMEOUT in the fault workers
    kill_may_duplicate = True

    def __init__(self, remote=None):
        super().__init__(remote)
        self.recipients_of: dict[int, list[str]] = {}  # job id -> its recipients
        self.brand = None

    def start_remote(self):
        return FakeSmtp()

    def worker_env(self, remote: FakeSmtp) -> dict:
        return worker_env(EMAIL_URL=remote.url)

    def _brand(self):
        if self.brand is None:
            self.brand = BrandFactory()
        return self.brand

    def effects(self, remote: FakeSmtp, job) -> int:
        """Per recipient, the most copies of one subject; the job's figure is the most any
        recipient got if someone got two, else the fewest (someone got none: 0)."""
        copies = [max(remote.taken_for(address).values(), default=0) for address in self.recipients_of[job.pk]]
        return max(copies) if max(copies) > 1 else min(copies)

    def acted_on_some(self, remote: FakeSmtp, job) -> bool:
        return any(remote.taken_for(address) for address in self.recipients_of[job.pk])

    def requests(self, remote: FakeSmtp, job) -> int:
        with remote.lock:
            return sum(remote.heard[address] for address in self.recipients_of[job.pk])

    def requests_total(self, remote: FakeSmtp) -> int:
        return remote.heard_total()

    def fail_again(self, remote: FakeSmtp, calls: int, *, attempt: int, last: bool) -> str:
        """Timeouts as a mail server that hangs before it is handed the message (no answer to
        EHLO): a timeout after the server took the message is the kill drill's case, a copy."""
        if attempt == 2 or last:
            remote.stall_next(calls, seconds=self.client_timeout + 0.5)
            return "the mail server hangs before it takes the message (a time-out)"
        remote.fail_next(calls, 500)
        return "the mail server refuses the message (451)"

    def heal(self, remote: FakeSmtp) -> None:
        with remote.lock:
            remote.failures.clear()
            remote.delays.clear()
            remote.stalls.clear()

    def remark(self, remote: FakeSmtp, outcome, rows: list) -> str:
        if outcome.duplicated:
            return (f"{outcome.duplicated} email(s) sent twice: the worker was killed after the mail server had "
                    f"taken the message and before it answered, so the send was never recorded and the retry "
                    f"sent it again (SMTP cannot recognise a repeat; the Message-ID is the same)")
        if outcome.fault.startswith("remote"):
            return "timeouts: the server hung before taking the message; 500: refused with 451"
        return ""


class NotificationEmailScenario(EmailScenario):
    """Notifications made by `notify_client` (one per contact, its email job in the same
    transaction), one contact per job; the email goes to the contact."""

    kind = EMAIL_JOB

    def _contact(self, address: str):
        """A client of the drills' brand with one contact at `address`, who reads English: (client, user)."""
        client = ClientFactory(brand=self._brand())
        return client, MembershipFactory(client=client, user__email=address, user__language="en").user

    def _notify(self, client, number: str) -> Notification:
        return notify_client(client=client, kind=NotificationKind.PAYMENT_RECEIVED, url="/",
                             title=gettext_noop("Payment received for %(number)s"), title_args={"number": number})[0]

    def write(self, remote: FakeSmtp, count: int, *, tag: str) -> list[int]:
        ids = []
        for number in range(count):
            address = f"notify-{tag}-{number}@client.test"
            with staff_scope():
                client, _user = self._contact(address)
                notification = self._notify(client, f"N-{number}")
            [job_id] = job_ids(kind=self.kind, keys=[f"notification:{notification.pk}"])
            self.recipients_of[job_id] = [address]
            ids.append(job_id)
        return ids

    def told(self, rows: list) -> list[int]:
        """The notifications the jobs' emails tell of."""
        return [job.payload["notification"] for job in rows]

    def remark(self, remote: FakeSmtp, outcome, rows: list) -> str:
        remark = super().remark(remote, outcome, rows)
        with staff_scope():
            failed = Notification.objects.filter(pk__in=self.told(rows)).exclude(
                email_status=Notification.EmailStatus.SENT).count()
        return remark + (f"; {failed} notification(s) not marked sent" if failed else "")


class NotificationDigestScenario(NotificationEmailScenario):
    """A burst (portal/notifications.py): the contact has had its NOTIFICATION_DIGEST_AFTER emails
    of the kind from this client within the wait, so the next two notifications are held. The
    job of the first is the drill's: its wait over (time passing, and the sweep's bell), it takes
    the second along and sends one email telling of both. The second's job stays due later (when
    it runs, the first's email has told of it). One job and one email per contact."""

    HELD = 2

    def __init__(self, remote=None):
        super().__init__(remote)
        self.told_by: dict[int, list[int]] = {}  # job id -> the notifications its email tells of

    def write(self, remote: FakeSmtp, count: int, *, tag: str) -> list[int]:
        ids = []
        for number in range(count):
            address = f"burst-{tag}-{number}@client.test"
            with staff_scope():
                client, user = self._contact(address)
                for sent in range(settings.NOTIFICATION_DIGEST_AFTER):  # the burst's emails so far, sent
                    Notification.objects.create(
                        client=client, user=user, kind=NotificationKind.PAYMENT_RECEIVED, url="/", title=f"Sent {sent}",
                        email_status=Notification.EmailStatus.SENT)
                held = [self._notify(client, f"B-{number}-{n}") for n in range(self.HELD)]
                assert all(n.email_status == Notification.EmailStatus.HELD for n in held), "not held: no burst"
                [job_id] = job_ids(kind=self.kind, keys=[f"notification:{held[0].pk}"])
                Job.objects.filter(pk=job_id).update(run_after=timezone.now())  # its wait is over
            ring(job_id, self.kind)  # as the sweep does for a job whose time has come
            self.recipients_of[job_id] = [address]
            self.told_by[job_id] = [n.pk for n in held]
            ids.append(job_id)
        return ids

    def effects(self, remote: FakeSmtp, job) -> int:
        """The emails that told of the burst, if each told of all its held notifications."""
        [address] = self.recipients_of[job.pk]
        subjects = remote.taken_for(address)
        return max(subjects.values(), default=0) if all(f"({self.HELD})" in subject for subject in subjects) else 0

    def told(self, rows: list) -> list[int]:
        return [pk for job in rows for pk in self.told_by.get(job.pk, [])]


class ReminderSendScenario(EmailScenario):
    """Overdue invoices, each of its own client with a policy whose step is due (email only),
    two recipients each (the billing address and a contact); the hourly scan writes the dispatch
    and its send job. A retry sends only to whom the reminder has not gone yet."""

    kind = SEND_JOB
    calls_per_attempt = 2

    def __init__(self, remote=None):
        super().__init__(remote)
        self.prepared = Prepared()

    def prepare(self, remote: FakeSmtp, count: int) -> None:
        since = last_job_id()
        today = timezone.localdate()
        made = []
        for number in range(count):
            with staff_scope():
                client = ClientFactory(brand=self._brand(), locale="en")
                policy = ReminderPolicy.objects.create(name="Fault drill", client=client, business_days_only=False)
                ReminderStep.objects.create(
                    policy=policy, offset_days=1, channel=ReminderStep.Channel.EMAIL, level="friendly",
                    subject_en="Reminder: invoice {{ invoice_number }}", body_en="{{ open_balance }} is overdue.",
                    subject_nl="Herinnering: factuur {{ invoice_number }}", body_nl="{{ open_balance }} staat open.")
            invoice = make_invoice(client, issue_date=today - datetime.timedelta(days=20), due_days=14,
                                   lines=[line(unit_price="50.00")])
            # A contact after the invoice was issued: no "new invoice" email of its own.
            with staff_scope():
                contact = MembershipFactory(client=client, user__language="en").user
            made.append((invoice, [client.billing_email.lower(), contact.email.lower()]))
        settle(since, what="the invoices' PDF pre-renders")
        self.prepared.put(made)

    def write(self, remote: FakeSmtp, count: int, *, tag: str) -> list[int]:
        mine = self.prepared.take(count)
        with staff_scope():
            reminders_scan()  # every invoice prepared is due: some writer's scan writes each one's job once
            dispatches = dict(ReminderDispatch.objects.filter(invoice__in=[invoice for invoice, _ in mine])
                              .values_list("invoice_id", "pk"))
        keys = [f"reminder:{dispatches.get(invoice.pk)}" for invoice, _ in mine]
        ids = job_ids(kind=self.kind, keys=keys)
        for job_id, (_, recipients) in zip(ids, mine):
            self.recipients_of[job_id] = recipients
        return ids

    def remark(self, remote: FakeSmtp, outcome, rows: list) -> str:
        remark = super().remark(remote, outcome, rows)
        with staff_scope():
            unsent = ReminderDispatch.objects.filter(pk__in=[job.payload["dispatch"] for job in rows]).exclude(
                status=ReminderDispatch.Status.SENT).count()
        return remark + (f"; {unsent} dispatch(es) not marked sent" if unsent else "")
