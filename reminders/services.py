"""The reminder scanner and sender. The scan is one set-based statement: it finds every
invoice with an open balance whose policy has a step due, keeps only the latest due step
(after downtime the earlier, missed ones are skipped), and inserts its dispatch row with
ON CONFLICT DO NOTHING under a transaction-level advisory lock, so reruns and two scanners
at once never create a second dispatch. Sends are enqueued after commit, in batches."""
from __future__ import annotations

import datetime
import logging
import zoneinfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from portal.models import AuditEvent, Membership, NotificationKind
from portal.notifications import notify_client
from portal.services import audit_record
from reminders.models import ReminderDispatch, ReminderStep

log = logging.getLogger(__name__)
BATCH = 500
SCAN_LOCK = "reminders:scan"
MAX_ATTEMPTS = 3

SCAN_SQL = """
WITH candidates AS (
    SELECT i.id AS invoice_id, i.client_id, i.open_balance, COALESCE(cp.id, bp.id) AS policy_id,
           (%(today)s::date - i.due_date) AS days
    FROM invoices_invoice i
    LEFT JOIN reminders_reminderpolicy cp ON cp.client_id = i.client_id AND cp.enabled
    LEFT JOIN reminders_reminderpolicy bp ON bp.brand_id = i.brand_id AND bp.client_id IS NULL AND bp.enabled
    WHERE i.status IN ('open', 'partially_paid') AND i.open_balance > 0
      AND i.due_date <= %(today)s::date + %(earliest)s
      AND NOT EXISTS (SELECT 1 FROM reminders_reminderhold h WHERE h.invoice_id = i.id)
      AND NOT EXISTS (SELECT 1 FROM payments_checkoutitem ci
                      JOIN payments_checkoutattempt ca ON ca.id = ci.attempt_id
                      WHERE ci.invoice_id = i.id AND ca.status = 'pending')
), due AS (
    SELECT DISTINCT ON (c.invoice_id) c.invoice_id, c.client_id, c.open_balance, c.policy_id,
           s.id AS step_id, s.offset_days
    FROM candidates c
    JOIN reminders_reminderpolicy p ON p.id = c.policy_id AND NOT (p.business_days_only AND %(weekend)s)
    JOIN reminders_reminderstep s ON s.policy_id = c.policy_id AND s.offset_days <= c.days
    ORDER BY c.invoice_id, s.offset_days DESC
)
INSERT INTO reminders_reminderdispatch (client_id, invoice_id, step_id, status, open_balance, attempts, error,
                                        created_at)
SELECT d.client_id, d.invoice_id, d.step_id, 'queued', d.open_balance, 0, '', now()
FROM due d
WHERE NOT EXISTS (SELECT 1 FROM reminders_reminderdispatch x
                  JOIN reminders_reminderstep xs ON xs.id = x.step_id
                  WHERE x.invoice_id = d.invoice_id AND xs.policy_id = d.policy_id
                    AND xs.offset_days >= d.offset_days)
ON CONFLICT (invoice_id, step_id) DO NOTHING
RETURNING id
"""


def _earliest_offset() -> int:
    """How many days before the due date the earliest step of any policy fires."""
    lowest = ReminderStep.objects.order_by("offset_days").values_list("offset_days", flat=True).first()
    return max(0, -(lowest or 0))


def reminders_scan(*, now: datetime.datetime | None = None) -> list[int]:
    """Create the dispatches that are due now; returns their ids (sends are enqueued on commit)."""
    now = now or timezone.now()
    local = now.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [SCAN_LOCK])
            cursor.execute(SCAN_SQL, {"today": local.date(), "earliest": _earliest_offset(),
                                      "weekend": local.weekday() >= 5})
            created = [row[0] for row in cursor.fetchall()]
        from reminders.tasks import send_reminders

        batches = [created[i:i + BATCH] for i in range(0, len(created), BATCH)]
        transaction.on_commit(lambda: [send_reminders.delay(batch) for batch in batches], robust=True)
    return created


def _render(text: str, context: dict) -> str:
    return Template(text).render(Context(context, autoescape=False))


def reminder_send(*, dispatch_id: int) -> str:
    """Send one reminder (email and/or in-app) with today's open balance; record the outcome."""
    dispatch = (ReminderDispatch.objects.select_related("invoice", "invoice__client", "invoice__brand", "step")
                .get(pk=dispatch_id))
    if dispatch.status in (ReminderDispatch.Status.SENT, ReminderDispatch.Status.BOUNCED):
        return dispatch.status
    invoice, step = dispatch.invoice, dispatch.step
    if invoice.open_balance <= 0 or invoice.status not in ("open", "partially_paid"):
        ReminderDispatch.objects.filter(pk=dispatch.pk).update(status=ReminderDispatch.Status.FAILED,
                                                              error="settled before it went out")
        return "skipped"
    client = invoice.client
    pay_link = settings.SITE_URL.rstrip("/") + reverse("invoices:pay", args=[invoice.pk])
    context = {"client": client.name, "invoice_number": invoice.number, "due_date": invoice.due_date,
               "open_balance": f"{invoice.currency} {invoice.open_balance}", "pay_link": pay_link,
               "days_overdue": max(0, (timezone.localdate() - invoice.due_date).days)}
    dutch = client.locale == "nl"
    subject = _render(step.subject_nl if dutch else step.subject_en, context)
    body = _render(step.body_nl if dutch else step.body_en, context)
    try:
        if step.channel in (ReminderStep.Channel.EMAIL, ReminderStep.Channel.BOTH):
            recipients = sorted({client.billing_email} | set(
                Membership.objects.filter(client=client, user__is_active=True).values_list("user__email", flat=True)))
            message = EmailMultiAlternatives(subject=subject, body=f"{body}\n\n{pay_link}\n\n--\n{invoice.brand.name}\n"
                                             f"{invoice.brand.legal_footer}", to=recipients,
                                             from_email=f"{invoice.brand.name} <{settings.DEFAULT_FROM_EMAIL}>",
                                             reply_to=[invoice.brand.support_email])
            message.send()
        if step.channel in (ReminderStep.Channel.IN_APP, ReminderStep.Channel.BOTH):
            notify_client(client=client, kind=NotificationKind.REMINDER,
                          url=reverse("invoices:detail", args=[invoice.pk]), title="%(subject)s",
                          title_args={"subject": subject})
    except Exception as exc:  # noqa: BLE001 - recorded; the task retries
        attempts = dispatch.attempts + 1
        ReminderDispatch.objects.filter(pk=dispatch.pk).update(
            attempts=attempts, error=f"{type(exc).__name__}: {exc}"[:2000],
            status=ReminderDispatch.Status.FAILED if attempts >= MAX_ATTEMPTS else ReminderDispatch.Status.QUEUED)
        raise
    ReminderDispatch.objects.filter(pk=dispatch.pk).update(
        status=ReminderDispatch.Status.SENT, sent_at=timezone.now(), attempts=dispatch.attempts + 1, error="",
        open_balance=invoice.open_balance)
    audit_record(action=AuditEvent.Action.REMINDER_SENT, client=client, obj=invoice,
                 details={"step": step.offset_days, "level": step.level, "open_balance": str(invoice.open_balance)})
    return ReminderDispatch.Status.SENT
