"""The reminder scanner and sender. The scan is one set-based statement: it finds every
invoice with an open balance whose policy has a step due, keeps only the latest due step
(after downtime the earlier, missed ones are skipped), and inserts its dispatch row with
ON CONFLICT DO NOTHING under a transaction-level advisory lock, so reruns and two scanners
at once never create a second dispatch. Each dispatch gets its send job ("reminder.send",
portal.jobs) in that same transaction, all in one more statement.

A send reaches each recipient once: the portal's notifications commit together with their
delivery records, and every email goes to one address with no transaction open and is
recorded right after, so a retry only sends what has not gone out yet."""
from __future__ import annotations

import datetime
import hashlib
import logging
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.template import Context, Template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_noop

from invoices.documents.render import _css, _logo, html_to_pdf
from invoices.models import Invoice
from invoices.money import round_money
from invoices.services import invoice_create
from invoices.signals import invoice_issued_by_portal
from portal.jobs import jobs_enqueue_bulk
from portal.formatting import format_day, format_money
from portal.models import AuditEvent, Membership, NotificationKind, NotificationPreference
from portal.notifications import brand_email_context, branded_email, money_arg, notify_client, site_link
from portal.services import audit_record, transaction_lock
from reminders.models import ReminderDelivery, ReminderDispatch, ReminderStep

log = logging.getLogger(__name__)
SCAN_LOCK = "reminders:scan"
SEND_JOB = "reminder.send"
MAX_ATTEMPTS = 6  # of a send job: with a minute's backoff, doubling, the last is about half an hour later
Status = ReminderDispatch.Status
Channel = ReminderDelivery.Channel


class NotDelivered(Exception):
    """Some recipients were not reached in this attempt; each reason is on its delivery record."""

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
    """Create the dispatches that are due now, each with its send job; returns their ids."""
    now = now or timezone.now()
    local = now.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE))
    with transaction.atomic():
        transaction_lock(SCAN_LOCK)
        with connection.cursor() as cursor:
            cursor.execute(SCAN_SQL, {"now": now, "today": local.date(), "earliest": _earliest_offset()})
            created = [row[0] for row in cursor.fetchall()]
        for dispatch in (ReminderDispatch.objects.filter(pk__in=created)
                         .filter(Q(step__late_fee_fixed__gt=0) | Q(step__late_fee_percent__gt=0))
                         .select_related("step", "invoice__client", "invoice__brand")):
            _raise_late_fee(dispatch, today=local.date())
        _enqueue_sends(created)
    return created


def _enqueue_sends(dispatch_ids: list[int]) -> None:
    """One send job per dispatch, in the scan's transaction and in one statement; after it
    commits one bell drains them (and the sweep rings again if that bell is lost)."""
    jobs_enqueue_bulk(kind=SEND_JOB, jobs=[(f"reminder:{pk}", {"dispatch": pk}, "") for pk in dispatch_ids])


def _raise_late_fee(dispatch: ReminderDispatch, *, today: datetime.date) -> None:
    """The step's late fee as a fee invoice linked to the reminder (so never twice for one
    step), announced to the apps that listen (integrations tells accounting through its
    outbox) in this same transaction."""
    invoice, step = dispatch.invoice, dispatch.step
    amount = round_money(step.late_fee_fixed + invoice.open_balance * step.late_fee_percent / 100)
    if amount <= 0:
        return
    with translation.override(invoice.client.locale):  # the fee invoice is the client's to read
        description = translation.gettext("Late payment fee for invoice %(number)s") % {"number": invoice.number}
    lines = [{"description": description, "quantity": 1, "unit": "",
              "unit_price": amount, "discount_percent": 0, "tax_rate": 0}]
    fee = invoice_create(
        client=invoice.client, brand=invoice.brand, number=f"{invoice.number}-FEE{step.offset_days:+d}",
        issue_date=today, due_date=today + datetime.timedelta(days=14), currency=invoice.currency,
        payment_terms_days=14, notes=description, lines=lines)
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


@dataclass(frozen=True)
class _Text:
    """What one reminder says in one language, with today's open balance written that
    language's way (`€ 1.208,33`, `17 dec 2026`)."""

    language: str
    subject: str
    body: str
    pay_link: str
    amount: str
    due: str


