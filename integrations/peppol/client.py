"""The one HTTP client for a brand's Peppol access point: e-invoice.be's REST API (a certified
Belgian Peppol access point; facts and sources in ../shared/reference/api-facts.md §4.4.1).

What the portal asks of it, and how e-invoice.be answers:

- `can_receive(participant, document=...)`: GET /api/lookup?peppol_id=<scheme>:<id> (the SML/SMP
  lookup). True when one of the participant's SMP endpoints lists the Peppol BIS Billing 3.0
  document type for an invoice (or a credit note).
- `submit(...)`: our UBL exactly as validated, in two calls: POST /api/documents/ubl (multipart,
  field `file`) makes a DRAFT document, POST /api/documents/{id}/send with the sender and receiver
  as query parameters puts it in TRANSIT. Returns e-invoice.be's document id. e-invoice.be has no
  idempotency key: the caller's `idempotency_key` becomes the uploaded file's name (visible in
  e-invoice.be's dashboard), and the caller must record the returned id before it could call
  again (a retry after an answer lost on the way can send twice).
- `status(id)`: GET /api/documents/{id}; state TRANSIT is "accepted", SENT "delivered", FAILED
  "failed"; DRAFT (never sent) is None. A `submit` that returns has put the document in TRANSIT,
  so it is "accepted" from then on: e-invoice.be sends no webhook for that step. A failure the
  provider gives no reason for has reason "" (the caller shows its own words then).
- `verify_status_webhook(...)`: e-invoice.be POSTs `{"id", "tenant_id", "created_at", "type",
  "data": {"document_id"}, "text"}` with `X-Signature: sha256=<hex HMAC-SHA256>` of the event
  serialised with sorted keys (Python `json.dumps(event, sort_keys=True)`). `document.sent` is
  "delivered", `document.sent.failed` "failed". The event carries no reason for a failure: the
  caller reads it with `status(submission_id)` (`StatusEvent.reason`). The scheme has no
  timestamp in the signature header, so there is no staleness check: a replay is recognised by
  its `event_id`.

Errors: no answer, a timeout, a 5xx, a 408 or 429, or an answer that is not what the API
promises is `AccessPointError` (try again later); any other 4xx is `AccessPointRefused` with the
provider's own message (`detail`). The API key is sent only as the Bearer token to `base_url`
and never appears in a message, a log line or a repr.

Plain `requests`, as the other integrations. No call may start while a database transaction is
open (portal/txguard.py refuses it in tests)."""
from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import requests
from django.utils.translation import gettext

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.e-invoice.be"
USER_AGENT = "client-portal-peppol/1"
SIGNATURE_HEADER = "X-Signature"
STATES = ("accepted", "delivered", "failed")
DOCUMENTS = ("invoice", "credit_note")
RETRYABLE_4XX = {408, 429}

# Peppol BIS Billing 3.0 document type identifiers (scheme busdox-docid-qns), as an SMP lists them
# (OpenPeppol, Peppol BIS Billing 3.0, section "Document type identifier").
BIS3_DOCUMENT_TYPES = {
    "invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice"
               "##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1",
    "credit_note": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2::CreditNote"
                   "##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1",
}
# e-invoice.be's document states (DocumentState) and what they mean for a document we sent.
PROVIDER_STATES = {"TRANSIT": "accepted", "SENT": "delivered", "FAILED": "failed"}
WEBHOOK_TYPES = {"document.sent": "delivered", "document.sent.failed": "failed"}


class AccessPointError(Exception):
    """No usable answer (network, timeout, 5xx, 408/429, an unexpected body): try again later."""


class AccessPointRefused(AccessPointError):
    """A 4xx: the access point refuses the request itself; `reason` is its own message."""

    def __init__(self, reason: str, status: int):
        super().__init__(f"{status}: {reason}")
        self.reason = reason
        self.status = status


class UnsupportedWebhookEvent(ValueError):
    """A correctly signed event that is not about a document we sent (e.g. document.received):
    answer it with 200 and ignore it, or the provider sends it again."""

    def __init__(self, event_type: str):
        super().__init__(f"not a delivery status event: {event_type!r}")
        self.event_type = event_type


@dataclass(frozen=True)
class StatusEvent:
    event_id: str        # unique per webhook event (for idempotency)
    submission_id: str
    state: str           # "accepted" | "delivered" | "failed"
    reason: str          # provider's reason when failed, else ""
    occurred_at: datetime.datetime  # aware


