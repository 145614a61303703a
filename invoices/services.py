"""Every write to the ledger. Each function is one use case, runs in one transaction, locks
the invoices it changes, and writes its audit events in that same transaction."""
from __future__ import annotations

import calendar
import datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop

from invoices import signals
from invoices.errors import DomainError, InvalidTransition, TotalsMismatch
from invoices.links import document_link_issue
from invoices.models import (ClientCredit, CreditNote, CreditNoteLine, Invoice, InvoiceLine, NumberSequence,
                             Payment, PaymentAllocation, RecurringLine, RecurringSchedule)
from invoices.money import ZERO, document_totals, line_amounts, round_money
from portal.jobs import job_enqueue
from portal.models import AuditEvent, NotificationKind
from portal.notifications import money_arg, notify_client
from portal.services import audit_record

Status = Invoice.Status
PRERENDER_JOB = "pdf.prerender"


# --- Totals ------------------------------------------------------------------------

def totals_validate(*, lines: list[dict], subtotal: Decimal, tax_total: Decimal, total: Decimal,
                    tax_breakdown: list[dict] | None = None) -> None:
    """Totals that arrive from outside must be what the lines add up to. Raises TotalsMismatch
    naming the first field that differs, with the expected and the received amount."""
    computed = document_totals(lines)
    for field, expected, received in (("subtotal", computed.subtotal, subtotal),
                                      ("tax_total", computed.tax_total, tax_total),
                                      ("total", computed.total, total)):
        if expected != received:
            raise TotalsMismatch(field, expected, received)
    if tax_breakdown is None:
        return
    received_rates = {Decimal(row["rate"]).normalize(): row for row in tax_breakdown}
    for rate in sorted(set(received_rates) | set(computed.tax_breakdown)):
        base, tax = computed.tax_breakdown.get(rate, (ZERO, ZERO))
        row = received_rates.get(rate, {"base": ZERO, "tax": ZERO})
        for part, expected in (("base", base), ("tax", tax)):
            if expected != Decimal(row[part]):
                raise TotalsMismatch(f"tax_breakdown[{rate}%].{part}", expected, Decimal(row[part]))


def _write_lines(model, parent_field: str, parent, client, lines: list[dict]) -> None:
    rows = []
    for position, line in enumerate(lines, start=1):
        amounts = line_amounts(quantity=line["quantity"], unit_price=line["unit_price"],
                               discount_percent=line.get("discount_percent", ZERO), tax_rate=line["tax_rate"])
        rows.append(model(**{parent_field: parent}, client=client, position=position,
                          description=line["description"], quantity=line["quantity"], unit=line.get("unit", ""),
                          unit_price=line["unit_price"], discount_percent=line.get("discount_percent", ZERO),
                          tax_rate=line["tax_rate"], tax_category=line.get("tax_category", ""),
                          tax_exemption_reason=line.get("tax_exemption_reason", ""), net_amount=amounts.net,
                          tax_amount=amounts.tax, line_total=amounts.total))
    model.objects.bulk_create(rows)