def _reminder_text(dispatch: ReminderDispatch, language: str | None = None) -> _Text:
    """The step's words in `language` (the client's when not given): the policy's Dutch text
    for Dutch, its English text otherwise."""
    invoice, step, client = dispatch.invoice, dispatch.step, dispatch.invoice.client
    language = language or client.locale
    pay_link = site_link(reverse("invoices:pay", args=[invoice.pk]))
    amount = format_money(invoice.open_balance, invoice.currency, language=language)
    due = format_day(invoice.due_date, language=language)
    context = {"client": client.name, "invoice_number": invoice.number, "due_date": due,
               "open_balance": amount, "pay_link": pay_link,
               "days_overdue": max(0, (timezone.localdate() - invoice.due_date).days)}
    dutch = language == "nl"
    return _Text(language=language, subject=_render(step.subject_nl if dutch else step.subject_en, context),
                 body=_render(step.body_nl if dutch else step.body_en, context), pay_link=pay_link,
                 amount=amount, due=due)


def _email_recipients(client) -> dict[str, str]:
    """{address: language}: the billing address (in the client's language) and every active
    contact's (in theirs) who has not turned reminder emails off, each once."""
    turned_off = NotificationPreference.objects.filter(kind=NotificationKind.REMINDER, email=False).values("user_id")
    contacts = (Membership.objects.filter(client=client, user__is_active=True)
                .exclude(user_id__in=turned_off).values_list("user__email", "user__language"))
    recipients = {address: language for address, language in contacts if address}
    if client.billing_email:
        recipients.setdefault(client.billing_email, client.locale)
    return dict(sorted(recipients.items()))


def reminder_send(*, dispatch_id: int, final: bool = False) -> str:
    """Send one reminder, with today's open balance, to every recipient it has not reached yet:
    in the portal first (notifications and their delivery records in one transaction), then by
    email, one message per address, each sent with no transaction open and recorded right after
    in a transaction of its own. Call it with no transaction open.

    All reached: the dispatch is sent. Someone missing: the reasons are recorded on the dispatch
    and NotDelivered is raised (the send job retries it); after the `final` attempt the dispatch
    is failed."""
    with transaction.atomic():
        dispatch = (ReminderDispatch.objects.select_related("invoice", "invoice__client", "invoice__brand", "step")
                    .get(pk=dispatch_id))
        if dispatch.status in (Status.SENT, Status.BOUNCED):
            return dispatch.status
        invoice, step = dispatch.invoice, dispatch.step
        if invoice.open_balance <= 0 or invoice.status not in ("open", "partially_paid"):
            ReminderDispatch.objects.filter(pk=dispatch.pk).update(status=Status.FAILED,
                                                                  error="settled before it went out")
            return "skipped"
        emails_to = {}
        if step.channel in (ReminderStep.Channel.EMAIL, ReminderStep.Channel.BOTH):
            reached = set(dispatch.deliveries.filter(channel=Channel.EMAIL, sent_at__isnull=False)
                          .values_list("recipient", flat=True))
            emails_to = {address: language for address, language in _email_recipients(invoice.client).items()
                         if address not in reached}
    try:
        if step.channel in (ReminderStep.Channel.IN_APP, ReminderStep.Channel.BOTH):
            _deliver_in_app(dispatch)
        failures = _deliver_emails(dispatch, emails_to) if emails_to else {}
    except Exception as exc:
        _record_failure(dispatch, f"{type(exc).__name__}: {exc}", final=final)
        raise
    if failures:
        reason = "; ".join(f"{address}: {error}" for address, error in failures.items())
        _record_failure(dispatch, reason, final=final)
        raise NotDelivered(reason)
    with transaction.atomic():
        marked = ReminderDispatch.objects.filter(pk=dispatch.pk, status__in=[Status.QUEUED, Status.FAILED]).update(
            status=Status.SENT, sent_at=timezone.now(), attempts=F("attempts") + 1, error="",
            open_balance=invoice.open_balance)
        if marked:
            audit_record(action=AuditEvent.Action.REMINDER_SENT, client=invoice.client, obj=invoice,
                         details={"step": step.offset_days, "level": step.level,
                                  "open_balance": str(invoice.open_balance)})
    return Status.SENT