def split_participant(participant: str) -> tuple[str, str]:
    """"0208:0403170701" -> ("0208", "0403170701"); a value without a scheme is a ValueError."""
    scheme, sep, value = participant.partition(":")
    if not sep or not scheme or not value:
        raise ValueError(f"a Peppol participant is <scheme>:<identifier>, not {participant!r}")
    return scheme, value


class AccessPointClient:
    def __init__(self, *, base_url: str = DEFAULT_BASE_URL, api_key: str, timeout: float = 10):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def __repr__(self) -> str:  # the key stays out of tracebacks and logs
        return f"AccessPointClient(base_url={self.base_url!r})"

    # --- Discovery ---------------------------------------------------------------------------

    def can_receive(self, participant: str, *, document: str) -> bool:
        """Whether `participant` ("0208:0403170701") is on Peppol and takes `document`
        ("invoice" | "credit_note") in Peppol BIS Billing 3.0."""
        if document not in DOCUMENTS:
            raise ValueError(f"document is one of {DOCUMENTS}, not {document!r}")
        split_participant(participant)
        data = self._call("GET", "/api/lookup", params={"peppol_id": participant})
        metadata = data.get("serviceMetadata")
        if not isinstance(metadata, dict):
            raise AccessPointError("the participant lookup answered without serviceMetadata")
        wanted = BIS3_DOCUMENT_TYPES[document]
        for endpoint in metadata.get("endpoints") or []:
            for document_type in (endpoint or {}).get("documentTypes") or []:
                if (document_type or {}).get("value") == wanted:
                    return True
        return False

    # --- Submission --------------------------------------------------------------------------

    def submit(self, *, sender: str, receiver: str, document: str, ubl: bytes, idempotency_key: str) -> str:
        """Send `ubl` (the exact bytes validated) from `sender` to `receiver` over Peppol; the
        provider's id for it. `document` is checked against what e-invoice.be read in the UBL."""
        submission_id = self.create_document(ubl, document=document, file_name=f"{idempotency_key}.xml")
        self.send_document(submission_id, sender=sender, receiver=receiver)
        return submission_id

    def create_document(self, ubl: bytes, *, document: str, file_name: str = "document.xml") -> str:
        """Step 1 of `submit`: upload the UBL; e-invoice.be keeps it as a DRAFT. Its id."""
        if document not in DOCUMENTS:
            raise ValueError(f"document is one of {DOCUMENTS}, not {document!r}")
        data = self._call("POST", "/api/documents/ubl",
                          files={"file": (file_name, ubl, "application/xml")})
        submission_id = data.get("id")
        if not isinstance(submission_id, str) or not submission_id:
            raise AccessPointError("the access point accepted the document but gave no id")
        read_as = data.get("document_type")
        if read_as and read_as.lower() != document:
            raise AccessPointRefused(gettext("The access point read the document as %(read_as)s, not as %(document)s.")
                                     % {"read_as": read_as, "document": document}, 422)
        return submission_id

    def send_document(self, submission_id: str, *, sender: str, receiver: str) -> str:
        """Step 2 of `submit`: send the DRAFT over Peppol. The provider's state (TRANSIT)."""
        sender_scheme, sender_id = split_participant(sender)
        receiver_scheme, receiver_id = split_participant(receiver)
        data = self._call("POST", f"/api/documents/{quote(submission_id, safe='')}/send", params={
            "sender_peppol_scheme": sender_scheme, "sender_peppol_id": sender_id,
            "receiver_peppol_scheme": receiver_scheme, "receiver_peppol_id": receiver_id})
        return str(data.get("state") or "")

    # --- Status ------------------------------------------------------------------------------

    def status(self, submission_id: str) -> StatusEvent | None:
        """Where the document stands now, or None while it is not sent (DRAFT). The event id is
        the same for the same state, so seeing it twice changes nothing."""
        data = self._call("GET", f"/api/documents/{quote(submission_id, safe='')}")
        provider_state = str(data.get("state") or "").upper()
        state = PROVIDER_STATES.get(provider_state)
        if state is None:
            return None
        reason = _failure_reason(data) if state == "failed" else ""
        return StatusEvent(event_id=f"status:{submission_id}:{provider_state}", submission_id=submission_id,
                           state=state, reason=reason, occurred_at=datetime.datetime.now(datetime.timezone.utc))

    # --- Transport ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs) -> dict:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout,
                                            headers={"Authorization": f"Bearer {self._api_key}"}, **kwargs)
        except requests.RequestException as exc:
            # The exception's text names the address, never the headers.
            raise AccessPointError(f"{method} {path}: no answer from the access point ({type(exc).__name__})") from exc
        status = response.status_code
        if status >= 500 or status in RETRYABLE_4XX:
            log.warning("access point %s %s answered %s", method, path, status)
            raise AccessPointError(f"{method} {path}: the access point answered {status}")
        if 400 <= status < 500:
            reason = _error_message(response)
            log.info("access point %s %s refused (%s): %s", method, path, status, reason)
            raise AccessPointRefused(reason, status)
        if not 200 <= status < 300:
            raise AccessPointError(f"{method} {path}: unexpected answer {status}")
        try:
            data = response.json()
        except ValueError as exc:
            raise AccessPointError(f"{method} {path}: the answer is not JSON") from exc
        if not isinstance(data, dict):
            raise AccessPointError(f"{method} {path}: the answer is not a JSON object")
        return data


