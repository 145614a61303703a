"""The accounting webhook: signed, stored, answered at once like every source's, then applied
once by a job (kind "accounting.event"), events about one invoice in the order sent."""
import json
import time
from decimal import Decimal

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.signing import generate_secret
from invoices.models import Invoice, Payment
from portal import jobs
from portal.models import AuditEvent, Client, Job, WebhookRequest
from portal.rls import staff_scope
from tests.integrations.helpers import CLIENT, event, invoice_data, job_for, post

D = Decimal
State = Job.State


def _job(job: Job) -> Job:
    with staff_scope():
        return Job.objects.get(pk=job.pk)


def _webhooks():
    with staff_scope():
        return list(WebhookRequest.objects.filter(source="accounting").order_by("id"))


def statements(captured) -> list[str]:
    """The SQL statements sent, less the transaction's own BEGIN and COMMIT."""
    return [q["sql"] for q in captured if q["sql"] not in ("BEGIN", "COMMIT")]


def _accepted(response) -> Job:
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "accepted", "webhook": response.json()["webhook"]}
    return job_for(response)


PAYMENT = {"external_id": "BANK-9", "client_external_id": "C-100", "amount": "1208.33", "currency": "EUR",
           "received_at": "2026-11-20T09:30:00Z", "method": "bank_transfer", "reference": "2026-0001",
           "allocations": [{"invoice_external_id": "INV-EXT-1", "amount": "1208.33"}]}


def test_signed_invoice_is_accepted_at_once_then_applied_with_lines_and_tax_breakdown(
        client, connection, secret, worker):
    first = _accepted(post(client, "erp", secret, event("client.upserted", CLIENT)))
    second = _accepted(post(client, "erp", secret, event("invoice.created", invoice_data())))
    # Answered before anything is applied; a worker was rung for each.
    with staff_scope():
        assert not Invoice.objects.exists()
    assert [bell[:2] for bell in worker.bells] == [("portal.tasks.run_job", [first.pk]),
                                                   ("portal.tasks.run_job", [second.pk])]
    assert (first.kind, first.subject) == ("accounting.event", f"accounting:{connection.pk}:client:C-100")
    assert second.subject == f"accounting:{connection.pk}:invoice:INV-EXT-1"

    assert worker.run() == 2
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
    assert [(_job(j).state, _job(j).result) for j in (first, second)] == [
        (State.DONE, "applied client.upserted"), (State.DONE, "applied invoice.created")]


def test_the_raw_request_is_stored_encrypted_with_its_standard_webhooks_headers(client, connection, secret, worker):
    _accepted(post(client, "erp", secret, event("client.upserted", CLIENT), msg_id="msg_raw"))
    with staff_scope(), db.cursor() as cursor:
        cursor.execute("SELECT body FROM portal_webhookrequest")
        [(raw,)] = cursor.fetchall()
    assert "Northwind" not in raw
    [stored] = _webhooks()
    assert json.loads(stored.body)["data"]["name"] == "Northwind Traders B.V."
    assert (stored.account, stored.natural_key, stored.headers["webhook-id"]) == ("erp", "msg_raw", "msg_raw")
    assert stored.headers["webhook-signature"].startswith("v1,") and stored.headers["webhook-timestamp"]


def test_accepting_an_accounting_webhook_takes_three_sql_statements_and_two_once_the_process_knows_it(
        client, connection, secret, worker):
    body = event("invoice.created", invoice_data())
    with CaptureQueriesContext(db) as first:
        response = post(client, "erp", secret, event("client.upserted", CLIENT))
    _accepted(response)
    with CaptureQueriesContext(db) as accepted:
        response = post(client, "erp", secret, body, msg_id="msg_budget")
    _accepted(response)
    with CaptureQueriesContext(db) as duplicate:
        assert post(client, "erp", secret, body, msg_id="msg_budget").json() == {"status": "duplicate"}
    # The scope, the connection, and the stored request with its job (one statement): one transaction.
    assert len(statements(first)) <= 3, statements(first)
    # Then the process remembers the connection, and that statement checks it is unchanged.
    assert len(statements(accepted)) <= 2, statements(accepted)
    assert len(statements(duplicate)) <= 2, statements(duplicate)


