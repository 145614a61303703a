"""The inbound accounting webhook: signed, kept, answered at once, applied once by a worker."""
import datetime
import json
import time
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection as db
from django.urls import reverse
from kombu.exceptions import OperationalError

from integrations import services
from integrations.models import InboundEvent
from integrations.signing import generate_secret
from invoices.models import Invoice, Payment
from portal.models import AuditEvent, Client
from portal.rls import staff_scope
from tests.integrations.helpers import CLIENT, event, invoice_data, post

D = Decimal
ES = InboundEvent.Status


def _events():
    with staff_scope():
        return list(InboundEvent.objects.order_by("id"))


def _process_all():
    with staff_scope():
        # What a worker does with each newly received event (retries wait for their turn).
        for pk in InboundEvent.objects.filter(status=ES.PENDING).order_by("id").values_list("pk", flat=True):
            services.inbound_event_process(event_id=pk)


def _send(client, connection, secret, *payloads, **kwargs):
    responses = [post(client, connection.slug, secret, p, **kwargs) for p in payloads]
    _process_all()
    return responses


def test_signed_invoice_is_accepted_at_once_then_applied_with_lines_and_tax_breakdown(
        client, connection, secret, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(client, "erp", secret, event("client.upserted", CLIENT))
        second = post(client, "erp", secret, event("invoice.created", invoice_data()))
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["status"] == "accepted"
    assert len(callbacks) == 2  # each enqueued on commit, nothing processed in the request
    with staff_scope():
        assert not Invoice.objects.exists()
    _process_all()
    with staff_scope():
        invoice = Invoice.objects.select_related("client").get(external_id="INV-EXT-1")
        lines = list(invoice.lines.values_list("description", "net_amount", "tax_amount", "tax_rate"))
        breakdown = {}
        for rate, net, tax in invoice.lines.values_list("tax_rate", "net_amount", "tax_amount"):
            base_sum, tax_sum = breakdown.get(rate, (D(0), D(0)))
            breakdown[rate] = (base_sum + net, tax_sum + tax)
        trail = list(AuditEvent.objects.filter(object_id=str(invoice.pk), object_type="invoices.invoice")
                     .order_by("id").values_list("action", flat=True))
    assert (invoice.number, invoice.client.name, invoice.total, invoice.status) == (
        "2026-0001", "Northwind Traders B.V.", D("1208.33"), Invoice.Status.OPEN)
    assert invoice.purchase_order == "PO-77" and invoice.payment_terms_text == "30 days net"
    assert lines == [("Consulting", D("950.00"), D("199.50"), D("21.00")), ("Books", D("53.97"), D("4.86"), D("9.00"))]
    assert breakdown == {D("9.00"): (D("53.97"), D("4.86")), D("21.00"): (D("950.00"), D("199.50"))}
    assert trail == ["invoice.created", "invoice.status_changed"]
    assert [e.status for e in _events()] == [ES.PROCESSED, ES.PROCESSED]


def test_raw_event_is_stored_encrypted(client, connection, secret):
    post(client, "erp", secret, event("client.upserted", CLIENT))
    with db.cursor() as cursor:
        cursor.execute("SELECT body FROM integrations_inboundevent")
        [(raw,)] = cursor.fetchall()
    assert "Northwind" not in raw
    assert json.loads(_events()[0].body)["data"]["name"] == "Northwind Traders B.V."


def test_the_same_event_id_twice_changes_nothing(client, connection, secret):
    payload = event("client.upserted", CLIENT)
    assert post(client, "erp", secret, payload, msg_id="msg_same").status_code == 202
    again = post(client, "erp", secret, payload, msg_id="msg_same")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    _process_all()
    assert len(_events()) == 1
    with staff_scope():
        assert Client.objects.filter(name="Northwind Traders B.V.").count() == 1


@pytest.mark.parametrize("tamper, status, reason", [
    (dict(secret="other"), 401, "signature: signature does not match"),
    (dict(timestamp=int(time.time()) - 301), 401, "signature: webhook-timestamp is more than 5 minutes old"),
    (dict(timestamp=int(time.time()) + 400), 401, "signature: webhook-timestamp is more than 5 minutes in the future"),
    (dict(raw=b"{not json"), 400, "malformed JSON"),
    (dict(payload=event("invoice.created", invoice_data(currency="euro"))), 422,
     "schema violation: data/currency: 'euro' does not match"),
    (dict(payload=event("invoice.paid", {})), 422, "schema violation: type: 'invoice.paid' is not one of"),
    (dict(payload=event("invoice.created", invoice_data(total="1208.34"))), 422,
     "totals do not add up: total: expected 1208.33, received 1208.34"),
    (dict(payload=event("invoice.created", invoice_data(
        tax_breakdown=[{"rate": "21", "base": "950.00", "tax": "199.50"}]))), 422,
     "totals do not add up: tax_breakdown[9%].base: expected 53.97, received 0.00"),
])
def test_bad_requests_get_a_reason_and_are_kept_for_inspection(client, connection, secret, tamper, status, reason):
    payload = tamper.pop("payload", event("client.upserted", CLIENT))
    use_secret = generate_secret() if tamper.pop("secret", None) else secret
    response = post(client, "erp", use_secret, payload, **tamper)
    assert response.status_code == status
    assert response.json()["status"] == "rejected" and response.json()["error"].startswith(reason)
    [kept] = _events()
    assert kept.status == ES.REJECTED and kept.error.startswith(reason)
    _process_all()
    with staff_scope():
        assert not Client.objects.filter(name="Northwind Traders B.V.").exists()


def test_missing_signature_headers_are_named(client, connection):
    response = client.post("/webhooks/accounting/erp/", data=b"{}", content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "signature: missing header: webhook-id, webhook-timestamp, webhook-signature"


def test_unknown_or_disabled_connection_is_404(client, connection, secret):
    assert post(client, "nope", secret, event("client.upserted", CLIENT)).status_code == 404
    with staff_scope():
        connection.enabled = False
        connection.save()
    assert post(client, "erp", secret, event("client.upserted", CLIENT)).status_code == 404


def test_during_secret_rotation_both_secrets_are_accepted(client, connection, secret):
    new = generate_secret()
    with staff_scope():
        connection.signing_secrets = f"{new}\n{secret}"
        connection.save()
    assert post(client, "erp", secret, event("client.upserted", CLIENT)).status_code == 202
    assert post(client, "erp", new, event("client.upserted", CLIENT | {"name": "Renamed"})).status_code == 202


def test_an_update_older_than_the_stored_one_is_ignored(client, connection, secret):
    _send(client, connection, secret, event("client.upserted", CLIENT),
          event("invoice.created", invoice_data(updated_at="2026-11-02T10:00:00Z")))
    older = invoice_data(updated_at="2026-11-01T09:00:00Z", purchase_order="OLD")
    newer = invoice_data(updated_at="2026-11-03T09:00:00Z", purchase_order="NEW")
    _send(client, connection, secret, event("invoice.updated", older))
    with staff_scope():
        assert Invoice.objects.get().purchase_order == "PO-77"
    assert _events()[-1].status == ES.IGNORED and "not newer" in _events()[-1].error
    _send(client, connection, secret, event("invoice.updated", newer))
    with staff_scope():
        assert Invoice.objects.get().purchase_order == "NEW"


def test_payment_for_an_invoice_not_yet_known_waits_and_is_applied_when_it_arrives(client, connection, secret):
    payment = {"external_id": "BANK-9", "client_external_id": "C-100", "amount": "1208.33", "currency": "EUR",
               "received_at": "2026-11-20T09:30:00Z", "method": "bank_transfer", "reference": "2026-0001",
               "allocations": [{"invoice_external_id": "INV-EXT-1", "amount": "1208.33"}]}
    _send(client, connection, secret, event("client.upserted", CLIENT), event("payment.recorded", payment))
    waiting = _events()[-1]
    assert waiting.status == ES.WAITING and "invoice INV-EXT-1 is not known yet" in waiting.error
    _send(client, connection, secret, event("invoice.created", invoice_data()))
    with staff_scope():
        # Not due yet: the retry waits for its backoff.
        assert waiting.pk not in services.inbound_events_due()
        assert waiting.pk in services.inbound_events_due(now=waiting.next_attempt_at + datetime.timedelta(seconds=1))
        services.inbound_event_process(event_id=waiting.pk)
        invoice = Invoice.objects.get()
        assert (invoice.status, invoice.open_balance) == (Invoice.Status.PAID, D("0.00"))
        assert Payment.objects.get().source == Payment.Source.ACCOUNTING
    # The same payment again (a new event id) is recognised and changes nothing.
    _send(client, connection, secret, event("payment.recorded", payment))
    with staff_scope():
        assert Payment.objects.count() == 1
    assert _events()[-1].status == ES.IGNORED


def test_a_failing_event_is_retried_with_backoff_then_dead_then_replayed_from_admin(
        client, connection, secret, staff):
    _send(client, connection, secret, event("client.upserted", CLIENT))
    post(client, "erp", secret, event("credit_note.created", {
        "external_id": "CN-1", "number": "CN-2026-1", "invoice_external_id": "INV-EXT-1", "issue_date": "2026-11-05",
        "lines": [{"description": "Goodwill", "quantity": "1", "unit_price": "100.00", "tax_rate": "21"}],
        "tax_breakdown": [{"rate": "21", "base": "100.00", "tax": "21.00"}],
        "subtotal": "100.00", "tax_total": "21.00", "total": "121.00"}))
    failing = _events()[-1]
    delays = []
    with staff_scope():
        for attempt in range(services.MAX_ATTEMPTS):
            before = InboundEvent.objects.get(pk=failing.pk)
            services.inbound_event_process(event_id=failing.pk)
            after = InboundEvent.objects.get(pk=failing.pk)
            if after.next_attempt_at:
                delays.append(round((after.next_attempt_at - before.received_at).total_seconds() / 30))
        dead = InboundEvent.objects.get(pk=failing.pk)
    assert dead.status == ES.DEAD and dead.attempts == services.MAX_ATTEMPTS
    assert "invoice INV-EXT-1 is not known yet" in dead.error
    assert delays == sorted(delays) and len(set(delays)) == len(delays)  # the waits grow

    _send(client, connection, secret, event("invoice.created", invoice_data()))
    client.force_login(staff)
    response = client.post(reverse("admin:integrations_inboundevent_changelist"),
                           {"action": "replay_dead_events", "_selected_action": [failing.pk]})
    assert response.status_code == 302
    with staff_scope():
        assert InboundEvent.objects.get(pk=failing.pk).status == ES.WAITING
        assert AuditEvent.objects.filter(action=AuditEvent.Action.EVENT_REPLAYED, actor=staff).count() == 1
        assert failing.pk in services.inbound_events_due()
        services.inbound_event_process(event_id=failing.pk)
        assert InboundEvent.objects.get(pk=failing.pk).status == ES.PROCESSED
        assert Invoice.objects.get().amount_credited == D("121.00")


def test_a_failure_half_way_leaves_nothing_applied(client, connection, secret):
    other = CLIENT | {"external_id": "C-200", "name": "Other B.V."}
    _send(client, connection, secret, event("client.upserted", CLIENT), event("client.upserted", other),
          event("invoice.created", invoice_data()))
    # A payment by the other client that points at Northwind's invoice: refused after the
    # payment row was already written, so everything must roll back.
    _send(client, connection, secret, event("payment.recorded", {
        "external_id": "BANK-X", "client_external_id": "C-200", "amount": "10.00", "currency": "EUR",
        "received_at": "2026-11-20T09:30:00Z", "allocations": [{"invoice_external_id": "INV-EXT-1", "amount": "10.00"}]}))
    assert "belongs to another client" in _events()[-1].error
    with staff_scope():
        assert not Payment.objects.exists()
        assert Invoice.objects.get().amount_paid == D("0.00")


def test_when_redis_is_down_the_webhook_still_answers_202_and_the_sweep_catches_up(
        client, connection, secret, django_capture_on_commit_callbacks):
    from integrations.tasks import process_inbound_event

    with mock.patch.object(process_inbound_event, "delay", side_effect=OperationalError("Connection refused")):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, "erp", secret, event("client.upserted", CLIENT))
    assert response.status_code == 202
    [stored] = _events()
    assert stored.status == ES.PENDING
    with staff_scope():
        assert services.inbound_events_due() == []  # the direct enqueue gets its chance first
        later = stored.next_attempt_at + datetime.timedelta(seconds=1)
        assert services.inbound_events_due(now=later) == [stored.pk]
        with mock.patch.object(process_inbound_event, "delay") as enqueue:
            assert services.inbound_events_sweep(now=later) == 1
        enqueue.assert_called_once_with(stored.pk)
        services.inbound_event_process(event_id=stored.pk)
        assert Client.objects.filter(name="Northwind Traders B.V.").exists()
