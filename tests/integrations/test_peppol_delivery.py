"""Delivery over Peppol through the local access point (tests/fakes/peppol_ap.py, shaped like
e-invoice.be): discovery yes and no, a delivered invoice and credit note, a rejected one with its
reason, a status webhook replayed ten times, a document that fails a fatal rule never leaving, and
a brand whose Exact Online sends over Peppol not sending twice. Committed for real: a job runs
only with no transaction open."""
import datetime

import pytest
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone

from integrations.models import Connection
from integrations.exact.models import ExactConnection
from integrations.peppol.models import PeppolConnection, PeppolDelivery, PeppolReceiver
from integrations.peppol.client import verify_status_webhook
from integrations.peppol.services import JOB_KIND, POLL_JOB, STATUS_JOB, polls_enqueue, status_receive
from invoices import services
from portal import jobs
from portal.models import AuditEvent, Client, Job
from portal.rls import staff_scope
from tests.conftest import PEPPOL_AP_TEST_KEY, PEPPOL_AP_TEST_WEBHOOK_SECRET
from tests.invoices.factories import TODAY, line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory

State = PeppolDelivery.State
SELLER = "0208:0403170701"
BUYER = "0208:0417497106"


@pytest.fixture
def ap(peppol_ap_server):
    peppol_ap_server.reset()
    return peppol_ap_server


@pytest.fixture
def world(committed, ap, worker):
    def build():
        brand = BrandFactory(peppol_scheme="0208", peppol_id="0403170701", vat_number="BE0403170701", country="BE",
                             address_line="Rue Royale 1", postal_code="1000", city="Brussel",
                             iban="BE68539007547034", bank_account_name="Seller NV")
        PeppolConnection.objects.create(brand=brand, slug="ap", base_url=ap.base_url, api_key=PEPPOL_AP_TEST_KEY,
                                        webhook_secret=PEPPOL_AP_TEST_WEBHOOK_SECRET)
        client = ClientFactory(brand=brand, name="Buyer BV", peppol_scheme="0208", peppol_id="0417497106",
                               vat_number="BE0417497106", country="BE", address_line="Meir 2", postal_code="2000",
                               city="Antwerpen", buyer_reference="PO-4711")
        owner = MembershipFactory(client=client).user
        return {"brand": brand, "client": client, "owner": owner}
    return committed.create(build)


def run_peppol_jobs() -> int:
    return sum(jobs.jobs_drain(kind=kind, seconds=30) for kind in (JOB_KIND, STATUS_JOB, POLL_JOB))


def delivery_of(**document) -> PeppolDelivery:
    with staff_scope():
        return PeppolDelivery.objects.get(**document)


def post_event(client, ap, event_id):
    headers, body = ap.webhook_request(event_id)
    return client.post("/webhooks/peppol/ap/", data=body, content_type=headers["Content-Type"],
                       HTTP_X_SIGNATURE=headers["X-Signature"])


def test_a_client_on_peppol_gets_its_invoice_delivered_and_reads_so_on_its_page(world, ap, client):
    ap.register(BUYER)
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.SUBMITTED and delivery.submission_id
    [sent] = ap.submissions()
    assert sent["id"] == delivery.submission_id and sent["receiver"] == BUYER and sent["state"] == "TRANSIT"
    with staff_scope():
        assert PeppolReceiver.objects.get(client=world["client"], document="invoice").can_receive is True
    client.force_login(world["owner"])
    page = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert "On its way to your accounting system over Peppol." in page.text
    event = ap.deliver(delivery.submission_id, post=False)
    assert post_event(client, ap, event["id"]).json()["status"] == "accepted"
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.DELIVERED and delivery.delivered_at
    page = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert "Delivered to your accounting system over Peppol on" in page.text
    with staff_scope():
        moves = [(e.details["from"], e.details["to"]) for e in AuditEvent.objects.filter(
            action=AuditEvent.Action.PEPPOL_DELIVERY, object_id=str(delivery.pk)).order_by("id")]
    assert moves == [("", "pending"), ("pending", "submitted"), ("submitted", "delivered")]


