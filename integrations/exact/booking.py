"""Exact Online out: a payment, refund or chargeback recorded in the portal (an outbox message,
integrations.outbox) booked as a bank entry on the connection's journal, against the customer,
each line naming the invoice it settles (`OurRef`, Exact's "Invoice number") so Exact matches it.

Exactly once. The message id (msg_<hex>) goes into each line's `Notes`. A POST may time out after
Exact booked the entry; so every attempt after the first looks for a bank entry line with our
message id first (`financialtransaction/BankEntryLines?$filter=Notes eq 'msg_…'`) and books only
when there is none. The lookup is a filtered GET that answers an empty list, never a 404 (Exact
counts 404s against the hourly error budget). When the entry comes back through the
TransactionLines sync (integrations.exact.sync), the message id in it tells the sync that the
portal has this payment already.

Sources: api-facts.md §1.5 (financialtransaction/BankEntries with nested BankEntryLines; header
JournalCode, Currency; lines Account, AmountFC, Date, Description, Notes, OurRef; journals of type
12 bank or 16 payment service); the sign (a negative AmountFC is money received from the customer)
is UNCONFIRMED by Exact and follows tests/fakes/exact_data.py.
"""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from integrations.exact.client import ExactClient, NeedsReauthorisation
from integrations.exact.models import ExactConnection
from integrations.models import OutboxMessage
from integrations.normalise import moment
from portal import jobs

ENTRIES = "financialtransaction/BankEntries"
ENTRY_LINES = "financialtransaction/BankEntryLines"
RECEIVED = "payment.recorded"
PAID_BACK = ("payment.refunded", "payment.charged_back")
DESCRIPTION_MAX = 60  # what Exact's entry screen shows of a line's description


def entry_lines(message: OutboxMessage) -> tuple[str, list[dict]]:
    """(currency, BankEntryLines) for one outbox message: money received is a credit on the
    customer (negative), money paid back a debit (positive); one line per invoice, plus what the
    payment left unallocated (client credit) on the customer without an invoice."""
    data = message.payload["data"]
    sign = -1 if message.event_type == RECEIVED else 1
    received_on = moment(data["received_at"]).date()
    what = {"payment.recorded": "Betaling", "payment.refunded": "Terugbetaling",
            "payment.charged_back": "Terugboeking"}[message.event_type]
    reference = data.get("reference") or data["external_id"]
    common = {"Account": data["client_external_id"], "Date": received_on, "Notes": message.message_id}
    lines, allocated = [], Decimal(0)
    for row in data["allocations"]:
        amount = Decimal(row["amount"])
        allocated += amount
        line = {**common, "AmountFC": sign * amount,
                "Description": f"{what} portal {row['invoice_number']} {reference}"[:DESCRIPTION_MAX]}
        if str(row.get("invoice_number", "")).isdigit():
            line["OurRef"] = int(row["invoice_number"])
        lines.append(line)
    rest = Decimal(data["amount"]) - allocated
    if rest > 0:
        lines.append({**common, "AmountFC": sign * rest, "Description": f"{what} portal {reference}"[:DESCRIPTION_MAX]})
    return data["currency"], lines


def booked_entry(client: ExactClient, message: OutboxMessage) -> str | None:
    """The EntryID of a bank entry Exact already holds for this message, if any."""
    rows = client.get_all(ENTRY_LINES, select=["ID", "EntryID", "Notes"],
                          filter=f"Notes eq '{message.message_id}'")
    return str(rows[0]["EntryID"]) if rows else None


def outbox_book(*, exact: ExactConnection, message: OutboxMessage, job) -> str:
    """Deliver one outbox message to Exact (the "outbox.deliver" job of an Exact connection)."""
    if message.event_type not in (RECEIVED, *PAID_BACK):
        _delivered(message, 204)
        return f"{message.event_type}: not booked in Exact (the portal books payments only)"
    if exact.state == ExactConnection.State.REAUTHORISE:
        raise NeedsReauthorisation(exact.state_reason or "connect again in admin")
    if exact.state != ExactConnection.State.CONNECTED or not exact.division:
        raise jobs.Permanent("Exact Online is not connected yet (or has no division chosen)")
    if not exact.journal:
        raise jobs.Permanent("no bank journal is chosen for this Exact Online connection: choose one, then send "
                             "this message again")
    if not message.payload["data"].get("client_external_id"):
        raise jobs.Permanent("the client has no Exact Online account linked")
    client = ExactClient(exact)
    if job.attempts > 1:  # the last attempt may have booked it before its answer was lost
        entry_id = booked_entry(client, message)
        if entry_id:
            _delivered(message, 200)
            return f"booked before, entry {entry_id}"
    currency, lines = entry_lines(message)
    entry = client.post(ENTRIES, {"JournalCode": exact.journal, "Currency": currency, "BankEntryLines": lines})
    _delivered(message, 201)
    return f"booked as entry {entry.get('EntryNumber') or entry.get('EntryID')}"


def _delivered(message: OutboxMessage, status: int) -> None:
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=message.pk).update(response_status=status, delivered_at=timezone.now())
