"""Twinfield's OpenID Connect login for the local fake (tests/fakes/twinfield.py): the consent page at
/auth/authentication/connect/authorize, the token endpoint at /auth/authentication/connect/token and
the access-token validation endpoint, as login.twinfield.com has them.

What Twinfield does, and where it says so (../shared/reference/api-facts.md §2.1 has more):
- Scopes are space-separated: `openid`, `twf.user` (only with openid), `twf.organisationUser`
  ("mandatory in order to login"), `twf.organisation` (its claims carry `twf.clusterUrl`) and
  `offline_access` ("required in order to receive and use refresh tokens"); `nonce` "is mandatory for all
  authorization requests" (php-twinfield src/Secure/Provider/OAuthProvider.php; Wolters Kluwer's
  TwinfieldIntegrationSamples OAuthExampleApplication/AuthorizeDialog.cs). The fake refuses a request
  without all four of openid, twf.user, twf.organisationUser and twf.organisation: that is the portal's
  contract (only twf.organisationUser is documented as mandatory; `required_scopes` can be narrowed).
- The token endpoint takes a form with grant_type authorization_code (code, redirect_uri) or
  refresh_token (refresh_token) and proves the client with "Authorization: Basic base64(client_id:
  client_secret)" (WK knowledge base, "Setting up OAuth 2.0 - How to create an authorization string").
  client_id and client_secret in the form are accepted too: php-twinfield's provider (league/oauth2-client)
  sends them so, and works.
- The answer is {"access_token", "expires_in": 3600, "token_type": "Bearer", "refresh_token"} (WK, "Request
  a new access token"), with an id_token when openid was granted (OpenID Connect). Access tokens live one
  hour; a refresh token "is valid for 25 years … You can use the refresh token to generate as much access
  tokens as you like" (WK, "Request a refresh token"). Whether a refresh gives a new refresh token and
  ends the old one is UNCONFIRMED: `rotate_refresh_tokens` (False) chooses.
- The access token is a JWT whose claims include twf.clusterUrl, twf.organisationCode and
  twf.organisationUserCode (AuthorizeDialog.cs reads them from it). Ours is unsigned in substance (its
  signature is random bytes), as a client must not rely on checking it.
- GET /auth/authentication/connect/accesstokenvalidation?token=… answers the token's claims as JSON, or
  HTTP 400 for a token that is not valid (php-twinfield src/Secure/OpenIdConnectAuthentication.php,
  getValidationResult()). The 400's body is UNCONFIRMED: {"error": "invalid_token"}.
- Error bodies of the token endpoint follow RFC 6749 §5.2 ({"error": "invalid_grant"} and so on); that
  Twinfield's IdentityServer words them so is UNCONFIRMED. Codes are single use and live 300 seconds
  (IdentityServer's default; Twinfield's own figure UNCONFIRMED).
"""
from __future__ import annotations

import base64
import binascii
import html
import json
import secrets
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

ACCESS_TOKEN_SECONDS = 3600
CODE_SECONDS = 300
REQUIRED_SCOPES = ("openid", "twf.user", "twf.organisationUser", "twf.organisation")


