"""Exact Online's OAuth2 authorization-code flow for the local fake (tests/fakes/exact.py): the consent
page at {base}/api/oauth2/auth and the token endpoint at {base}/api/oauth2/token, with Exact's rules.

What Exact does, and where it says so (../shared/reference/api-facts.md §1.1 has more):
- Token requests are form-encoded with client_id and client_secret in the body; the answer carries
  access_token, token_type, expires_in as a numeric *string* ("600") and refresh_token
  (picqer/exact-php-client Connection.php acquireAccessToken(), getTimestampFromExpiresIn()).
  Tokens look like "stampNL001.gAAAAA…!…" (a real answer quoted in a public script); ours keep the
  "!" so that a client which does not form-encode them fails here as it would there.
- An access token lives 10 minutes whether it is used or not (Invantive,
  forums.invantive.com/t/exact-online-error-message-old-refresh-token-used/2903).
- "You can only request a new access token 9 minutes and 30 seconds after you received it" (Exact's
  knowledge base, quoted in ossobv/exactonline exactonline/api/autorefresh.py). The knowledge base
  says "401 … Access Token not expired"; what Exact answers today (reported January 2026,
  websmurf/laravel-exact-online issue #31) is 400 {"error":"access_denied","error_description":
  "Rate limit exceeded: access_token not expired"} with the header `Reason: TooEarlyToRefreshTokens:
  Rate limit exceeded: access_token not expired`. The fake answers that.
- Refresh tokens rotate and are single-use (Exact's mail of 2018, picqer issues #300 and #311);
  reusing one: 401 {"error":"unauthorized_client","error_description":"Old refresh token used."}
  (picqer issue #644), after which only a new consent helps.
- A refresh token unused for 30 days expires: 400 {"error":"invalid_request","error_description":
  "The refresh token expired at 10/11/2022 9:18:20 PM and it is now 10/28/2022 4:15:50 PM."}
  (websmurf/laravel-exact-online issues #19 and #23).
- An authorization code is single-use and valid for 3 minutes (Invantive, same forum post; picqer
  issue #96 for the 400 on reuse).
- At most 200 token-endpoint calls per API key per user per day (Exact's announcement of July 2021,
  forums.invantive.com/t/new-exact-online-api-limitations/1040/2). Its refusal is not published:
  UNCONFIRMED, the fake answers 400 access_denied "Rate limit exceeded: …" like the 570 s rule.
"""
from __future__ import annotations

import html
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

ACCESS_TOKEN_SECONDS = 600
REFRESH_NOT_BEFORE_SECONDS = 570
REFRESH_TOKEN_IDLE_SECONDS = 30 * 86400
CODE_SECONDS = 180
TOKEN_CALLS_PER_DAY = 200

TOO_EARLY = "Rate limit exceeded: access_token not expired"
OLD_REFRESH_TOKEN = "Old refresh token used."


def token(kind: str) -> str:
    """Shaped like Exact's: a stamp, a dot, then base64-like text with a '!' in it."""
    return f"stampNL001.{kind}{secrets.token_urlsafe(24)}!{secrets.token_urlsafe(40)}"


def _exact_time(moment: float) -> str:
    """Exact's US-style time in the expiry message: 10/11/2022 9:18:20 PM."""
    at = datetime.fromtimestamp(moment, timezone.utc)
    return f"{at.month}/{at.day}/{at.year} {at.strftime('%I').lstrip('0')}:{at:%M:%S %p}"


@dataclass
class Chain:
    """One consent's chain of tokens: each refresh replaces the refresh token."""
    user_id: str
    last_issued: float
    refresh_token: str = ""
    used: set[str] = field(default_factory=set)


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


