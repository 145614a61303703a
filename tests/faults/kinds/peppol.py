"""Peppol's kinds against a local access point (tests/fakes/peppol_ap.py, e-invoice.be's shape):
`peppol.deliver` (an issued invoice checked against the rules, uploaded, then sent),
`peppol.status` (a signed status webhook taken in by the one intake; a failure's reason is asked
of the access point) and `peppol.poll` (the hourly GET behind a webhook that never came). A connection's address is on its row, so the workers need no setting.

Done once: for a delivery, exactly one document with the job's key as its file name sent over
the network (a draft uploaded by an attempt whose answer was lost is never sent: e-invoice.be has
no idempotency key, so the upload's id is recorded before the send, and a retry asks about it);
for a status, the delivery moved to failed once, with the provider's reason."""
from __future__ import annotations

import uuid

from django.db import transaction
from django.test import Client as Browser
from django.utils import timezone

from integrations.peppol.models import PeppolConnection, PeppolDelivery, PeppolReceiver
from integrations.peppol.services import JOB_KIND, POLL_JOB, STATUS_JOB, delivery_plan, poll_enqueue
from portal.models import AuditEvent, Job
from portal.rls import staff_scope
from tests.fakes.peppol_ap import FakePeppolAccessPoint
from tests.faults.drills import KindScenario
from tests.faults.harness import check
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, job_ids, worker_env
from tests.invoices.factories import make_invoice
from tests.portal.factories import BrandFactory, ClientFactory

API_KEY = "einv_faults_0123456789"
WEBHOOK_SECRET = "whsec_peppol_faults_0123456789"
# Belgian enterprise numbers (eight digits and their mod-97 check), one per drill client.
BUYERS = [f"{base:08d}{97 - base % 97:02d}" for base in range(4170000, 4172000)]


class CountingAccessPoint(FakePeppolAccessPoint):
    """The fake, counting each request as it arrives (it logs requests when it answers, and a
    held request answers only after the drill has killed its worker)."""

    def __init__(self, *args, **kwargs):
        self.arrived = 0
        super().__init__(*args, **kwargs)

    def pop_fault(self):
        self.arrived += 1  # called with the fake's lock held, for every request
        return super().pop_fault()


def _peppol_brand() -> tuple:
    slug = f"faults-ap-{uuid.uuid4().hex[:10]}"
    brand = BrandFactory(peppol_scheme="0208", peppol_id="0403170701", vat_number="BE0403170701", country="BE",
                         address_line="Rue Royale 1", postal_code="1000", city="Brussel", iban="BE68539007547034",
                         bank_account_name="Seller NV")
    return brand, slug


def _peppol_client(brand, number: str):
    return ClientFactory(brand=brand, peppol_scheme="0208", peppol_id=number, vat_number=f"BE{number}",
                         country="BE", address_line="Meir 2", postal_code="2000", city="Antwerpen",
                         buyer_reference="PO-FAULTS")


def _connect(brand, slug: str, remote) -> None:
    with staff_scope(), transaction.atomic():
        PeppolConnection.objects.create(brand=brand, slug=slug, base_url=remote.base_url, api_key=API_KEY,
                                        webhook_secret=WEBHOOK_SECRET)


class PeppolScenario(KindScenario):
    """What every Peppol kind's drill shares: the counting access point, clients on Peppol of
    their own (one Belgian enterprise number each), and the requests it counts."""

    client_timeout = CLIENT_TIMEOUT
    dead_reason = "no answer from the access point"

    def __init__(self, remote=None):
        super().__init__(remote)
        self.coming = Prepared()
        self.buyers = iter(BUYERS)

    def start_remote(self):
        return CountingAccessPoint(API_KEY, WEBHOOK_SECRET)

    def worker_env(self, remote) -> dict:
        return worker_env()

    def requests_total(self, remote) -> int:
        with remote.lock:
            return remote.arrived


class PeppolDeliverScenario(PeppolScenario):
    """Invoices issued to clients on Peppol, whose discovery answer is known already (so an attempt
    is the upload and the send). Their deliveries are planned as the ledger's announcement plans
    them (delivery_plan, in a transaction of its own), once the invoices exist."""

    kind = JOB_KIND
    calls_per_attempt = 2
    fault_labels = {"remote 500 / timeout": "access point 500 or timing out every attempt"}

    def __init__(self, remote=None):
        super().__init__(remote)
        self.key_of: dict[int, str] = {}

    def prepare(self, remote, count: int) -> None:
        made = []
        with staff_scope(), transaction.atomic():
            brand, slug = _peppol_brand()
        for _ in range(count):
            number = next(self.buyers)
            remote.register(f"0208:{number}")
            with staff_scope(), transaction.atomic():
                client = _peppol_client(brand, number)
                PeppolReceiver.objects.create(client=client, document="invoice", participant=f"0208:{number}",
                                              can_receive=True, checked_at=timezone.now())
            made.append(make_invoice(client))  # the brand sends nothing over Peppol yet: no delivery
        _connect(brand, slug, remote)
        self.coming.put(made)

    def write(self, remote, count: int, *, tag: str) -> list[int]:
        ids = []
        for invoice in self.coming.take(count):
            with staff_scope(), transaction.atomic():
                delivery = delivery_plan(document=invoice)
            check(delivery is not None, f"a delivery of {invoice.number} is planned")
            [job_id] = job_ids(kind=self.kind, keys=[delivery.job_key])
            check(job_id is not None, f"the delivery of {invoice.number} has its job")
            self.key_of[job_id] = delivery.job_key
            ids.append(job_id)
        return ids

    def _documents(self, remote, job) -> list[dict]:
        name = f"{self.key_of[job.pk]}.xml"
        with remote.lock:
            return [d for d in remote.documents.values() if d["file_name"] == name]

    def effects(self, remote, job) -> int:
        return sum(1 for d in self._documents(remote, job) if d["state"] in ("TRANSIT", "SENT", "FAILED"))

    def acted_on_some(self, remote, job) -> bool:
        return bool(self._documents(remote, job))

    def requests(self, remote, job) -> int:
        documents = self._documents(remote, job)
        ids = {d["id"] for d in documents}
        with remote.lock:
            others = sum(1 for _, path, _ in remote.requests if path.strip("/").split("/")[-1] in ids
                         or path.rstrip("/").endswith("/send") and path.split("/")[-2] in ids)
        return len(documents) + others


