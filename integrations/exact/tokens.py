"""Exact Online's OAuth2 tokens for one connection: the consent link, the code exchange, and an
access token on demand whose refresh never breaks the connection.

Exact's rules (../shared/reference/api-facts.md §1.1; Exact's OAuth tutorial step 3/4,
https://support.exactonline.com/community/s/knowledge-base#All-All-DNO-Content-oauth-eol-oauth-devstep4):
- an access token lives 600 s, and Exact hands out no new one earlier than 570 s after the last;
- refresh tokens are single-use and rotate: using one twice answers 401
  {"error":"unauthorized_client","error_description":"Old refresh token used."}, and only a new
  consent in the browser recovers; one unused for 30 days expires (400 invalid_request, "The
  refresh token expired at ...");
- at most 200 calls a day to the token endpoint.

So a refresh is done by one worker at a time per connection (integrations.oauth.lease, held while
Exact is called with no transaction open; the row is read again once the lease is ours, since the
worker before may have refreshed already), the new refresh token is committed
before the new access token is handed out, and every call to the token endpoint is counted first.
A refused refresh moves the connection to "needs re-authorisation" and tells staff once.
"""
from __future__ import annotations

import datetime
import logging
from urllib.parse import urlencode

import requests
from django.db import transaction
from django.utils import timezone

from integrations import oauth
from integrations.exact.client import ExactError, ExactRefused, ExactUnreachable, NeedsReauthorisation, RateLimited
from integrations.exact.models import ExactConnection
from integrations.exact.values import loads
from portal.rls import staff_scope

log = logging.getLogger(__name__)
State = ExactConnection.State

AUTH_PATH = "/api/oauth2/auth"
TOKEN_PATH = "/api/oauth2/token"
ACCESS_LIFETIME = datetime.timedelta(seconds=600)  # when Exact's answer lacks expires_in
REFRESH_NOT_BEFORE = datetime.timedelta(seconds=570)  # Exact refuses a new access token earlier
# An access token is not handed out in its last 30 s (a call must reach Exact before it
# expires); with Exact's 600 s that is exactly when a refresh is allowed again (570 s).
EXPIRY_MARGIN = datetime.timedelta(seconds=30)
KEEP_ALIVE_AFTER = datetime.timedelta(days=20)  # refresh tokens die unused after 30 days
TOKEN_CALLS_PER_DAY = 200
TIMEOUT = (5, 30)


def authorise_url(exact: ExactConnection, *, redirect_uri: str, state: str) -> str:
    """Where staff give consent: Exact's login, then back to `redirect_uri` with ?code&state."""
    query = urlencode({"client_id": exact.client_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "state": state})
    return f"{exact.base_url}{AUTH_PATH}?{query}"


def exchange_code(exact: ExactConnection, *, code: str, redirect_uri: str) -> None:
    """Trade the consent's code for tokens and mark the connection connected. Call with no
    transaction open. A refused code raises ExactRefused (status, Exact's description)."""
    with _refresh_lock(exact):
        _reload(exact)
        _spend_token_call(exact)
        started = timezone.now()
        response, body = _post_token(exact, {"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": redirect_uri})
        if response.status_code >= 500:
            # Exact failed, not refused: the code is kept and the job tries it again (if Exact had
            # used it after all, the next try is refused as a used code: connect again).
            raise ExactError(f"Exact's token endpoint answered {response.status_code}: "
                             f"{_description(response, body)}")
        if response.status_code == 429 or (response.status_code != 200 and _rate_limit_refusal(response, body)):
            # Exact turned the call away (the user's token calls of today are spent): not a verdict on the code.
            raise RateLimited(oauth.next_midnight(), f"Exact's token endpoint: {_description(response, body)}")
        if response.status_code != 200 or not body.get("access_token") or not body.get("refresh_token"):
            raise ExactRefused(response.status_code, _description(response, body))
        _store_tokens(exact, body, started=started, connected=True)