def test_a_client_not_on_peppol_is_skipped_and_staff_see_why(world, ap, client, committed):
    invoice = make_invoice(world["client"])  # BUYER not registered: discovery says no
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.SKIPPED and delivery.skip == PeppolDelivery.Skip.NOT_REACHABLE
    assert ap.submissions() == []
    with staff_scope():
        assert PeppolReceiver.objects.get(client=world["client"], document="invoice").can_receive is False
    staff = committed.create(lambda: UserFactory(is_staff=True, is_superuser=True))
    client.force_login(staff)
    page = client.get(reverse("admin:integrations_peppoldelivery_changelist") + "?state=skipped")
    assert invoice.number in page.text and "cannot receive" in page.text
    client.force_login(world["owner"])
    assert "Peppol" not in client.get(reverse("invoices:detail", args=[invoice.pk])).text


def test_a_rejected_delivery_fails_with_the_receivers_reason_for_staff_and_says_nothing_to_the_client(
        world, ap, client):
    ap.register(BUYER)
    ap.reject(BUYER, "Receiver's access point: unknown buyer reference")
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    ap.deliver_all(post=False)
    event = ap.events[-1]
    assert post_event(Browser(), ap, event["id"]).json()["status"] == "accepted"
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.FAILED
    assert "unknown buyer reference" in delivery.reason
    client.force_login(world["owner"])
    assert "Peppol" not in client.get(reverse("invoices:detail", args=[invoice.pk])).text


def test_a_status_webhook_replayed_ten_times_changes_nothing(world, ap, client):
    ap.register(BUYER)
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    event = ap.deliver_all(post=False)[0]
    answers = [post_event(client, ap, event["id"]).json()["status"] for _ in range(11)]
    assert answers == ["accepted"] + ["duplicate"] * 10
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    with staff_scope():
        assert Job.objects.filter(kind=STATUS_JOB).count() == 1
        audited = AuditEvent.objects.filter(action=AuditEvent.Action.PEPPOL_DELIVERY,
                                            object_id=str(delivery.pk)).count()
    assert delivery.state == State.DELIVERED and audited == 3
    # Even a replay the intake took anew (a job run twice) moves nothing.
    headers, body = ap.webhook_request(event["id"])
    again = verify_status_webhook(secret=PEPPOL_AP_TEST_WEBHOOK_SECRET, headers=headers, body=body)
    with staff_scope():
        connection = PeppolConnection.objects.get(slug="ap")
        assert status_receive(connection=connection, event=again).startswith("nothing changes")
        assert AuditEvent.objects.filter(action=AuditEvent.Action.PEPPOL_DELIVERY,
                                         object_id=str(delivery.pk)).count() == 3


def test_a_document_failing_a_fatal_rule_never_leaves_and_staff_see_the_rule(world, ap, committed):
    def wrong_check_digit():
        # An identifier that reached the client row past the form (an accounting sync): mod 97 fails.
        Client.objects.filter(pk=world["client"].pk).update(peppol_id="0417497107")
        return Client.objects.get(pk=world["client"].pk)
    buyer = committed.create(wrong_check_digit)
    ap.register("0208:0417497107")
    invoice = make_invoice(buyer)
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.REFUSED_BY_RULES
    assert ap.submissions() == []
    rules = {failure["rule"] for failure in delivery.rule_failures}
    assert "PEPPOL-COMMON-R043" in rules and all(f["text"] for f in delivery.rule_failures)
    assert "PEPPOL-COMMON-R043" in delivery.reason


