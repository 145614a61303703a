"""Account statements: opening balance, every invoice, credit note, payment and refund in a
date range with a running balance, the closing balance and what is overdue."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Sum
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from invoices.documents.render import _css, _logo, html_to_pdf
from invoices.models import CreditNote, Invoice, PaymentAllocation, Payment

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Entry:
    date: datetime.date
    kind: str
    reference: str
    description: str
    amount: Decimal  # positive: the client owes more; negative: less
    balance: Decimal = ZERO


# A statement is a PDF rendered while the client waits: a period of a client with tens of thousands
# of invoices would be a thousand pages and minutes of rendering. Beyond this many movements the
# form asks for a shorter period (StatementTooLong); the overdue invoices are listed up to
# STATEMENT_OVERDUE_LISTED, the rest counted, with their total.
STATEMENT_MOST_ENTRIES = 1000
STATEMENT_OVERDUE_LISTED = 100


class StatementTooLong(Exception):
    def __init__(self, entries: int, most: int):
        super().__init__(f"{entries} movements in the period, at most {most} in a statement")
        self.entries, self.most = entries, most


def _day_start(day: datetime.date) -> datetime.datetime:
    """The first moment of a day where the statement is written (the active time zone)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def _movements(client, currency: str, start: datetime.date | None, end: datetime.date | None) -> dict:
    """The querysets of the client's movements, each from `start` (None: from the first) until
    before `end` (None: to the last): invoices, credit notes, payments, refunds and chargebacks."""
    def between(field, at=lambda day: day):  # `at`: a day as the field holds it (a date, or its first moment)
        return {**({f"{field}__gte": at(start)} if start else {}), **({f"{field}__lt": at(end)} if end else {})}

    return {
        "invoice": Invoice.objects.filter(client=client, currency=currency, **between("issue_date"))
        .exclude(status__in=[Invoice.Status.DRAFT, Invoice.Status.VOID]),
        "credit_note": CreditNote.objects.filter(client=client, currency=currency, **between("issue_date"))
        .exclude(status=CreditNote.Status.DRAFT),
        "payment": Payment.objects.filter(client=client, currency=currency, **between("received_at", _day_start)),
        "reversal": PaymentAllocation.objects.filter(client=client, payment__currency=currency,
                                                     **between("created_at", _day_start))
        .exclude(kind=PaymentAllocation.Kind.ALLOCATION),
    }


def _balance_before(client, currency: str, day: datetime.date) -> Decimal:
    """What the client owed before `day`: summed by the database, not read row by row."""
    before = _movements(client, currency, None, day)

    def total(kind, field):
        return before[kind].aggregate(sum=Sum(field))["sum"] or ZERO

    return (total("invoice", "total") - total("credit_note", "total") - total("payment", "amount")
            - total("reversal", "amount"))


def _entries(period: dict) -> list[Entry]:
    """The movements of the period (`_movements`), oldest first (the balance is what it owes)."""
    entries = [Entry(i.issue_date, "invoice", i.number, _("Invoice"), i.total) for i in period["invoice"]]
    entries += [Entry(c.issue_date, "credit_note", c.number, _("Credit note for %(number)s") % {"number": c.invoice.number},
                      -c.total)
                for c in period["credit_note"].select_related("invoice")]
    entries += [Entry(timezone.localdate(p.received_at), "payment", p.number or p.reference or str(p.pk),
                      _("Payment (%(method)s)") % {"method": p.get_method_display()}, -p.amount)
                for p in period["payment"]]
    entries += [Entry(timezone.localdate(a.created_at), a.kind, a.invoice.number,
                      _("Refund") if a.kind == PaymentAllocation.Kind.REFUND else _("Chargeback"), -a.amount)
                for a in period["reversal"].select_related("invoice")]
    order = {"invoice": 0, "credit_note": 1, "payment": 2, "refund": 3, "chargeback": 3}
    return sorted(entries, key=lambda e: (e.date, order[e.kind], e.reference))


@dataclass(frozen=True)
class Statement:
    client: object
    currency: str
    start: datetime.date
    end: datetime.date
    opening_balance: Decimal
    entries: list[Entry]
    closing_balance: Decimal
    overdue: list[Invoice]  # the first STATEMENT_OVERDUE_LISTED, by due date
    overdue_total: Decimal
    pending: list[Invoice] = ()  # payments a gateway has not settled yet (not in the balance)
    overdue_unlisted: int = 0  # overdue invoices beyond those listed (in overdue_total all the same)


def statement_data(*, client, start: datetime.date, end: datetime.date, currency: str | None = None) -> Statement:
    """The statement of the period; StatementTooLong beyond STATEMENT_MOST_ENTRIES movements."""
    currency = currency or client.default_currency
    period = _movements(client, currency, start, end + datetime.timedelta(days=1))
    count = sum(rows.count() for rows in period.values())  # four counts, before any row is read
    if count > STATEMENT_MOST_ENTRIES:
        raise StatementTooLong(count, STATEMENT_MOST_ENTRIES)
    opening = _balance_before(client, currency, start)
    running, shown = opening, []
    for entry in _entries(period):
        running += entry.amount
        shown.append(Entry(**{**entry.__dict__, "balance": running}))
    overdue_rows = Invoice.objects.overdue(end).filter(client=client, currency=currency, issue_date__lte=end)
    overdue = list(overdue_rows.order_by("due_date", "id")[:STATEMENT_OVERDUE_LISTED])
    overdue_all = overdue_rows.aggregate(n=Count("pk"), total=Sum("open_balance"))
    pending = list(Invoice.objects.payable().pending().filter(client=client, currency=currency)
                   .order_by("pending_since", "id"))
    return Statement(client=client, currency=currency, start=start, end=end, opening_balance=opening,
                     entries=shown, closing_balance=running, overdue=overdue,
                     overdue_total=overdue_all["total"] or ZERO, pending=pending,
                     overdue_unlisted=overdue_all["n"] - len(overdue))


def statement_pdf(*, client, start: datetime.date, end: datetime.date) -> tuple[bytes, str]:
    """The statement as a branded PDF, in the client's language, with its download name."""
    language = client.locale
    with translation.override(language):
        data = statement_data(client=client, start=start, end=end)
        html = render_to_string("invoices/pdf/statement.html", {
            "statement": data, "brand": client.brand, "client": client, "logo": _logo(client.brand), "css": _css(),
            "language": language, "today": timezone.localdate()})
    return html_to_pdf(html), f"statement-{client.pk}-{start:%Y%m%d}-{end:%Y%m%d}.pdf"