class PeppolStatusScenario(PeppolScenario):
    """Documents sent and failed on the network (their receiver's access point rejects them):
    each status webhook is posted to the intake, whose job asks the access point for the reason
    (e-invoice.be's event has none) and moves the delivery to failed."""

    kind = STATUS_JOB
    fault_labels = {"remote 500 / timeout": "access point 500 or timing out on the reason every attempt"}
    reason = "Receiver's access point: unknown buyer reference"

    def __init__(self, remote=None):
        super().__init__(remote)
        self.of_job: dict[int, tuple[int, str]] = {}  # job -> (delivery, submission id)

    def prepare(self, remote, count: int) -> None:
        made = []
        with staff_scope(), transaction.atomic():
            brand, slug = _peppol_brand()
        for _ in range(count):
            number = next(self.buyers)
            receiver = f"0208:{number}"
            remote.register(receiver)
            remote.reject(receiver, self.reason)
            with staff_scope(), transaction.atomic():
                client = _peppol_client(brand, number)
            invoice = make_invoice(client)
            document_id = "doc_" + uuid.uuid4().hex[:16]
            with remote.lock:  # sent over the network before the drill: a document in transit
                remote.documents[document_id] = {
                    "id": document_id, "state": "TRANSIT", "document_type": "INVOICE", "invoice_id": invoice.number,
                    "currency": "EUR", "file_name": f"{document_id}.xml", "ubl": b"<Invoice/>",
                    "ubl_sender": ("0208", "0403170701"), "ubl_receiver": ("0208", number),
                    "sender": "0208:0403170701", "receiver": receiver, "created_at": "2026-11-28T12:00:00+00:00",
                    "error": None}
            with staff_scope(), transaction.atomic():
                delivery = PeppolDelivery.objects.create(
                    client=client, brand=brand, document="invoice", invoice=invoice, receiver=receiver,
                    state=PeppolDelivery.State.SUBMITTED, submission_id=document_id, submitted_at=timezone.now())
            event = remote.deliver(document_id, post=False)
            made.append((delivery.pk, document_id, event["id"]))
        _connect(brand, slug, remote)  # after the invoices: their deliveries are the ones made above
        self.connection_slug = slug
        self.coming.put(made)

    def write(self, remote, count: int, *, tag: str) -> list[int]:
        ids = []
        browser = Browser()
        for delivery_pk, document_id, event_id in self.coming.take(count):
            headers, body = remote.webhook_request(event_id)
            answer = browser.post(f"/webhooks/peppol/{self.connection_slug}/", data=body,
                                  content_type=headers["Content-Type"], HTTP_X_SIGNATURE=headers["X-Signature"])
            check(answer.status_code == 200 and answer.json()["status"] == "accepted",
                  f"the status webhook of {document_id} is accepted: {answer.content[:200]!r}")
            [job_id] = job_ids(kind=self.kind, keys=[f"webhook:{answer.json()['webhook']}"])
            self.of_job[job_id] = (delivery_pk, document_id)
            ids.append(job_id)
        return ids

    def effects(self, remote, job) -> int:
        delivery_pk, _ = self.of_job[job.pk]
        with staff_scope():
            moved = [e.details for e in AuditEvent.objects.filter(
                action=AuditEvent.Action.PEPPOL_DELIVERY, object_type="integrations.peppoldelivery",
                object_id=str(delivery_pk))]
            reason = PeppolDelivery.objects.filter(pk=delivery_pk).values_list("reason", flat=True).first() or ""
        failed = sum(1 for details in moved if details.get("to") == PeppolDelivery.State.FAILED)
        return failed if self.reason in reason or failed != 1 else 0

    def requests(self, remote, job) -> int:
        _, document_id = self.of_job[job.pk]
        with remote.lock:
            return sum(1 for method, path, _ in remote.requests if method == "GET" and path.endswith(document_id))


class PeppolPollScenario(PeppolStatusScenario):
    """The same failed documents, whose webhooks never came: the hourly poll asks the access point
    for each (GET, the reason with it) and moves the delivery to failed."""

    kind = POLL_JOB
    fault_labels = {"remote 500 / timeout": "access point 500 or timing out on the status every attempt"}

    def write(self, remote, count: int, *, tag: str) -> list[int]:
        ids = []
        for delivery_pk, document_id, _ in self.coming.take(count):
            with staff_scope(), transaction.atomic():
                job_id = poll_enqueue(delivery=PeppolDelivery.objects.get(pk=delivery_pk))
            check(job_id is not None, f"a poll of {document_id} is written")
            self.of_job[job_id] = (delivery_pk, document_id)
            ids.append(job_id)
        return ids


__all__ = ["CountingAccessPoint", "Job", "PeppolDeliverScenario", "PeppolPollScenario", "PeppolStatusScenario"]