def access_token(exact: ExactConnection) -> str:
    """A valid access token for the connection, refreshed first when it is due (570 s after the
    last refresh). Call with no transaction open. Raises NeedsReauthorisation when the connection
    is not (or no longer) connected, RateLimited when the day's token budget is spent."""
    _reload(exact)
    _require_connected(exact)
    if _fresh(exact, timezone.now()):
        return exact.access_token
    with _refresh_lock(exact):
        _reload(exact)  # the worker that held the lock before us may have refreshed already
        _require_connected(exact)
        now = timezone.now()
        if _fresh(exact, now):
            return exact.access_token
        if exact.refreshed_at and now < exact.refreshed_at + REFRESH_NOT_BEFORE:
            # Exact would refuse; the current token still works until it expires.
            if exact.access_token and exact.access_expires_at and now < exact.access_expires_at:
                return exact.access_token
            raise RateLimited(exact.refreshed_at + REFRESH_NOT_BEFORE, "Exact issues no new access token yet")
        _refresh(exact)
    return exact.access_token


def keep_alive(exact: ExactConnection) -> bool:
    """Refresh a connected connection's tokens when the refresh token is older than
    KEEP_ALIVE_AFTER (20 days), so an idle connection never reaches Exact's 30. Meant for a
    daily job; True when it refreshed."""
    _reload(exact)
    if not _keep_alive_due(exact, timezone.now()):
        return False
    with _refresh_lock(exact):
        _reload(exact)
        if not _keep_alive_due(exact, timezone.now()):
            return False
        _refresh(exact)
    return True


def mark_reauthorise(exact: ExactConnection, reason: str) -> bool:
    """Move the connection to "needs re-authorisation" (the tokens are dropped: only a new consent
    helps) and, the first time, email staff once this commits. ExactClient then raises
    NeedsReauthorisation without calling Exact. True when this call moved it."""
    return oauth.mark_reauthorise(exact, reason, tell_staff=_tell_staff)


# --- The refresh -------------------------------------------------------------------------

def _refresh(exact: ExactConnection) -> None:
    """Refresh now (the caller holds the lock and has read the row again)."""
    _spend_token_call(exact)
    started = timezone.now()
    response, body = _post_token(exact, {"grant_type": "refresh_token", "refresh_token": exact.refresh_token})
    if response.status_code == 200 and body.get("access_token") and body.get("refresh_token"):
        _store_tokens(exact, body, started=started)
        return
    if body.get("refresh_token"):
        # Exact can rotate the refresh token on a refusal too (seen on a rate-limited refresh,
        # picqer/exact-php-client#559): the one we sent is spent, so keep the new one.
        with staff_scope(), transaction.atomic():
            ExactConnection.objects.filter(pk=exact.pk).update(refresh_token=body["refresh_token"])
    description = _description(response, body)
    if response.status_code == 429 or _rate_limit_refusal(response, body):
        # Too early (the 570 s rule, by Exact's clock) or too many token calls today: the refresh
        # token we hold is still good, so wait rather than ask staff for a new consent.
        daily = "per day" in description.lower() or "TooManyTokenRequests" in response.headers.get("Reason", "")
        wait = oauth.next_midnight() if daily else timezone.now() + EXPIRY_MARGIN
        raise RateLimited(wait, f"Exact's token endpoint: {description}")
    if response.status_code in (400, 401):
        # "Old refresh token used.", "The refresh token expired at ...", a revoked consent or
        # unknown app credentials: nothing but staff and a new consent in the browser help.
        mark_reauthorise(exact, f"Exact refused the refresh token ({response.status_code}): {description}")
        raise NeedsReauthorisation(exact.state_reason)
    if 400 <= response.status_code < 500:
        raise ExactRefused(response.status_code, f"token endpoint: {description}")
    raise ExactError(f"Exact's token endpoint answered {response.status_code}: {description}")


def _rate_limit_refusal(response: requests.Response, body: dict) -> bool:
    """Exact's refusals that leave the refresh token usable: 400 access_denied "Rate limit
    exceeded: access_token not expired" with `Reason: TooEarlyToRefreshTokens: ...` (reported
    January 2026, websmurf/laravel-exact-online#31; its knowledge base still says 401 "Access
    Token not expired"), and the day's token calls spent."""
    text = f"{body.get('error_description', '')} {response.headers.get('Reason', '')}".lower()
    return "rate limit" in text or "not expired" in text or "tooearly" in text or "toomany" in text