def _deliver_in_app(dispatch: ReminderDispatch) -> None:
    """The notifications commit with the delivery records that say they exist, or neither
    does: each contact gets the reminder in the portal exactly once. They send no email of
    their own: the reminder email is the email (_deliver_emails)."""
    with transaction.atomic():
        reached = set(dispatch.deliveries.filter(channel=Channel.IN_APP).values_list("recipient", flat=True))
        users = [membership.user for membership in
                 Membership.objects.filter(client_id=dispatch.client_id, user__is_active=True).select_related("user")
                 if str(membership.user_id) not in reached]
        if not users:
            return
        invoice = dispatch.invoice
        notify_client(client=invoice.client, kind=NotificationKind.REMINDER,
                      url=reverse("invoices:detail", args=[invoice.pk]),
                      title=gettext_noop("Payment reminder: invoice %(number)s, %(amount)s open, due %(due)s"),
                      title_args={"number": invoice.number, "due": invoice.due_date,
                                  "amount": money_arg(invoice.open_balance, invoice.currency)},
                      users=users, pay_url=reverse("invoices:pay", args=[invoice.pk]), send_email=False)
        now = timezone.now()
        # A second worker doing the same breaks the unique constraint: all of this rolls back.
        ReminderDelivery.objects.bulk_create([
            ReminderDelivery(client_id=dispatch.client_id, dispatch=dispatch, channel=Channel.IN_APP,
                             recipient=str(user.pk), sent_at=now) for user in users])


def _deliver_emails(dispatch: ReminderDispatch, addresses: dict[str, str]) -> dict[str, str]:
    """Send to each address on its own, in its language ({address: language}); returns
    {address: reason} for those that failed."""
    invoice, step = dispatch.invoice, dispatch.step
    letter = None
    if step.attach_letter:  # the letter is one document, in the client's language
        text = _reminder_text(dispatch)
        letter = reminder_letter_pdf(invoice=invoice, subject=text.subject, body=text.body, pay_link=text.pay_link)
    texts: dict[str, _Text] = {}
    failures = {}
    for address, language in addresses.items():
        try:
            if language not in texts:
                texts[language] = _reminder_text(dispatch, language)
            _reminder_email(dispatch, texts[language], address, letter).send()
        except Exception as exc:  # noqa: BLE001 - recorded for this address; the others still go out
            failures[address] = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("reminder %s to %s failed: %s", dispatch.pk, address, failures[address])
        _record_email(dispatch, address, error=failures.get(address, ""))
    return failures


def _reminder_email(dispatch: ReminderDispatch, text: _Text, address: str, letter: bytes | None):
    """The reminder as an email in the brand's look and the recipient's language: the policy's
    words, the open amount, the due date, a Pay button and the way to the email settings."""
    invoice = dispatch.invoice
    brand = invoice.brand
    with translation.override(text.language):
        context = {**brand_email_context(brand), "text": text, "invoice": invoice, "client": invoice.client,
                   "attached": letter is not None}
        text_body = render_to_string("reminders/email.txt", context)
        html = render_to_string("reminders/email.html", context)
    message = branded_email(
        brand=brand, subject=text.subject, text=text_body, html=html, to=[address],
        # The same id each time it is sent (a retry after a lost answer), so a repeat can be recognised.
        headers={"Message-ID": _message_id(f"reminder-{dispatch.pk}", address)})
    if letter is not None:
        message.attach(f"reminder-{invoice.number}.pdf", letter, "application/pdf")
    return message


def _message_id(prefix: str, address: str) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip("> ") or "localhost"
    return f"<{prefix}-{hashlib.sha256(address.lower().encode()).hexdigest()[:16]}@{domain}>"


def _record_email(dispatch: ReminderDispatch, address: str, *, error: str = "") -> None:
    outcome = {"error": error} if error else {"sent_at": timezone.now(), "error": ""}
    with transaction.atomic():
        ReminderDelivery.objects.update_or_create(
            dispatch=dispatch, channel=Channel.EMAIL, recipient=address,
            defaults=outcome, create_defaults={**outcome, "client_id": dispatch.client_id})


def reminder_send_dead(*, dispatch_id: int, reason: str) -> None:
    """The send job is dead (its last attempt failed, or its worker was lost during it): the
    dispatch shows failed with the reason, not queued for ever."""
    ReminderDispatch.objects.filter(pk=dispatch_id, status=Status.QUEUED).update(status=Status.FAILED,
                                                                              error=reason[:2000])


def _record_failure(dispatch: ReminderDispatch, reason: str, *, final: bool) -> None:
    with transaction.atomic():
        ReminderDispatch.objects.filter(pk=dispatch.pk, status__in=[Status.QUEUED, Status.FAILED]).update(
            attempts=F("attempts") + 1, error=reason[:2000], status=Status.FAILED if final else Status.QUEUED)