@dataclass
class Grant:
    """What one consent allowed: its scopes, and the refresh token that stands for it now."""
    scopes: tuple[str, ...]
    refresh_token: str | None = None


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OAuth:
    """The app's (client_id, client_secret, redirect_uri) view of login.twinfield.com. The caller holds
    the fake's lock and passes the fake's clock (`now`, epoch seconds)."""

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str, claims: dict):
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.claims = claims  # the organisation's and user's claims, twf.clusterUrl among them
        self.required_scopes = REQUIRED_SCOPES
        self.rotate_refresh_tokens = False
        self.codes: dict[str, tuple[float, str, tuple[str, ...], str]] = {}  # code -> issued, redirect, scopes, nonce
        self.refresh_tokens: dict[str, Grant] = {}  # the refresh tokens that work now
        self.access_tokens: dict[str, tuple[float, tuple[str, ...]]] = {}  # token -> (expires at, scopes)
        self.token_calls: list[dict] = []

    # The consent page (the user's browser).
    def consent_problem(self, query: dict[str, str]) -> str | None:
        if query.get("client_id") != self.client_id:
            return "Unknown client_id"
        if query.get("redirect_uri") != self.redirect_uri:
            return "The redirect_uri is not registered for this client"
        if query.get("response_type") != "code":
            return "response_type must be code"
        if not query.get("nonce"):
            return "nonce is mandatory"
        scopes = query.get("scope", "").split()
        if "twf.user" in scopes and "openid" not in scopes:
            return "Scope 'twf.user' requires the openid scope"
        missing = [s for s in self.required_scopes if s not in scopes]
        if missing:
            return "Missing scope: " + " ".join(missing)
        return None

    def consent_page(self, query: dict[str, str], user_name: str, action: str) -> str:
        return ("<!DOCTYPE html><html lang='nl'><head><title>Twinfield – Toegang verlenen</title></head><body>"
                "<h1>Twinfield</h1>"
                f"<p>De applicatie <strong>{html.escape(self.client_id)}</strong> vraagt toegang tot uw "
                f"administraties als {html.escape(user_name)}.</p>"
                f"<form method='post' action='{html.escape(action)}'>"
                "<button type='submit' name='decision' value='accept' data-testid='twinfield-consent-accept'>"
                "Toestaan</button> "
                "<button type='submit' name='decision' value='deny' data-testid='twinfield-consent-deny'>"
                "Weigeren</button></form></body></html>")

    def consent_redirect(self, query: dict[str, str], accepted: bool, now: float) -> str:
        """Where the browser goes after the user's decision: redirect_uri?code=…&state=…"""
        params = {}
        if accepted:
            code = secrets.token_hex(32)
            self.codes[code] = (now, query["redirect_uri"], tuple(query.get("scope", "").split()), query["nonce"])
            params["code"] = code
        else:
            params["error"] = "access_denied"  # RFC 6749 §4.1.2.1; Twinfield's own: UNCONFIRMED
        if "state" in query:
            params["state"] = query["state"]
        separator = "&" if urlsplit(query["redirect_uri"]).query else "?"
        return query["redirect_uri"] + separator + urlencode(params)

    # The token endpoint.
    def token(self, form: dict[str, str], authorization: str, now: float) -> Answer:
        grant = form.get("grant_type", "")
        answer = self._token(form, authorization, grant, now)
        self.token_calls.append({"grant_type": grant, "status": answer.status, "at": now,
                                 "error": answer.body.get("error"),
                                 "code": form.get("code") if grant == "authorization_code" else None})
        return answer

    def _client_proven(self, form: dict[str, str], authorization: str) -> bool:
        if authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(secret, self.client_secret)

    def _token(self, form: dict[str, str], authorization: str, grant: str, now: float) -> Answer:
        if not self._client_proven(form, authorization):
            return Answer(400, {"error": "invalid_client"})
        if grant == "authorization_code":
            found = self.codes.pop(form.get("code", ""), None)  # single use, also when refused below
            if found is None or now - found[0] > CODE_SECONDS or form.get("redirect_uri") != found[1]:
                return Answer(400, {"error": "invalid_grant"})
            return self._issue(Grant(scopes=found[2]), now, nonce=found[3])
        if grant == "refresh_token":
            chain = self.refresh_tokens.get(form.get("refresh_token", ""))
            if chain is None:
                return Answer(400, {"error": "invalid_grant"})
            if self.rotate_refresh_tokens:
                del self.refresh_tokens[chain.refresh_token]
                chain.refresh_token = None
            return self._issue(chain, now)
        return Answer(400, {"error": "unsupported_grant_type"})

    def _issue(self, chain: Grant, now: float, nonce: str | None = None) -> Answer:
        access = self._jwt({**self._claims(chain.scopes), "nbf": int(now), "exp": int(now) + ACCESS_TOKEN_SECONDS,
                            "jti": uuid.uuid4().hex})
        self.access_tokens[access] = (now + ACCESS_TOKEN_SECONDS, chain.scopes)
        body = {"access_token": access, "expires_in": ACCESS_TOKEN_SECONDS, "token_type": "Bearer"}
        if "offline_access" in chain.scopes:
            if chain.refresh_token is None:
                chain.refresh_token = secrets.token_hex(32)
                self.refresh_tokens[chain.refresh_token] = chain
            body["refresh_token"] = chain.refresh_token
        if "openid" in chain.scopes and nonce is not None:
            body["id_token"] = self._jwt({"iss": self.claims["iss"], "aud": self.client_id, "nonce": nonce,
                                          "sub": self.claims["sub"], "iat": int(now), "exp": int(now) + 300})
        return Answer(200, body)

    def _claims(self, scopes: tuple[str, ...]) -> dict:
        """The claims an access token carries; twf.clusterUrl only with twf.organisation (OAuthProvider.php)."""
        claims = {k: self.claims[k] for k in ("iss", "sub", "twf.organisationUserCode", "twf.organisationCode",
                                              "twf.organisationId")}
        claims.update({"aud": self.claims["iss"] + "/resources", "client_id": self.client_id,
                       "scope": list(scopes)})
        if "twf.organisation" in scopes:
            claims["twf.clusterUrl"] = self.claims["twf.clusterUrl"]
        return claims

    @staticmethod
    def _jwt(payload: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": "fake-twinfield"}
        return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()),
                         _b64(secrets.token_bytes(64))))

    # The access-token validation endpoint and the cluster's check.
    def validation(self, token: str, now: float) -> Answer:
        found = self.access_tokens.get(token)
        if found is None or now >= found[0]:
            return Answer(400, {"error": "invalid_token"})  # body UNCONFIRMED; the 400 is php-twinfield's
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return Answer(200, payload)

    def valid(self, token: str, now: float) -> bool:
        found = self.access_tokens.get(token)
        return found is not None and now < found[0]

    def revoke_refresh_tokens(self) -> None:
        self.refresh_tokens.clear()

    def grant(self, now: float) -> dict:
        """What a code exchange answers, for a test that skips the browser (not logged as a token call)."""
        return self._issue(Grant(scopes=(*REQUIRED_SCOPES, "offline_access")), now, nonce=uuid.uuid4().hex).body