class OAuth:
    """The app's (client_id, client_secret, redirect_uri) view of Exact's authorization server. The
    caller holds the fake's lock and passes the fake's clock (`now`)."""

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str, user_id: str):
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.user_id = user_id
        self.codes: dict[str, tuple[float, str, str]] = {}  # code -> (issued, redirect_uri, user)
        self.chains: dict[str, Chain] = {}  # refresh token (current or used) -> its chain
        self.refresh_issued: dict[str, float] = {}  # refresh token -> when it was issued
        self.access_tokens: dict[str, tuple[float, str]] = {}  # token -> (expires at, user)
        self.calls_per_day: dict[tuple[str, int], int] = {}  # (user, UTC day number) -> token calls
        self.token_calls: list[dict] = []
        self.token_day_limit = TOKEN_CALLS_PER_DAY
        self.refresh_not_before = REFRESH_NOT_BEFORE_SECONDS
        self.access_token_seconds = ACCESS_TOKEN_SECONDS
        self.refresh_idle_seconds = REFRESH_TOKEN_IDLE_SECONDS

    # The consent page (the user's browser).
    def consent_problem(self, query: dict[str, str]) -> str | None:
        if query.get("client_id") != self.client_id:
            return "Unknown client_id"
        if query.get("redirect_uri") != self.redirect_uri:
            return "The redirect_uri does not match the one registered for this app"
        if query.get("response_type") != "code":
            return "response_type must be code"
        return None

    def consent_page(self, query: dict[str, str], user_name: str, action: str) -> str:
        return ("<!DOCTYPE html><html lang='en'><head><title>Exact Online – Authorize app</title></head><body>"
                "<h1>Exact Online</h1>"
                f"<p>The app <strong>{html.escape(self.client_id)}</strong> asks to access your administrations "
                f"as {html.escape(user_name)}.</p>"
                f"<form method='post' action='{html.escape(action)}'>"
                "<button type='submit' name='decision' value='accept' data-testid='exact-consent-accept'>"
                "Authorize</button> "
                "<button type='submit' name='decision' value='deny' data-testid='exact-consent-deny'>Cancel</button>"
                "</form></body></html>")

    def consent_redirect(self, query: dict[str, str], accepted: bool, now: float) -> str:
        """Where the browser goes after the user's decision: redirect_uri with ?code=…&state=…"""
        params = {}
        if accepted:
            code = token("c")
            self.codes[code] = (now, query["redirect_uri"], self.user_id)
            params["code"] = code
        else:
            params["error"] = "access_denied"  # RFC 6749 4.1.2.1; Exact's own: UNCONFIRMED
        if "state" in query:
            params["state"] = query["state"]
        separator = "&" if urlsplit(query["redirect_uri"]).query else "?"
        return query["redirect_uri"] + separator + urlencode(params)

    # The token endpoint.
    def token(self, form: dict[str, str], now: float) -> Answer:
        grant = form.get("grant_type", "")
        answer = self._token(form, grant, now)
        self.token_calls.append({"grant_type": grant, "status": answer.status, "at": now,
                                 "error": answer.body.get("error_description") or answer.body.get("error"),
                                 "code": form.get("code") if grant == "authorization_code" else None})
        return answer

    def _token(self, form: dict[str, str], grant: str, now: float) -> Answer:
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Answer(400, {"error": "invalid_client"})  # wording UNCONFIRMED
        user = self._user_of(form, grant)
        day = (user, int(now // 86400))
        self.calls_per_day[day] = self.calls_per_day.get(day, 0) + 1
        if self.calls_per_day[day] > self.token_day_limit:
            return Answer(400, {"error": "access_denied",
                                "error_description": "Rate limit exceeded: token endpoint calls per day"},
                          {"Reason": "TooManyTokenRequests: Rate limit exceeded"})
        if grant == "authorization_code":
            return self._from_code(form, now)
        if grant == "refresh_token":
            return self._from_refresh_token(form.get("refresh_token", ""), now)
        return Answer(400, {"error": "unsupported_grant_type"})

    def _user_of(self, form, grant) -> str:
        if grant == "authorization_code" and form.get("code") in self.codes:
            return self.codes[form["code"]][2]
        if grant == "refresh_token" and form.get("refresh_token") in self.chains:
            return self.chains[form["refresh_token"]].user_id
        return self.user_id

    def _from_code(self, form, now) -> Answer:
        found = self.codes.pop(form.get("code", ""), None)  # single-use, also when refused below
        if found is None or now - found[0] > CODE_SECONDS:
            return Answer(400, {"error": "invalid_grant"})  # body UNCONFIRMED (picqer #96: a 400)
        if form.get("redirect_uri") != found[1]:
            return Answer(400, {"error": "invalid_grant"})
        chain = Chain(user_id=found[2], last_issued=now)
        return self._issue(chain, now)

    def _from_refresh_token(self, refresh_token: str, now: float) -> Answer:
        chain = self.chains.get(refresh_token)
        if chain is None:
            return Answer(400, {"error": "invalid_grant"})  # a token Exact never issued: UNCONFIRMED
        if refresh_token in chain.used:
            return Answer(401, {"error": "unauthorized_client", "error_description": OLD_REFRESH_TOKEN})
        issued = self.refresh_issued[refresh_token]
        if now - issued > self.refresh_idle_seconds:
            return Answer(400, {"error": "invalid_request",
                                "error_description": f"The refresh token expired at "
                                                     f"{_exact_time(issued + self.refresh_idle_seconds)} "
                                                     f"and it is now {_exact_time(now)}."})
        if now - chain.last_issued < self.refresh_not_before:
            # The refresh token stays usable (whether Exact burns it here: UNCONFIRMED).
            return Answer(400, {"error": "access_denied", "error_description": TOO_EARLY},
                          {"Reason": f"TooEarlyToRefreshTokens: {TOO_EARLY}"})
        chain.used.add(refresh_token)
        chain.last_issued = now
        return self._issue(chain, now)

    def _issue(self, chain: Chain, now: float) -> Answer:
        access, refresh = token("a"), token("r")
        chain.refresh_token = refresh
        self.chains[refresh] = chain
        self.refresh_issued[refresh] = now
        self.access_tokens[access] = (now + self.access_token_seconds, chain.user_id)
        return Answer(200, {"access_token": access, "token_type": "bearer",
                            "expires_in": str(self.access_token_seconds), "refresh_token": refresh})

    def user_of_access_token(self, access_token: str, now: float) -> str | None:
        found = self.access_tokens.get(access_token)
        if found is None or now >= found[0]:
            return None
        return found[1]

    def grant(self, now: float) -> dict:
        """For a test that needs a connected app without the browser: what a code exchange answers."""
        chain = Chain(user_id=self.user_id, last_issued=now)
        return self._issue(chain, now).body


def new_guid() -> str:
    return str(uuid.uuid4())
