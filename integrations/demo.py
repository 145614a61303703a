"""Demo data for `make run`, sent as a demo ERP would: signed events through the real webhook
intake, then their jobs done as a worker would. Event ids are fixed, so a rerun changes nothing."""
from __future__ import annotations

import datetime
import json
import time
from decimal import Decimal

from django.test import Client as HttpClient
from django.utils import timezone

from integrations.services import JOB_KIND
from integrations.signing import signed_headers
from invoices.money import document_totals
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope

# The demo ERP's price list, in each client's language: (description, unit, price, VAT %).
CATALOGUE = {
    "en": [("Monthly bookkeeping", "month", "450.00", "21"), ("Payroll administration", "employee", "12.50", "21"),
           ("Annual accounts", "piece", "1250.00", "21"), ("Tax advice", "hour", "135.00", "21"),
           ("Reference book", "piece", "39.95", "9")],
    "nl": [("Maandelijkse boekhouding", "maand", "450.00", "21"), ("Salarisadministratie", "medewerker", "12.50", "21"),
           ("Jaarrekening", "stuk", "1250.00", "21"), ("Belastingadvies", "uur", "135.00", "21"),
           ("Naslagwerk", "stuk", "39.95", "9")],
}
# What the demo ERP writes beside the lines, in each client's language.
TEXTS = {
    "en": {"terms": "{days} days net", "void": "Issued twice by mistake", "credit": "Two hours not worked"},
    "nl": {"terms": "{days} dagen netto", "void": "Per abuis dubbel gefactureerd", "credit": "Twee uur niet gewerkt"},
}


def _lines(language: str, *picks: tuple[int, str]) -> list[dict]:
    catalogue = CATALOGUE[language]
    return [{"description": catalogue[i][0], "quantity": qty, "unit": catalogue[i][1],
             "unit_price": catalogue[i][2], "tax_rate": catalogue[i][3]} for i, qty in picks]


def _with_totals(data: dict) -> dict:
    totals = document_totals([{k: Decimal(v) if k in ("quantity", "unit_price", "tax_rate") else v
                               for k, v in line.items()} | {"discount_percent": Decimal(0)} for line in data["lines"]])
    data["tax_breakdown"] = [{"rate": f"{rate}", "base": f"{base}", "tax": f"{tax}"}
                             for rate, (base, tax) in totals.tax_breakdown.items()]
    data.update(subtotal=f"{totals.subtotal}", tax_total=f"{totals.tax_total}", total=f"{totals.total}")
    return data


def client_events(key: str, client: dict) -> list[tuple[str, dict]]:
    return [(f"demo-{key}-client", {"type": "client.upserted", "data": {"external_id": key, **client}})]


