"""Telling a custom ERP (a connection of kind "erp_pull") of portal payments, refunds and chargebacks.

The outbox (integrations.outbox) writes the messages and their "outbox.deliver" jobs as for any
connection; its delivery hands an ERP pull connection here when the ERP is told by a REST call or a
GraphQL mutation (ErpPull.push), and keeps the signed webhook for push = "webhook".

The request is built from ErpPull.push_request, JMESPath over the message:

    {"id": "msg_...", "kind": "payment" | "refund" | "chargeback",
     "type": "payment.recorded" | "payment.refunded" | "payment.charged_back",
     "occurred_at": "...", "data": {"external_id", "client_external_id", "amount", "currency",
                                    "received_at", "method", "reference", "gateway_payment_id",
                                    "allocations": [{"invoice_external_id", "invoice_number", "amount"}]}}

(the signed webhook's body, with its id and the kind beside it). REST:
{"method": "POST", "path": "portal-payments", "body": {field: JMESPath}}; GraphQL:
{"mutation": "mutation($input: ...) {...}", "variables": {name: JMESPath}}. Objects nest; a value
that is not a string is sent as written; a constant string is a JMESPath literal ('EUR').

Exactly once: every attempt carries the message id as Idempotency-Key (and the mapping can put it
in the body or the variables), so an ERP that books a key once is told once however often the job
tries. In order per payment: the job's subject (integrations.receivers). A 429, a 5xx, a 408 or 409
or a broken line is retried (Retry-After respected); any other refusal, or a GraphQL answer with
errors, is dead at once with the ERP's answer, for staff to fix the mapping and replay the job."""
from __future__ import annotations

import json
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.erp import mapping
from integrations.erp.client import ErpAuthRefused, ErpClient, ErpRefused, ErpThrottled, ErpUnreachable
from integrations.erp.models import ErpPull
from integrations.models import Connection, OutboxMessage
from portal import jobs

TIMEOUT = (3, 15)
ANSWER_KEPT = 500  # characters of the ERP's answer kept in the job's reason
KINDS = {"payment.recorded": "payment", "payment.refunded": "refund", "payment.charged_back": "chargeback"}
RETRIED_STATUSES = {408, 409, 425}  # 409: another attempt with the same key still in flight (429: ErpThrottled)
# GraphQL error codes (extensions.code) that say "not now" rather than "not this": retried.
RETRIED_GRAPHQL_CODES = {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "RATE_LIMITED", "THROTTLED",
                         "TOO_MANY_REQUESTS", "UNAVAILABLE"}
PREVIEW_ID = "msg_preview"


class PushMappingError(ValueError):
    """ErpPull.push_request cannot build a request (a missing part, an expression that does not parse)."""


def erp_of(connection: Connection) -> ErpPull | None:
    return ErpPull.objects.filter(connection=connection).first()


def tells_payments(connection: Connection) -> bool:
    """Whether an ERP pull connection is told of payments at all (integrations.outbox.takes_payments_back):
    enabled, with a push chosen, and for the signed webhook an address to post it to."""
    erp = erp_of(connection)
    if not connection.enabled or erp is None or erp.push == ErpPull.Push.NONE:
        return False
    return erp.push != ErpPull.Push.WEBHOOK or bool(connection.outbound_url)


def push_document(message_id: str, payload: dict) -> dict:
    """What the mapping's expressions read: the message's payload with its id and kind beside it."""
    return {"id": message_id, "kind": KINDS.get(payload.get("type", ""), ""), **payload}


def _evaluate(template, document: dict, where: str):
    """A mapping template applied to the document: strings are JMESPath (with the ERP functions of
    integrations.erp.mapping), objects and lists recurse, anything else is a constant."""
    if isinstance(template, str):
        try:
            return mapping.search(template, document)
        except (mapping.MappingInvalid, mapping.Unmappable) as exc:
            raise PushMappingError(f"{where}: {exc}") from None
    if isinstance(template, dict):
        return {name: _evaluate(value, document, f"{where}.{name}") for name, value in template.items()}
    if isinstance(template, list):
        return [_evaluate(value, document, f"{where}[{i}]") for i, value in enumerate(template)]
    return template


def push_build(erp: ErpPull, *, message_id: str, payload: dict) -> dict:
    """The request that tells the ERP of one message: {"method", "url", "body"} (the body sent as
    JSON). Raises PushMappingError when push_request cannot make one."""
    spec = erp.push_request or {}
    if not isinstance(spec, dict):
        raise PushMappingError("the request that tells the ERP must be a JSON object")
    document = push_document(message_id, payload)
    if erp.push == ErpPull.Push.REST:
        method = str(spec.get("method") or "POST").upper()
        if method not in ("POST", "PUT", "PATCH"):
            raise PushMappingError(f"method {method!r}: use POST, PUT or PATCH")
        if not isinstance(spec.get("body"), dict):
            raise PushMappingError('a REST call needs "body": {field: JMESPath}')
        try:
            url = ErpClient(erp).url(str(spec.get("path") or ""))
        except ErpRefused as exc:
            raise PushMappingError(f"path: {exc}") from None
        return {"method": method, "url": url, "body": _evaluate(spec["body"], document, "body")}
    if erp.push == ErpPull.Push.GRAPHQL:
        mutation = spec.get("mutation")
        if not isinstance(mutation, str) or not mutation.strip():
            raise PushMappingError('a GraphQL push needs "mutation": "mutation(...) { ... }"')
        variables = spec.get("variables") or {}
        if not isinstance(variables, dict):
            raise PushMappingError('"variables" must be an object: {name: JMESPath}')
        return {"method": "POST", "url": erp.base_url,
                "body": {"query": mutation, "variables": _evaluate(variables, document, "variables")}}
    raise PushMappingError(f"the ERP is told by {erp.get_push_display()}, not by a REST call or a mutation")


