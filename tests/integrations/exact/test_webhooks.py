"""Exact Online's webhooks through the one intake (source "exact", /webhooks/exact/<connection>/): the
empty validation POST gets a 2xx, a hint whose HashCode matches leaves a sync of its topic's entity
that brings the change in, a forged one is rejected and kept; and subscribing from admin."""
from __future__ import annotations

import json

from integrations.exact.models import ExactCursor
from integrations.exact.webhooks import subscribe_webhooks
from invoices.models import Invoice
from portal.models import Job, WebhookRequest
from portal.rls import staff_scope
from tests.integrations.exact.world import (  # noqa: F401 - fixtures
    DIVISION, exact, fake_exact, invoice, portal_server, run, sync)

E = ExactCursor.Entity
URL = "/webhooks/exact/boekhouding/"


def _hint(fake, topic: str, key: str, *, action: str = "Update", division: int = DIVISION,
          hash_code: str | None = None, lowercase: bool = False) -> bytes:
    """The body Exact posts: Content as sent, HashCode over exactly those bytes."""
    content = json.dumps({"Topic": topic, "ClientId": "5b0f7c2e", "Division": division, "Action": action, "Key": key,
                          "ExactOnlineEndpoint": f"{fake.url}/api/v1/{division}/x(guid'{key}')",
                          "EventCreatedOn": "2026-11-27T10:00:00.123"}, separators=(",", ":"))
    hash_code = hash_code or fake.hash_code(content)
    return f'{{"Content":{content},"HashCode":"{hash_code.lower() if lowercase else hash_code}"}}'.encode()


def _post(client, body: bytes):
    return client.post(URL, data=body, content_type="application/json")


def test_exacts_empty_validation_post_is_answered_2xx(client, exact, worker):
    response = client.post(URL, data=b"", content_type="application/json")
    assert 200 <= response.status_code < 300
    with staff_scope():
        assert not Job.objects.filter(kind__startswith="exact.").exists()


def test_a_hint_for_a_new_invoice_syncs_it_into_the_portal(client, fake_exact, exact, run):
    customer = fake_exact.add_account("Northwind Traders B.V.", email="finance@northwind.test")
    sync(exact, E.ACCOUNTS)
    made = fake_exact.add_invoice(customer, [("Advies", 1, "100.00", "2")])

    response = _post(client, _hint(fake_exact, "SalesInvoices", made["InvoiceID"]))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    run()

    assert invoice(made["InvoiceNumber"]).status == Invoice.Status.OPEN
    with staff_scope():
        [job] = Job.objects.filter(kind="exact.hint")
        assert job.state == Job.State.DONE and job.subject == f"exact:{exact.pk}:sales_invoices"


def test_a_delete_hint_syncs_the_deleted_records_and_voids_the_invoice(client, fake_exact, exact, run):
    made = fake_exact.add_invoice(fake_exact.add_account("Northwind", email="a@northwind.test"),
                                  [("Advies", 1, "100.00", "2")], status=20)
    sync(exact, E.ACCOUNTS, E.SALES_INVOICES)
    run()
    fake_exact.delete_invoice(made)
    assert _post(client, _hint(fake_exact, "SalesInvoices", made["InvoiceID"], action="Delete")).status_code == 200
    run()
    assert invoice(made["InvoiceNumber"]).status == Invoice.Status.VOID


def test_hints_while_a_sync_waits_to_start_are_duplicates_of_it(client, fake_exact, exact, worker):  # bells kept: no real worker starts the sync
    first = _post(client, _hint(fake_exact, "Accounts", "a1"))
    second = _post(client, _hint(fake_exact, "Accounts", "a2"))
    other_topic = _post(client, _hint(fake_exact, "SalesInvoices", "i1"))
    assert first.json()["status"] == "accepted" and second.json() == {"status": "duplicate"}
    assert other_topic.json()["status"] == "accepted"


def test_a_hint_with_a_wrong_hash_code_is_rejected_and_kept(client, fake_exact, exact, worker):
    forged = _hint(fake_exact, "SalesInvoices", "i1", hash_code="0" * 64)
    lowercase = _hint(fake_exact, "SalesInvoices", "i2", lowercase=True)  # Exact's is uppercase hex
    for body in (forged, lowercase, b'{"Content":{"Topic":"Accounts"}}'):
        response = _post(client, body)
        assert response.status_code in (400, 401) and response.json()["status"] == "rejected"
    with staff_scope():
        kept = list(WebhookRequest.objects.filter(source="exact", status=WebhookRequest.Status.REJECTED))
        assert len(kept) == 3 and any("HashCode does not match" in w.error for w in kept)
        assert not Job.objects.filter(kind__startswith="exact.").exists()


def test_a_hint_for_another_division_starts_no_sync(client, fake_exact, exact, worker):
    response = _post(client, _hint(fake_exact, "Accounts", "a1", division=DIVISION + 1))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    with staff_scope():
        assert not Job.objects.filter(kind__startswith="exact.").exists()


def test_subscribing_validates_our_url_with_exacts_empty_post_and_exacts_hints_reach_the_portal(
        fake_exact, exact, portal_server, run):
    callback = f"{portal_server}{URL}"
    results = subscribe_webhooks(exact, callback)
    assert {r["topic"]: r["status"] for r in results} == {
        "Accounts": "subscribed", "SalesInvoices": "subscribed", "FinancialTransactions": "subscribed"}
    assert {s["Topic"] for s in fake_exact.subscriptions.values()} == {"Accounts", "SalesInvoices",
                                                                         "FinancialTransactions"}
    again = subscribe_webhooks(exact, callback)  # pressing the button twice changes nothing
    assert {r["status"] for r in again} == {"already"} and len(fake_exact.subscriptions) == 3

    customer = fake_exact.add_account("Northwind Traders B.V.", email="finance@northwind.test")
    [delivery] = fake_exact.notify("Accounts", DIVISION, customer["ID"])
    assert delivery["status"] == 200
    run()
    with staff_scope():
        assert Job.objects.get(kind="exact.hint").state == Job.State.DONE
