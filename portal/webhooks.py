"""One intake for every webhook, whatever its source (accounting systems, Mollie, Stripe, the
sandbox gateway, the syncs to come): store the raw request, verify it, answer at once, and
leave a job that does the work. Every source answers the same way (docs/webhooks.md):

    200 {"status": "accepted", "webhook": <id>}      stored; a job will process it
    200 {"status": "duplicate"}                       this event id was accepted before
    4xx {"status": "rejected", "error": "<reason>"}   400 malformed, 401 signature, 404 unknown
                                                      account, 413 too large, 422 invalid content
                                                      (with "errors": [{"field", "reason"}]),
                                                      429 too many (with Retry-After)
    200 {"status": "ignored", "reason": "<reason>"}   well-formed, but about nothing of ours (a
                                                      source that must get 200 then: Mollie)

What an attacker can make the intake do is bounded before it touches the database: a request
over the rate of its address or its account gets 429 and costs two Redis counters; a body is
read up to its source's limit and no further (413). Rejected and ignored requests are counted
per source, account, answer and hour, and only the first REJECTED_KEPT_PER_HOUR of each count
are kept as a sample: headers and the first REJECTED_EXCERPT_BYTES of the body, encrypted, with
a reason that never quotes what was sent. An accepted request costs three SQL statements: the
scope, the account lookup, and the stored request with its job (one statement); two where the
source lets the process remember its accounts (Source.recheck): that statement then also checks
that the account is still as remembered, and a request it finds changed is taken again from a
fresh lookup.
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.http import JsonResponse
from django.utils import timezone

from portal.compiled import server_bound_cursor
from portal.http import client_ip
from portal.jobs import INSERT_FROM_SQL, job_params, job_written
from portal.models import WebhookRejections, WebhookRequest  # noqa: F401 - WebhookRejections: see COUNT_SQL
from portal.rls import staff_scope

log = logging.getLogger(__name__)

REJECTED_KEPT_PER_HOUR = 50  # per source, account, answer and hour
REJECTED_EXCERPT_BYTES = 1024  # of a rejected or ignored body, kept encrypted: a sample, never the whole
NATURAL_KEY_MAX = 200  # event ids (webhook-id, Stripe's evt_...): longer ones are refused, never cut
UNKNOWN_ACCOUNT = ""  # what a request for an account that is not ours is counted under
KEPT_HEADER_MAX = 1000
JSON_MAX_DEPTH = 32
JSON_MAX_NUMBER_DIGITS = 30
# C0 controls, DEL and C1 controls: never part of an id, a header we keep or a stored text.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Rejected(Exception):
    """The request is refused with this HTTP status and reason (counted, and kept as a sample).
    The reason is stored in plain text: it names what is wrong, never the value that was sent.
    `errors` ([{"field": ..., "reason": ...}]) go into the answer too (422)."""

    def __init__(self, status: int, reason: str, *, errors: list[dict] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors or []


class Ignored(Exception):
    """Well-formed, but about nothing of ours: answered 200 (the sender must not retry) and kept
    like a rejected request, within the same bound, with no job."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Duplicate(Exception):
    """Nothing new: what this request announces is already waiting to be done (answered like a
    duplicate event id, nothing kept)."""


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
    same statement); `verify(account, headers, body)` returns Accepted or raises Rejected,
    Ignored or Duplicate; accepted requests become jobs of `job_kind`. Bodies over
    `max_body_bytes` (default: settings.WEBHOOK_MAX_BODY_BYTES) get 413.

    `recheck(account)`, when given, lets each process remember the accounts `find` found (by
    account key) instead of looking one up for every request: it returns an SQL query, with
    named parameters, that yields a row while the account in the database is still the one
    remembered (enabled, the same secrets). The statement that stores the request runs it, and
    stores nothing when it yields none; the request is then taken again from a fresh `find`.
    Only for a `find` that does not read the body."""

    name: str
    job_kind: str
    find: Callable[[str], Any]
    verify: Callable[[Any, Any, bytes], Accepted]
    kept_headers: tuple[str, ...] = field(default=("content-type", "user-agent"))
    max_body_bytes: int | None = None
    recheck: Callable[[Any], tuple[str, dict]] | None = None

    def body_limit(self) -> int:
        return self.max_body_bytes or settings.WEBHOOK_MAX_BODY_BYTES


# An accepted request and its job in one statement: (whether the account holds, the stored
# request's id or NULL when its natural key was accepted before, the job's id). `account` is
# the source's recheck query, or one that always yields a row.
STORE_SQL = """
WITH account AS ({account}),
stored AS (
    INSERT INTO portal_webhookrequest (source, account, natural_key, status, headers, body, ip_address, error,
                                       received_at)
    SELECT %(source)s, %(account_key)s, %(natural_key)s, 'accepted', %(headers)s, %(body)s, %(ip)s::inet, '',
           %(job_now)s
    WHERE EXISTS (SELECT FROM account)
    ON CONFLICT (source, account, natural_key) WHERE status = 'accepted' AND NOT natural_key = '' DO NOTHING
    RETURNING id
),
job AS (""" + INSERT_FROM_SQL.format(
    source="stored", key="'webhook:' || stored.id",
    payload="jsonb_build_object('webhook', stored.id, 'account', %(account_key)s::text)") + """)