def test_a_connection_remembered_by_the_process_is_read_again_once_it_changes(client, connection, secret, worker):
    from integrations.models import Connection

    first = post(client, "erp", secret, event("client.upserted", CLIENT))
    _accepted(first)
    with CaptureQueriesContext(db) as looked_up:
        _accepted(post(client, "erp", secret, event("client.upserted", CLIENT)))
    assert not any("FROM integrations_connection c" in sql for sql in statements(looked_up))
    # Secrets rotated elsewhere (another process, the admin): the new one signs, the old one no longer.
    rotated = generate_secret()
    with staff_scope():
        Connection.objects.filter(pk=connection.pk).update(signing_secrets=rotated)
    assert post(client, "erp", secret, event("client.upserted", CLIENT)).status_code == 401
    _accepted(post(client, "erp", rotated, event("client.upserted", CLIENT)))
    # A forged request does not make the process forget the connection.
    assert post(client, "erp", generate_secret(), event("client.upserted", CLIENT)).status_code == 401
    with CaptureQueriesContext(db) as after_forged:
        _accepted(post(client, "erp", rotated, event("client.upserted", CLIENT)))
    assert not any("FROM integrations_connection c" in sql for sql in statements(after_forged))
    # Disabled: refused at once, nothing stored.
    with staff_scope():
        Connection.objects.filter(pk=connection.pk).update(enabled=False)
    assert post(client, "erp", rotated, event("client.upserted", CLIENT)).status_code == 404
    # Enabled again under another URL name: the old name is unknown.
    with staff_scope():
        Connection.objects.filter(pk=connection.pk).update(enabled=True, slug="erp-renamed")
    assert post(client, "erp", rotated, event("client.upserted", CLIENT)).status_code == 404
    _accepted(post(client, "erp-renamed", rotated, event("client.upserted", CLIENT)))
    assert len([w for w in _webhooks() if w.status == "accepted"]) == 5


def test_a_duplicate_changes_nothing(client, connection, secret, worker):
    payload = event("client.upserted", CLIENT)
    _accepted(post(client, "erp", secret, payload, msg_id="msg_same"))
    again = post(client, "erp", secret, payload, msg_id="msg_same")
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    worker.run()
    # Also after it was applied, and whatever the body now says: the id was seen.
    renamed = post(client, "erp", secret, event("client.upserted", CLIENT | {"name": "Renamed"}), msg_id="msg_same")
    assert (renamed.status_code, renamed.json()) == (200, {"status": "duplicate"})
    assert worker.run() == 0
    with staff_scope():
        assert list(Client.objects.values_list("name", flat=True)) == ["Northwind Traders B.V."]
        assert Job.objects.filter(kind="accounting.event").count() == 1
    assert len(_webhooks()) == 1


