"""The one client for Exact Online's REST API: every call of every job goes through it, so the
budgets Exact allows are spent in one place.

What Exact documents and this keeps to (../shared/reference/api-facts.md §1.3, §1.4):
- 60 calls a minute and 5,000 a day per app and division; each answer says what is left in
  X-RateLimit-Limit/-Remaining/-Reset (the day) and X-RateLimit-Minutely-* (the minute), resets
  in UTC epoch milliseconds (picqer/exact-php-client Connection.php extractRateLimits(); after the
  minute is spent only the minutely ones come). Over a limit Exact answers 429.
- More than 10 errors (400, 401, 403, 404) per endpoint per hour block the app for an hour
  (https://docs.maesn.com/rate-limits quoting Exact's knowledge base): the client counts them per
  endpoint and clock hour and stops calling an endpoint that has had ERROR_LIMIT in this hour and
  the one before.
- `$select` is required (Exact's .NET SDK README §5); collections come as
  {"d": {"results": [...], "__next": "<absolute URL>"}}, 60 rows a page (1,000 on sync and bulk
  endpoints); errors as OData {"error": {"code": "", "message": {"lang": "", "value": "..."}}}.

No call is made inside a database transaction: the budgets are read, spent and recorded in short
transactions of their own around it.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import requests
from django.db import connection, transaction
from django.utils import timezone

from integrations.exact.models import ExactConnection, ExactEndpointErrors
from integrations.exact.values import dumps, loads
from portal.rls import staff_scope

TIMEOUT = (5, 60)
ERROR_LIMIT = 10  # Exact blocks past 10 errors an hour; the 10th is the last this client risks
ERROR_STATUSES = (400, 401, 403, 404)
DEFAULT_WAIT = datetime.timedelta(seconds=60)  # after a 429 that says nothing of when
ME_FIELDS = ["CurrentDivision", "FullName", "UserName", "Email", "UserID"]
DIVISION_FIELDS = ["Code", "Description", "Currency", "Country"]


class ExactError(Exception):
    """Exact Online could not do what was asked (the message says why)."""


class NeedsReauthorisation(ExactError):
    """No usable tokens: the refresh token was refused or expired (the connection is in state
    "reauthorise" and staff were told), or the connection was never connected. Only a new
    consent in admin helps; nothing is called until then."""


class RateLimited(ExactError):
    """A budget is spent (the minute's or the day's calls, the day's token calls) or Exact
    answered 429: call again from `.until` (aware datetime) on."""

    def __init__(self, until: datetime.datetime, message: str = ""):
        super().__init__(f"{message or 'Exact Online rate limit reached'}; calls resume at {until.isoformat()}")
        self.until = until


class EndpointBlocked(ExactError):
    """Our own guard: this endpoint had ERROR_LIMIT errors in this clock hour and the one before;
    one more could get the app blocked by Exact for an hour. `.until` is the next clock hour."""

    def __init__(self, endpoint: str, until: datetime.datetime):
        super().__init__(f"{endpoint} had {ERROR_LIMIT} errors within the hour; not called again before "
                         f"{until.isoformat()}")
        self.endpoint = endpoint
        self.until = until


class ExactRefused(ExactError):
    """Exact answered a 4xx (400/401/403/404 are counted against the endpoint's hourly errors)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Exact Online answered {status}: {message}")
        self.status = status
        self.message = message


class ExactUnreachable(ExactError):
    """No answer (connection refused, timeout): Exact may or may not have done it."""


class ExactClient:
    def __init__(self, exact: ExactConnection):
        self.exact = exact
        self.session = requests.Session()

    # --- Reading and writing ---------------------------------------------------------------

    def pages(self, path: str, *, select: list[str], filter: str = "", top: int | None = None) -> Iterator[list[dict]]:
        """GET `{base}/api/v1/{division}/{path}` and each page after it (`d.__next`); yields the
        rows of each page. Rows are dicts straight from Exact, amounts as Decimal."""
        url = self._url(path, self._query(select=select, filter=filter, top=top))
        while url:
            body = self._request("GET", url)
            rows, url = _rows(body)
            if url and not url.startswith(self.exact.base_url + "/api/"):
                raise ExactError(f"Exact's next page is somewhere else: {url[:200]}")
            yield rows

    def get_all(self, path: str, *, select: list[str], filter: str = "") -> list[dict]:
        return [row for page in self.pages(path, select=select, filter=filter) for row in page]

    def get_one(self, path: str, *, select: list[str]) -> dict | None:
        """One entity (`crm/Accounts(guid'...')`); None when Exact answers none. A missing key is
        a 404 that counts as an error: learn of deletions from sync/Deleted, never by a GET."""
        body = self._request("GET", self._url(path, self._query(select=select)))
        found = body.get("d") if isinstance(body, dict) else None
        if isinstance(found, dict) and isinstance(found.get("results"), list):
            found = found["results"]
        if isinstance(found, list):
            return found[0] if found else None
        return found or None

    def post(self, path: str, body: dict) -> dict:
        """POST a new entity (JSON, Decimals as numbers); answers the created entity (`d`)."""
        answer = self._request("POST", self._url(path), body=body)
        created = answer.get("d") if isinstance(answer, dict) else None
        return created if isinstance(created, dict) else {}

    def me(self) -> dict:
        """`current/Me` (no division in its path): the user who consented and CurrentDivision."""
        url = f"{self.exact.base_url}/api/v1/current/Me{self._query(select=ME_FIELDS)}"
        rows, _ = _rows(self._request("GET", url))
        if not rows:
            raise ExactError("Exact Online's current/Me answered no user")
        return rows[0]

    def divisions(self) -> list[dict]:
        """The divisions (administrations) the user can reach, from `system/Divisions` under the
        chosen division, or the user's current one before a division is chosen."""
        division = self.exact.division or self.me()["CurrentDivision"]
        url = f"{self.exact.base_url}/api/v1/{division}/system/Divisions{self._query(select=DIVISION_FIELDS)}"
        found = []
        while url:
            rows, url = _rows(self._request("GET", url))
            found.extend(rows)
        return found

    # --- One call --------------------------------------------------------------------------

    def _url(self, path: str, query: str = "") -> str:
        if not self.exact.division:
            raise ExactError("no Exact Online division chosen for this connection yet")
        return f"{self.exact.base_url}/api/v1/{self.exact.division}/{path.strip('/')}{query}"

    @staticmethod
    def _query(*, select: list[str], filter: str = "", top: int | None = None) -> str:
        if not select:
            raise ValueError("Exact requires $select: name the fields")
        # Built by hand: `$` stays a `$` and spaces are %20, as OData writes them.
        parts = ["$select=" + quote(",".join(select), safe=",/")]
        if filter:
            parts.append("$filter=" + quote(filter, safe="'(),/:"))
        if top is not None:
            parts.append(f"$top={int(top)}")
        return "?" + "&".join(parts)

    def _request(self, method: str, url: str, *, body: dict | None = None):
        from integrations.exact import tokens  # tokens raises this module's errors

        endpoint = endpoint_of(url)
        self._spend_budget(endpoint)
        headers = {"Authorization": f"Bearer {tokens.access_token(self.exact)}", "Accept": "application/json"}
        token_of = self.exact.refreshed_at  # which refresh the token we send came from
        data = None
        if body is not None:
            # return=representation: the created entity comes back whole, no second GET.
            headers.update({"Content-Type": "application/json", "Prefer": "return=representation"})
            data = dumps(body).encode()
        try:
            response = self.session.request(method, url, data=data, headers=headers, timeout=TIMEOUT,
                                            allow_redirects=False)
        except requests.RequestException as exc:
            raise ExactUnreachable(f"Exact Online did not answer {method} {endpoint}: {type(exc).__name__}: {exc}") \
                from None
        self._record(response, endpoint)
        if response.status_code == 401:
            # Exact no longer takes this access token (revoked, or its clock is ahead of ours):
            # the next call refreshes it as soon as Exact allows, unless another worker has already.
            with staff_scope(), transaction.atomic():
                ExactConnection.objects.filter(pk=self.exact.pk, refreshed_at=token_of).update(
                    access_expires_at=timezone.now())
        if 200 <= response.status_code < 300:
            if not response.content:
                return {}
            try:
                return loads(response.content)
            except ValueError:
                raise ExactError(f"Exact Online answered {endpoint} with no JSON: {response.text[:200]}") from None
        if response.status_code == 429:
            raise RateLimited(self.exact.rate_limited_until, f"Exact Online answered 429 on {endpoint}")
        if 400 <= response.status_code < 500:
            raise ExactRefused(response.status_code, odata_message(response))
        raise ExactError(f"Exact Online answered {response.status_code} on {endpoint}: {odata_message(response)}")

    def _spend_budget(self, endpoint: str) -> None:
        """Refuse to call when a budget is spent, else take one call from the minute's and the
        day's budgets as Exact last reported them (the next answer says what is really left).
        The row is locked for this short transaction, so workers spend the same budget."""
        now = timezone.now()
        hour = now.replace(minute=0, second=0, microsecond=0)
        with staff_scope(), transaction.atomic():
            exact = ExactConnection.objects.select_for_update().get(pk=self.exact.pk)
            if exact.state == ExactConnection.State.REAUTHORISE:
                raise NeedsReauthorisation(exact.state_reason or "Exact Online needs a new consent")
            if exact.rate_limited_until and exact.rate_limited_until > now:
                raise RateLimited(exact.rate_limited_until, "Exact Online answered 429")
            # Any 60 minutes lie within this clock hour and the one before: counting both keeps
            # every such window under the limit, whether Exact's hour is the clock's or sliding.
            counts = dict(ExactEndpointErrors.objects.filter(
                exact=exact, endpoint=endpoint, hour__gte=hour - datetime.timedelta(hours=1))
                .values_list("hour", "count"))
            this_hour = counts.get(hour, 0)
            if sum(counts.values()) >= ERROR_LIMIT:
                # This hour's errors still count through the next hour.
                raise EndpointBlocked(endpoint, hour + datetime.timedelta(hours=2 if this_hour >= ERROR_LIMIT else 1))
            changed = []
            for remaining, resets_at, what in (("minute_remaining", "minute_resets_at", "minute"),
                                               ("day_remaining", "day_resets_at", "day")):
                left, resets = getattr(exact, remaining), getattr(exact, resets_at)
                if left is None or resets is None or resets <= now:
                    continue  # nothing known for the current window: Exact will say
                if left <= 0:
                    raise RateLimited(resets, f"this {what}'s Exact Online calls are spent")
                setattr(exact, remaining, left - 1)
                changed.append(remaining)
            if changed:
                exact.save(update_fields=changed)

    def _record(self, response: requests.Response, endpoint: str) -> None:
        """Store what the answer says of the budgets, a 429's wait, and an error against the
        endpoint's hour: one short transaction."""
        now = timezone.now()
        changes = limits_from_headers(response.headers)
        if response.status_code == 429:
            changes["rate_limited_until"] = _wait_until(response, changes, now)
        with staff_scope(), transaction.atomic():
            if changes:
                ExactConnection.objects.filter(pk=self.exact.pk).update(**changes)
            if response.status_code in ERROR_STATUSES:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"INSERT INTO {ExactEndpointErrors._meta.db_table} (exact_id, endpoint, hour, count) "
                        "VALUES (%s, %s, %s, 1) ON CONFLICT (exact_id, endpoint, hour) "
                        "DO UPDATE SET count = EXCLUDED.count + "
                        f"{ExactEndpointErrors._meta.db_table}.count",
                        [self.exact.pk, endpoint, now.replace(minute=0, second=0, microsecond=0)])
        for name, value in changes.items():
            setattr(self.exact, name, value)


def endpoint_of(url: str) -> str:
    """The endpoint Exact counts errors against: the URL's path without the query, and without a
    key in brackets (`crm/Accounts(guid'...')` counts as `crm/Accounts`)."""
    path = urlsplit(url).path
    if path.endswith(")") and "(" in path:
        path = path[: path.rindex("(")]
    return path[:200]


def limits_from_headers(headers) -> dict:
    """ExactConnection fields from X-RateLimit-* headers (those present and readable)."""
    found = {}
    for header, field, kind in (("X-RateLimit-Limit", "day_limit", int),
                                ("X-RateLimit-Remaining", "day_remaining", int),
                                ("X-RateLimit-Reset", "day_resets_at", _moment_ms),
                                ("X-RateLimit-Minutely-Remaining", "minute_remaining", int),
                                ("X-RateLimit-Minutely-Reset", "minute_resets_at", _moment_ms)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            found[field] = kind(value.strip())
        except (ValueError, OverflowError):
            continue
    for field in ("day_limit", "day_remaining", "minute_remaining"):
        if field in found:
            found[field] = max(found[field], 0)
    return found


def odata_message(response: requests.Response) -> str:
    """Exact's words for an error: the OData body's error.message.value, else its Reason header,
    else the start of the body."""
    try:
        body = loads(response.content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, dict):
            message = message.get("value")
        if message:
            return str(message)[:500]
    elif isinstance(error, str):
        return str((body or {}).get("error_description") or error)[:500]
    return (response.headers.get("Reason") or response.text or response.reason or "")[:500]


def _rows(body) -> tuple[list[dict], str | None]:
    found = body.get("d") if isinstance(body, dict) else None
    if isinstance(found, list):  # an older OData shape: d is the list itself
        return found, None
    if not isinstance(found, dict):
        raise ExactError("Exact Online answered without a `d`")
    return list(found.get("results") or []), found.get("__next") or None


def _moment_ms(value: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(value) / 1000, tz=datetime.timezone.utc)


def _wait_until(response: requests.Response, limits: dict, now: datetime.datetime) -> datetime.datetime:
    """When a 429 ends: the reset of the budget that is at zero, else Retry-After, else a minute."""
    if limits.get("minute_remaining") == 0 and limits.get("minute_resets_at"):
        until = limits["minute_resets_at"]
        if limits.get("day_remaining") == 0 and limits.get("day_resets_at"):
            until = max(until, limits["day_resets_at"])
        return max(until, now)
    if limits.get("day_remaining") == 0 and limits.get("day_resets_at"):
        return max(limits["day_resets_at"], now)
    try:
        return now + datetime.timedelta(seconds=min(float(response.headers["Retry-After"]), 86400))
    except (KeyError, ValueError):
        return now + DEFAULT_WAIT
