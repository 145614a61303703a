"""Writes of the portal app: the audit log and the client a user acts for."""
from __future__ import annotations

import functools

from django.db import connection, connections, models, router

from portal.compiled import server_bound_cursor
from portal.http import client_ip
from portal.models import AuditEvent, Client, Membership
from portal.rls import client_scope

SESSION_CLIENT_KEY = "portal_client_id"


def transaction_lock(name: str) -> None:
    """Wait for, then hold until the current transaction ends, the lock called `name` (a
    transaction-level advisory lock): one holder at a time per name, in every process."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])


def _request_origin(request) -> tuple[str | None, str]:
    if request is None:
        return None, ""
    # Behind the TLS proxy REMOTE_ADDR is the proxy's; client_ip believes only what it forwards.
    return client_ip(request), request.META.get("HTTP_USER_AGENT", "")[:400]


def audit_record(
    *,
    action: AuditEvent.Action,
    actor=None,
    client: Client | None = None,
    obj: models.Model | None = None,
    request=None,
    actor_email: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """The one way to write to the audit log."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    if client is None and request is not None:
        client = getattr(request, "client", None)
    ip, user_agent = _request_origin(request)
    event = AuditEvent(
        action=action,
        actor=actor,
        actor_email=(actor.email if actor is not None else actor_email)[:254],
        client=client,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        ip_address=ip,
        user_agent=user_agent,
        details=details or {},
    )
    _insert_without_returning(event)
    return event


def _insert_without_returning(event: AuditEvent) -> None:
    # The audit log's read policy hides events of other clients and of anonymous
    # visitors (a failed login), and PostgreSQL applies read policies to
    # INSERT ... RETURNING. The log is write-only for the writer, so insert without it.
    # Every view and download writes one: the statement's text is made once and bound on the
    # server, so the connection prepares it (portal.compiled.server_bound_cursor).
    connection = connections[router.db_for_write(AuditEvent)]
    values = [f.get_db_prep_save(f.pre_save(event, True), connection) for f in _AUDIT_FIELDS]
    with server_bound_cursor(connection) as cursor:
        cursor.execute(_audit_insert_sql(connection.alias), values)


_AUDIT_FIELDS = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]


@functools.cache
def _audit_insert_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    return (f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in _AUDIT_FIELDS)}) "
            f"VALUES ({', '.join(['%s'] * len(_AUDIT_FIELDS))})")


def client_switch(*, request, client_id: int) -> Membership:
    """Make `client_id` the client this session acts for. Raises Membership.DoesNotExist
    when the user is not a member (the view answers 404)."""
    membership = next((m for m in request.memberships if m.client_id == client_id), None)
    if membership is None:
        raise Membership.DoesNotExist
    request.session[SESSION_CLIENT_KEY] = client_id
    # Recorded as the client switched to: the user is a member, so that scope is its own.
    with client_scope(client_id, user_id=request.user.pk):
        audit_record(action=AuditEvent.Action.CLIENT_SWITCHED, request=request, client=membership.client,
                     obj=membership.client)
    return membership
