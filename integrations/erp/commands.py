"""What the GraphQL API's mutations do: each becomes a canonical event (docs/webhooks.md), checked
by the webhook's own rules (integrations.validation), stored like an accepted webhook and applied
by the same "accounting.event" job (integrations.services). The job is run here, in the request,
so the caller is answered with what it did; a worker that took it first is waited for.

Idempotency: an `Idempotency-Key` makes a call once-only (the same key with another content is
refused); without one, a call identical to an earlier one is its repeat. Either way a repeat
answers what is there now and changes nothing. Beyond that every event is idempotent on the
caller's external ids, as webhooks are."""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from integrations import services
from integrations.models import ClientLink, Connection
from integrations.validation import event_problems
from invoices.models import Invoice
from portal import jobs
from portal.models import Job, WebhookRequest

SOURCE = services.GRAPHQL_SOURCE
KEY_MAX = 200 - len("key:")
WAIT_SECONDS = 10.0


@dataclass
class Problem:
    field: list[str]
    code: str
    message: str


@dataclass
class Outcome:
    """status: "applied", "ignored" (older than what the portal holds: nothing changed), "pending"
    (stored; its job has not finished in time) or "refused"."""

    status: str
    duplicate: bool = False
    event_id: int | None = None
    problems: list[Problem] = field(default_factory=list)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def input_path(pointer: str) -> list[str]:
    """/data/lines/0/unit_price → ["input", "lines", "0", "unitPrice"]: where the caller put it."""
    parts = [part for part in pointer.split("/") if part]
    if parts and parts[0] == "data":
        parts = parts[1:]
    return ["input", *(_camel(part) for part in parts)]


def _refused(problems: list[Problem]) -> Outcome:
    return Outcome(status="refused", problems=problems)


def submit(connection: Connection, *, event_type: str, data: dict, idempotency_key: str = "",
           defaults: dict | None = None) -> Outcome:
    """Check, store and apply one event for `connection`. Call with no transaction open.
    `defaults` fill what the caller left out (e.g. the version's moment: now); a repeat is
    recognised by what the caller sent, without them."""
    sent = json.dumps({"type": event_type, "data": data}, separators=(",", ":"), sort_keys=True)
    payload = {"type": event_type, "data": {**(defaults or {}), **data}}
    problems = [Problem(input_path(p["field"]), "INVALID", p["reason"]) for p in event_problems(payload)]
    if problems:
        return _refused(problems)
    if len(idempotency_key) > KEY_MAX or re.search(r"[^\x21-\x7e]", idempotency_key):
        return _refused([Problem(["Idempotency-Key"], "INVALID",
                                 f"must be 1 to {KEY_MAX} visible ASCII characters")])
    digest = hashlib.sha256(sent.encode()).hexdigest()
    natural_key = f"key:{idempotency_key}" if idempotency_key else f"sha256:{digest}"
    with transaction.atomic():
        missing = _unknown_references(connection, event_type, data)
        if missing:
            return _refused(missing)
        webhook_id = services.event_insert(connection, source=SOURCE, natural_key=natural_key, payload=payload,
                                           headers={"content-sha256": digest})
        duplicate = webhook_id is None
        if duplicate:
            stored = (WebhookRequest.objects.filter(source=SOURCE, account=connection.slug, natural_key=natural_key,
                                                    status=WebhookRequest.Status.ACCEPTED)
                      .values_list("pk", "headers").first())
            if stored is None:  # cannot happen: the insert met this very row
                raise RuntimeError(f"stored event {natural_key} vanished")
            webhook_id, headers = stored
            if headers.get("content-sha256") != digest:
                return _refused([Problem(["Idempotency-Key"], "IDEMPOTENCY_KEY_REUSED",
                                         "was used before for a different request; use a new key")])
    outcome = _run(f"webhook:{webhook_id}")
    outcome.duplicate, outcome.event_id = duplicate, webhook_id
    return outcome


def _unknown_references(connection: Connection, event_type: str, data: dict) -> list[Problem]:
    """What the event names that this connection has not sent: answered at once, rather than
    left to wait for it as a webhook would (an API caller sends things in order)."""
    problems = []
    client_id = data.get("client_external_id")
    if client_id is not None and not ClientLink.objects.filter(connection=connection, external_id=client_id).exists():
        problems.append(Problem(["input", "clientExternalId"], "NOT_FOUND",
                                "no client with this external id; call upsertClient first"))
    wanted = []
    if event_type == "invoice.voided":
        wanted = [(["input", "externalId"], data["external_id"])]
    elif event_type == "credit_note.created":
        wanted = [(["input", "invoiceExternalId"], data["invoice_external_id"])]
    elif event_type == "payment.recorded":
        wanted = [(["input", "allocations", str(i), "invoiceExternalId"], row["invoice_external_id"])
                  for i, row in enumerate(data["allocations"])]
    known = set(Invoice.objects.filter(connection=connection, external_id__in=[ext for _, ext in wanted])
                .values_list("external_id", flat=True))
    problems += [Problem(path, "NOT_FOUND", "no invoice with this external id")
                 for path, ext in wanted if ext not in known]
    return problems


def _run(job_key: str) -> Outcome:
    """Run the event's job here, or wait for the worker that has it; what it came to."""
    deadline = time.monotonic() + WAIT_SECONDS
    job_id = Job.objects.filter(key=job_key).values_list("pk", flat=True).first()
    while True:
        if job_id is not None:
            jobs.job_run(job_id)
        state, error, result = (Job.objects.filter(pk=job_id).values_list("state", "last_error", "result").first()
                                or ("", "", ""))
        if state == Job.State.DONE:
            if result.startswith("ignored"):  # integrations.handlers.Stale: an older version, on purpose
                return Outcome(status="ignored", problems=[Problem(["input"], "STALE", result.split(": ", 1)[-1])])
            return Outcome(status="applied")
        if state in (Job.State.DEAD, Job.State.RETRYING):
            return _refused([Problem(["input"], "REFUSED", _first_line(error))])
        if time.monotonic() >= deadline:
            return Outcome(status="pending")
        time.sleep(0.05)


def _first_line(error: str) -> str:
    return (error.strip().splitlines() or ["refused"])[0][:500]


def now_iso() -> str:
    return timezone.now().isoformat()