def _error_message(response: requests.Response) -> str:
    """The provider's message from a 4xx: FastAPI's `{"detail": "..."}`, or for a 422 its list
    `{"detail": [{"loc": [...], "msg": "..."}]}`; the status text when there is none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail.strip():
        return detail.strip()
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and item.get("msg"):
                where = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
        if parts:
            return "; ".join(parts)
    return f"{response.status_code} {response.reason or ''}".strip()


def _failure_reason(data: Mapping) -> str:
    """A failed document's reason: e-invoice.be's published schema has none; integrations report
    an `error` object with `code` and `message` on FAILED documents (api-facts §4.4.1), so it is
    read when present."""
    error = data.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message") or "").strip()
        code = str(error.get("code") or "").strip()
        if message:
            return f"{message} ({code})" if code else message
    return ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def signature_for(secret: str, event: Mapping) -> str:
    """The X-Signature value e-invoice.be sends with `event`."""
    canonical = json.dumps(event, sort_keys=True).encode()
    return "sha256=" + hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def verify_status_webhook(*, secret: str, headers: Mapping[str, str], body: bytes,
                          now: datetime.datetime | None = None) -> StatusEvent:
    """The delivery status a signed e-invoice.be webhook reports. ValueError (with the reason) for
    a missing or wrong signature or a malformed body; UnsupportedWebhookEvent (a ValueError) for a
    signed event that is not about a sent document. `now` is accepted for the interface's sake:
    the scheme signs no timestamp, so nothing goes stale (replays are matched by event_id)."""
    del now
    if not secret:
        raise ValueError("no webhook secret is configured for this access point")
    supplied = _header(headers, SIGNATURE_HEADER)
    if not supplied:
        raise ValueError(f"the webhook has no {SIGNATURE_HEADER} header")
    supplied = supplied.strip()
    if not supplied.startswith("sha256="):
        raise ValueError(f"the {SIGNATURE_HEADER} header is not sha256=<hex>")
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("the webhook body is not JSON") from exc
    if not isinstance(event, dict):
        raise ValueError("the webhook body is not a JSON object")
    # e-invoice.be signs the event serialised with sorted keys; a body sent in exactly that form
    # is also its own raw bytes, so both are accepted (the same secret either way).
    raw = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not (hmac.compare_digest(supplied, signature_for(secret, event)) or hmac.compare_digest(supplied, raw)):
        raise ValueError("the webhook signature does not match (wrong secret or altered body)")

    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("the webhook event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("the webhook event has no type")
    if event_type not in WEBHOOK_TYPES:
        raise UnsupportedWebhookEvent(event_type)
    if not isinstance(data, dict) or not isinstance(data.get("document_id"), str) or not data["document_id"]:
        raise ValueError("the webhook event has no data.document_id")
    created = event.get("created_at")
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise ValueError("the webhook event has no created_at (Unix seconds)")
    state = WEBHOOK_TYPES[event_type]
    return StatusEvent(
        event_id=event_id, submission_id=data["document_id"], state=state,
        reason=_failure_reason(data) if state == "failed" else "",
        occurred_at=datetime.datetime.fromtimestamp(created, tz=datetime.timezone.utc))