@pytest.mark.parametrize("tamper, status, reason", [
    (dict(secret="other"), 401, "signature: signature does not match"),
    (dict(age=301), 401, "signature: webhook-timestamp is more than 5 minutes old"),
    (dict(age=-400), 401, "signature: webhook-timestamp is more than 5 minutes in the future"),
    (dict(raw=b"{not json"), 400, "malformed JSON"),
    (dict(payload=event("invoice.created", invoice_data(currency="euro"))), 422,
     "invalid event: /data/currency: must be at most 3 characters; /data/currency: an ISO 4217 currency code"),
    (dict(payload=event("invoice.paid", {})), 422, "invalid event: /type: must be one of: invoice.created, "),
    (dict(payload=event("invoice.created", invoice_data(total="1208.34"))), 422,
     "invalid event: /data/total: does not add up: the lines make 1208.33"),
    (dict(payload=event("invoice.created", invoice_data(
        tax_breakdown=[{"rate": "21", "base": "950.00", "tax": "199.50"}]))), 422,
     "invalid event: /data/tax_breakdown: has no row for the rate 9% the lines use (base 53.97)"),
])
def test_a_bad_request_gets_a_4xx_with_the_reason_is_kept_and_loses_nothing(
        client, connection, secret, worker, tamper, status, reason):
    payload = tamper.pop("payload", event("client.upserted", CLIENT))
    use_secret = generate_secret() if tamper.pop("secret", None) else secret
    if "age" in tamper:  # seconds before now, taken when the test runs
        tamper["timestamp"] = int(time.time()) - tamper.pop("age")
    response = post(client, "erp", use_secret, payload, msg_id="msg_1", **tamper)
    assert response.status_code == status
    assert response.json()["status"] == "rejected" and response.json()["error"].startswith(reason)
    [kept] = _webhooks()
    assert (kept.status, kept.natural_key) == (WebhookRequest.Status.REJECTED, "")
    assert kept.error.startswith(reason) and kept.body == (tamper.get("raw") or json.dumps(payload).encode()).decode()
    assert worker.run() == 0
    with staff_scope():
        assert not Client.objects.exists() and not Job.objects.exists()
    # The sender fixes it and sends the event again under the same id: it is not taken for a duplicate.
    job = _accepted(post(client, "erp", secret, event("client.upserted", CLIENT), msg_id="msg_1"))
    worker.run()
    assert _job(job).state == State.DONE
    with staff_scope():
        assert Client.objects.filter(name="Northwind Traders B.V.").exists()


def test_missing_signature_headers_are_named(client, connection, worker):
    response = client.post("/webhooks/accounting/erp/", data=b"{}", content_type="application/json")
    assert response.status_code == 401
    assert response.json() == {"status": "rejected",
                               "error": "signature: missing header: webhook-id, webhook-timestamp, webhook-signature"}


def test_unknown_or_disabled_connection_is_404(client, connection, secret, worker):
    response = post(client, "nope", secret, event("client.upserted", CLIENT))
    assert (response.status_code, response.json()) == (
        404, {"status": "rejected", "error": "no enabled accounting account of that name"})
    with staff_scope():
        connection.enabled = False
        connection.save()
    assert post(client, "erp", secret, event("client.upserted", CLIENT)).status_code == 404


def test_during_secret_rotation_both_secrets_are_accepted(client, connection, secret, worker):
    new = generate_secret()
    with staff_scope():
        connection.signing_secrets = f"{new}\n{secret}"
        connection.save()
    _accepted(post(client, "erp", secret, event("client.upserted", CLIENT)))
    _accepted(post(client, "erp", new, event("client.upserted", CLIENT | {"name": "Renamed"})))


def test_an_update_older_than_the_stored_one_is_done_as_ignored_with_the_reason(client, connection, secret, worker):
    post(client, "erp", secret, event("client.upserted", CLIENT))
    post(client, "erp", secret, event("invoice.created", invoice_data(updated_at="2026-11-02T10:00:00Z")))
    older = _accepted(post(client, "erp", secret, event("invoice.updated", invoice_data(
        updated_at="2026-11-01T09:00:00Z", purchase_order="OLD"))))
    worker.run()
    with staff_scope():
        assert Invoice.objects.get().purchase_order == "PO-77"
    ignored = _job(older)
    assert ignored.state == State.DONE and ignored.result.startswith("ignored (invoice.updated): invoice 2026-0001")
    assert "not newer" in ignored.result
    post(client, "erp", secret, event("invoice.updated", invoice_data(updated_at="2026-11-03T09:00:00Z",
                                                                      purchase_order="NEW")))
    worker.run()
    with staff_scope():
        assert Invoice.objects.get().purchase_order == "NEW"


