"""Twinfield out: a payment, refund or chargeback recorded in the portal (an outbox message,
integrations.outbox) booked as a bank transaction on the connection's daybook, against the
customer, and a payment matched (`matchcode` 170, "afletteren") to each invoice it settles, with
`matchvalue` for a part payment.

Exactly once. The message id (msg_<hex>) goes into each line's description. A post may time out
after Twinfield booked it, so every attempt after the first looks for our bank transaction first
(browse 100, the customer lines, description like the message id) and books only when there is
none; the match is made only for invoice lines still open by it (a transaction's lines say what
they are matched with). The poll (integrations.twinfield.sync) reads only sales invoices, and an
invoice's paid part that the portal already has settled is not recorded again, so our bookings do
not come back as payments.

Sources: api-facts.md §2.3 (a cash/bank transaction: a total line on the daybook's own account and
detail lines on the debtors account with the customer in dim2 and the invoice number; the match
set). Signs and matchvalues as the local Twinfield checks them (tests/fakes/twinfield_data.py): a
set adds up to zero; the invoice line gets +amount, the payment line -amount.
"""
from __future__ import annotations

from decimal import Decimal
from xml.sax.saxutils import escape

from django.db import transaction
from django.utils import timezone

from integrations.models import OutboxMessage
from integrations.normalise import moment
from integrations.twinfield.client import NeedsReauthorisation, TwinfieldClient, TwinfieldRefused
from integrations.twinfield.models import TwinfieldConnection
from portal import jobs

RECEIVED = "payment.recorded"
PAID_BACK = ("payment.refunded", "payment.charged_back")
# Twinfield's line description (its length is UNCONFIRMED; 40 is the shortest seen): the message id
# (36 characters) goes first, whole, since a retry looks the transaction up by it.
DESCRIPTION_MAX = 40


def transaction_xml(twinfield: TwinfieldConnection, message: OutboxMessage) -> str:
    """The bank transaction for one outbox message: money received is a debit on the bank and a
    credit on each invoice's customer line (money paid back the other way round); one detail line
    per invoice, plus what the payment left unallocated (client credit) on the customer alone."""
    data = message.payload["data"]
    received = message.event_type == RECEIVED
    on = moment(data["received_at"]).astimezone(timezone.get_default_timezone()).date()
    what = {"payment.recorded": "Betaling", "payment.refunded": "Terugbetaling",
            "payment.charged_back": "Terugboeking"}[message.event_type]
    customer, amount = data["client_external_id"], Decimal(data["amount"])
    detail_side, total_side = ("credit", "debit") if received else ("debit", "credit")
    details, allocated = [], Decimal(0)
    for row in data["allocations"]:
        part = Decimal(row["amount"])
        allocated += part
        details.append(_detail(twinfield, customer, part, detail_side, str(row.get("invoice_number") or ""),
                               f"{message.message_id} {what}"))
    if amount - allocated > 0:
        details.append(_detail(twinfield, customer, amount - allocated, detail_side, "", f"{message.message_id} {what}"))
    lines = (f'<line type="total" id="1"><dim1>{escape(twinfield.bank_account)}</dim1>'
             f"<debitcredit>{total_side}</debitcredit><value>{amount:.2f}</value></line>")
    lines += "".join(f'<line type="detail" id="{n}">{detail}</line>' for n, detail in enumerate(details, start=2))
    return (f'<transactions><transaction destiny="final" raisewarning="false"><header>'
            f"<office>{escape(twinfield.office)}</office><code>{escape(twinfield.daybook)}</code>"
            f"<currency>{escape(data['currency'])}</currency><date>{on:%Y%m%d}</date></header>"
            f"<lines>{lines}</lines></transaction></transactions>")


def _detail(twinfield: TwinfieldConnection, customer: str, amount: Decimal, side: str, invoice: str,
            description: str) -> str:
    number = f"<invoicenumber>{escape(invoice)}</invoicenumber>" if invoice else ""
    return (f"<dim1>{escape(twinfield.receivables_account)}</dim1><dim2>{escape(customer)}</dim2>"
            f"<debitcredit>{side}</debitcredit><value>{amount:.2f}</value>{number}"
            f"<description>{escape(description[:DESCRIPTION_MAX])}</description>")


