"""/api/graphql/: the GraphQL API's HTTP side. POST only (a query in a URL ends up in logs), JSON
in and out (GraphQL over HTTP). A call is authenticated by an API token (Authorization: Bearer),
held to the token's scopes and rate, bounded before it runs (integrations.erp.limits and
strawberry's limiters), answered with errors that name what is wrong and never how the server
works inside, and audited with the token's connection."""
from __future__ import annotations

import json
import logging
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLSyntaxError

from integrations.erp.api import build_schema
from integrations.erp.models import ApiToken, token_digest
from portal.models import AuditEvent
from portal.rls import staff_scope
from portal.services import audit_record
from portal.webhooks import Rate, rate_over

log = logging.getLogger(__name__)
LAST_USED_EVERY_SECONDS = 60


@lru_cache(maxsize=2)
def schema(introspection: bool):
    return build_schema(introspection=introspection)


def _error(status: int, code: str, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _token(request) -> ApiToken | JsonResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return _error(401, "UNAUTHENTICATED", "send an API token: Authorization: Bearer <token>",
                      WWW_Authenticate='Bearer realm="api"')
    with transaction.atomic():
        token = ApiToken.objects.select_related("connection").filter(digest=token_digest(secret.strip())).first()
    if token is None:
        return _error(401, "UNAUTHENTICATED", "this API token is not known",
                      WWW_Authenticate='Bearer realm="api", error="invalid_token"')
    if token.revoked_at is not None:
        return _error(401, "TOKEN_REVOKED", "this API token was revoked",
                      WWW_Authenticate='Bearer realm="api", error="invalid_token"')
    if token.expires_at <= timezone.now():
        return _error(401, "TOKEN_EXPIRED", "this API token has expired; ask for a new one",
                      WWW_Authenticate='Bearer realm="api", error="invalid_token"')
    if not token.connection.enabled:
        return _error(403, "CONNECTION_DISABLED", "the connection of this API token is disabled")
    return token


def _request_body(request) -> dict | JsonResponse:
    if len(request.body) > settings.GRAPHQL_MAX_BODY_BYTES:
        return _error(413, "TOO_LARGE", f"the body is larger than {settings.GRAPHQL_MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "BAD_REQUEST", "the body must be JSON: {\"query\": ..., \"variables\": {...}}")
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
        return _error(400, "BAD_REQUEST", "the body must be a JSON object with a \"query\" string")
    if not isinstance(body.get("variables") or {}, dict):
        return _error(400, "BAD_REQUEST", "\"variables\" must be a JSON object")
    if not isinstance(body.get("operationName") or "", str):
        return _error(400, "BAD_REQUEST", "\"operationName\" must be a string")
    return body


def _operation(query: str, name: str | None) -> OperationType | JsonResponse | None:
    """What kind of operation the request runs; None when the executor should say what is wrong."""
    if len(query) > settings.GRAPHQL_MAX_BODY_BYTES:
        return None
    try:
        document = parse(query, max_tokens=settings.GRAPHQL_MAX_TOKENS)
    except GraphQLSyntaxError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if name is None or (o.name and o.name.value == name)]
    return chosen[0].operation if len(chosen) == 1 else None


def _error_out(error: GraphQLError) -> dict:
    """An error as the caller reads it: ours and the spec's as they are, anything unexpected as
    one line that gives nothing away (it is logged in full)."""
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        log.error("GraphQL resolver failed: %s", error.message, exc_info=original)
        return {"message": "internal error; it has been logged", "path": error.path,
                "extensions": {"code": "INTERNAL"}}
    formatted = error.formatted
    formatted.setdefault("extensions", {}).setdefault("code", "BAD_REQUEST" if error.path is None else "ERROR")
    return formatted


@csrf_exempt
def graphql_api(request):
    if request.method != "POST":
        return _error(405, "METHOD_NOT_ALLOWED", "use POST", Allow="POST")
    with staff_scope():
        token = _token(request)
        if isinstance(token, JsonResponse):
            return token
        retry_after = rate_over(Rate(count=token.rate_per_minute, seconds=60), f"api-rate:{token.pk}")
        if retry_after is not None:
            return _error(429, "RATE_LIMITED", f"more than {token.rate_per_minute} calls a minute; try again in "
                                               f"{retry_after} seconds", Retry_After=str(retry_after))
        body = _request_body(request)
        if isinstance(body, JsonResponse):
            return body
        operation = _operation(body["query"], body.get("operationName"))
        needed = "write" if operation == OperationType.MUTATION else "read"
        if needed not in token.scopes:
            _audit(request, token, operation, body, status=403, events=[])
            return _error(403, "FORBIDDEN_SCOPE", f"this API token may not {needed}; its scopes: "
                                                  f"{', '.join(token.scopes) or 'none'}")
        context = {"connection": token.connection, "token": token, "now": timezone.now(), "external_ids": {},
                   "operations": [], "idempotency_key": request.headers.get("Idempotency-Key", "").strip()}
        run = lambda: schema(settings.GRAPHQL_INTROSPECTION).execute_sync(  # noqa: E731
            body["query"], variable_values=body.get("variables") or None, context_value=context,
            operation_name=body.get("operationName"))
        if operation == OperationType.MUTATION:
            result = run()  # no transaction: each event is stored, then applied, in its own
        else:
            with transaction.atomic():  # one snapshot for the whole answer
                result = run()
        # Executed (data, or errors of fields that ran): 200, as GraphQL over HTTP answers JSON;
        # not executed (the request could not be parsed or validated): 400.
        executed = result.data is not None or any(error.path for error in result.errors or ())
        status = 200 if executed else 400
        _audit(request, token, operation, body, status=status, events=context["operations"])
    answer = {"data": result.data} if result.data is not None else {}
    if result.errors:
        answer["errors"] = [_error_out(error) for error in result.errors]
    return JsonResponse(answer, status=status)


def _audit(request, token: ApiToken, operation, body: dict, *, status: int, events: list[str]) -> None:
    now = timezone.now()
    with transaction.atomic():
        audit_record(action=AuditEvent.Action.API_CALL, obj=token, request=request,
                     actor_email=f"api:{token.connection.slug}"[:254],
                     details={"connection": token.connection.slug, "token": token.prefix,
                              "operation": operation.value if operation else "",
                              "name": (body.get("operationName") or "")[:100], "events": events[:20],
                              "status": status})
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_EVERY_SECONDS:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
