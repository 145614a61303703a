"""Exact Online's webhooks, taken in by the one intake (portal.webhooks) as the source "exact" at
/webhooks/exact/<connection URL name>/, and the subscriptions that make Exact send them.

A webhook carries only a key, so it is a hint: a valid one leaves an "exact.hint" job that syncs
the topic's entity of that connection (integrations.exact.tasks), ordered with the other syncs of
that entity (subject `exact:<pk>:<entity>`). While such a sync still waits to start, another hint
for it is answered as a duplicate: the waiting sync reads whatever the hint announced.

Exact's rules (../shared/reference/api-facts.md §1.7, picqer/exact-php-client
src/Picqer/Financials/Exact/Webhook/Authenticatable.php, hookdeck/webhook-skills#152):
- right after a subscription, Exact sends an EMPTY POST that must get a 2xx (answered "ignored",
  200, and kept like an ignored request);
- the body is {"Content": {...}, "HashCode": "..."}; HashCode is the uppercase hex HMAC-SHA256 of
  the Content JSON exactly as received (braces included), keyed with the app's webhook secret;
  compared in constant time. A wrong one is rejected (401) and kept like any rejected webhook.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.exact.client import ExactClient, ExactError
from integrations.exact.models import ExactConnection, ExactCursor
from portal.models import Job
from portal.webhooks import Accepted, Duplicate, Ignored, Rejected, Source, parse_json, webhook_receive

JOB_KIND = "exact.hint"
SYNC_JOB = "exact.sync"
Entity = ExactCursor.Entity
TOPICS = {"Accounts": Entity.ACCOUNTS, "SalesInvoices": Entity.SALES_INVOICES,
          "FinancialTransactions": Entity.TRANSACTION_LINES}
SUBSCRIPTIONS = "webhooks/WebhookSubscriptions"
# The raw Content object, as received: picqer's own pattern, spaces allowed.
BODY = re.compile(rb'\s*\{\s*"Content"\s*:\s*(\{.*\})\s*,\s*"HashCode"\s*:\s*"([^"]*)"\s*\}\s*', re.DOTALL)


def sync_subject(exact_pk: int, entity: str) -> str:
    """The syncs of one entity of one connection run one at a time, in order."""
    return f"exact:{exact_pk}:{entity}"


def sync_waiting(exact_pk: int, entity: str) -> bool:
    """A sync of this entity is written and has not started: anything new will be read by it."""
    return Job.objects.filter(kind__in=[SYNC_JOB, JOB_KIND], subject=sync_subject(exact_pk, entity),
                              state=Job.State.PENDING, attempts=0).exists()


def hinted_entity(content: dict) -> str | None:
    """Which entity a hint asks to sync: a deletion is learnt from sync/Deleted (never by a GET,
    which would 404 against the hourly error budget)."""
    entity = TOPICS.get(str(content.get("Topic", "")))
    if entity is None:
        return None
    return Entity.DELETED if str(content.get("Action", "")).lower() == "delete" else entity


def content_of(body: bytes) -> tuple[bytes, str]:
    """(the raw Content JSON, the HashCode) of a webhook body; Rejected(400) for anything else."""
    found = BODY.fullmatch(body)
    if found is None:
        raise Rejected(400, "not an Exact Online webhook: a body of Content and HashCode is expected")
    return found.group(1), found.group(2).decode("ascii", "replace")


def hash_code(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest().upper()


def _find(slug: str, body: bytes) -> ExactConnection | None:
    return (ExactConnection.objects.select_related("connection")
            .filter(connection__slug=slug, connection__enabled=True).first())


def _verify(exact: ExactConnection, headers, body: bytes) -> Accepted:
    if not body.strip():
        raise Ignored("Exact Online's validation request (an empty POST)")
    content, given = content_of(body)
    if not exact.webhook_secret:
        raise Rejected(401, "HashCode: the connection has no webhook secret")
    if not hmac.compare_digest(hash_code(exact.webhook_secret, content), given):
        raise Rejected(401, "HashCode does not match")
    hint = parse_json(content)
    if not isinstance(hint, dict):
        raise Rejected(400, "Content: an object is expected")
    if str(hint.get("Division")) != str(exact.division):
        raise Ignored("a division this connection does not sync")
    entity = hinted_entity(hint)
    if entity is None:
        raise Ignored("a topic the portal does not sync")
    if sync_waiting(exact.pk, entity):
        raise Duplicate()
    # Exact sends the same Content again when it retries: the same key, a duplicate.
    return Accepted(natural_key="exact:" + hashlib.sha256(content).hexdigest(), subject=sync_subject(exact.pk, entity))


SOURCE = Source(name="exact", job_kind=JOB_KIND, find=_find, verify=_verify,
                kept_headers=("content-type", "user-agent"))


def subscribe_webhooks(exact: ExactConnection, callback_url: str) -> list[dict]:
    """Subscribe this connection's division to the topics the portal syncs, once each: existing
    subscriptions to the same address are kept; Exact's "Data already exists" (a subscription by
    another user of the same division) counts as subscribed. Calls Exact: no transaction open.
    Returns [{"topic": ..., "status": "subscribed" | "already"}]."""
    client = ExactClient(exact)
    existing = {(row.get("Topic"), row.get("CallbackURL"))
                for row in client.get_all(SUBSCRIPTIONS, select=["ID", "Topic", "CallbackURL"])}
    results = []
    for topic in TOPICS:
        if (topic, callback_url) in existing:
            results.append({"topic": topic, "status": "already"})
            continue
        try:
            client.post(SUBSCRIPTIONS, {"CallbackURL": callback_url, "Topic": topic})
        except ExactError as exc:
            if "already exists" not in str(exc).lower():
                raise
            results.append({"topic": topic, "status": "already"})
            continue
        results.append({"topic": topic, "status": "subscribed"})
    return results


@csrf_exempt
@require_POST
def exact_webhook(request, connection: str):
    """POST /webhooks/exact/<connection>/: thin; the one intake does the work."""
    return webhook_receive(request, source=SOURCE, account_key=connection)