def _document_changed(kind: str, pk: int) -> None:
    """What a PDF shows has changed: a job ("pdf.prerender") written in this transaction renders
    it again once it commits. Keyed by the document and this transaction, so the several changes
    one use case makes render once, and any later change renders again."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        revision = cursor.fetchone()[0]
    job_enqueue(kind=PRERENDER_JOB, key=f"pdf:{kind}:{pk}:{revision}", payload={"kind": kind, "pk": pk},
                subject=f"{kind}:{pk}")


def _notify_invoice_issued(invoice: Invoice) -> None:
    notifications = notify_client(client=invoice.client, kind=NotificationKind.INVOICE_ISSUED,
                  url=reverse("invoices:detail", args=[invoice.pk]),
                  title=gettext_noop("New invoice %(number)s: %(amount)s, due %(due)s"),
                  title_args={"number": invoice.number, "amount": money_arg(invoice.total, invoice.currency),
                              "due": invoice.due_date},
                  pay_url=reverse("invoices:pay", args=[invoice.pk]), attachment=f"invoice:{invoice.pk}")
    if invoice.brand.allow_document_links:
        for notification in notifications:
            notification.document_link = document_link_issue(invoice=invoice, user=notification.user)
            notification.save(update_fields=["document_link"])


# --- The invoice state machine --------------------------------------------------------

def invoice_transition(*, invoice: Invoice, to: str, actor=None, reason: str = "", details: dict | None = None):
    """The one way an invoice changes status: checked against Invoice.TRANSITIONS, audited."""
    current = invoice.status
    if to not in Invoice.TRANSITIONS[current]:
        raise InvalidTransition("invoice", invoice, current, to)
    invoice.status = to
    invoice.save(update_fields=["status", "updated_at"])
    _document_changed("invoice", invoice.pk)
    if current == Status.DRAFT and to == Status.OPEN:
        _notify_invoice_issued(invoice)  # the moment the client can see it
        signals.invoice_issued.send(sender=Invoice, invoice=invoice)
    audit_record(action=AuditEvent.Action.INVOICE_STATUS, actor=actor, client=invoice.client, obj=invoice,
                 details={"from": current, "to": to, "reason": reason, "open_balance": str(invoice.open_balance),
                          **(details or {})})


def _status_for_balance(invoice: Invoice) -> str:
    if invoice.open_balance == 0:
        return Status.PAID
    if invoice.open_balance < invoice.total:
        return Status.PARTIALLY_PAID
    return Status.OPEN


def _rebalance(invoice: Invoice, *, actor=None, reason: str, details: dict | None = None) -> None:
    """Store the balance and move the status to what the balance says."""
    invoice.open_balance = invoice.total - invoice.amount_paid - invoice.amount_credited
    if invoice.open_balance < 0:
        raise DomainError(f"invoice {invoice} would have a negative balance ({invoice.open_balance})")
    invoice.save(update_fields=["open_balance", "amount_paid", "amount_credited", "updated_at"])
    _document_changed("invoice", invoice.pk)
    target = _status_for_balance(invoice)
    if invoice.status != target and invoice.status in (*Invoice.PAYABLE, Status.PAID):
        invoice_transition(invoice=invoice, to=target, actor=actor, reason=reason, details=details)


def _lock(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update().select_related("client").get(pk=invoice.pk)


def _credit_client(*, client, currency: str, amount: Decimal, source: str, actor=None, **links) -> None:
    entry = ClientCredit.objects.create(client=client, currency=currency, amount=amount, source=source, **links)
    audit_record(action=AuditEvent.Action.CLIENT_CREDITED, actor=actor, client=client, obj=entry,
                 details={"amount": str(amount), "currency": currency, "source": source})


# --- Invoices -------------------------------------------------------------------------

@transaction.atomic
def invoice_create(*, client, brand, number: str, issue_date: datetime.date, due_date: datetime.date,
                   currency: str, lines: list[dict], payment_terms_days: int = 30, payment_terms_text: str = "",
                   purchase_order: str = "", notes: str = "", connection=None, external_id: str = "",
                   source_updated_at=None, open_now: bool = True, actor=None, **extra) -> Invoice:
    totals = document_totals(lines)
    invoice = Invoice.objects.create(
        client=client, brand=brand, number=number, issue_date=issue_date, due_date=due_date, currency=currency,
        payment_terms_days=payment_terms_days, payment_terms_text=payment_terms_text,
        purchase_order=purchase_order, notes=notes, connection=connection, external_id=external_id,
        source_updated_at=source_updated_at, subtotal=totals.subtotal, tax_total=totals.tax_total,
        total=totals.total, open_balance=totals.total, status=Status.DRAFT, **extra)
    _write_lines(InvoiceLine, "invoice", invoice, client, lines)
    audit_record(action=AuditEvent.Action.INVOICE_CREATED, actor=actor, client=client, obj=invoice,
                 details={"total": str(invoice.total), "currency": currency,
                          "source": connection.slug if connection else "portal"})
    if open_now:
        invoice_transition(invoice=invoice, to=Status.OPEN, actor=actor, reason="issued")
    return invoice


@transaction.atomic
def invoice_update(*, invoice: Invoice, lines: list[dict], actor=None, source_updated_at=None,
                   **fields) -> Invoice:
    """Replace an invoice's content (a correction from accounting). Payments and credits stay."""
    invoice = _lock(invoice)
    if invoice.status == Status.VOID:
        raise DomainError(f"invoice {invoice} is void and cannot change")
    totals = document_totals(lines)
    if totals.total < invoice.amount_paid + invoice.amount_credited:
        raise DomainError(f"invoice {invoice}: new total {totals.total} is below what is already paid and "
                          f"credited ({invoice.amount_paid + invoice.amount_credited})")
    for name, value in fields.items():
        setattr(invoice, name, value)
    invoice.subtotal, invoice.tax_total, invoice.total = totals.subtotal, totals.tax_total, totals.total
    # The balance moves with the total in the same save (the row's check: balance = total - paid - credited).
    invoice.open_balance = invoice.total - invoice.amount_paid - invoice.amount_credited
    invoice.source_updated_at = source_updated_at or invoice.source_updated_at
    invoice.save()
    invoice.lines.all().delete()
    _write_lines(InvoiceLine, "invoice", invoice, invoice.client, lines)
    _document_changed("invoice", invoice.pk)
    audit_record(action=AuditEvent.Action.INVOICE_UPDATED, actor=actor, client=invoice.client, obj=invoice,
                 details={"total": str(invoice.total), "changed": sorted(fields)})
    _rebalance(invoice, actor=actor, reason="invoice corrected")
    return invoice


