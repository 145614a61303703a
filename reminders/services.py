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
from django.db.models import Q
from django.template import Context, Template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from invoices.documents.render import _css, _logo, html_to_pdf
from invoices.models import Invoice
from invoices.money import round_money
from invoices.services import invoice_create
from invoices.signals import invoice_issued_by_portal
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
           (%(now)s::timestamptz AT TIME ZONE c.time_zone) AS local_time,
           ((%(now)s::timestamptz AT TIME ZONE c.time_zone)::date - i.due_date) AS days
    FROM invoices_invoice i
    JOIN portal_client c ON c.id = i.client_id
    LEFT JOIN reminders_reminderpolicy cp ON cp.client_id = i.client_id AND cp.enabled
    LEFT JOIN reminders_reminderpolicy bp ON bp.brand_id = i.brand_id AND bp.client_id IS NULL AND bp.enabled
    WHERE i.status IN ('open', 'partially_paid') AND i.open_balance > 0
      AND i.due_date <= %(today)s::date + %(earliest)s + 1
      AND NOT EXISTS (SELECT 1 FROM reminders_reminderhold h WHERE h.invoice_id = i.id)
      AND NOT EXISTS (SELECT 1 FROM payments_checkoutitem ci
                      JOIN payments_checkoutattempt ca ON ca.id = ci.attempt_id
                      WHERE ci.invoice_id = i.id AND ca.status = 'pending')
), due AS (
    SELECT DISTINCT ON (c.invoice_id) c.invoice_id, c.client_id, c.open_balance, c.policy_id,
           s.id AS step_id, s.offset_days
    FROM candidates c
    JOIN reminders_reminderpolicy p ON p.id = c.policy_id
         AND NOT (p.business_days_only AND extract(isodow FROM c.local_time) >= 6)
         AND (p.business_hours_start IS NULL
              OR c.local_time::time BETWEEN p.business_hours_start AND p.business_hours_end)
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
            cursor.execute(SCAN_SQL, {"now": now, "today": local.date(), "earliest": _earliest_offset()})
            created = [row[0] for row in cursor.fetchall()]
        for dispatch in (ReminderDispatch.objects.filter(pk__in=created)
                         .filter(Q(step__late_fee_fixed__gt=0) | Q(step__late_fee_percent__gt=0))
                         .select_related("step", "invoice__client", "invoice__brand")):
            _raise_late_fee(dispatch, today=local.date())
        from reminders.tasks import send_reminders  # here: reminders.tasks imports this module

        batches = [created[i:i + BATCH] for i in range(0, len(created), BATCH)]
        transaction.on_commit(lambda: [send_reminders.delay(batch) for batch in batches], robust=True)
    return created


def _raise_late_fee(dispatch: ReminderDispatch, *, today: datetime.date) -> None:
    """The step's late fee as a fee invoice linked to the reminder (so never twice for one
    step), announced to the apps that listen (integrations tells accounting through its
    outbox) in this same transaction."""
    invoice, step = dispatch.invoice, dispatch.step
    amount = round_money(step.late_fee_fixed + invoice.open_balance * step.late_fee_percent / 100)
    if amount <= 0:
        return
    lines = [{"description": f"Late payment fee for invoice {invoice.number}", "quantity": 1, "unit": "",
              "unit_price": amount, "discount_percent": 0, "tax_rate": 0}]
    fee = invoice_create(
        client=invoice.client, brand=invoice.brand, number=f"{invoice.number}-FEE{step.offset_days:+d}",
        issue_date=today, due_date=today + datetime.timedelta(days=14), currency=invoice.currency,
        payment_terms_days=14, notes=f"Late payment fee for invoice {invoice.number}", lines=lines)
    ReminderDispatch.objects.filter(pk=dispatch.pk).update(fee_invoice=fee)
    invoice_issued_by_portal.send(sender=Invoice, invoice=fee, lines=lines, related_invoice=invoice)


def reminder_letter_pdf(*, invoice, subject: str, body: str, pay_link: str) -> bytes:
    """A reminder letter in the brand's look (the invoice PDFs' template and styles)."""
    language = invoice.client.locale
    with translation.override(language):
        html = render_to_string("reminders/letter.html", {
            "invoice": invoice, "client": invoice.client, "brand": invoice.brand, "subject": subject, "body": body,
            "pay_link": pay_link, "logo": _logo(invoice.brand), "css": _css(), "language": language,
            "today": timezone.localdate()})
    return html_to_pdf(html)


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
            if step.attach_letter:
                message.attach(f"reminder-{invoice.number}.pdf", reminder_letter_pdf(
                    invoice=invoice, subject=subject, body=body, pay_link=pay_link), "application/pdf")
            message.send()
        if step.channel in (ReminderStep.Channel.IN_APP, ReminderStep.Channel.BOTH):
            notify_client(client=client, kind=NotificationKind.REMINDER,
                          url=reverse("invoices:detail", args=[invoice.pk]), title="%(subject)s",
                          title_args={"subject": subject})
    except Exception as exc:  # noqa: BLE001 - recorded (and committed); the task retries "retry"
        attempts = dispatch.attempts + 1
        final = attempts >= MAX_ATTEMPTS
        ReminderDispatch.objects.filter(pk=dispatch.pk).update(
            attempts=attempts, error=f"{type(exc).__name__}: {exc}"[:2000],
            status=ReminderDispatch.Status.FAILED if final else ReminderDispatch.Status.QUEUED)
        return ReminderDispatch.Status.FAILED if final else "retry"
    ReminderDispatch.objects.filter(pk=dispatch.pk).update(
        status=ReminderDispatch.Status.SENT, sent_at=timezone.now(), attempts=dispatch.attempts + 1, error="",
        open_balance=invoice.open_balance)
    audit_record(action=AuditEvent.Action.REMINDER_SENT, client=client, obj=invoice,
                 details={"step": step.offset_days, "level": step.level, "open_balance": str(invoice.open_balance)})
    return ReminderDispatch.Status.SENT
