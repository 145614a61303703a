"""Twinfield's OAuth2 / OpenID Connect tokens for one connection: the consent link, the code
exchange, the cluster the organisation lives on, and an access token on demand.

Wolters Kluwer's rules (../shared/reference/api-facts.md §2.1):
- authorize and token at {login}/auth/authentication/connect/…, scopes `openid twf.user
  twf.organisationUser twf.organisation offline_access` (offline_access for a refresh token); a
  `nonce` is mandatory; the client authenticates at the token endpoint with HTTP Basic;
- an access token lives an hour; a refresh token is long-lived and may be used as often as
  needed. Whether it rotates is not documented, so whatever the token endpoint returns is stored
  (and committed before the new access token is used);
- the cluster URL to call comes from {login}/auth/authentication/connect/accesstokenvalidation
  (`twf.clusterUrl`), with the organisation's code (`twf.organisationCode`).

A refresh is done by one worker at a time per connection (integrations.oauth.lease). A
refused refresh (400/401) moves the connection to "needs re-authorisation" and tells staff once.
"""
from __future__ import annotations

import datetime
from urllib.parse import urlencode

import requests
from django.db import transaction
from django.utils import timezone

from integrations import oauth
from integrations.twinfield.client import NeedsReauthorisation, Throttled, TwinfieldError, TwinfieldUnreachable
from integrations.twinfield.models import TwinfieldConnection
from portal.rls import staff_scope

State = TwinfieldConnection.State
CONNECT = "/auth/authentication/connect"
SCOPES = "openid twf.user twf.organisationUser twf.organisation offline_access"
ACCESS_LIFETIME = datetime.timedelta(hours=1)  # when the answer lacks expires_in
EXPIRY_MARGIN = datetime.timedelta(minutes=2)  # an access token is not handed out in its last two minutes
# Not a documented limit: a guard against a loop of refreshes (a day has 24 hourly tokens).
TOKEN_CALLS_PER_DAY = 200
TIMEOUT = (5, 30)


