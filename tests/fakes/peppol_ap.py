"""A local Peppol access point shaped like e-invoice.be's published REST API (api.e-invoice.be;
the TypeScript/PHP SDKs generated from its OpenAPI spec and docs.e-invoice.be/essentials/webhooks;
facts and sources in ../shared/reference/api-facts.md §4.4.1). What the portal uses:

| what | request | answer |
|---|---|---|
| participant lookup | GET /api/lookup?peppol_id=0208:0403170701 | 200 LookupRetrieveResponse (serviceMetadata.endpoints[].documentTypes[].value) |
| participant check | GET /api/validate/peppol-id?peppol_id=... | 200 {is_valid, dns_valid, business_card_valid, business_card, supported_document_types} |
| upload UBL | POST /api/documents/ubl, multipart/form-data field `file` | 201 DocumentResponse, state DRAFT |
| send | POST /api/documents/{id}/send?sender_peppol_scheme=&sender_peppol_id=&receiver_peppol_scheme=&receiver_peppol_id= | 200 DocumentResponse, state TRANSIT |
| document | GET /api/documents/{id} | 200 DocumentResponse (state DRAFT, TRANSIT, SENT or FAILED) |
| its UBL | GET /api/documents/{id}/ubl | 200 UblGetResponse |

Authentication: `Authorization: Bearer <api key>`; anything else is 401 `{"detail": ...}`. Errors
are FastAPI's: `{"detail": "<message>"}`, and for a missing or malformed parameter 422
`{"detail": [{"type", "loc", "msg", "input"}]}`. Ids are `doc_<hex>`.

Delivery is in the test's hands. `register(participant, documents)` makes a participant known to
the network (discovery yes, only for those document kinds); `reject(participant, reason)` makes
its access point refuse what it is sent. A sent document waits in TRANSIT until the test calls
`deliver(document_id)` (or `deliver_all()`): it becomes SENT, or FAILED with `error: {code,
message}` for a rejecting receiver, and the webhook is POSTed to `webhook_url` (settable per test)
as e-invoice.be does: `{"id", "tenant_id", "created_at", "type": "document.sent" |
"document.sent.failed", "data": {"document_id"}, "text"}` with `X-Signature: sha256=<hex
HMAC-SHA256 of json.dumps(event, sort_keys=True)>` (the body itself is sent in insertion order,
so a receiver must verify the canonical form, as the provider's fixture shows). `events` keeps
every event (id, body, headers, the receiver's answers); `replay(event_id, times)` POSTs the same
event again, byte for byte; `webhook_request(event_id)` gives (headers, body) for a test client.

Choices where the published material is silent (marked in api-facts): a bad key is 401; the send
of a document to a receiver not on the network is 400 `{"detail": "Receiver ... is not registered
..."}`; sending a document that is not a DRAFT is 400; the error object on a FAILED document.

Faults, as on every fake here: `fail_next(n, status)` answers the next n API requests with
`{"detail": "..."}` unexecuted; `delay_next(n, seconds)` executes them at once and answers late."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request, urlopen
from xml.etree import ElementTree

from tests.fakes.base import Faults, JsonHandler, LocalServer

DOCUMENT_TYPES = {
    "invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice"
               "##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1",
    "credit_note": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2::CreditNote"
                   "##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1",
}
BILLING_PROCESS = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
UBL_ROOTS = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice": "INVOICE",
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote": "CREDIT_NOTE",
}
CAC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2}"
CBC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"
REJECTED_CODE = "DELIVERY_REJECTED"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sign(secret: str, event: dict) -> str:
    canonical = json.dumps(event, sort_keys=True).encode()
    return "sha256=" + hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def _missing(where: str, name: str) -> dict:
    return {"detail": [{"type": "missing", "loc": [where, name], "msg": "Field required", "input": None}]}


def _valid_participant(value: str) -> bool:
    scheme, sep, ident = value.partition(":")
    return bool(sep) and len(scheme) == 4 and scheme.isdigit() and bool(ident.strip())


class FakePeppolAccessPoint(Faults, LocalServer):
    def __init__(self, api_key: str, webhook_secret: str, tenant_id: str = "ten-portal-test"):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.tenant_id = tenant_id
        super().__init__()
        # Reentrant: a handler holding the lock answers, and answering records under it.
        self.lock = threading.RLock()
        self.reset()

    # --- What tests set and read ------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.participants: dict[str, set[str]] = {}  # "0208:0403170701" -> {"invoice", ...}
            self.rejecting: dict[str, str] = {}  # receiver -> the reason its access point gives
            self.documents: dict[str, dict] = {}  # id -> document (with "ubl": the bytes received)
            self.events: list[dict] = []  # every webhook event: id, type, body, headers, answers
            self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of API calls
            self.webhook_url: str | None = None
            self.failures.clear()
            self.delays.clear()

    def register(self, participant: str, documents=("invoice", "credit_note")) -> None:
        """`participant` is on the Peppol network and receives these document kinds."""
        with self.lock:
            self.participants[participant] = set(documents)

    def unregister(self, participant: str) -> None:
        with self.lock:
            self.participants.pop(participant, None)

    def reject(self, participant: str, reason: str = "The receiving access point rejected the document") -> None:
        """What is delivered to `participant` ends FAILED with this reason."""
        with self.lock:
            self.rejecting[participant] = reason

    def submissions(self) -> list[dict]:
        """The documents uploaded, oldest first (each with `ubl`, `sender`, `receiver`, `state`)."""
        with self.lock:
            return [dict(d) for d in self.documents.values()]

    def pending(self) -> list[str]:
        with self.lock:
            return [i for i, d in self.documents.items() if d["state"] == "TRANSIT"]

    # --- The network's side ------------------------------------------------------------------

    def deliver(self, document_id: str, *, post: bool = True) -> dict:
        """The network's outcome for a document in TRANSIT: SENT, or FAILED when its receiver
        rejects; the webhook event made for it (POSTed to `webhook_url` when set and `post`)."""
        with self.lock:
            document = self.documents[document_id]
            assert document["state"] == "TRANSIT", f"{document_id} is {document['state']}, not in transit"
            reason = self.rejecting.get(document["receiver"])
            if reason is None:
                document["state"] = "SENT"
                event_type = "document.sent"
            else:
                document["state"] = "FAILED"
                document["error"] = {"code": REJECTED_CODE, "message": reason}
                event_type = "document.sent.failed"
            event = self._event(event_type, document_id)
        if post:
            self.post(event["id"])
        return event

    def deliver_all(self, *, post: bool = True) -> list[dict]:
        return [self.deliver(i, post=post) for i in self.pending()]

    def _event(self, event_type: str, document_id: str) -> dict:
        data = {"document_id": document_id}
        payload = {"id": "evt-" + secrets.token_hex(16), "tenant_id": self.tenant_id,
                   "created_at": int(time.time()), "type": event_type, "data": data,
                   "text": f"\u26a1\ufe0f New webhook event: {event_type}\n\n{json.dumps(data, indent=2)}"}
        record = {"id": payload["id"], "type": event_type, "document_id": document_id, "payload": payload,
                  "body": json.dumps(payload).encode(),
                  "headers": {"Content-Type": "application/json", "X-Signature": sign(self.webhook_secret, payload)},
                  "answers": []}
        self.events.append(record)
        return record

    def event(self, event_id: str) -> dict:
        with self.lock:
            return next(e for e in self.events if e["id"] == event_id)

    def webhook_request(self, event_id: str) -> tuple[dict, bytes]:
        """(headers, body) of an event, to hand to a test client."""
        record = self.event(event_id)
        return dict(record["headers"]), record["body"]

    def post(self, event_id: str, url: str | None = None) -> int | None:
        """POST the event (the same bytes every time) to `url` or `webhook_url`; the status the
        receiver answered (None when there is nowhere to send it or no answer came)."""
        record = self.event(event_id)
        target = url or self.webhook_url
        if not target:
            return None
        request = Request(target, data=record["body"], headers=record["headers"], method="POST")
        try:
            with urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = None
        with self.lock:
            record["answers"].append(status)
        return status

    def replay(self, event_id: str, times: int = 1, url: str | None = None) -> list[int | None]:
        """Send an event again `times` times, as a provider retrying does."""
        return [self.post(event_id, url) for _ in range(times)]

    # --- The API -----------------------------------------------------------------------------

    def _document_response(self, document: dict) -> dict:
        body = {"id": document["id"], "state": document["state"], "direction": "OUTBOUND",
                "document_type": document["document_type"], "invoice_id": document["invoice_id"],
                "currency": document["currency"], "created_at": document["created_at"]}
        if document.get("error"):
            body["error"] = dict(document["error"])
        return body

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def _answer(self, status: int, body: dict, delay: float = 0.0) -> None:
                if delay:
                    time.sleep(delay)
                with fake.lock:
                    fake.requests.append((self.command, urlsplit(self.path).path, status))
                try:
                    self.send_json(status, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (delay_next): it was heard all the same

            def _begin(self) -> tuple[bool, float]:
                with fake.lock:
                    failure, delay = fake.pop_fault()
                if failure is not None:
                    if delay:
                        time.sleep(delay)
                    self._answer(failure, {"detail": "Internal Server Error" if failure >= 500 else "Fault"})
                    return False, 0.0
                if self.headers.get("Authorization", "") != f"Bearer {fake.api_key}":
                    self._answer(401, {"detail": "Invalid or missing API key"}, delay)
                    return False, 0.0
                return True, delay

            def _read_body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self):
                ok, delay = self._begin()
                if not ok:
                    return
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                path = parts.path
                if path in ("/api/lookup", "/api/validate/peppol-id"):
                    peppol_id = (query.get("peppol_id") or [None])[0]
                    if peppol_id is None:
                        return self._answer(422, _missing("query", "peppol_id"), delay)
                    if not _valid_participant(peppol_id):
                        return self._answer(422, {"detail": [{
                            "type": "value_error", "loc": ["query", "peppol_id"], "input": peppol_id,
                            "msg": "Value error, Peppol ID must be in the form <scheme>:<id>"}]}, delay)
                    with fake.lock:
                        documents = sorted(fake.participants.get(peppol_id, ()))
                        known = peppol_id in fake.participants
                    if path == "/api/lookup":
                        return self._answer(200, self._lookup(peppol_id, known, documents), delay)
                    return self._answer(200, {
                        "is_valid": known, "dns_valid": known, "business_card_valid": known,
                        "business_card": {"name": f"Participant {peppol_id}", "country_code": "BE",
                                          "registration_date": "2026-01-01"} if known else None,
                        "supported_document_types": [DOCUMENT_TYPES[d] for d in documents]}, delay)
                if path.startswith("/api/documents/"):
                    rest = path[len("/api/documents/"):].strip("/").split("/")
                    with fake.lock:
                        document = fake.documents.get(rest[0])
                        if document is None or len(rest) > 2 or (len(rest) == 2 and rest[1] != "ubl"):
                            return self._answer(404, {"detail": "Document not found"}, delay)
                        if len(rest) == 2:
                            body = {"id": document["id"], "file_name": document["file_name"],
                                    "file_hash": hashlib.sha256(document["ubl"]).hexdigest(),
                                    "file_size": len(document["ubl"]),
                                    "sender_peppol_scheme": document["ubl_sender"][0],
                                    "sender_peppol_id": document["ubl_sender"][1],
                                    "receiver_peppol_scheme": document["ubl_receiver"][0],
                                    "receiver_peppol_id": document["ubl_receiver"][1],
                                    "signed_url": None, "validated_at": document["created_at"]}
                        else:
                            body = fake._document_response(document)
                    return self._answer(200, body, delay)
                self._answer(404, {"detail": "Not Found"}, delay)

            def _lookup(self, peppol_id: str, known: bool, documents: list[str]) -> dict:
                value = peppol_id.partition(":")[2]
                endpoint = {"url": "https://smp.example.test", "status": "success",
                            "documentTypes": [{"scheme": "busdox-docid-qns", "value": DOCUMENT_TYPES[d]}
                                              for d in documents],
                            "processes": [{"processId": {"scheme": "cenbii-procid-ubl", "value": BILLING_PROCESS},
                                           "endpoints": [{"address": "https://ap.example.test/as4",
                                                          "transportProfile": "peppol-transport-as4-v2_0"}]}]}
                error = None if known else f"No SMP registration found for {peppol_id}"
                return {
                    "status": "success" if known else "error", "errors": [] if known else [error],
                    "executionTimeMs": 12,
                    "queryMetadata": {"identifierScheme": "iso6523-actorid-upis", "identifierValue": peppol_id,
                                      "smlDomain": "edelivery.tech.ec.europa.eu", "timestamp": _now_iso(),
                                      "version": "1"},
                    "dnsInfo": {"dnsRecords": [{"ip": "192.0.2.10"}] if known else [],
                                "smlHostname": "edelivery.tech.ec.europa.eu",
                                "status": "success" if known else "error", "error": error},
                    "serviceMetadata": {"endpoints": [endpoint] if known else [], "queryTimeMs": 5,
                                        "status": "success" if known else "error", "error": error},
                    "businessCard": {"entities": [{"name": f"Participant {value}", "countryCode": "BE"}] if known else [],
                                     "queryTimeMs": 3, "status": "success" if known else "error",
                                     "error": error},
                    "certificates": [],
                }

            def do_POST(self):
                ok, delay = self._begin()
                if not ok:
                    self._read_body()
                    return
                parts = urlsplit(self.path)
                path = parts.path
                body = self._read_body()
                if path == "/api/documents/ubl":
                    return self._upload(body, delay)
                if path.startswith("/api/documents/") and path.endswith("/send"):
                    document_id = path[len("/api/documents/"):-len("/send")].strip("/")
                    return self._send(document_id, parse_qs(parts.query), delay)
                self._answer(404, {"detail": "Not Found"}, delay)

            def _upload(self, body: bytes, delay: float) -> None:
                content_type = self.headers.get("Content-Type", "")
                if not content_type.startswith("multipart/form-data"):
                    return self._answer(422, _missing("body", "file"), delay)
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + body)
                upload = None
                for part in message.iter_parts() if message.is_multipart() else ():
                    if part.get_param("name", header="content-disposition") == "file":
                        upload = part
                if upload is None:
                    return self._answer(422, _missing("body", "file"), delay)
                ubl = upload.get_payload(decode=True) or b""
                try:
                    root = ElementTree.fromstring(ubl)
                except ElementTree.ParseError as exc:
                    return self._answer(400, {"detail": f"Invalid XML: {exc}"}, delay)
                document_type = UBL_ROOTS.get(root.tag)
                if document_type is None:
                    return self._answer(400, {"detail": "The file is not a UBL Invoice or CreditNote"}, delay)

                def endpoint(party: str) -> tuple[str | None, str | None]:
                    node = root.find(f"{CAC}{party}/{CAC}Party/{CBC}EndpointID")
                    return (node.get("schemeID"), (node.text or "").strip()) if node is not None else (None, None)

                currency = root.find(f"{CBC}DocumentCurrencyCode")
                number = root.find(f"{CBC}ID")
                document_id = "doc_" + secrets.token_hex(8)
                document = {"id": document_id, "state": "DRAFT", "document_type": document_type,
                            "invoice_id": number.text.strip() if number is not None and number.text else None,
                            "currency": currency.text.strip() if currency is not None and currency.text else None,
                            "file_name": upload.get_filename() or "document.xml", "ubl": ubl,
                            "ubl_sender": endpoint("AccountingSupplierParty"),
                            "ubl_receiver": endpoint("AccountingCustomerParty"),
                            "sender": None, "receiver": None, "created_at": _now_iso(), "error": None}
                with fake.lock:
                    fake.documents[document_id] = document
                    response = fake._document_response(document)
                self._answer(201, response, delay)

            def _send(self, document_id: str, query: dict, delay: float) -> None:
                names = ("sender_peppol_scheme", "sender_peppol_id", "receiver_peppol_scheme", "receiver_peppol_id")
                given = {n: (query.get(n) or [None])[0] for n in names}
                with fake.lock:
                    document = fake.documents.get(document_id)
                    if document is None:
                        return self._answer(404, {"detail": "Document not found"}, delay)
                    if document["state"] != "DRAFT":
                        return self._answer(400, {"detail": f"Document is in state {document['state']} and cannot "
                                                            "be sent again"}, delay)
                    sender = (given["sender_peppol_scheme"] or document["ubl_sender"][0],
                              given["sender_peppol_id"] or document["ubl_sender"][1])
                    receiver = (given["receiver_peppol_scheme"] or document["ubl_receiver"][0],
                                given["receiver_peppol_id"] or document["ubl_receiver"][1])
                    if not all(sender) or not all(receiver):
                        return self._answer(400, {"detail": "Sender and receiver Peppol IDs are required (in the "
                                                            "UBL EndpointID or as parameters)"}, delay)
                    receiver_id = f"{receiver[0]}:{receiver[1]}"
                    kind = "invoice" if document["document_type"] == "INVOICE" else "credit_note"
                    if kind not in fake.participants.get(receiver_id, ()):
                        return self._answer(400, {"detail": f"Receiver {receiver_id} is not registered on the Peppol "
                                                            f"network for this document type"}, delay)
                    document.update(state="TRANSIT", sender=f"{sender[0]}:{sender[1]}", receiver=receiver_id)
                    response = fake._document_response(document)
                self._answer(200, response, delay)

        return Handler