def push_headers(message_id: str) -> dict:
    return {"Idempotency-Key": message_id}


def push_preview(erp: ErpPull, message_payload: dict) -> dict:
    """The request a message would make, for staff to check the mapping before it goes live (the
    admin's preview; nothing is sent): {"method", "url", "headers", "body"}, with the authorisation
    named but not shown; or {"error": ...} when the mapping cannot build one."""
    message_id = message_payload.get("id") or PREVIEW_ID
    payload = {key: value for key, value in message_payload.items() if key not in ("id", "kind")}
    try:
        built = push_build(erp, message_id=message_id, payload=payload)
    except PushMappingError as exc:
        return {"error": str(exc)}
    headers = {"Content-Type": "application/json", **push_headers(message_id)}
    authorisation = {ErpPull.Auth.BEARER: _("Bearer (the configured token)"),
                     ErpPull.Auth.BASIC: _("Basic (the configured user name and password)"),
                     ErpPull.Auth.OAUTH2: _("Bearer (an access token by OAuth2 client credentials)")}.get(erp.auth)
    if authorisation:
        headers["Authorization"] = authorisation
    return {**built, "body": json.loads(json.dumps(built["body"], default=_json_default)), "headers": headers}


def sample_payload(event_type: str = "payment.recorded") -> dict:
    """A message as the outbox writes it (integrations.receivers), for the preview."""
    return {"id": PREVIEW_ID, "type": event_type, "occurred_at": "2026-03-02T10:15:00+00:00",
            "data": {"external_id": "portal-payment-123", "client_external_id": "C001", "amount": "242.00",
                     "currency": "EUR", "received_at": "2026-03-02T10:14:58+00:00", "method": "ideal",
                     "reference": "INV-1001", "gateway_payment_id": "tr_WDqYK6vllg",
                     "allocations": [{"invoice_external_id": "INV-1001", "invoice_number": "2026-0001",
                                      "amount": "242.00"}]}}


def _graphql_errors(data) -> tuple[list[str], bool] | None:
    """The GraphQL errors in an answer (their messages, and whether all say "try later"), or None."""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not errors:
        return None
    messages, codes = [], []
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, dict):
            path = ".".join(str(part) for part in error.get("path") or [])
            messages.append(f"{path}: {error.get('message')}" if path else str(error.get("message")))
            codes.append(str((error.get("extensions") or {}).get("code", "")).upper())
        else:
            messages.append(str(error))
            codes.append("")
    return messages, all(code in RETRIED_GRAPHQL_CODES for code in codes)


def _record(message: OutboxMessage, status: int | None, *, delivered: bool) -> None:
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=message.pk).update(
            response_status=status, delivered_at=timezone.now() if delivered else None)


def _json_default(value):
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON")


def outbox_deliver_erp(*, message: OutboxMessage, erp: ErpPull, job) -> str:
    """Tell the ERP of one message by its REST call or mutation (the "outbox.deliver" job of an ERP
    pull connection whose push is rest or graphql), with no transaction open, through the ERP's one
    client (integrations.erp.client: authentication, one new OAuth2 token on a 401, what answers mean)."""
    if message.event_type not in KINDS:
        _record(message, 204, delivered=True)
        return f"{message.event_type}: not told (the ERP is told of payments, refunds and chargebacks)"
    try:
        built = push_build(erp, message_id=message.message_id, payload=message.payload)
    except PushMappingError as exc:
        raise jobs.Permanent(f"the mapping cannot build the request: {exc}") from None
    client = ErpClient(erp, timeout=TIMEOUT)
    statuses: list[int] = []  # what the ERP answered, kept for staff (the exceptions below say why)
    client.session.hooks["response"].append(lambda response, *args, **kwargs: statuses.append(response.status_code))
    try:
        answer = client.request(built["method"], built["url"], json_body=built["body"],
                                headers=push_headers(message.message_id))
    except ErpThrottled as exc:
        _record(message, statuses[-1] if statuses else None, delivered=False)
        raise jobs.Retry(str(exc), until=exc.until) from None
    except ErpUnreachable as exc:
        # The ERP may have booked it before the line broke: the same Idempotency-Key next time.
        _record(message, statuses[-1] if statuses else None, delivered=False)
        raise jobs.Retry(str(exc)) from None
    except ErpAuthRefused as exc:
        _record(message, statuses[-1] if statuses else None, delivered=False)
        raise jobs.Permanent(f"{exc} (fix the credentials, then replay this job)") from None
    except ErpRefused as exc:
        _record(message, exc.status, delivered=False)
        if exc.status in RETRIED_STATUSES:
            raise jobs.Retry(str(exc)) from None
        raise jobs.Permanent(f"{exc} (fix the mapping, then replay this job)") from None
    errors = _graphql_errors(answer.data) if erp.push == ErpPull.Push.GRAPHQL else None
    _record(message, answer.status, delivered=errors is None)
    if errors is not None:
        reason = f"HTTP {answer.status}, GraphQL errors: " + "; ".join(errors[0])
        if errors[1]:
            raise jobs.Retry(reason[:ANSWER_KEPT])
        raise jobs.Permanent(f"{reason[:ANSWER_KEPT]} (fix the mapping, then replay this job)")
    return f"HTTP {answer.status}: {json.dumps(answer.data, default=_json_default)[:200]}"