class TwinfieldRefused(TwinfieldError):
    """The token endpoint refused (a wrong or used code, a revoked consent)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def authorise_url(twinfield: TwinfieldConnection, *, redirect_uri: str, state: str, nonce: str) -> str:
    """Where staff give consent: Wolters Kluwer's login, then back to `redirect_uri` with ?code&state."""
    query = urlencode({"client_id": twinfield.client_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": SCOPES, "state": state, "nonce": nonce})
    return f"{twinfield.login_url}{CONNECT}/authorize?{query}"


def exchange_code(twinfield: TwinfieldConnection, *, code: str, redirect_uri: str) -> None:
    """Trade the consent's code for tokens, learn the cluster, mark the connection connected.
    Call with no transaction open. TwinfieldRefused for a code refused; TwinfieldError (5xx) and
    TwinfieldUnreachable leave the code to be tried again."""
    with _refresh_lock(twinfield):
        oauth.reload(twinfield)
        _spend_token_call(twinfield)
        started = timezone.now()
        response, body = _post_token(twinfield, {"grant_type": "authorization_code", "code": code,
                                                 "redirect_uri": redirect_uri})
        if response.status_code >= 500:
            raise TwinfieldError(f"Twinfield's token endpoint answered {response.status_code}: {_description(response, body)}")
        if response.status_code != 200 or not body.get("access_token"):
            raise TwinfieldRefused(response.status_code, _description(response, body))
        cluster, organisation = discover(twinfield, body["access_token"])
        _store_tokens(twinfield, body, started=started, connected=True, cluster=cluster, organisation=organisation)


def discover(twinfield: TwinfieldConnection, access_token: str) -> tuple[str, str]:
    """(cluster URL, organisation code) of the organisation the token is for."""
    try:
        response = requests.get(f"{twinfield.login_url}{CONNECT}/accesstokenvalidation",
                                params={"token": access_token}, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise TwinfieldUnreachable(f"Twinfield's token validation did not answer: {type(exc).__name__}: {exc}") \
            from None
    try:
        claims = response.json() if response.status_code == 200 else {}
    except ValueError:
        claims = {}
    cluster = str(claims.get("twf.clusterUrl") or "")
    if not cluster.startswith(("https://", "http://")):
        raise TwinfieldError(f"Twinfield's token validation gave no cluster ({response.status_code})")
    return cluster.rstrip("/"), str(claims.get("twf.organisationCode") or "")


def access_token(twinfield: TwinfieldConnection) -> str:
    """A valid access token, refreshed first when it is due. Call with no transaction open.
    NeedsReauthorisation when the connection is not (or no longer) connected."""
    oauth.reload(twinfield)
    _require_connected(twinfield)
    if _fresh(twinfield, timezone.now()):
        return twinfield.access_token
    with _refresh_lock(twinfield):
        oauth.reload(twinfield)  # the worker that held the lock before may have refreshed already
        _require_connected(twinfield)
        if not _fresh(twinfield, timezone.now()):
            _refresh(twinfield)
    return twinfield.access_token


def token_refused(twinfield: TwinfieldConnection) -> None:
    """Twinfield no longer takes the access token we sent (code 354): the next call refreshes."""
    with staff_scope(), transaction.atomic():
        TwinfieldConnection.objects.filter(pk=twinfield.pk, access_token=twinfield.access_token).update(
            access_expires_at=timezone.now())


def mark_reauthorise(twinfield: TwinfieldConnection, reason: str) -> bool:
    return oauth.mark_reauthorise(twinfield, reason, tell_staff=_tell_staff)


def _tell_staff(pk: int, reason: str) -> None:
    oauth.tell_staff(TwinfieldConnection, pk, reason, system="Twinfield",
                     admin_url="admin:integrations_twinfieldconnection_change")


def _refresh(twinfield: TwinfieldConnection) -> None:
    _spend_token_call(twinfield)
    started = timezone.now()
    response, body = _post_token(twinfield, {"grant_type": "refresh_token", "refresh_token": twinfield.refresh_token})
    if response.status_code == 200 and body.get("access_token"):
        _store_tokens(twinfield, body, started=started)
        return
    if response.status_code == 429:
        raise Throttled(timezone.now() + datetime.timedelta(minutes=1), "Twinfield's token endpoint answered 429")
    if response.status_code in (400, 401):
        mark_reauthorise(twinfield, f"Twinfield refused the refresh token ({response.status_code}): "
                                    f"{_description(response, body)}")
        raise NeedsReauthorisation(twinfield.state_reason)
    raise TwinfieldError(f"Twinfield's token endpoint answered {response.status_code}: {_description(response, body)}")


def _post_token(twinfield: TwinfieldConnection, form: dict) -> tuple[requests.Response, dict]:
    try:
        response = requests.post(f"{twinfield.login_url}{CONNECT}/token", data=form, timeout=TIMEOUT,
                                 auth=(twinfield.client_id, twinfield.client_secret), allow_redirects=False,
                                 headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise TwinfieldUnreachable(f"Twinfield's token endpoint did not answer: {type(exc).__name__}: {exc}") \
            from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response, body if isinstance(body, dict) else {}


def _store_tokens(twinfield: TwinfieldConnection, body: dict, *, started: datetime.datetime, connected: bool = False,
                  cluster: str = "", organisation: str = "") -> None:
    """Commit the new tokens before anyone uses the new access token. A refresh token is kept
    unless the answer brings another (Twinfield's may or may not rotate)."""
    try:
        lifetime = datetime.timedelta(seconds=int(str(body.get("expires_in", "")).strip()))
    except ValueError:
        lifetime = ACCESS_LIFETIME
    twinfield.access_token = body["access_token"]
    twinfield.refresh_token = body.get("refresh_token") or twinfield.refresh_token
    twinfield.access_expires_at = started + lifetime
    twinfield.refreshed_at = timezone.now()
    fields = ["access_token", "refresh_token", "access_expires_at", "refreshed_at"]
    if connected:
        twinfield.state, twinfield.state_reason, twinfield.state_changed_at = State.CONNECTED, "", twinfield.refreshed_at
        twinfield.oauth_state = twinfield.oauth_nonce = ""
        twinfield.cluster_url, twinfield.organisation = cluster, organisation
        fields += ["state", "state_reason", "state_changed_at", "oauth_state", "oauth_nonce", "cluster_url",
                   "organisation"]
    with staff_scope(), transaction.atomic():
        twinfield.save(update_fields=fields)


def _spend_token_call(twinfield: TwinfieldConnection) -> None:
    if not oauth.spend_token_call(twinfield, per_day=TOKEN_CALLS_PER_DAY):
        raise Throttled(oauth.next_midnight(), f"the {TOKEN_CALLS_PER_DAY} token calls of today are spent")


def _refresh_lock(twinfield: TwinfieldConnection):
    """One refresh at a time per connection (integrations.oauth.lease)."""
    return oauth.lease(f"twinfield-token:{twinfield.pk}", error=TwinfieldError)


def _require_connected(twinfield: TwinfieldConnection) -> None:
    if twinfield.state == State.REAUTHORISE:
        raise NeedsReauthorisation(twinfield.state_reason or "Twinfield needs a new consent")
    if twinfield.state != State.CONNECTED or not twinfield.refresh_token:
        raise NeedsReauthorisation("Twinfield is not connected yet: staff connect it in admin")


def _fresh(twinfield: TwinfieldConnection, now: datetime.datetime) -> bool:
    return bool(twinfield.access_token) and twinfield.access_expires_at is not None and \
        now < twinfield.access_expires_at - EXPIRY_MARGIN


def _description(response: requests.Response, body: dict) -> str:
    text = body.get("error_description") or body.get("error") or response.text[:300] or response.reason
    return str(text)[:300]