def test_a_corrected_total_moves_the_open_balance_with_it(client, connection, secret, worker):
    post(client, "erp", secret, event("client.upserted", CLIENT))
    post(client, "erp", secret, event("invoice.created", invoice_data()))
    post(client, "erp", secret, event("payment.recorded", PAYMENT | {"amount": "200.00", "allocations": [
        {"invoice_external_id": "INV-EXT-1", "amount": "200.00"}]}))
    worker.run()
    one_line = {"lines": [{"description": "Consulting", "quantity": "10", "unit": "hour", "unit_price": "95.00",
                           "tax_rate": "21"}],
                "tax_breakdown": [{"rate": "21", "base": "950.00", "tax": "199.50"}],
                "subtotal": "950.00", "tax_total": "199.50", "total": "1149.50"}
    corrected = _accepted(post(client, "erp", secret, event("invoice.updated", invoice_data(
        updated_at="2026-11-02T10:00:00Z", **one_line))))
    worker.run()
    assert _job(corrected).state == State.DONE, _job(corrected).last_error
    with staff_scope():
        invoice = Invoice.objects.get()
        lines = [line.description for line in invoice.lines.all()]
    assert (invoice.total, invoice.amount_paid, invoice.open_balance, invoice.status) == (
        D("1149.50"), D("200.00"), D("949.50"), Invoice.Status.PARTIALLY_PAID)
    assert lines == ["Consulting"]


def test_events_about_one_invoice_apply_in_the_order_sent_even_when_the_first_must_wait(
        client, connection, secret, worker):
    created = _accepted(post(client, "erp", secret, event("invoice.created", invoice_data())))
    updated = _accepted(post(client, "erp", secret, event("invoice.updated", invoice_data(
        updated_at="2026-11-02T10:00:00Z", purchase_order="PO-78"))))
    worker.run()
    assert (_job(created).state, _job(updated).state) == (State.RETRYING, State.PENDING)  # behind the first
    assert "client C-100 is not known yet" in _job(created).last_error
    post(client, "erp", secret, event("client.upserted", CLIENT))  # another subject: not held up
    worker.run()
    assert _job(updated).state == State.PENDING
    worker.make_due(created)
    worker.run()
    assert (_job(created).state, _job(updated).state) == (State.DONE, State.DONE)
    with staff_scope():
        assert Invoice.objects.get().purchase_order == "PO-78"


def test_payment_for_an_invoice_not_yet_known_waits_and_is_applied_when_it_arrives(client, connection, secret,
                                                                                    worker):
    post(client, "erp", secret, event("client.upserted", CLIENT))
    waiting = _accepted(post(client, "erp", secret, event("payment.recorded", PAYMENT)))
    worker.run()
    assert _job(waiting).state == State.RETRYING
    assert "invoice INV-EXT-1 is not known yet" in _job(waiting).last_error
    post(client, "erp", secret, event("invoice.created", invoice_data()))
    worker.run()  # the invoice is applied; the payment waits for its backoff
    with staff_scope():
        assert Invoice.objects.get().status == Invoice.Status.OPEN and not Payment.objects.exists()
    worker.make_due(waiting)
    worker.run()
    assert (_job(waiting).state, _job(waiting).attempts) == (State.DONE, 2)
    with staff_scope():
        invoice = Invoice.objects.get()
        assert (invoice.status, invoice.open_balance) == (Invoice.Status.PAID, D("0.00"))
        assert Payment.objects.get().source == Payment.Source.ACCOUNTING
    # The same payment again under a new event id is recognised and changes nothing.
    again = _accepted(post(client, "erp", secret, event("payment.recorded", PAYMENT)))
    worker.run()
    assert _job(again).result == "ignored (payment.recorded): payment BANK-9 is already recorded"
    with staff_scope():
        assert Payment.objects.count() == 1