def booked_transaction(client: TwinfieldClient, message: OutboxMessage) -> str | None:
    """The number of a bank transaction Twinfield already holds for this message, if any."""
    rows = client.browse("100", ["fin.trs.head.code", "fin.trs.head.number", "fin.trs.line.description"],
                         {"fin.trs.line.description": ("like", f"*{message.message_id}*", "")})
    return rows[0]["fin.trs.head.number"] if rows else None


def outbox_book(*, twinfield: TwinfieldConnection, message: OutboxMessage, job) -> str:
    """Deliver one outbox message to Twinfield (the "outbox.deliver" job of a Twinfield connection)."""
    if message.event_type not in (RECEIVED, *PAID_BACK):
        _delivered(message, 204)
        return f"{message.event_type}: not booked in Twinfield (the portal books payments only)"
    if twinfield.state == TwinfieldConnection.State.REAUTHORISE:
        raise NeedsReauthorisation(twinfield.state_reason or "connect again in admin")
    if twinfield.state != TwinfieldConnection.State.CONNECTED or not twinfield.office:
        raise jobs.Permanent("Twinfield is not connected yet (or has no office chosen)")
    if not twinfield.daybook:
        raise jobs.Permanent("no bank daybook is chosen for this Twinfield connection: choose one, then send this "
                             "message again")
    if not message.payload["data"].get("client_external_id"):
        raise jobs.Permanent("the client has no Twinfield customer linked")
    client = TwinfieldClient(twinfield)
    number = booked_transaction(client, message) if job.attempts > 1 else None
    booked_before = number is not None
    if number is None:
        try:
            answer = client.process(transaction_xml(twinfield, message))
        except TwinfieldRefused as refused:
            # Another try would be refused again: staff fix the cause (a customer, the daybook) and replay.
            raise jobs.Permanent(f"Twinfield refused the bank transaction: {refused}") from None
        number = (answer.findtext("transaction/header/number") or "").strip()
    matched = _match(client, twinfield, message, number) if message.event_type == RECEIVED else 0
    _delivered(message, 200 if booked_before else 201)
    return (f"{'booked before' if booked_before else 'booked'} as {twinfield.daybook} {number}; "
            f"{matched} invoice(s) matched")


def _match(client: TwinfieldClient, twinfield: TwinfieldConnection, message: OutboxMessage, number: str) -> int:
    """Match each detail line of our bank transaction with the invoice it pays, unless it is matched
    already (an attempt before this one did it). Invoices that came from Twinfield only: the
    portal knows their transaction (external id `<code>:<number>`)."""
    ours = client.process(f"<read><type>transaction</type><office>{escape(twinfield.office)}</office>"
                          f"<code>{escape(twinfield.daybook)}</code><number>{escape(number)}</number></read>")
    by_invoice = {row["invoice_number"]: row for row in message.payload["data"]["allocations"]
                  if ":" in str(row.get("invoice_external_id", ""))}
    matched = 0
    for line in ours.iterfind("lines/line"):
        invoice = by_invoice.get((line.findtext("invoicenumber") or "").strip())
        if line.get("type") != "detail" or invoice is None or (line.findtext("matchstatus") or "") == "matched":
            continue
        code, _, invoice_number = invoice["invoice_external_id"].partition(":")
        amount = Decimal(invoice["amount"])
        target = client.process(f"<read><type>transaction</type><office>{escape(twinfield.office)}</office>"
                                f"<code>{escape(code)}</code><number>{escape(invoice_number)}</number></read>")
        total = next((t for t in target.iterfind("lines/line") if t.get("type") == "total"), None)
        if total is None or Decimal(total.findtext("openvalue") or "0") < amount:
            continue  # settled in Twinfield already (by hand, or by another booking): nothing to match
        client.process(
            f"<match><set><office>{escape(twinfield.office)}</office><matchcode>170</matchcode>"
            f"<matchdate>{timezone.localdate():%Y%m%d}</matchdate><lines>"
            f"<line><transcode>{escape(twinfield.daybook)}</transcode><transnumber>{escape(number)}</transnumber>"
            f"<transline>{escape(line.get('id') or '')}</transline><matchvalue>{-amount:.2f}</matchvalue></line>"
            f"<line><transcode>{escape(code)}</transcode><transnumber>{escape(invoice_number)}</transnumber>"
            f"<transline>{escape(total.get('id') or '1')}</transline><matchvalue>{amount:.2f}</matchvalue></line>"
            f"</lines></set></match>")
        matched += 1
    return matched


def _delivered(message: OutboxMessage, status: int) -> None:
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=message.pk).update(response_status=status, delivered_at=timezone.now())