SELECT EXISTS (SELECT FROM account), (SELECT id FROM stored), (SELECT id FROM job)
"""
ANY_ACCOUNT = "SELECT"


def request_store(*, source: str, job_kind: str, account_key: str, natural_key: str, headers: dict, body: str,
                  ip: str | None, subject: str, recheck: tuple[str, dict] | None = None) -> tuple[bool, int | None]:
    """Store an accepted request and its job (of `job_kind`, about `subject`), in the caller's
    transaction and in one statement, and ring for the job once that commits. Returns whether
    the account held (`recheck`: an SQL query and its parameters that yield a row while it
    does; nothing is stored when it does not) and the stored request's id, None when its
    natural key was accepted before (nothing changes)."""
    account_sql, account_params = recheck or (ANY_ACCOUNT, {})
    # Bound on the server: one text per source's recheck, prepared by the connection.
    with server_bound_cursor(connection) as cursor:
        cursor.execute(STORE_SQL.format(account=account_sql), {
            **account_params, **job_params(kind=job_kind, subject=subject), "source": source,
            "account_key": account_key, "natural_key": natural_key[:NATURAL_KEY_MAX],
            "headers": _db_value(WebhookRequest, "headers", headers), "body": _db_value(WebhookRequest, "body", body),
            "ip": ip})
        held, stored, job = cursor.fetchone()
    if job is not None:
        job_written(job, job_kind)
    return held, stored


COUNT_SQL = """
INSERT INTO portal_webhookrejections (source, account, hour, answer, count) VALUES (%s, %s, %s, %s, 1)
ON CONFLICT (source, account, hour, answer) DO UPDATE SET count = portal_webhookrejections.count + 1
RETURNING count
"""


def _db_value(model, name: str, value):
    return model._meta.get_field(name).get_db_prep_save(value, connection)


# (source, account key) -> the account its find last found, for sources with a recheck; the
# statement that stores a request checks it is unchanged. Only accounts that exist are kept, so it
# holds no more entries than there are accounts, whatever keys senders make up.
_remembered: dict[tuple[str, str], Any] = {}


def webhook_receive(request, *, source: Source, account_key: str) -> JsonResponse:
    """The whole intake for one request; the view only names the source and the account."""
    ip = client_ip(request)
    account_key = account_key[:100]
    limited = rate_limited(source=source.name, account_key=account_key, ip=ip)
    if limited is not None:
        return limited
    headers = _kept_headers(request, source)
    body = _read_body(request, source.body_limit())
    # One transaction whatever the answer: a refusal is decided before anything is written, so
    # it is counted (and sampled) in the same transaction as the lookup, not in a second one.
    with staff_scope(), transaction.atomic():
        remembered = _remembered.get((source.name, account_key)) if source.recheck else None
        if remembered is not None:
            answer = _receive(request, source, account_key, headers, body, ip, remembered=remembered)
            if answer is not None:
                return answer
            # The account has changed since it was remembered (disabled, secrets rotated, gone),
            # or the request was not accepted with it: decide again on the account as it is now.
        return _receive(request, source, account_key, headers, body, ip)


def _receive(request, source: Source, account_key: str, headers: dict, body: bytes | None, ip: str | None, *,
             remembered=None) -> JsonResponse | None:
    """The answer to one request, inside the intake's transaction. With a `remembered` account,
    only an accepted request (or a duplicate) whose statement found the account unchanged is
    answered; anything else returns None, having written nothing."""
    try:
        account = remembered if remembered is not None else source.find(account_key, body or b"")
        if remembered is None and source.recheck:  # what the next request of this account starts from
            if account is None:
                _remembered.pop((source.name, account_key), None)
            else:
                _remembered[(source.name, account_key)] = account
        if account is None:
            raise Rejected(404, f"no enabled {source.name} account of that name")
        if body is None:
            raise Rejected(413, f"the body is larger than {source.body_limit()} bytes")
        _check_headers(headers)
        accepted = source.verify(account, request.headers, body)
        _check_natural_key(accepted.natural_key)
    except Rejected as exc:
        if remembered is not None:
            return None
        if exc.status == 404:  # a name the sender chose must not get a counter row of its own
            headers, account_key = headers | {":account": account_key}, UNKNOWN_ACCOUNT
        return _reject(source, account_key, headers, body or b"", ip, exc)
    except Ignored as exc:
        if remembered is not None:
            return None
        _keep_bounded(source, account_key, headers, body, ip, status=WebhookRequest.Status.IGNORED,
                      reason=exc.reason, answer=200)
        return JsonResponse({"status": "ignored", "reason": exc.reason}, status=200)
    except Duplicate:
        if remembered is not None:
            return None
        return JsonResponse({"status": "duplicate"}, status=200)
    held, stored = request_store(
        source=source.name, job_kind=source.job_kind, account_key=account_key, natural_key=accepted.natural_key,
        headers=headers, body=body.decode("utf-8", "replace"), ip=ip, subject=accepted.subject,
        recheck=source.recheck(account) if source.recheck and remembered is not None else None)
    if not held:
        return None
    if stored is None:
        return JsonResponse({"status": "duplicate"}, status=200)
    return JsonResponse({"status": "accepted", "webhook": stored}, status=200)


def _kept_headers(request, source: Source) -> dict:
    return {name: request.headers.get(name, "")[:KEPT_HEADER_MAX] for name in source.kept_headers
            if request.headers.get(name)}


def _read_body(request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes. A declared length over the limit is
    refused unread; otherwise at most limit + 1 bytes are read from the stream, so neither a
    large body nor DATA_UPLOAD_MAX_MEMORY_SIZE (which would answer 400 past this intake) comes
    into play."""
    if hasattr(request, "_body"):  # read already (the sandbox's in-process call)
        return request._body if len(request._body) <= limit else None
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0  # Django reads nothing then
    if declared > limit:
        return None
    try:
        body = request.read(limit + 1) if declared > 0 else b""
    except OSError:  # the client went away mid-body: nothing to answer to, nothing to keep
        body = b""
    if len(body) > limit:
        return None
    request._body = body
    return body