def test_a_failing_event_is_retried_with_backoff_then_dead_then_replayed_by_staff(
        client, connection, secret, worker, staff):
    post(client, "erp", secret, event("client.upserted", CLIENT))
    failing = _accepted(post(client, "erp", secret, event("credit_note.created", {
        "external_id": "CN-1", "number": "CN-2026-1", "invoice_external_id": "INV-EXT-1", "issue_date": "2026-11-05",
        "lines": [{"description": "Goodwill", "quantity": "1", "unit_price": "100.00", "tax_rate": "21"}],
        "tax_breakdown": [{"rate": "21", "base": "100.00", "tax": "21.00"}],
        "subtotal": "100.00", "tax_total": "21.00", "total": "121.00"})))
    waits = []
    for _ in range(jobs.handler_for("accounting.event").max_attempts):
        worker.make_due(failing)
        worker.run()
        job = _job(failing)
        if job.state == State.RETRYING:
            waits.append((job.run_after - timezone.now()).total_seconds())
    dead = _job(failing)
    assert (dead.state, dead.attempts) == (State.DEAD, 6)
    assert dead.last_error == "invoice INV-EXT-1 is not known yet"
    assert waits == sorted(waits) and len(waits) == 5  # the waits grow

    post(client, "erp", secret, event("invoice.created", invoice_data()))
    worker.run()
    client.force_login(staff)
    page = client.post("/admin/portal/job/", {"action": "replay_dead_jobs", "_selected_action": [failing.pk]},
                       follow=True)
    assert b"1 replayed; 0 skipped" in page.content
    worker.run()
    assert _job(failing).state == State.DONE
    with staff_scope():
        assert Invoice.objects.get().amount_credited == D("121.00")
        assert AuditEvent.objects.filter(action=AuditEvent.Action.JOB_REPLAYED, actor=staff).count() == 1


def test_a_failure_half_way_leaves_nothing_applied(client, connection, secret, worker):
    other = CLIENT | {"external_id": "C-200", "name": "Other B.V."}
    for payload in (event("client.upserted", CLIENT), event("client.upserted", other),
                    event("invoice.created", invoice_data())):
        post(client, "erp", secret, payload)
    # A payment by the other client that points at Northwind's invoice: refused after the
    # payment row was already written, so everything must roll back.
    refused = _accepted(post(client, "erp", secret, event("payment.recorded", {
        "external_id": "BANK-X", "client_external_id": "C-200", "amount": "10.00", "currency": "EUR",
        "received_at": "2026-11-20T09:30:00Z",
        "allocations": [{"invoice_external_id": "INV-EXT-1", "amount": "10.00"}]})))
    worker.run()
    assert _job(refused).state == State.RETRYING and "belongs to another client" in _job(refused).last_error
    with staff_scope():
        assert not Payment.objects.exists()
        assert Invoice.objects.get().amount_paid == D("0.00")


def test_a_redelivery_after_redis_was_down_is_processed_once_when_the_sweep_rings(
        client, connection, secret, worker, monkeypatch):
    def redis_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(jobs.current_app, "send_task", redis_down)
    job = _accepted(post(client, "erp", secret, event("client.upserted", CLIENT), msg_id="msg_lost_bell"))
    # The sender did not trust the first answer and sends again: a duplicate, no second job.
    again = post(client, "erp", secret, event("client.upserted", CLIENT), msg_id="msg_lost_bell")
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert _job(job).state == State.PENDING

    monkeypatch.setattr(jobs.current_app, "send_task", worker.send_task)  # Redis is back
    assert jobs.jobs_sweep() == 1
    assert worker.bells == [("portal.tasks.run_job", [job.pk], None)]
    assert worker.run() == 1
    assert jobs.jobs_sweep() == 0 and worker.run() == 0
    assert (_job(job).state, _job(job).attempts) == (State.DONE, 1)
    with staff_scope():
        assert Client.objects.filter(name="Northwind Traders B.V.").count() == 1