def ledger_events(key: str, prefix: str, today: datetime.date, *, language: str = "en", currency: str = "EUR",
                  extra_paid: int = 0, few: bool = False) -> list[tuple[str, dict]]:
    """Per client: open, partially paid, overdue, paid and void invoices, and a credit note, in the
    client's language and currency; `extra_paid` older paid invoices (a long history); `few`:
    only an open, an overdue and a paid one (a new client)."""
    day = datetime.timedelta(days=1)
    stamp = timezone.now().replace(microsecond=0).isoformat()
    texts = TEXTS[language]

    def invoice(n: int, issued_days_ago: int, lines: list[dict], terms: int = 30) -> dict:
        issue = today - issued_days_ago * day
        return _with_totals({
            "external_id": f"{key}-inv-{n}", "number": f"{prefix}-{today.year}-{n:04d}", "client_external_id": key,
            "issue_date": issue.isoformat(), "due_date": (issue + terms * day).isoformat(),
            "payment_terms": {"days": terms, "text": texts["terms"].format(days=terms)}, "currency": currency,
            "purchase_order": f"PO-{n:03d}", "lines": lines, "updated_at": stamp})

    invoices = {
        "open": invoice(1, 3, _lines(language, (0, "1"), (1, "14"))),
        "overdue": invoice(3, 52, _lines(language, (3, "6.5"), (0, "1"))),
        "paid": invoice(4, 70, _lines(language, (0, "1"))),
    }
    if not few:
        invoices |= {
            "partial": invoice(2, 20, _lines(language, (2, "1"), (4, "2"))),
            "void": invoice(5, 15, _lines(language, (3, "2"))),
            "credited": invoice(6, 10, _lines(language, (3, "8"))),
            "overdue-long": invoice(7, 75, _lines(language, (1, "22"))),
        }
    for n in range(extra_paid):  # one a month or so, back in time, all paid
        invoices[f"history-{n}"] = invoice(100 + n, 90 + 30 * n, _lines(language, (0, "1"), (1, str(10 + n % 5))))
    events = [(f"demo-{key}-inv-{name}", {"type": "invoice.created", "data": data}) for name, data in invoices.items()]

    def payment(n: int, name: str, amount: str, days_ago: int) -> tuple[str, dict]:
        return (f"demo-{key}-pay-{n}", {"type": "payment.recorded", "data": {
            "external_id": f"{key}-pay-{n}", "client_external_id": key, "amount": amount, "currency": currency,
            "received_at": (timezone.now() - datetime.timedelta(days=days_ago)).replace(microsecond=0).isoformat(),
            "method": "bank_transfer", "reference": invoices[name]["number"],
            "allocations": [{"invoice_external_id": invoices[name]["external_id"], "amount": amount}]}})

    events.append(payment(2, "paid", invoices["paid"]["total"], 45))
    events += [payment(200 + n, f"history-{n}", invoices[f"history-{n}"]["total"], 70 + 30 * n)
               for n in range(extra_paid)]
    if not few:
        events += [
            payment(1, "partial", "500.00", 5),
            payment(3, "overdue-long", "100.00", 12),  # a part payment on an old debt
            (f"demo-{key}-void", {"type": "invoice.voided", "data": {
                "external_id": invoices["void"]["external_id"], "reason": texts["void"],
                "updated_at": (timezone.now() + datetime.timedelta(seconds=1)).replace(microsecond=0).isoformat()}}),
            (f"demo-{key}-cn-1", {"type": "credit_note.created", "data": _with_totals({
                "external_id": f"{key}-cn-1", "number": f"{prefix}-CN-{today.year}-0001",
                "invoice_external_id": invoices["credited"]["external_id"], "issue_date": (today - 2 * day).isoformat(),
                "reason": texts["credit"], "lines": _lines(language, (3, "2"))})}),
        ]
    return events


def send(connection, events: list[tuple[str, dict]]) -> dict[str, str]:
    """POST each event, signed, to the connection's webhook; then do the jobs they left, as a
    worker would, and wait for any a running worker took. Returns each event's answer
    ("accepted" or "duplicate")."""
    http = HttpClient()
    answers: dict[str, str] = {}
    secret = connection.secrets()[0]
    job_keys = []
    for event_id, payload in events:
        body = json.dumps(payload).encode()
        response = http.post(f"/webhooks/accounting/{connection.slug}/", data=body, content_type="application/json",
                             headers=signed_headers(secret, event_id, body))
        answer = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"demo event {event_id} refused: {answer.get('error')}")
        answers[event_id] = answer["status"]
        if answer["status"] == "accepted":
            job_keys.append(f"webhook:{answer['webhook']}")
    _work_through(job_keys)
    return answers


def _work_through(job_keys: list[str], seconds: float = 60) -> None:
    """Do the demo's jobs here, as a worker would; wait for any that a running worker holds, and
    do not wait out the backoff of one that went before its reference (a worker raced us)."""
    deadline = time.monotonic() + seconds
    while job_keys:
        jobs.jobs_drain(kind=JOB_KIND, seconds=seconds)
        with staff_scope():
            mine = Job.objects.filter(key__in=job_keys)
            found = list(mine.values_list("state", "last_error"))
            mine.filter(state=Job.State.RETRYING).update(run_after=timezone.now())
        if all(state == Job.State.DONE for state, _ in found):
            return
        dead = [error for state, error in found if state == Job.State.DEAD]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"demo events were not applied: {dead[:3] or 'not in time'}")
        time.sleep(0.1)