def _post_token(exact: ExactConnection, form: dict) -> tuple[requests.Response, dict]:
    """POST to Exact's token endpoint (form-encoded, as OAuth2 wants); no transaction is open."""
    try:
        response = requests.post(
            exact.base_url + TOKEN_PATH, timeout=TIMEOUT, allow_redirects=False,
            data={**form, "client_id": exact.client_id, "client_secret": exact.client_secret},
            headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        # Exact may have rotated the refresh token before the line broke; nothing tells us.
        raise ExactUnreachable(f"Exact's token endpoint did not answer: {type(exc).__name__}: {exc}") from None
    try:
        body = loads(response.content or b"{}")
    except ValueError:
        body = {}
    return response, body if isinstance(body, dict) else {}


def _store_tokens(exact: ExactConnection, body: dict, *, started: datetime.datetime,
                  connected: bool = False) -> None:
    """Commit the new pair before anyone uses the new access token. `started` is when the request
    left: the token expires `expires_in` after that at the latest (Exact sends it as a string)."""
    try:
        lifetime = datetime.timedelta(seconds=int(str(body.get("expires_in", "")).strip()))
    except ValueError:
        lifetime = ACCESS_LIFETIME
    exact.access_token = body["access_token"]
    exact.refresh_token = body["refresh_token"]
    exact.access_expires_at = started + lifetime
    exact.refreshed_at = timezone.now()  # Exact's 570 s count from its answer, not our request
    fields = ["access_token", "refresh_token", "access_expires_at", "refreshed_at"]
    if connected:
        exact.state, exact.state_reason, exact.state_changed_at = State.CONNECTED, "", exact.refreshed_at
        exact.oauth_state = ""
        fields += ["state", "state_reason", "state_changed_at", "oauth_state"]
    with staff_scope(), transaction.atomic():
        exact.save(update_fields=fields)


def _spend_token_call(exact: ExactConnection) -> None:
    """Count one token-endpoint call against today's 200 before making it; RateLimited (until
    tomorrow) when they are spent."""
    if not oauth.spend_token_call(exact, per_day=TOKEN_CALLS_PER_DAY):
        raise RateLimited(oauth.next_midnight(), f"the {TOKEN_CALLS_PER_DAY} token calls of today are spent")


def _refresh_lock(exact: ExactConnection):
    """One refresh at a time per connection (integrations.oauth.lease)."""
    return oauth.lease(f"exact-token:{exact.pk}", error=ExactError)


# --- Reading the row ---------------------------------------------------------------------

_reload = oauth.reload


def _require_connected(exact: ExactConnection) -> None:
    if exact.state == State.REAUTHORISE:
        raise NeedsReauthorisation(exact.state_reason or "Exact Online needs a new consent")
    if exact.state != State.CONNECTED or not exact.refresh_token:
        raise NeedsReauthorisation("Exact Online is not connected yet: staff connect it in admin")


def _fresh(exact: ExactConnection, now: datetime.datetime) -> bool:
    return bool(exact.access_token) and exact.access_expires_at is not None and \
        now < exact.access_expires_at - EXPIRY_MARGIN


def _keep_alive_due(exact: ExactConnection, now: datetime.datetime) -> bool:
    return exact.state == State.CONNECTED and bool(exact.refresh_token) and (
        exact.refreshed_at is None or now - exact.refreshed_at >= KEEP_ALIVE_AFTER)


def _description(response: requests.Response, body: dict) -> str:
    text = body.get("error_description") or body.get("error") or response.text[:300] or response.reason
    return str(text)[:300]


# --- Telling staff -----------------------------------------------------------------------

def _tell_staff(exact_pk: int, reason: str) -> None:
    oauth.tell_staff(ExactConnection, exact_pk, reason, system="Exact Online",
                     admin_url="admin:integrations_exactconnection_change")
