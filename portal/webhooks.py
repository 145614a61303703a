"""One intake for every webhook, whatever its source (accounting systems, Mollie, Stripe, the
sandbox gateway, the syncs to come): store the raw request, verify it, answer at once, and
leave a job that does the work. Every source answers the same way (docs/webhooks.md):

    200 {"status": "accepted", "webhook": <id>}      stored; a job will process it
    200 {"status": "duplicate"}                       this event id was accepted before
    4xx {"status": "rejected", "error": "<reason>"}   400 malformed, 401 signature, 404 unknown
                                                      account, 413 too large, 422 invalid content
    200 {"status": "ignored", "reason": "<reason>"}   well-formed, but about nothing of ours (a
                                                      source that must get 200 then: Mollie)

Rejected and ignored requests are kept for inspection, but only the first REJECTED_KEPT_PER_HOUR
per source, account and hour in full; the rest are counted, so an unauthenticated flood cannot
grow the database without bound. An accepted request costs four SQL statements: the scope,
the account lookup, the stored request and its job.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Callable

from django.db import connection, transaction
from django.http import JsonResponse
from django.utils import timezone

from portal.http import client_ip
from portal.jobs import job_enqueue
from portal.models import WebhookRejections, WebhookRequest  # noqa: F401 - WebhookRejections: see COUNT_SQL
from portal.rls import staff_scope

MAX_BODY_BYTES = 512 * 1024
REJECTED_KEPT_PER_HOUR = 50


class Rejected(Exception):
    """The request is refused with this HTTP status and reason (kept, within the bound)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Ignored(Exception):
    """Well-formed, but about nothing of ours: answered 200 (the sender must not retry) and kept
    like a rejected request, within the same bound, with no job."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Accepted:
    """What verification learned: the source's own event id (a duplicate of it changes
    nothing; empty when the source has none) and the subject its job is ordered by."""

    natural_key: str = ""
    subject: str = ""


@dataclass(frozen=True)
class Source:
    """One kind of sender. `find(account_key, body)` looks up the connection or gateway account
    the URL names (None: unknown), in one statement (it may use the body to learn more in that
    same statement); `verify(account, headers, body)` returns Accepted or raises Rejected or
    Ignored; accepted requests become jobs of `job_kind`."""

    name: str
    job_kind: str
    find: Callable[[str], Any]
    verify: Callable[[Any, Any, bytes], Accepted]
    kept_headers: tuple[str, ...] = field(default=("content-type", "user-agent"))


INSERT_SQL = """
INSERT INTO portal_webhookrequest (source, account, natural_key, status, headers, body, ip_address, error,
                                   received_at)
VALUES (%s, %s, %s, 'accepted', %s, %s, %s, '', %s)
ON CONFLICT (source, account, natural_key) WHERE status = 'accepted' AND NOT natural_key = '' DO NOTHING
RETURNING id
"""


COUNT_SQL = """
INSERT INTO portal_webhookrejections (source, account, hour, count) VALUES (%s, %s, %s, 1)
ON CONFLICT (source, account, hour) DO UPDATE SET count = portal_webhookrejections.count + 1
RETURNING count
"""


def _client_ip(request) -> str | None:
    return client_ip(request)


def _db_value(model, name: str, value):
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def webhook_receive(request, *, source: Source, account_key: str) -> JsonResponse:
    """The whole intake for one request; the view only names the source and the account."""
    body = request.body if len(request.body or b"") <= MAX_BODY_BYTES else None
    headers = {name: request.headers.get(name, "")[:1000] for name in source.kept_headers if request.headers.get(name)}
    ip = _client_ip(request)
    account_key = account_key[:100]
    if body is None:
        return _reject(source, account_key, headers, b"", ip,
                       Rejected(413, f"the body is larger than {MAX_BODY_BYTES} bytes"))
    with staff_scope():
        try:
            with transaction.atomic():
                account = source.find(account_key, body)
                if account is None:
                    raise Rejected(404, f"no enabled {source.name} account {account_key!r}")
                accepted = source.verify(account, request.headers, body)
                with connection.cursor() as cursor:
                    cursor.execute(INSERT_SQL, [
                        source.name, account_key, accepted.natural_key[:200],
                        _db_value(WebhookRequest, "headers", headers),
                        _db_value(WebhookRequest, "body", body.decode("utf-8", "replace")), ip, timezone.now()])
                    row = cursor.fetchone()
                if row is None:
                    return JsonResponse({"status": "duplicate"}, status=200)
                job_enqueue(kind=source.job_kind, key=f"webhook:{row[0]}", subject=accepted.subject,
                            payload={"webhook": row[0], "account": account_key})
        except Rejected as exc:
            return _reject(source, account_key, headers, body, ip, exc)
        except Ignored as exc:
            _keep_bounded(source, account_key, headers, body, ip, status=WebhookRequest.Status.IGNORED,
                          reason=exc.reason)
            return JsonResponse({"status": "ignored", "reason": exc.reason}, status=200)
    return JsonResponse({"status": "accepted", "webhook": row[0]}, status=200)


def _reject(source: Source, account_key: str, headers: dict, body: bytes, ip: str | None,
            rejected: Rejected) -> JsonResponse:
    _keep_bounded(source, account_key, headers, body, ip, status=WebhookRequest.Status.REJECTED,
                  reason=rejected.reason)
    return JsonResponse({"status": "rejected", "error": rejected.reason}, status=rejected.status)


def _keep_bounded(source: Source, account_key: str, headers: dict, body: bytes, ip: str | None, *, status: str,
                  reason: str) -> None:
    """Count the request in its source, account and hour; keep it in full while that count is
    within REJECTED_KEPT_PER_HOUR."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    with staff_scope(), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(COUNT_SQL, [source.name, account_key, hour])
            (count,) = cursor.fetchone()
        if count <= REJECTED_KEPT_PER_HOUR:
            WebhookRequest.objects.create(source=source.name, account=account_key, status=status, headers=headers,
                                          body=body[:64 * 1024].decode("utf-8", "replace"), ip_address=ip,
                                          error=reason[:2000])


def webhook_for(job) -> WebhookRequest:
    """The stored request a webhook job is about."""
    return WebhookRequest.objects.get(pk=job.payload["webhook"])


def rejections_last(*, hours: int = 24) -> int:
    since = timezone.now() - datetime.timedelta(hours=hours)
    return sum(WebhookRejections.objects.filter(hour__gte=since).values_list("count", flat=True))