@transaction.atomic
def invoice_open(*, invoice: Invoice, actor=None) -> Invoice:
    invoice = _lock(invoice)
    invoice_transition(invoice=invoice, to=Status.OPEN, actor=actor, reason="issued")
    return invoice


@transaction.atomic
def invoice_void(*, invoice: Invoice, reason: str = "", actor=None) -> Invoice:
    """Void: nothing is owed any more. What was already paid becomes client credit."""
    invoice = _lock(invoice)
    invoice_transition(invoice=invoice, to=Status.VOID, actor=actor, reason=reason or "voided")
    invoice.open_balance = ZERO
    invoice.voided_at = timezone.now()
    invoice.void_reason = (reason or "voided")[:300]
    invoice.save(update_fields=["open_balance", "voided_at", "void_reason", "updated_at"])
    if invoice.amount_paid > 0:
        _credit_client(client=invoice.client, currency=invoice.currency, amount=invoice.amount_paid,
                       source=ClientCredit.Source.VOIDED_INVOICE, invoice=invoice, actor=actor)
    return invoice


def _in_batches(pks, size: int = 500):
    """The ids of a queryset ordered by id, read `size` at a time after the last one seen: each
    read a short statement of its own, no server-side cursor held across the loop's transactions
    (which PgBouncer's transaction mode would not keep: docs/scaling.md)."""
    last = None
    while True:
        batch = list((pks if last is None else pks.filter(pk__gt=last))[:size])
        yield from batch
        if len(batch) < size:
            return
        last = batch[-1]


