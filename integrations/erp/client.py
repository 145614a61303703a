"""The one HTTP client for a custom ERP (integrations.erp.models.ErpPull): reading it (pull.py)
and telling it of payments (push.py) go through `ErpClient`, so authentication, timeouts and what
an answer means are in one place. Plain `requests`, as the other integrations; OAuth2 client
credentials (RFC 6749 §4.4) through Authlib.

- Authentication: none, a bearer token, HTTP Basic, or OAuth2 client credentials: the access
  token is kept (encrypted) on the ErpPull row until it expires (less a minute) and fetched again
  then, one worker at a time (integrations.oauth.lease); a 401 drops it and the call is
  made once more with a new one.
- Answers: JSON read with parse_float=Decimal; 429 (and 503 with Retry-After) is ErpThrottled
  with the moment to try again; 401 after a fresh token (or with a fixed credential) is
  ErpAuthRefused; another 4xx ErpRefused; 5xx and no answer ErpUnreachable.
- A `Link: rel="next"` (or any address the ERP hands back) is followed only on the endpoint's own
  site: the credentials never go anywhere else.

No call is made inside a database transaction (every call checks)."""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urljoin, urlsplit

import requests
from django.db import connection as db, transaction
from django.utils import timezone

from integrations import oauth
from integrations.erp.mapping import parse
from integrations.erp.models import ErpPull
from portal.rls import staff_scope

TIMEOUT = (5, 60)  # connect, read: an ERP building a page of 200 invoices may take a while
TOKEN_LEEWAY = datetime.timedelta(seconds=60)
DEFAULT_TOKEN_LIFE = 3600  # seconds, when the token endpoint does not say (expires_in is optional)
DEFAULT_WAIT = 60.0
MAX_WAIT = 3600.0
USER_AGENT = "client-portal-erp/1"


class ErpError(Exception):
    """A call that did not give what was asked."""


class ErpUnreachable(ErpError):
    """No answer, or a 5xx: try again later."""


class ErpThrottled(ErpError):
    """The ERP asked to wait (429, or 503 with Retry-After): try again at `until`."""

    def __init__(self, message: str, until: datetime.datetime):
        super().__init__(message)
        self.until = until