def _check_headers(headers: dict) -> None:
    for name, value in headers.items():
        if CONTROL_CHARACTERS.search(value):
            raise Rejected(400, f"the {name} header contains control characters")


def _check_natural_key(natural_key: str) -> None:
    """A source checks its own event id and names the field; this is the last guard."""
    if len(natural_key) > NATURAL_KEY_MAX or CONTROL_CHARACTERS.search(natural_key):
        raise Rejected(422, f"event id: at most {NATURAL_KEY_MAX} characters, no control characters",
                       errors=[{"field": "event id",
                                "reason": f"at most {NATURAL_KEY_MAX} characters, no control characters"}])


def _reject(source: Source, account_key: str, headers: dict, body: bytes, ip: str | None,
            rejected: Rejected) -> JsonResponse:
    _keep_bounded(source, account_key, headers, body, ip, status=WebhookRequest.Status.REJECTED,
                  reason=rejected.reason, answer=rejected.status)
    answer = {"status": "rejected", "error": rejected.reason}
    if rejected.errors:
        answer["errors"] = rejected.errors
    return JsonResponse(answer, status=rejected.status)


def _keep_bounded(source: Source, account_key: str, headers: dict, body: bytes, ip: str | None, *, status: str,
                  reason: str, answer: int) -> None:
    """Count the request in its source, account, answer and hour; keep a sample (the headers
    and an excerpt of the body, encrypted) while that count is within REJECTED_KEPT_PER_HOUR."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    with staff_scope(), transaction.atomic(savepoint=False):  # the intake's own transaction, where there is one
        with connection.cursor() as cursor:
            cursor.execute(COUNT_SQL, [source.name, account_key, hour, answer])
            (count,) = cursor.fetchone()
        if count <= REJECTED_KEPT_PER_HOUR:
            WebhookRequest.objects.create(
                source=source.name, account=account_key, status=status, headers=headers,
                body=body[:REJECTED_EXCERPT_BYTES].decode("utf-8", "replace"), ip_address=ip, error=reason[:2000])


# --- Rate limits ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


RATE_FORMAT = re.compile(r"([0-9]{1,9})/([0-9]{0,6})([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@lru_cache(maxsize=16)
def parse_rate(text: str) -> Rate | None:
    """"600/m" is 600 a minute, "100/10s" 100 per 10 seconds; empty is no limit."""
    if not text:
        return None
    match = RATE_FORMAT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rate like 600/m")
    count, every, unit = match.groups()
    return Rate(count=int(count), seconds=int(every or 1) * UNIT_SECONDS[unit])


_cache_down_until = 0.0


def rate_limited(*, source: str, account_key: str, ip: str | None) -> JsonResponse | None:
    """429 with Retry-After when this address, or this account of the source, has sent more than
    its rate (settings.WEBHOOK_RATE_PER_IP, WEBHOOK_RATE_PER_ACCOUNT) in the current window;
    None to go on. Counted in the cache (Redis), in fixed windows: nothing is written to the
    database for a request turned away here. While Redis is down the cache counts per process
    (portal.cache); should the cache itself fail, the request is let through (logged): limits
    degrade, webhooks do not fail."""
    scopes = []
    for scope, identity, setting in (("ip", ip or "unknown", "WEBHOOK_RATE_PER_IP"),
                                     ("account", f"{source}:{account_key}", "WEBHOOK_RATE_PER_ACCOUNT")):
        rate = parse_rate(getattr(settings, setting, ""))
        if rate is not None:
            scopes.append((scope, rate, f"webhook-rate:{scope}:{identity}"))
    for (scope, _, _), retry_after in zip(scopes, rates_over([(rate, key) for _, rate, key in scopes])):
        if retry_after is not None:
            answer = JsonResponse({"status": "rejected",
                                   "error": f"too many requests for this {'address' if scope == 'ip' else 'account'}; "
                                            f"try again in {retry_after} seconds"}, status=429)
            answer["Retry-After"] = str(retry_after)
            return answer
    return None


def rate_over(rate: Rate, key: str) -> int | None:
    """Seconds until the window ends if this request is over the rate, else None."""
    return rates_over([(rate, key)])[0]


def rates_over(limits: list[tuple[Rate, str]]) -> list[int | None]:
    """rate_over for each (rate, key) in turn, up to the first the request is over: that one's
    wait, and None for the others (a request turned away by its address's rate is not counted
    against its account's). One round trip to Redis (portal.cache's count_in_turn)."""
    global _cache_down_until
    now = time.time()
    waits: list[int | None] = [None] * len(limits)
    if now < _cache_down_until or not limits:
        return waits
    windows = [int(now // rate.seconds) for rate, _ in limits]
    keys = [f"{key}:{rate.seconds}:{window}" for (rate, key), window in zip(limits, windows)]
    try:
        if hasattr(cache, "count_in_turn"):  # portal.cache's Redis cache: one round trip
            counts = cache.count_in_turn([(key, rate.seconds + 1, rate.count) for (rate, _), key in zip(limits, keys)])
        else:
            counts = []
            for (rate, _), key in zip(limits, keys):
                counts.append(_count(key, rate.seconds + 1))
                if counts[-1] > rate.count:
                    break
    except Exception:  # noqa: BLE001 - any cache failure: let the request through, say so once in a while
        if now >= _cache_down_until + 60:
            log.warning("rate limits are off: the cache cannot be reached", exc_info=True)
        _cache_down_until = now + 5  # do not wait for a dead cache on every request
        return waits
    for index, count in enumerate(counts):
        rate, window = limits[index][0], windows[index]
        if count <= rate.count:
            continue
        if count == rate.count + 1:
            log.warning("rate limit reached: %s (%s requests per %s s)", keys[index].rsplit(":", 2)[0], rate.count,
                        rate.seconds)
        waits[index] = max(1, math.ceil((window + 1) * rate.seconds - now))
    return waits


def _count(key: str, timeout: int) -> int:
    """A window's count in a cache other than portal.cache's."""
    try:
        return 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)
    except ValueError:  # the key expired between add and incr: a new window
        return 1


# --- JSON --------------------------------------------------------------------------------------

class _Refused(Exception):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_NUMBER_DIGITS:
        raise _Refused(f"a number has more than {JSON_MAX_NUMBER_DIGITS} digits")
    return int(text)


def _parse_float(text: str) -> Decimal:
    digits = re.sub(r"[eE].*", "", text).lstrip("-").replace(".", "")
    if len(digits) > JSON_MAX_NUMBER_DIGITS or len(text) > JSON_MAX_NUMBER_DIGITS + 10:
        raise _Refused(f"a number has more than {JSON_MAX_NUMBER_DIGITS} digits")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise _Refused("a number cannot be read") from None
    if abs(number.adjusted()) > JSON_MAX_NUMBER_DIGITS:
        raise _Refused(f"a number is beyond 10^{JSON_MAX_NUMBER_DIGITS}")
    return number


def _parse_constant(name: str):
    raise _Refused("NaN and Infinity are not JSON numbers")


def _object(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Refused("an object has the same name twice")
    return result


def parse_json(body: bytes) -> Any:
    """The JSON of a webhook body, for every source: UTF-8 only, nested at most JSON_MAX_DEPTH
    deep, numbers of at most JSON_MAX_NUMBER_DIGITS digits (decimals as Decimal, never float;
    no NaN or Infinity), no name twice in one object, no NUL and no lone surrogate in a string.
    Anything else raises Rejected(400) with a reason that quotes nothing from the body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "malformed JSON: the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant,
                           object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise Rejected(400, f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise Rejected(400, f"malformed JSON: nested more than {JSON_MAX_DEPTH} deep") from None
    except _Refused as exc:
        raise Rejected(400, f"malformed JSON: {exc}") from None
    _check_structure(value)
    return value


def _check_structure(value: Any) -> None:
    """Depth, NUL and lone surrogates, walked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or _has_surrogate(item):
                raise Rejected(400, "malformed JSON: a string holds NUL or a lone surrogate")
        elif isinstance(item, (dict, list)):
            if depth > JSON_MAX_DEPTH:
                raise Rejected(400, f"malformed JSON: nested more than {JSON_MAX_DEPTH} deep")
            children = list(item.items()) if isinstance(item, dict) else item
            for child in children:
                if isinstance(child, tuple):  # a name and its value
                    stack.append((child[0], depth))
                    stack.append((child[1], depth + 1))
                else:
                    stack.append((child, depth + 1))


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def webhook_for(job) -> WebhookRequest:
    """The stored request a webhook job is about."""
    return WebhookRequest.objects.get(pk=job.payload["webhook"])


COUNTS_KEPT = datetime.timedelta(days=400)  # a year of hourly counts, to compare with last year's


def webhook_samples_prune(*, now: datetime.datetime | None = None) -> int:
    """Remove the samples of rejected and ignored requests older than
    settings.WEBHOOK_SAMPLES_KEPT_DAYS, and hourly counts older than COUNTS_KEPT: with the bound
    per hour, what rejected requests leave behind stays bounded for good. Accepted requests stay
    (they are what the ledger was told). Returns how many samples went."""
    now = now or timezone.now()
    with staff_scope(), transaction.atomic():
        removed, _ = WebhookRequest.objects.filter(
            status__in=[WebhookRequest.Status.REJECTED, WebhookRequest.Status.IGNORED],
            received_at__lt=now - datetime.timedelta(days=settings.WEBHOOK_SAMPLES_KEPT_DAYS)).delete()
        WebhookRejections.objects.filter(hour__lt=now - COUNTS_KEPT).delete()
    return removed


def rejections_last(*, hours: int = 24) -> int:
    since = timezone.now() - datetime.timedelta(hours=hours)
    return sum(WebhookRejections.objects.filter(hour__gte=since).values_list("count", flat=True))
