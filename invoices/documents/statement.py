"""Account statements: opening balance, every invoice, credit note, payment and refund in a
date range with a running balance, the closing balance and what is overdue."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

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


def _entries(client, currency: str) -> list[Entry]:
    """Every movement on the client's account, oldest first (the balance is what it owes)."""
    entries = [Entry(i.issue_date, "invoice", i.number, _("Invoice"), i.total)
               for i in Invoice.objects.filter(client=client, currency=currency)
               .exclude(status__in=[Invoice.Status.DRAFT, Invoice.Status.VOID])]
    entries += [Entry(c.issue_date, "credit_note", c.number, _("Credit note for %(number)s") % {"number": c.invoice.number},
                      -c.total)
                for c in CreditNote.objects.filter(client=client, currency=currency)
                .exclude(status=CreditNote.Status.DRAFT).select_related("invoice")]
    entries += [Entry(timezone.localdate(p.received_at), "payment", p.number or p.reference or str(p.pk),
                      _("Payment (%(method)s)") % {"method": p.get_method_display()}, -p.amount)
                for p in Payment.objects.filter(client=client, currency=currency)]
    entries += [Entry(timezone.localdate(a.created_at), a.kind, a.invoice.number,
                      _("Refund") if a.kind == PaymentAllocation.Kind.REFUND else _("Chargeback"), -a.amount)
                for a in PaymentAllocation.objects.filter(client=client, payment__currency=currency)
                .exclude(kind=PaymentAllocation.Kind.ALLOCATION).select_related("invoice")]
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
    overdue: list[Invoice]
    overdue_total: Decimal
    pending: list[Invoice] = ()  # payments a gateway has not settled yet (not in the balance)


def statement_data(*, client, start: datetime.date, end: datetime.date, currency: str | None = None) -> Statement:
    currency = currency or client.default_currency
    every = _entries(client, currency)
    opening = sum((e.amount for e in every if e.date < start), ZERO)
    running, shown = opening, []
    for entry in every:
        if start <= entry.date <= end:
            running += entry.amount
            shown.append(Entry(**{**entry.__dict__, "balance": running}))
    overdue = list(Invoice.objects.overdue(end).filter(client=client, currency=currency, issue_date__lte=end)
                   .order_by("due_date"))
    pending = list(Invoice.objects.payable().pending().filter(client=client, currency=currency)
                   .order_by("pending_since", "id"))
    return Statement(client=client, currency=currency, start=start, end=end, opening_balance=opening,
                     entries=shown, closing_balance=running, overdue=overdue,
                     overdue_total=sum((i.open_balance for i in overdue), ZERO), pending=pending)


def statement_pdf(*, client, start: datetime.date, end: datetime.date) -> tuple[bytes, str]:
    """The statement as a branded PDF, in the client's language, with its download name."""
    language = client.locale
    with translation.override(language):
        data = statement_data(client=client, start=start, end=end)
        html = render_to_string("invoices/pdf/statement.html", {
            "statement": data, "brand": client.brand, "client": client, "logo": _logo(client.brand), "css": _css(),
            "language": language, "today": timezone.localdate()})
    return html_to_pdf(html), f"statement-{client.pk}-{start:%Y%m%d}-{end:%Y%m%d}.pdf"