class ErpRefused(ErpError):
    """A 4xx other than 401 and 429: the request itself is wrong (a path, a query)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ErpAuthRefused(ErpError):
    """The ERP (or its token endpoint) does not accept the credentials: staff fix them in admin."""


@dataclass
class Answer:
    status: int
    data: object
    links: dict
    url: str
    headers: dict


def _no_transaction_open() -> None:
    if db.in_atomic_block:
        raise RuntimeError("calls to the ERP are made with no database transaction open")


def same_site(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


class ErpClient:
    def __init__(self, erp: ErpPull, *, timeout=None):
        self.erp = erp
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.timeout = timeout or TIMEOUT

    # --- Addresses ---------------------------------------------------------------------------

    def url(self, path: str = "") -> str:
        """`path` under the endpoint ("invoices" → https://erp.example.com/api/invoices)."""
        base = self.erp.base_url if self.erp.base_url.endswith("/") or not path else self.erp.base_url + "/"
        url = urljoin(base, path.lstrip("/")) if path else self.erp.base_url
        if not same_site(url, self.erp.base_url):
            raise ErpRefused(f"{url} is not on the endpoint's site", 400)
        return url

    # --- Calls -------------------------------------------------------------------------------

    def get(self, url: str, params: dict | None = None) -> Answer:
        return self.request("GET", url, params=params)

    def post_json(self, url: str, body, headers: dict | None = None) -> Answer:
        return self.request("POST", url, json_body=body, headers=headers)

    def graphql(self, query: str, variables: dict | None = None, headers: dict | None = None) -> Answer:
        """A GraphQL operation at the endpoint; its `errors` (with a 200) are ErpRefused."""
        answer = self.request("POST", self.erp.base_url, json_body={"query": query, "variables": variables or {}},
                              headers=headers)
        errors = answer.data.get("errors") if isinstance(answer.data, dict) else None
        if errors:
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors[:3])
            raise ErpRefused(f"GraphQL errors: {messages}"[:500], answer.status)
        return answer

    def request(self, method: str, url: str, *, params: dict | None = None, json_body=None,
                headers: dict | None = None) -> Answer:
        _no_transaction_open()
        if not same_site(url, self.erp.base_url):
            raise ErpRefused(f"{url} is not on the endpoint's site: not followed", 400)
        for attempt in (1, 2):
            response = self._send(method, url, params=params, json_body=json_body, headers=headers,
                                  fresh_token=attempt == 2)
            if response.status_code == 401 and attempt == 1 and self.erp.auth == ErpPull.Auth.OAUTH2:
                continue  # the token expired early or was revoked: one more try with a new one
            return self._answer(method, url, response)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, *, params, json_body, headers, fresh_token: bool) -> requests.Response:
        auth_headers, auth = self._auth(fresh_token=fresh_token)
        body = None
        all_headers = {**auth_headers, **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body, default=_json_default).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            return self.session.request(method, url, params=params, data=body, headers=all_headers, auth=auth,
                                        timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise ErpUnreachable(f"the ERP did not answer {method} {urlsplit(url).path}: "
                                 f"{type(exc).__name__}: {exc}"[:500]) from None

    def _answer(self, method: str, url: str, response: requests.Response) -> Answer:
        where = f"{method} {urlsplit(url).path}"
        status = response.status_code
        if status == 429 or (status == 503 and "Retry-After" in response.headers):
            raise ErpThrottled(f"the ERP answered {status} on {where}", timezone.now() + _retry_after(response))
        if status == 401:
            raise ErpAuthRefused(f"the ERP refused the credentials (401) on {where}: "
                                 f"{response.headers.get('WWW-Authenticate', '')}"[:500])
        if status >= 500:
            raise ErpUnreachable(f"the ERP answered {status} on {where}")
        if status >= 400:
            raise ErpRefused(f"the ERP answered {status} on {where}: {response.text[:300]}", status)
        if 300 <= status < 400:
            raise ErpRefused(f"the ERP answered {status} (a redirect) on {where}: not followed", status)
        try:
            data = parse(response.content) if response.content.strip() else None
        except ValueError:
            raise ErpRefused(f"the ERP answered {where} with {status} and no JSON: {response.text[:200]}",
                             status) from None
        return Answer(status, data, response.links, response.url, dict(response.headers))

    # --- Authentication ----------------------------------------------------------------------

    def _auth(self, *, fresh_token: bool) -> tuple[dict, tuple | None]:
        erp, credentials = self.erp, self.erp.credentials or {}
        if erp.auth == ErpPull.Auth.BEARER:
            return {"Authorization": f"Bearer {credentials.get('token', '')}"}, None
        if erp.auth == ErpPull.Auth.BASIC:
            return {}, (credentials.get("username", ""), credentials.get("password", ""))
        if erp.auth == ErpPull.Auth.OAUTH2:
            return {"Authorization": f"Bearer {access_token(erp, fresh=fresh_token)}"}, None
        return {}, None


def _json_default(value):
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _retry_after(response: requests.Response) -> datetime.timedelta:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = (parsedate_to_datetime(value) - timezone.now()).total_seconds()
        except (TypeError, ValueError):
            seconds = DEFAULT_WAIT
    return datetime.timedelta(seconds=min(max(seconds, 1.0), MAX_WAIT))


# --- OAuth2 client credentials -------------------------------------------------------------------

def _usable(erp: ErpPull) -> bool:
    return bool(erp.access_token) and erp.access_expires_at is not None \
        and erp.access_expires_at - TOKEN_LEEWAY > timezone.now()


def access_token(erp: ErpPull, *, fresh: bool = False) -> str:
    """The connection's OAuth2 access token: the kept one while it lasts, else a new one from the
    token endpoint (client credentials). `fresh`: the ERP refused the kept one (a 401), so it is
    replaced even if it has not expired yet, unless another worker has replaced it meanwhile."""
    _no_transaction_open()
    refused = erp.access_token if fresh else None
    if not fresh and _usable(erp):
        return erp.access_token
    with oauth.lease(f"erp-token:{erp.pk}", error=ErpUnreachable):
        oauth.reload(erp)
        if _usable(erp) and erp.access_token != refused:
            return erp.access_token  # another worker fetched one while this one waited
        granted = _fetch_token(erp)
        expires_in = granted.get("expires_in")
        try:
            life = float(expires_in) if expires_in is not None else DEFAULT_TOKEN_LIFE
        except (TypeError, ValueError):
            life = DEFAULT_TOKEN_LIFE
        with staff_scope(), transaction.atomic():
            erp.access_token = granted["access_token"]
            erp.access_expires_at = timezone.now() + datetime.timedelta(seconds=life)
            ErpPull.objects.filter(pk=erp.pk).update(access_token=erp.access_token,
                                                     access_expires_at=erp.access_expires_at)
    return erp.access_token


def _fetch_token(erp: ErpPull) -> dict:
    """POST grant_type=client_credentials to the token endpoint (RFC 6749 §4.4), the client
    authenticated by HTTP Basic (client_secret_basic) or in the body (client_secret_post)."""
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.requests_client import OAuth2Session

    credentials = erp.credentials or {}
    token_url = credentials.get("token_url", "")
    if not token_url:
        raise ErpAuthRefused("OAuth2 needs the token endpoint's address")
    method = credentials.get("auth_method") or "client_secret_basic"
    session = OAuth2Session(client_id=credentials.get("client_id", ""),
                            client_secret=credentials.get("client_secret", ""),
                            token_endpoint_auth_method=method, scope=credentials.get("scope") or None)
    session.headers["User-Agent"] = USER_AGENT
    try:
        granted = session.fetch_token(token_url, grant_type="client_credentials", timeout=TIMEOUT)
    except OAuthError as exc:
        raise ErpAuthRefused(f"the token endpoint refused: {exc.error}"
                             f"{': ' + exc.description if exc.description else ''}"[:500]) from None
    except requests.HTTPError as exc:
        raise ErpUnreachable(f"the token endpoint answered {exc.response.status_code}") from None
    except requests.RequestException as exc:
        raise ErpUnreachable(f"the token endpoint did not answer: {type(exc).__name__}: {exc}"[:500]) from None
    except ValueError as exc:  # not JSON
        raise ErpUnreachable(f"the token endpoint answered something else than a token: {exc}"[:500]) from None
    finally:
        session.close()
    if not granted.get("access_token"):
        raise ErpAuthRefused("the token endpoint answered without an access token")
    return dict(granted)
