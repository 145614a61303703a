"""The payments' kinds, against the fake Mollie (tests/fakes/mollie.py): `gateway.event` (Mollie's
webhook names a payment; the job asks Mollie and applies what is true), `mandate.sync` (after a
paid first payment, the mandates Mollie holds for the customer are recorded) and
`mandate.collect` (an invoice collected by direct debit on its due date, one Mollie payment per
invoice and due date).

What Mollie holds before a drill (customers, mandates, payments) is put into the fake directly, as
Mollie's side of the world, so that no set-up request meets a fault armed for the workers, and
every request the fake counts is a worker's."""
from __future__ import annotations

import datetime
import re
import secrets
import threading
import uuid
from decimal import Decimal

from django.db import transaction
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone

from invoices.models import Payment, PaymentAllocation
from payments.gateways import GatewayPayment, idempotency_key_for
from payments.mandates import MANDATE_COLLECT, collection_job_key, collection_opt_in, collections_run
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount, Mandate
from payments.services import MANDATE_SYNC, checkout_apply
from payments.webhooks import GATEWAY_EVENT
from portal.rls import staff_scope
from tests.fakes.mollie import FakeMollie
from tests.faults.drills import KindScenario
from tests.faults.harness import check
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, job_ids, last_job_id, settle, worker_env
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory

API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"  # a well-formed test key, as tests/conftest.py uses
AMOUNT = Decimal("60.50")  # one line of 50.00 at 21%


class Mollie(FakeMollie):
    """The fake Mollie, also noting each API request's Idempotency-Key (a create is attributed
    to its job by the key the job derives)."""

    def __init__(self):
        self.calls: list[tuple[str, str, str]] = []  # (method, path, Idempotency-Key)
        super().__init__(API_KEY)

    def _handler(self):
        base, fake = super()._handler(), self

        class Handler(base):
            def _note(self, method: str) -> None:
                with fake.lock:
                    fake.calls.append((method, self.path.split("?", 1)[0], self.headers.get("Idempotency-Key") or ""))

            def do_GET(self):
                self._note("GET")
                super().do_GET()

            def do_POST(self):
                self._note("POST")
                super().do_POST()

        return Handler

    def reset(self) -> None:
        """A Mollie that knows nothing yet: for a test that starts from an empty database, whose
        ids (and the idempotency keys derived from them) start again from 1."""
        with self.lock:
            for held in (self.payments, self.customers, self.mandates, self.idempotency_keys):
                held.clear()
            for seen in (self.in_progress, self.requests, self.calls, self.failures, self.delays):
                seen.clear()

    def counted(self, pattern: str, *, key: str | None = None) -> int:
        """API requests whose "METHOD path" matches `pattern` (and carried `key`, if given)."""
        with self.lock:
            return sum(1 for method, path, sent in self.calls
                       if re.fullmatch(pattern, f"{method} {path}") and (key is None or sent == key))

    def customer(self, client) -> str:
        customer_id = "cst_" + secrets.token_hex(5)
        with self.lock:
            self.customers[customer_id] = {"resource": "customer", "id": customer_id, "mode": "test",
                                           "name": client.name, "email": client.billing_email,
                                           "metadata": {"client": client.pk}, "createdAt": _now(), "_links": {}}
        return customer_id

    def payment(self, body: dict, *, status: str) -> str:
        with self.lock:
            payment = self._payment(body)
            self.payments[payment["id"]] = payment
        self.set_status(payment["id"], status)
        return payment["id"]


def _now() -> str:
    return timezone.now().isoformat(timespec="seconds")