def invoice_mark_overdue(*, now: datetime.datetime | None = None) -> int:
    """Record, once, the moment each payable invoice went past its due date."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    marked = 0
    candidates = (Invoice.objects.overdue(today).filter(overdue_since__isnull=True)
                  .order_by("pk").values_list("pk", flat=True))
    for pk in _in_batches(candidates):
        with transaction.atomic():
            # A conditional update claims the row: two runs at once mark it once.
            if Invoice.objects.filter(pk=pk, overdue_since__isnull=True).update(overdue_since=now):
                invoice = Invoice.objects.select_related("client").get(pk=pk)
                audit_record(action=AuditEvent.Action.INVOICE_OVERDUE, client=invoice.client, obj=invoice,
                             details={"due_date": invoice.due_date.isoformat(),
                                      "open_balance": str(invoice.open_balance)})
                marked += 1
    return marked


# --- Credit notes ---------------------------------------------------------------------

def credit_note_transition(*, credit_note: CreditNote, to: str, actor=None, details: dict | None = None) -> None:
    current = credit_note.status
    if to not in CreditNote.TRANSITIONS[current]:
        raise InvalidTransition("credit note", credit_note, current, to)
    credit_note.status = to
    credit_note.save(update_fields=["status"])
    audit_record(action=AuditEvent.Action.CREDIT_NOTE_STATUS, actor=actor, client=credit_note.client,
                 obj=credit_note, details={"from": current, "to": to, "invoice": credit_note.invoice.number,
                                           **(details or {})})


@transaction.atomic
def credit_note_create(*, invoice: Invoice, number: str, issue_date: datetime.date, lines: list[dict],
                       reason: str = "", connection=None, external_id: str = "", actor=None,
                       issue_now: bool = True, **extra) -> CreditNote:
    """A credit note against an invoice; issued at once unless asked not to (then it stays a draft)."""
    invoice = _lock(invoice)
    if invoice.status in (Status.DRAFT, Status.VOID):
        raise DomainError(f"invoice {invoice} is {invoice.status}: it cannot be credited")
    totals = document_totals(lines)
    if totals.total <= 0:
        raise DomainError("a credit note must credit a positive amount")
    credit_note = CreditNote.objects.create(
        client=invoice.client, brand=invoice.brand, invoice=invoice, number=number, issue_date=issue_date,
        currency=invoice.currency, reason=reason, subtotal=totals.subtotal, tax_total=totals.tax_total,
        total=totals.total, connection=connection, external_id=external_id, **extra)
    _write_lines(CreditNoteLine, "credit_note", credit_note, invoice.client, lines)
    if issue_now:
        credit_note = credit_note_issue(credit_note=credit_note, actor=actor)
    return credit_note


@transaction.atomic
def credit_note_issue(*, credit_note: CreditNote, actor=None) -> CreditNote:
    """Issue a credit note and apply it: the invoice's balance goes down by at most what is
    open; anything beyond that is client credit, never a negative balance."""
    credit_note = CreditNote.objects.select_for_update().get(pk=credit_note.pk)
    credit_note_transition(credit_note=credit_note, to=CreditNote.Status.ISSUED, actor=actor)
    invoice = _lock(credit_note.invoice)
    applied = min(credit_note.total, invoice.open_balance) if invoice.status in Invoice.PAYABLE else ZERO
    credit_note.amount_applied, credit_note.amount_to_credit = applied, credit_note.total - applied
    credit_note.save(update_fields=["amount_applied", "amount_to_credit"])
    if applied:
        invoice.amount_credited += applied
        _rebalance(invoice, actor=actor, reason=f"credit note {credit_note.number}")
    if credit_note.amount_to_credit:
        _credit_client(client=invoice.client, currency=invoice.currency, amount=credit_note.amount_to_credit,
                       source=ClientCredit.Source.CREDIT_NOTE, credit_note=credit_note, actor=actor)
    credit_note_transition(credit_note=credit_note, to=CreditNote.Status.APPLIED, actor=actor,
                           details={"applied": str(applied), "to_client_credit": str(credit_note.amount_to_credit)})
    _document_changed("credit_note", credit_note.pk)
    signals.credit_note_issued.send(sender=CreditNote, credit_note=credit_note)
    notify_client(client=credit_note.client, kind=NotificationKind.CREDIT_NOTE_ISSUED,
                  url=reverse("invoices:credit_note_detail", args=[credit_note.pk]),
                  title=gettext_noop("Credit note %(number)s of %(amount)s for invoice %(invoice)s"),
                  title_args={"number": credit_note.number,
                              "amount": money_arg(credit_note.total, credit_note.currency),
                              "invoice": credit_note.invoice.number},
                  attachment=f"credit_note:{credit_note.pk}")
    return credit_note


# --- Payments -------------------------------------------------------------------------

def payment_receipt_path(payment: Payment) -> str:
    """Where the client reads a payment's receipt (the payments app serves it by this name; the
    ledger links to it, as it links to any page, without importing that app)."""
    return reverse("payments:receipt", args=[payment.pk])


@transaction.atomic
def invoice_pending_set(*, invoice: Invoice, amount: Decimal, method: str = "", since=None) -> Invoice:
    """Record what gateways hold for an invoice but have not settled (payments keeps it in step
    with its checkout attempts, in their transaction). Not a payment: the balance and the
    status stay; only what the client can pay again shrinks (Invoice.payable_balance)."""
    invoice = _lock(invoice)
    amount = round_money(amount)
    if amount < 0:
        raise DomainError(f"invoice {invoice}: a pending amount cannot be negative ({amount})")
    if (invoice.amount_pending, invoice.pending_method, invoice.pending_since) == (amount, method, since):
        return invoice
    invoice.amount_pending, invoice.pending_method, invoice.pending_since = amount, method, since
    invoice.save(update_fields=["amount_pending", "pending_method", "pending_since", "updated_at"])
    audit_record(action=AuditEvent.Action.INVOICE_UPDATED, client=invoice.client, obj=invoice,
                 details={"amount_pending": str(amount), "pending_method": method})
    return invoice


@transaction.atomic
def payment_record(*, client, amount: Decimal, currency: str, source: str, method: str, received_at,
                   allocations: list[tuple[Invoice, Decimal]], reference: str = "", connection=None,
                   external_id: str = "", gateway_payment_id: str = "", actor=None) -> tuple[Payment, bool]:
    """Record a payment once and allocate it under row locks. Returns (payment, created); a
    payment already recorded (same connection and external id) changes nothing.
    Each allocation takes at most the invoice's open balance; the rest is client credit."""
    amount = round_money(amount)
    if sum((share for _, share in allocations), ZERO) > amount:
        raise DomainError(f"allocations add up to more than the payment ({currency} {amount})")
    try:
        with transaction.atomic():
            # The number is taken in this savepoint: a duplicate rolls it back, so none is skipped.
            number = _next_number(client.brand, timezone.localdate(received_at).year, prefix=Payment.NUMBER_PREFIX,
                                  digits=6)
            payment = Payment.objects.create(client=client, amount=amount, currency=currency, source=source,
                                             method=method, reference=reference, received_at=received_at,
                                             connection=connection, external_id=external_id,
                                             gateway_payment_id=gateway_payment_id, brand=client.brand,
                                             number=number)
    except IntegrityError:
        # The same payment again (a duplicate delivery, a concurrent one): recorded once.
        if gateway_payment_id:
            return Payment.objects.get(gateway_payment_id=gateway_payment_id), False
        if external_id:
            return Payment.objects.get(connection=connection, external_id=external_id), False
        raise
    audit_record(action=AuditEvent.Action.PAYMENT_RECORDED, actor=actor, client=client, obj=payment,
                 details={"amount": str(amount), "currency": currency, "method": method, "source": source})
    unallocated = amount
    # Lock in id order, so two payments for the same invoices never deadlock.
    for invoice, share in sorted(allocations, key=lambda pair: pair[0].pk):
        invoice = _lock(invoice)
        if invoice.client_id != client.pk:
            raise DomainError(f"invoice {invoice} belongs to another client")
        if invoice.currency != currency:
            raise DomainError(f"invoice {invoice} is in {invoice.currency}, the payment in {currency}")
        if invoice.status not in Invoice.PAYABLE:
            continue  # a paid or void invoice takes nothing; the share stays unallocated
        applied = min(round_money(share), invoice.open_balance)
        if applied <= 0:
            continue
        PaymentAllocation.objects.create(client=client, payment=payment, invoice=invoice, amount=applied)
        invoice.amount_paid += applied
        unallocated -= applied
        _rebalance(invoice, actor=actor, reason=f"payment {reference or payment.pk}",
                   details={"payment": payment.pk, "amount": str(applied)})
        notify_client(client=client, kind=NotificationKind.PAYMENT_RECEIVED,
                      url=payment_receipt_path(payment), attachment=f"receipt:{payment.pk}",
                      title=gettext_noop("Payment of %(amount)s received for invoice %(number)s"),
                      title_args={"amount": money_arg(applied, currency), "number": invoice.number})
    if unallocated > 0:
        _credit_client(client=client, currency=currency, amount=unallocated,
                       source=ClientCredit.Source.OVERPAYMENT, payment=payment, actor=actor)
    signals.payment_recorded.send(sender=Payment, payment=payment)
    return payment, True


