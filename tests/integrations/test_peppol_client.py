"""The Peppol access-point client (integrations/peppol/client.py) against the local e-invoice.be
(tests/fakes/peppol_ap.py): what a caller sees for discovery, submission, errors, status and the
signed status webhook."""
import datetime
import json
import logging
import socket

import pytest

from integrations.peppol.client import (
    AccessPointClient, AccessPointError, AccessPointRefused, StatusEvent, UnsupportedWebhookEvent,
    verify_status_webhook,
)
from tests.conftest import PEPPOL_AP_TEST_KEY, PEPPOL_AP_TEST_WEBHOOK_SECRET
from tests.fakes.base import JsonHandler, LocalServer

SELLER = "0208:0403170701"
BUYER = "0208:0417497106"
SECRET = PEPPOL_AP_TEST_WEBHOOK_SECRET


def ubl(kind: str = "Invoice", number: str = "F-2026-0042", buyer: str = BUYER) -> bytes:
    ns = f"urn:oasis:names:specification:ubl:schema:xsd:{kind}-2"
    seller_scheme, seller_id = SELLER.split(":")
    buyer_scheme, buyer_id = buyer.split(":")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<{kind} xmlns="{ns}" xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
 xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>
  <cbc:ID>{number}</cbc:ID>
  <cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
  <cac:AccountingSupplierParty><cac:Party><cbc:EndpointID schemeID="{seller_scheme}">{seller_id}</cbc:EndpointID></cac:Party></cac:AccountingSupplierParty>
  <cac:AccountingCustomerParty><cac:Party><cbc:EndpointID schemeID="{buyer_scheme}">{buyer_id}</cbc:EndpointID></cac:Party></cac:AccountingCustomerParty>