class MollieScenario(KindScenario):
    client_timeout = CLIENT_TIMEOUT

    def __init__(self, remote=None):
        super().__init__(remote)
        self.gateway: GatewayAccount | None = None
        self.prepared = Prepared()
        self.about: dict[int, dict] = {}  # job id -> what the job is about (payment, customer, ...)
        self.guard = threading.Lock()

    def start_remote(self):
        return Mollie()

    def worker_env(self, remote: Mollie) -> dict:
        return worker_env(MOLLIE_API_ENDPOINT=remote.url)

    def _gateway(self) -> GatewayAccount:
        if self.gateway is None:
            with staff_scope(), transaction.atomic():
                self.gateway = GatewayAccount.objects.create(
                    brand=BrandFactory(), provider=GatewayAccount.Provider.MOLLIE, api_key=API_KEY, ideal=True,
                    card=False, sepa_direct_debit=True)
        return self.gateway

    def _remember(self, job_id: int, **about) -> None:
        with self.guard:
            self.about[job_id] = about

    def _attempt(self, remote: Mollie, client, invoice, *, first: bool = False) -> dict:
        """A checkout whose payment Mollie holds, paid (what a client paying through the portal
        leaves): Mollie's payment, and our attempt as `checkout_start` records it."""
        gateway, key = self._gateway(), uuid.uuid4()
        customer = remote.customer(client) if first else ""
        body = {"amount": {"currency": "EUR", "value": f"{AMOUNT:.2f}"}, "description": f"{invoice.number}",
                "method": "ideal", "metadata": {"checkout": str(key), "client": client.pk},
                "redirectUrl": "http://portal.test/pay/", "webhookUrl": "http://portal.test/webhooks/",
                **({"sequenceType": "first", "customerId": customer} if first else {})}
        payment_id = remote.payment(body, status="paid")
        with staff_scope(), transaction.atomic():
            attempt = CheckoutAttempt.objects.create(
                client=client, gateway=gateway, idempotency_key=key, method="ideal", amount=AMOUNT, currency="EUR",
                status=CheckoutAttempt.Status.OPEN, provider_payment_id=payment_id, wants_mandate=first,
                provider_customer_id=customer)
            CheckoutItem.objects.create(client=client, attempt=attempt, invoice=invoice, amount=AMOUNT)
        return {"attempt": attempt, "payment": payment_id, "customer": customer, "invoice": invoice.pk}

    def _clients_with_invoices(self, count: int, **invoice) -> list[tuple]:
        made = []
        for _ in range(count):
            with staff_scope():
                client = ClientFactory(brand=self._gateway().brand, locale="en")
            made.append((client, make_invoice(client, lines=[line(unit_price="50.00")], **invoice)))
        return made


class GatewayEventScenario(MollieScenario):
    """Mollie's webhook (`id=tr_...`) POSTed to the payments webhook URL through the Django test
    client, for a payment Mollie holds as paid. Done once: the payment recorded once, allocated
    to its invoice once."""

    kind = GATEWAY_EVENT

    def prepare(self, remote: Mollie, count: int) -> None:
        since = last_job_id()
        attempts = [self._attempt(remote, client, invoice) for client, invoice in self._clients_with_invoices(count)]
        settle(since, what="the invoices' PDF pre-renders")
        self.prepared.put(attempts)

    def write(self, remote: Mollie, count: int, *, tag: str) -> list[int]:
        browser, ids = Browser(), []
        url = reverse("payments:webhook", args=["mollie", self._gateway().pk])
        for about in self.prepared.take(count):
            answer = browser.post(url, data=f"id={about['payment']}", content_type="application/x-www-form-urlencoded")
            check(answer.status_code == 200 and answer.json()["status"] == "accepted",
                  f"Mollie's webhook is accepted: {answer.status_code} {answer.content[:200]}")
            [job_id] = job_ids(kind=self.kind, keys=[f"webhook:{answer.json()['webhook']}"])
            self._remember(job_id, **about)
            ids.append(job_id)
        return ids

    def effects(self, remote: Mollie, job) -> int:
        about = self.about[job.pk]
        with staff_scope():
            payments = Payment.objects.filter(gateway_payment_id=f"mollie:{self.gateway.pk}:{about['payment']}").count()
            allocated = PaymentAllocation.objects.filter(invoice_id=about["invoice"],
                                                         kind=PaymentAllocation.Kind.ALLOCATION).count()
        return max(payments, allocated)

    def requests(self, remote: Mollie, job) -> int:
        return remote.counted(f"GET /v2/payments/{self.about[job.pk]['payment']}")

    def requests_total(self, remote: Mollie) -> int:
        return remote.counted(r"GET /v2/payments/tr_\w+")


