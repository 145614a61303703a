"""The local custom ERP's OAuth2 token endpoint (tests/fakes/erp.py): the client credentials grant of
RFC 6749 §4.4, at POST /oauth/token.

- The request is form-encoded (§4.4.2, §3.2: POST, application/x-www-form-urlencoded) with
  grant_type=client_credentials and an optional space-separated `scope` (§3.3).
- The client proves itself (§2.3.1) either by HTTP Basic, base64 of the form-urlencoded client_id ":"
  client_secret (client_secret_basic), or with client_id and client_secret in the body
  (client_secret_post). Both at once is "more than one mechanism": 400 invalid_request (§5.2).
- Errors (§5.2): a missing grant_type or a second authentication is 400 invalid_request; a grant
  other than client_credentials 400 unsupported_grant_type; a scope outside `scopes` 400
  invalid_scope; failed client authentication 401 invalid_client with `WWW-Authenticate: Basic
  realm="erp"` (a MUST when the client used the Authorization header, a MAY otherwise, given always).
  The client is checked first, then the grant, then the scope.
- The answer (§4.4.3, §5.1) is {"access_token", "token_type": "Bearer", "expires_in", "scope"}
  with Cache-Control: no-store and Pragma: no-cache, and no refresh token ("A refresh token SHOULD
  NOT be included"). Without a scope in the request the client gets every scope it has; `scope` is
  always in the answer (the contract asks for it; §5.1 only requires it when it differs).
"""
from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="erp"'}


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


class ClientCredentials:
    """One client (client_id, client_secret) with the scopes it may have, and the access tokens
    issued. The caller holds the fake's lock and passes the fake's clock (epoch seconds)."""

    def __init__(self, client_id: str, client_secret: str, scopes: tuple[str, ...] = ("read", "write"),
                 lifetime: int = 3600):
        self.client_id, self.client_secret = client_id, client_secret
        self.scopes = scopes
        self.lifetime = lifetime  # seconds; tests make it short
        self.tokens: dict[str, tuple[float, tuple[str, ...]]] = {}  # access token -> (expires at, scopes)
        self.token_calls: list[dict] = []

    def token(self, form: dict[str, str], authorization: str, now: float) -> Answer:
        method = "basic" if authorization.lower().startswith("basic ") else (
            "post" if "client_secret" in form else None)
        answer = self._token(form, authorization, now)
        self.token_calls.append({"auth_method": method, "grant_type": form.get("grant_type"),
                                 "scope": form.get("scope"), "status": answer.status,
                                 "error": answer.body.get("error"), "at": now})
        return answer

    def _client(self, form: dict[str, str], authorization: str) -> tuple[str, str] | Answer:
        """(client_id, client_secret) as the client gave them, or the error answer."""
        if authorization.lower().startswith("basic "):
            if "client_secret" in form:
                return Answer(400, {"error": "invalid_request",
                                    "error_description": "more than one client authentication method"})
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return Answer(401, {"error": "invalid_client"}, CHALLENGE)
            client_id, colon, secret = decoded.partition(":")
            if not colon:
                return Answer(401, {"error": "invalid_client"}, CHALLENGE)
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            if form.get("client_id", client_id) != client_id:
                return Answer(400, {"error": "invalid_request",
                                    "error_description": "client_id in the body differs from the Basic one"})
            return client_id, secret
        if authorization:
            return Answer(401, {"error": "invalid_client"}, CHALLENGE)
        return form.get("client_id", ""), form.get("client_secret", "")

    def _token(self, form: dict[str, str], authorization: str, now: float) -> Answer:
        client = self._client(form, authorization)
        if isinstance(client, Answer):
            return client
        if not (secrets.compare_digest(client[0], self.client_id)
                and secrets.compare_digest(client[1], self.client_secret)):
            return Answer(401, {"error": "invalid_client"}, CHALLENGE)
        grant = form.get("grant_type")
        if not grant:
            return Answer(400, {"error": "invalid_request", "error_description": "grant_type is missing"})
        if grant != "client_credentials":
            return Answer(400, {"error": "unsupported_grant_type"})
        asked = tuple(dict.fromkeys(form.get("scope", "").split()))
        if any(scope not in self.scopes for scope in asked):
            return Answer(400, {"error": "invalid_scope"})
        granted = asked or self.scopes
        access = secrets.token_urlsafe(32)
        self.tokens[access] = (now + self.lifetime, granted)
        return Answer(200, {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime,
                            "scope": " ".join(granted)}, NO_STORE)

    def scopes_of(self, token: str, now: float) -> tuple[str, ...] | None:
        """The scopes of a valid access token, None for an unknown or expired one."""
        found = self.tokens.get(token)
        return found[1] if found is not None and now < found[0] else None

    def expire_all(self) -> None:
        self.tokens = {token: (0.0, scopes) for token, (_, scopes) in self.tokens.items()}