@transaction.atomic
def payment_reverse(*, payment: Payment, invoice: Invoice, amount: Decimal, kind: str = PaymentAllocation.Kind.REFUND,
                    actor=None) -> Invoice:
    """A refund or chargeback takes money back from an invoice and reopens its balance."""
    invoice = _lock(invoice)
    if invoice.status == Status.VOID:
        raise DomainError(f"invoice {invoice} is void: refund the client credit instead")
    amount = round_money(amount)
    allocated = sum(payment.allocations.filter(invoice=invoice).values_list("amount", flat=True), ZERO)
    if amount <= 0 or amount > allocated:
        raise DomainError(f"cannot take back {amount} from {invoice}: {allocated} of this payment is on it")
    PaymentAllocation.objects.create(client=invoice.client, payment=payment, invoice=invoice, kind=kind,
                                     amount=-amount)
    invoice.amount_paid -= amount
    audit_record(action=AuditEvent.Action.PAYMENT_REVERSED, actor=actor, client=invoice.client, obj=payment,
                 details={"invoice": invoice.number, "amount": str(amount), "kind": kind})
    signals.payment_reversed.send(sender=Payment, payment=payment, invoice=invoice, amount=amount, kind=kind)
    _rebalance(invoice, actor=actor, reason=kind, details={"payment": payment.pk, "amount": str(-amount)})
    return invoice


# --- Recurring schedules ----------------------------------------------------------------