def test_a_credit_note_is_delivered_too(world, ap, client):
    ap.register(BUYER)
    invoice = make_invoice(world["client"], lines=[line(unit_price="200.00")])
    with staff_scope():
        note = services.credit_note_create(invoice=invoice, number="CN-PEP-1", issue_date=TODAY,
                                           lines=[line(unit_price="50.00")])
    run_peppol_jobs()
    delivery = delivery_of(credit_note=note)
    assert delivery.state == State.SUBMITTED
    kinds = sorted(d["document_type"].lower() for d in ap.submissions())
    assert kinds == ["credit_note", "invoice"]
    event = ap.deliver(delivery.submission_id, post=False)
    post_event(client, ap, event["id"])
    run_peppol_jobs()
    assert delivery_of(credit_note=note).state == State.DELIVERED
    client.force_login(world["owner"])
    page = client.get(reverse("invoices:credit_note_detail", args=[note.pk]))
    assert "Delivered to your accounting system over Peppol on" in page.text


def test_a_brand_whose_exact_online_sends_over_peppol_does_not_send_twice(world, ap, committed, client):
    ap.register(BUYER)

    def exact_sends():
        link = Connection.objects.create(name="Exact", slug="exact-pep", kind=Connection.Kind.EXACT_ONLINE,
                                         brand=world["brand"], signing_secrets="")
        return ExactConnection.objects.create(connection=link, client_id="app", client_secret="s", sends_peppol=True)
    committed.create(exact_sends)
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.SKIPPED and delivery.skip == PeppolDelivery.Skip.SENT_BY_EXACT
    assert ap.submissions() == []
    with staff_scope():
        assert not Job.objects.filter(kind=JOB_KIND).exists()
    client.force_login(world["owner"])
    page = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert "Sent to your accounting system over Peppol by our accounting software." in page.text


def test_staff_retry_a_failed_delivery_as_a_new_round(world, ap, committed, client):
    ap.register(BUYER)
    ap.fail_next(30, 400)
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.FAILED
    with staff_scope():
        first = PeppolDelivery.objects.annotate(key=PeppolDelivery.job_key_expression()).get(pk=delivery.pk).key
    assert first == delivery.job_key == f"peppol:invoice:{invoice.pk}"
    ap.reset()
    ap.register(BUYER)
    staff = committed.create(lambda: UserFactory(is_staff=True, is_superuser=True))
    client.force_login(staff)
    client.post(reverse("admin:integrations_peppoldelivery_changelist"),
                {"action": "retry_deliveries", "_selected_action": [delivery.pk]})
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.SUBMITTED and delivery.attempt == 2 and len(ap.submissions()) == 1
    # Each round's job key, as the delivery names it and as the admin's list finds its job in SQL.
    with staff_scope():
        keyed = PeppolDelivery.objects.annotate(key=PeppolDelivery.job_key_expression()).get(pk=delivery.pk)
        assert Job.objects.filter(key=keyed.key, state=Job.State.DONE).exists()
    assert keyed.key == delivery.job_key == f"peppol:invoice:{invoice.pk}:r2"


def test_a_skipped_client_that_joins_peppol_is_sent_to_when_staff_try_again(world, ap, committed, client):
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    assert delivery_of(invoice=invoice).state == State.SKIPPED
    ap.register(BUYER)  # the client registered with an access point since
    staff = committed.create(lambda: UserFactory(is_staff=True, is_superuser=True))
    client.force_login(staff)
    client.post(reverse("admin:integrations_peppoldelivery_changelist"),
                {"action": "retry_deliveries", "_selected_action": [delivery_of(invoice=invoice).pk]})
    run_peppol_jobs()
    assert delivery_of(invoice=invoice).state == State.SUBMITTED and len(ap.submissions()) == 1


def test_a_delivery_whose_webhook_never_came_is_asked_about_after_an_hour(world, ap):
    ap.register(BUYER)
    invoice = make_invoice(world["client"])
    run_peppol_jobs()
    ap.deliver_all(post=False)  # delivered on the network; the webhook is lost on the way
    with staff_scope():
        assert polls_enqueue() == 0  # not yet: the network may still be at it
        PeppolDelivery.objects.filter(invoice=invoice).update(changed_at=timezone.now() - datetime.timedelta(hours=2))
        assert polls_enqueue() == 1 and polls_enqueue() == 0  # once an hour
    run_peppol_jobs()
    delivery = delivery_of(invoice=invoice)
    assert delivery.state == State.DELIVERED and delivery.delivered_at