class MandateSyncScenario(MollieScenario):
    """A first payment paid at Mollie (which signs a mandate there), applied by `checkout_apply`
    (what a gateway event does), which writes the job that records the mandate. Done once: one
    mandate recorded for the one Mollie holds."""

    kind = MANDATE_SYNC

    def prepare(self, remote: Mollie, count: int) -> None:
        since = last_job_id()
        attempts = [self._attempt(remote, client, invoice, first=True)
                    for client, invoice in self._clients_with_invoices(count)]
        settle(since, what="the invoices' PDF pre-renders")
        self.prepared.put(attempts)

    def write(self, remote: Mollie, count: int, *, tag: str) -> list[int]:
        ids = []
        for about in self.prepared.take(count):
            with remote.lock:
                [mandate_id] = remote.mandates[about["customer"]]
            reported = GatewayPayment(provider_payment_id=about["payment"], status=CheckoutAttempt.Status.PAID,
                                      amount=AMOUNT, currency="EUR", checkout_key=str(about["attempt"].idempotency_key))
            with staff_scope():
                checkout_apply(gateway=self._gateway(), reported=reported)
            [job_id] = job_ids(kind=self.kind, keys=[f"mandate.sync:{about['attempt'].pk}"])
            self._remember(job_id, mandate=mandate_id, **about)
            ids.append(job_id)
        return ids

    def effects(self, remote: Mollie, job) -> int:
        with staff_scope():
            return Mandate.objects.filter(gateway=self.gateway, provider_mandate_id=self.about[job.pk]["mandate"],
                                          status=Mandate.Status.VALID).count()

    def requests(self, remote: Mollie, job) -> int:
        return remote.counted(f"GET /v2/customers/{self.about[job.pk]['customer']}/mandates")

    def requests_total(self, remote: Mollie) -> int:
        return remote.counted(r"GET /v2/customers/cst_\w+/mandates")


class MandateCollectScenario(MollieScenario):
    """Invoices due today, opted in for collection on a valid mandate (at Mollie and here); the
    daily run writes one collection job per invoice and due date. Done once: one Mollie payment
    per invoice and due date (found by the key in its metadata, FakeMollie.payments_for_metadata).
    A create whose answer was lost is found again among the customer's payments (one request per
    attempt, two when it must create)."""

    kind = MANDATE_COLLECT

    def prepare(self, remote: Mollie, count: int) -> None:
        since = last_job_id()
        today = timezone.localdate()
        made = []
        for client, invoice in self._clients_with_invoices(count, issue_date=today - datetime.timedelta(days=30),
                                                           due_days=30):
            customer, mandate_id = remote.customer(client), "mdt_" + secrets.token_hex(5)
            with remote.lock:
                remote.mandates.setdefault(customer, {})[mandate_id] = {
                    "resource": "mandate", "id": mandate_id, "mode": "test", "status": "valid", "method": "directdebit",
                    "details": {"consumerName": client.name, "consumerAccount": "NL55INGB0000000000",
                                "consumerBic": "INGBNL2A"}, "signatureDate": today.isoformat(), "createdAt": _now()}
            with staff_scope(), transaction.atomic():
                Mandate.objects.create(client=client, gateway=self._gateway(), provider_customer_id=customer,
                                       provider_mandate_id=mandate_id, status=Mandate.Status.VALID,
                                       consumer_name=client.name, consumer_account="NL55INGB0000000000",
                                       signed_on=today)
            with staff_scope():
                collection_opt_in(invoice=invoice, user=None)
            made.append({"invoice": invoice, "customer": customer})
        settle(since, what="the invoices' PDF pre-renders")
        self.prepared.put(made)

    def write(self, remote: Mollie, count: int, *, tag: str) -> list[int]:
        mine = self.prepared.take(count)
        with staff_scope():
            collections_run()  # every invoice prepared is due: some writer's run writes each one's job once
        keys = [collection_job_key(about["invoice"]) for about in mine]
        ids = job_ids(kind=self.kind, keys=keys)
        for job_id, key, about in zip(ids, keys, mine):
            self._remember(job_id, key=str(idempotency_key_for(key)), customer=about["customer"])
        return ids

    def effects(self, remote: Mollie, job) -> int:
        return len(remote.payments_for_metadata("checkout", self.about[job.pk]["key"]))

    def requests(self, remote: Mollie, job) -> int:
        about = self.about[job.pk]
        return (remote.counted(r"POST /v2/payments", key=about["key"])
                + remote.counted(f"GET /v2/customers/{about['customer']}/payments"))

    def requests_total(self, remote: Mollie) -> int:
        return remote.counted(r"POST /v2/payments") + remote.counted(r"GET /v2/customers/cst_\w+/payments")