def recurring_transition(*, schedule: RecurringSchedule, to: str, actor=None, reason: str = "") -> None:
    current = schedule.status
    if to not in RecurringSchedule.TRANSITIONS[current]:
        raise InvalidTransition("recurring schedule", schedule, current, to)
    schedule.status = to
    schedule.save(update_fields=["status"])
    audit_record(action=AuditEvent.Action.RECURRING_STATUS, actor=actor, client=schedule.client, obj=schedule,
                 details={"from": current, "to": to, "reason": reason})


@transaction.atomic
def recurring_create(*, client, brand, name: str, lines: list[dict], next_date: datetime.date,
                     interval_unit: str = RecurringSchedule.Unit.MONTHS, interval_count: int = 1,
                     currency: str = "EUR", end_date=None, remaining_count=None, payment_terms_days: int = 14,
                     actor=None) -> RecurringSchedule:
    schedule = RecurringSchedule.objects.create(
        client=client, brand=brand, name=name, currency=currency, interval_unit=interval_unit,
        interval_count=interval_count, start_date=next_date, next_date=next_date, end_date=end_date, remaining_count=remaining_count,
        payment_terms_days=payment_terms_days)
    _write_lines(RecurringLine, "schedule", schedule, client, lines)
    return schedule


def _advance(date: datetime.date, unit: str, count: int, anchor_day: int) -> datetime.date:
    """The next period's date; monthly periods keep the first date's day (31 Jan, 28 Feb, 31 Mar)."""
    if unit == RecurringSchedule.Unit.DAYS:
        return date + datetime.timedelta(days=count)
    month_index = date.month - 1 + count
    year, month = date.year + month_index // 12, month_index % 12 + 1
    return datetime.date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _next_number(brand, year: int, prefix: str = "REC", digits: int = 5) -> str:
    """The next number of a brand's sequence for the year, under the sequence row's lock (held to
    the end of the transaction, so numbers are handed out in commit order without gaps)."""
    sequence, _ = NumberSequence.objects.select_for_update().get_or_create(brand=brand, prefix=prefix, year=year)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"{prefix}-{year}-{sequence.last:0{digits}d}"


def recurring_generate_due(*, today: datetime.date | None = None) -> int:
    """Issue every invoice the active schedules owe up to today: one per period, however long
    the scheduler was down, and never two (a unique period per schedule, rows locked)."""
    today = today or timezone.localdate()
    generated = 0
    due = RecurringSchedule.objects.filter(status=RecurringSchedule.Status.ACTIVE, next_date__lte=today)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            schedule = (RecurringSchedule.objects.select_for_update(skip_locked=True).select_related("client", "brand")
                        .filter(pk=pk, status=RecurringSchedule.Status.ACTIVE).first())
            if schedule is None:
                continue
            lines = [{"description": line.description, "quantity": line.quantity, "unit": line.unit,
                      "unit_price": line.unit_price, "discount_percent": line.discount_percent,
                      "tax_rate": line.tax_rate, "tax_category": line.tax_category,
                      "tax_exemption_reason": line.tax_exemption_reason} for line in schedule.lines.all()]
            while schedule.next_date <= today:
                if (schedule.end_date and schedule.next_date > schedule.end_date) or schedule.remaining_count == 0:
                    break
                period = schedule.next_date
                invoice = invoice_create(
                    client=schedule.client, brand=schedule.brand, number=_next_number(schedule.brand, period.year),
                    issue_date=period, due_date=period + datetime.timedelta(days=schedule.payment_terms_days),
                    currency=schedule.currency, lines=lines, payment_terms_days=schedule.payment_terms_days,
                    payment_terms_text=f"{schedule.payment_terms_days} days", purchase_order=schedule.purchase_order,
                    recurring_schedule=schedule, period_start=period)
                audit_record(action=AuditEvent.Action.RECURRING_GENERATED, client=schedule.client, obj=invoice,
                             details={"schedule": schedule.pk, "period_start": period.isoformat()})
                generated += 1
                schedule.next_date = _advance(period, schedule.interval_unit, schedule.interval_count,
                                              schedule.start_date.day)
                if schedule.remaining_count is not None:
                    schedule.remaining_count -= 1
            schedule.save(update_fields=["next_date", "remaining_count"])
            if schedule.remaining_count == 0 or (schedule.end_date and schedule.next_date > schedule.end_date):
                recurring_transition(schedule=schedule, to=RecurringSchedule.Status.ENDED, reason="last period issued")
    return generated