</{kind}>""".encode()


@pytest.fixture
def ap(peppol_ap_server):
    peppol_ap_server.reset()
    peppol_ap_server.register(BUYER)
    return peppol_ap_server


@pytest.fixture
def client(ap):
    return AccessPointClient(base_url=ap.base_url, api_key=PEPPOL_AP_TEST_KEY, timeout=2)


class Receiver(LocalServer):
    """A webhook endpoint that records what it is sent and answers 200."""

    path = "/peppol/webhook/"

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        super().__init__()

    def _handler(self):
        receiver = self

        class Handler(JsonHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body))
                self.send_json(200, {"received": True})

        return Handler


# --- Discovery ---------------------------------------------------------------------------------

def test_a_registered_participant_can_receive_and_an_unknown_one_cannot(ap, client):
    assert client.can_receive(BUYER, document="invoice") is True
    assert client.can_receive(BUYER, document="credit_note") is True
    assert client.can_receive("0208:0999999922", document="invoice") is False
    assert ("GET", "/api/lookup", 200) in ap.requests


def test_discovery_is_per_document_type(ap, client):
    ap.register("0106:12345678", documents=("invoice",))
    assert client.can_receive("0106:12345678", document="invoice") is True
    assert client.can_receive("0106:12345678", document="credit_note") is False


def test_a_malformed_participant_is_refused_by_the_access_point_with_its_message(ap, client):
    with pytest.raises(ValueError):  # ours: no scheme at all never leaves
        client.can_receive("0403170701", document="invoice")
    with pytest.raises(AccessPointRefused) as refused:
        client.can_receive("BE:0403170701", document="invoice")
    assert refused.value.status == 422
    assert "<scheme>:<id>" in refused.value.reason


# --- Submission --------------------------------------------------------------------------------

def test_submit_returns_the_providers_id_and_the_access_point_has_our_exact_ubl(ap, client):
    document = ubl()
    submission_id = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=document,
                                  idempotency_key="invoice-42-peppol")
    assert submission_id.startswith("doc_")
    [sent] = ap.submissions()
    assert sent["id"] == submission_id
    assert sent["ubl"] == document
    assert (sent["sender"], sent["receiver"], sent["state"]) == (SELLER, BUYER, "TRANSIT")
    assert sent["document_type"] == "INVOICE"
    assert sent["file_name"] == "invoice-42-peppol.xml"


def test_a_credit_note_goes_out_as_a_credit_note(ap, client):
    submission_id = client.submit(sender=SELLER, receiver=BUYER, document="credit_note",
                                  ubl=ubl("CreditNote", "C-2026-0003"), idempotency_key="cn-3")
    assert ap.submissions()[0]["document_type"] == "CREDIT_NOTE"
    assert client.status(submission_id).state == "accepted"


def test_a_document_read_as_another_kind_is_refused_before_sending(ap, client):
    with pytest.raises(AccessPointRefused) as refused:
        client.submit(sender=SELLER, receiver=BUYER, document="credit_note", ubl=ubl("Invoice"),
                      idempotency_key="k")
    assert "INVOICE" in refused.value.reason
    assert ap.pending() == []


def test_sending_to_a_receiver_not_on_peppol_is_refused_with_the_providers_reason(ap, client):
    with pytest.raises(AccessPointRefused) as refused:
        client.submit(sender=SELLER, receiver="0208:0999999922", document="invoice",
                      ubl=ubl(buyer="0208:0999999922"), idempotency_key="k")
    assert refused.value.status == 400
    assert refused.value.reason == ("Receiver 0208:0999999922 is not registered on the Peppol network "
                                    "for this document type")
    assert ap.pending() == []


def test_a_wrong_api_key_is_refused_and_the_key_appears_nowhere(ap, caplog):
    caplog.set_level(logging.DEBUG)
    secret_key = "einv_live_do_not_leak_4711"
    client = AccessPointClient(base_url=ap.base_url, api_key=secret_key, timeout=2)
    with pytest.raises(AccessPointRefused) as refused:
        client.can_receive(BUYER, document="invoice")
    assert refused.value.status == 401
    assert refused.value.reason == "Invalid or missing API key"
    assert secret_key not in str(refused.value) + repr(client) + caplog.text


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_server_error_or_throttle_is_a_retry_not_a_refusal(ap, client, status):
    ap.fail_next(1, status)
    with pytest.raises(AccessPointError) as failed:
        client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(), idempotency_key="k")
    assert not isinstance(failed.value, AccessPointRefused)
    assert ap.submissions() == []  # the upload was answered unexecuted


def test_a_timeout_is_a_retry(ap):
    client = AccessPointClient(base_url=ap.base_url, api_key=PEPPOL_AP_TEST_KEY, timeout=0.2)
    ap.delay_next(1, 1.0)
    with pytest.raises(AccessPointError) as failed:
        client.can_receive(BUYER, document="invoice")
    assert not isinstance(failed.value, AccessPointRefused)


def test_no_access_point_listening_is_a_retry():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AccessPointClient(base_url=f"http://127.0.0.1:{port}", api_key=PEPPOL_AP_TEST_KEY, timeout=1)
    with pytest.raises(AccessPointError):
        client.status("doc_0")


# --- Status ------------------------------------------------------------------------------------

def test_status_follows_the_document_from_draft_to_delivered(ap, client):
    draft = client.create_document(ubl(), document="invoice")
    assert client.status(draft) is None  # uploaded, never sent
    client.send_document(draft, sender=SELLER, receiver=BUYER)
    accepted = client.status(draft)
    assert (accepted.state, accepted.reason, accepted.submission_id) == ("accepted", "", draft)
    ap.deliver(draft, post=False)
    delivered = client.status(draft)
    assert delivered.state == "delivered"
    assert client.status(draft).event_id == delivered.event_id  # polling twice is one event


def test_a_rejected_delivery_reads_failed_with_the_receivers_reason(ap, client):
    ap.reject(BUYER, "Unknown buyer reference")
    submission_id = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(),
                                  idempotency_key="k")
    ap.deliver(submission_id, post=False)
    failed = client.status(submission_id)
    assert failed.state == "failed"
    assert failed.reason == "Unknown buyer reference (DELIVERY_REJECTED)"


def test_an_unknown_submission_is_a_refusal(ap, client):
    with pytest.raises(AccessPointRefused) as refused:
        client.status("doc_doesnotexist")
    assert (refused.value.status, refused.value.reason) == (404, "Document not found")


# --- The status webhook ------------------------------------------------------------------------

def test_the_delivered_webhook_is_posted_signed_and_verifies(ap, client):
    with Receiver() as receiver:
        ap.webhook_url = receiver.url
        submission_id = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(),
                                      idempotency_key="k")
        event = ap.deliver(submission_id)
    assert event["answers"] == [200]
    [(headers, body)] = receiver.received
    assert headers["X-Signature"].startswith("sha256=")
    status = verify_status_webhook(secret=SECRET, headers=headers, body=body)
    assert status == StatusEvent(event_id=event["id"], submission_id=submission_id, state="delivered",
                                 reason="", occurred_at=status.occurred_at)
    assert status.occurred_at.tzinfo is not None
    assert abs(status.occurred_at - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=1)


def test_a_failed_webhook_says_failed_and_status_gives_the_reason(ap, client):
    ap.reject(BUYER, "Receiver access point unreachable")
    submission_id = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(),
                                  idempotency_key="k")
    event = ap.deliver(submission_id, post=False)
    headers, body = ap.webhook_request(event["id"])
    status = verify_status_webhook(secret=SECRET, headers=headers, body=body)
    assert (status.state, status.submission_id) == ("failed", submission_id)
    assert client.status(status.submission_id).reason == "Receiver access point unreachable (DELIVERY_REJECTED)"


def test_a_webhook_replayed_ten_times_is_the_same_event_each_time(ap, client):
    with Receiver() as receiver:
        ap.webhook_url = receiver.url
        submission_id = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(),
                                      idempotency_key="k")
        event = ap.deliver(submission_id)
        assert ap.replay(event["id"], times=10) == [200] * 10
    assert len(receiver.received) == 11
    parsed = {verify_status_webhook(secret=SECRET, headers=h, body=b) for h, b in receiver.received}
    assert len(parsed) == 1 and parsed.pop().event_id == event["id"]


def test_a_tampered_body_a_wrong_secret_or_no_signature_is_refused(ap, client):
    submission_id = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(),
                                  idempotency_key="k")
    event = ap.deliver(submission_id, post=False)
    headers, body = ap.webhook_request(event["id"])
    tampered = body.replace(b"document.sent", b"document.sent.failed")
    assert tampered != body
    with pytest.raises(ValueError, match="does not match"):
        verify_status_webhook(secret=SECRET, headers=headers, body=tampered)
    with pytest.raises(ValueError, match="does not match"):
        verify_status_webhook(secret="whsec_someone_else", headers=headers, body=body)
    with pytest.raises(ValueError, match="no X-Signature"):
        verify_status_webhook(secret=SECRET, headers={"Content-Type": "application/json"}, body=body)
    with pytest.raises(ValueError, match="not JSON"):
        verify_status_webhook(secret=SECRET, headers=headers, body=b"{not json")
    # header names are case-insensitive, as in HTTP
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_status_webhook(secret=SECRET, headers=lower, body=body).event_id == event["id"]


def test_the_providers_published_signature_fixture_verifies():
    """docs.e-invoice.be: the event signed with secret "secret" (as quoted in api-facts §4.4.1)."""
    event = {"id": "evt-e7wyc7gtpqx4z73x2wqmwhebhbb3r8n3ovfhcsdbulxr3s2awf49de76yglrnri3",
             "tenant_id": "ten-abc123", "created_at": 1762780249, "type": "document.sent",
             "data": {"document_id": "doc-1"},
             "text": '\u26a1\ufe0f New webhook event: document.sent\n\n{\n  "document_id": "doc-1"\n}'}
    headers = {"X-Signature": "sha256=2f8ec8fab5adedd8f82a2b4064f559c40b14aed0c6da27ed394e51176b10bd1b"}
    status = verify_status_webhook(secret="secret", headers=headers, body=json.dumps(event, indent=2).encode())
    assert (status.submission_id, status.state) == ("doc-1", "delivered")
    assert status.occurred_at == datetime.datetime(2025, 11, 10, 13, 10, 49, tzinfo=datetime.timezone.utc)


def test_a_signed_event_about_something_else_is_told_apart(ap):
    from tests.fakes.peppol_ap import sign

    event = {"id": "evt-1", "tenant_id": ap.tenant_id, "created_at": 1762780249, "type": "document.received",
             "data": {"document_id": "doc_in"}, "text": ""}
    with pytest.raises(UnsupportedWebhookEvent):
        verify_status_webhook(secret=SECRET, headers={"X-Signature": sign(SECRET, event)},
                              body=json.dumps(event).encode())



def test_the_fake_answers_the_participant_check_and_tests_can_take_a_participant_off(ap):
    import requests

    url = f"{ap.base_url}/api/validate/peppol-id"
    auth = {"Authorization": f"Bearer {PEPPOL_AP_TEST_KEY}"}
    known = requests.get(url, params={"peppol_id": BUYER}, headers=auth, timeout=2).json()
    assert known["is_valid"] is True and len(known["supported_document_types"]) == 2
    ap.unregister(BUYER)
    assert requests.get(url, params={"peppol_id": BUYER}, headers=auth, timeout=2).json()["is_valid"] is False
    assert requests.get(url, headers=auth, timeout=2).status_code == 422


def test_deliver_all_settles_every_document_in_transit_once(ap, client):
    ap.register("0106:12345678")
    ap.reject("0106:12345678", "Wrong receiver")
    first = client.submit(sender=SELLER, receiver=BUYER, document="invoice", ubl=ubl(), idempotency_key="a")
    second = client.submit(sender=SELLER, receiver="0106:12345678", document="invoice",
                           ubl=ubl(buyer="0106:12345678"), idempotency_key="b")
    events = ap.deliver_all(post=False)
    assert {(e["document_id"], e["type"]) for e in events} == {(first, "document.sent"),
                                                              (second, "document.sent.failed")}
    assert ap.pending() == [] and ap.deliver_all() == []
    with pytest.raises(AccessPointRefused, match="cannot be sent again"):
        client.send_document(first, sender=SELLER, receiver=BUYER)
