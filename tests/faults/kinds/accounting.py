"""The integrations' kinds: `accounting.event` (a signed webhook from an accounting system, applied
to the ledger in the transaction that records the job done) and `outbox.deliver` (a message
posted back to the accounting system, which books each webhook-id once; and, as
"outbox.deliver:erp_rest", told to a custom ERP by its REST call, which records each
Idempotency-Key once)."""
from __future__ import annotations

import threading
import uuid

from django.db import connection as db, transaction
from django.db.models import Count
from django.test import Client as Browser
from django.utils import timezone

from integrations.erp.models import ErpPull
from integrations.models import ClientLink, Connection
from integrations.outbox import JOB_KIND as OUTBOX_KIND, outbox_write
from integrations.services import JOB_KIND as EVENT_KIND
from integrations.signing import generate_secret
from invoices.models import Invoice
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.accounting import FakeAccounting
from tests.fakes.erp import FakeErp
from tests.faults.drills import KindScenario
from tests.faults.harness import check, wait_until
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, job_ids, worker_env
from tests.integrations.helpers import CLIENT, event, invoice_data, post
from tests.portal.factories import BrandFactory

INVOICE_LINES = len(invoice_data()["lines"])


def _connection(**fields) -> Connection:
    slug = f"faults-{uuid.uuid4().hex[:10]}"
    with staff_scope(), transaction.atomic():
        return Connection.objects.create(name=f"Fault drill ERP {slug}", slug=slug, brand=BrandFactory(),
                                         **fields)


class Ledger:
    """The stand-in remote end of a database-only kind: the ledger the events are applied to, with
    the drills' two faults in the ledger's terms.

    - `fail_next(n)`: the next n invoice events name a client that has not arrived yet: applying
      one raises UnknownReference, and the job retries (the status is ignored). The clients are
      held back until `heal()` delivers them.
    - `delay_next(1, seconds)`: the test inserts, in a transaction of its own that it keeps open,
      an invoice with the number each coming event's invoice will have (numbers are unique per
      brand), so an event being applied waits inside its job's transaction at its invoice's
      insert, mid-job, until the test rolls back after `seconds` or at `heal()`. (Holding a row
      the invoice refers to would not do: foreign keys are checked at commit, and a worker killed
      while its COMMIT waits has asked for it already.)"""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures: list[int] = []
        self.delays: list[float] = []  # the drills' interface; a hold starts at once instead
        self.held_back: list[dict] = []  # client.upserted data, delivered by heal()
        self.connection: Connection | None = None
        self.known_client = ""
        self.upcoming = Prepared()  # (external id, number) of the invoices of the events to come
        self._hold: threading.Thread | None = None
        self._holder_pid: int | None = None
        self._release = threading.Event()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        with self.lock:
            self.failures.extend([status] * n)

    def client_for_next_event(self) -> str:
        """The client the next invoice event names: the known one, or (a failure armed) one held back."""
        with self.lock:
            if not self.failures:
                return self.known_client
            self.failures.pop(0)
            external_id = f"C-late-{uuid.uuid4().hex[:10]}"
            self.held_back.append({**CLIENT, "external_id": external_id, "name": f"Late {external_id} B.V."})
            return external_id

    def delay_next(self, n: int = 1, seconds: float = 1.0) -> None:
        held = threading.Event()
        self._release.clear()
        self._hold = threading.Thread(target=self._hold_numbers, args=(seconds, held), daemon=True)
        self._hold.start()
        check(held.wait(10), "the test holds the coming invoices' numbers")

    def _hold_numbers(self, seconds: float, held: threading.Event) -> None:
        from django.db import connections

        class RolledBack(Exception):
            pass

        today = timezone.localdate()
        try:
            with staff_scope(), transaction.atomic():
                client = ClientLink.objects.get(connection=self.connection, external_id=self.known_client).client
                for _, number in self.upcoming.peek():
                    Invoice.objects.create(client=client, brand=self.connection.brand, number=number,
                                           issue_date=today, due_date=today, currency="EUR", subtotal=0,
                                           tax_total=0, total=0, open_balance=0)
                with db.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self._holder_pid = cursor.fetchone()[0]
                held.set()
                self._release.wait(seconds)
                raise RolledBack  # nothing of the hold stays
        except RolledBack:
            pass
        finally:
            self._holder_pid = None
            connections.close_all()

    def release(self) -> None:
        self._release.set()
        if self._hold is not None:
            self._hold.join(timeout=10)
            self._hold = None

    def waiting(self) -> int:
        """Transactions waiting behind the hold: jobs stopped mid-way."""
        pid = self._holder_pid
        if pid is None:
            return 0
        with db.cursor() as cursor:
            # pg_locks, not pg_stat_activity: the application role may not read the latter.
            cursor.execute("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted "
                           "AND %s = ANY(pg_blocking_pids(pid))", [pid])
            return cursor.fetchone()[0]


class AccountingEventScenario(KindScenario):
    """Invoice events posted, signed, to /webhooks/accounting/<slug>/ through the Django test client
    (the one intake: stored, answered, its job written; with Redis down the bell fails quietly and
    the sweep rings later). Database-only, so there is no remote to fail: the third fault is the
    handler failing instead, an invoice arriving before its client, until the client arrives and
    staff replay it. Done once: the invoice exists once, with its lines once."""

    kind = EVENT_KIND
    client_timeout = 0.5  # how long the kill drill holds the row beyond the kill: not long
    fault_labels = {"remote 500 / timeout": "handler fails (invoice before its client)"}
    dead_reason = "is not known yet"

    def __init__(self, remote=None):
        super().__init__(remote)
        self.secret = generate_secret()
        self.external_of: dict[int, str] = {}  # job id -> the invoice's external id

    def start_remote(self):
        return Ledger()

    def worker_env(self, remote) -> dict:
        return worker_env()

    def prepare(self, remote: Ledger, count: int) -> None:
        """Once: a connection, and a client that has arrived (through the intake, applied by a
        worker). Each time: the external ids and numbers of the coming invoices."""
        if remote.connection is None:
            remote.connection = _connection(signing_secrets=self.secret)
            remote.known_client = CLIENT["external_id"]
            self._deliver([CLIENT], remote, what="the known client")
        remote.upcoming.put([(f"F-{uuid.uuid4().hex[:12]}",) * 2 for _ in range(count)])

    def _deliver(self, clients: list[dict], remote: Ledger, *, what: str) -> None:
        browser = Browser()
        ids = []
        for data in clients:
            answer = post(browser, remote.connection.slug, self.secret, event("client.upserted", data),
                          msg_id=f"msg_{uuid.uuid4().hex}")
            check(answer.status_code == 200, f"a client event is accepted: {answer.status_code} {answer.content[:200]}")
            ids.append(answer.json()["webhook"])
        jobs = job_ids(kind=self.kind, keys=[f"webhook:{pk}" for pk in ids])
        wait_until(lambda: _all_done(jobs), timeout=60, what=what, ids=jobs)

    def write(self, remote: Ledger, count: int, *, tag: str) -> list[int]:
        browser = Browser()
        ids = []
        for external_id, number in remote.upcoming.take(count):
            data = invoice_data(external_id=external_id, number=number,
                                client_external_id=remote.client_for_next_event(),
                                updated_at=timezone.now().isoformat())
            answer = post(browser, remote.connection.slug, self.secret, event("invoice.created", data),
                          msg_id=f"msg_{uuid.uuid4().hex}")
            check(answer.status_code == 200 and answer.json()["status"] == "accepted",
                  f"the webhook is accepted: {answer.status_code} {answer.content[:200]}")
            [job_id] = job_ids(kind=self.kind, keys=[f"webhook:{answer.json()['webhook']}"])
            self.external_of[job_id] = external_id
            ids.append(job_id)
        return ids

    def effects(self, remote: Ledger, job) -> int:
        """1: the invoice once with its lines once; 0: no invoice, or only part of it; more: twice."""
        with staff_scope():
            invoices = list(Invoice.objects.filter(connection=remote.connection, external_id=self.external_of[job.pk])
                            .annotate(lines_written=Count("lines")))
        if len(invoices) != 1:
            return len(invoices)
        lines = invoices[0].lines_written
        return 1 if lines == INVOICE_LINES else (2 if lines > INVOICE_LINES else 0)

    def requests(self, remote: Ledger, job) -> int:
        return job.attempts  # each attempt is the event read and applied (or begun)

    def requests_total(self, remote: Ledger) -> int:
        with staff_scope():
            applied = Invoice.objects.filter(connection=remote.connection).count()
        return applied + remote.waiting()

    def fail_again(self, remote: Ledger, calls: int, *, attempt: int, last: bool) -> str:
        return "the handler fails again (the invoice's client has still not arrived)"

    def heal(self, remote: Ledger) -> None:
        """The hold ends; the clients held back arrive (applied before anything is replayed)."""
        remote.release()
        with remote.lock:
            remote.failures.clear()
            clients, remote.held_back = remote.held_back, []
        if clients:
            self._deliver(clients, remote, what="the clients held back, applied")


def _all_done(ids: list[int]) -> bool:
    with staff_scope():
        return Job.objects.filter(pk__in=ids, state=Job.State.DONE).count() == len(ids)


class Receiver(FakeAccounting):
    """The accounting system's endpoint (tests/fakes/accounting.py) with a secret of its own."""

    def __init__(self):
        super().__init__(generate_secret())


class OutboxDeliverScenario(KindScenario):
    """Messages written by `outbox_write` (what the ledger's receivers call in the payment's own
    transaction) and posted, signed, to the accounting system's endpoint (FakeAccounting).

    Done once: the accounting system booked the message once. The outbox delivers at least once,
    under a webhook-id that stays the same, and docs/webhooks.md asks the receiver to book a
    message id once and answer 2xx for one it booked before; the fake books every delivery it
    verifies, so a message heard again after an answer that never arrived (a timeout, a kill) is
    counted here as one booking, and the repeat deliveries are named in the bench's remark."""

    kind = OUTBOX_KIND
    client_timeout = CLIENT_TIMEOUT

    def __init__(self, remote=None):
        super().__init__(remote)
        self.connection: Connection | None = None
        self.event_of: dict[int, tuple[str, str]] = {}  # job id -> (message id, the payment's external id)

    def start_remote(self):
        return Receiver()

    def worker_env(self, remote) -> dict:
        return worker_env()

    def prepare(self, remote: Receiver, count: int) -> None:
        if self.connection is None:
            self.connection = _connection(signing_secrets=remote.secret, outbound_url=remote.url)

    def write(self, remote: Receiver, count: int, *, tag: str) -> list[int]:
        ids = []
        for number in range(count):
            external_id = f"portal-payment-faults-{tag}-{number}"
            data = {"external_id": external_id, "client_external_id": CLIENT["external_id"], "amount": "121.00",
                    "currency": "EUR", "received_at": timezone.now().isoformat(), "method": "bank_transfer",
                    "reference": "", "gateway_payment_id": "",
                    "allocations": [{"invoice_external_id": "INV-EXT-1", "invoice_number": "2026-0001",
                                     "amount": "121.00"}]}
            with staff_scope(), transaction.atomic():
                message = outbox_write(connection=self.connection, event_type="payment.recorded", data=data,
                                       subject=f"outbox:payment:faults-{tag}-{number}")
            [job_id] = job_ids(kind=self.kind, keys=[message.job_key])
            self.event_of[job_id] = (message.message_id, external_id)
            ids.append(job_id)
        return ids

    def _bookings(self, remote: Receiver, job) -> tuple[int, int]:
        """(message ids booked for the job's payment, deliveries booked in all for it)."""
        _, external_id = self.event_of[job.pk]
        with remote.lock:
            booked = [r["id"] for r in remote.received if r.get("data", {}).get("external_id") == external_id]
        return len(set(booked)), len(booked)

    def effects(self, remote: Receiver, job) -> int:
        return self._bookings(remote, job)[0]

    def requests(self, remote: Receiver, job) -> int:
        return len(remote.attempts(self.event_of[job.pk][0]))

    def requests_total(self, remote: Receiver) -> int:
        with remote.lock:
            return len(remote.deliveries)

    def remark(self, remote: Receiver, outcome, rows: list) -> str:
        again = sum(max(0, self._bookings(remote, job)[1] - 1) for job in rows)
        if not again:
            return ""
        return (f"{again} delivery(ies) of a message already booked, under the same webhook-id (a retry after "
                f"an answer that never arrived); a receiver books a message id once (docs/webhooks.md)")



class LocalErp(FakeErp):
    """The local custom ERP (tests/fakes/erp.py) of the bench's own, counting every call to its API
    by Idempotency-Key, also the ones a fault answered before the ERP looked at them."""

    def __init__(self):
        self.keys: list[str | None] = []
        super().__init__()

    def _handler(self):
        fake = self

        class Handler(super()._handler()):
            def _api(self, method, url, body):
                with fake.lock:
                    fake.keys.append(self.headers.get("Idempotency-Key"))
                return super()._api(method, url, body)

        return Handler


class OutboxDeliverErpRestScenario(OutboxDeliverScenario):
    """`outbox.deliver` for a custom ERP the portal pulls from and tells of payments by a REST call
    (integrations/erp/push.py): the message mapped by JMESPath and posted to POST /rest/portal-payments
    of the local ERP with the message id as Idempotency-Key. Done once: the ERP recorded the key once
    (it answers a key it knows with its first answer and records nothing)."""

    PUSH_REQUEST = {"method": "POST", "path": "portal-payments", "body": {
        "message": "id", "kind": "kind", "customer": "data.client_external_id", "amount": "data.amount",
        "currency": "data.currency", "invoices": "data.allocations[].invoice_number"}}

    def start_remote(self):
        return LocalErp()

    def prepare(self, remote: LocalErp, count: int) -> None:
        if self.connection is None:
            self.connection = _connection(signing_secrets=generate_secret(), kind=Connection.Kind.ERP_PULL)
            with staff_scope(), transaction.atomic():
                ErpPull.objects.create(connection=self.connection, base_url=remote.rest_url,
                                       auth=ErpPull.Auth.BEARER, credentials={"token": remote.rest_token},
                                       push=ErpPull.Push.REST, push_request=self.PUSH_REQUEST)

    def effects(self, remote: LocalErp, job) -> int:
        return remote.booked(self.event_of[job.pk][0])

    def requests(self, remote: LocalErp, job) -> int:
        message_id = self.event_of[job.pk][0]
        with remote.lock:
            return sum(1 for key in remote.keys if key == message_id)

    def requests_total(self, remote: LocalErp) -> int:
        with remote.lock:
            return len(remote.keys)

    def remark(self, remote: LocalErp, outcome, rows: list) -> str:
        with remote.lock:
            again = sum(1 for d in remote.deliveries if d["replayed"])
        if not again:
            return ""
        return (f"{again} call(s) under an Idempotency-Key the ERP had recorded (a retry after an answer that "
                f"never arrived), answered with the first answer and recorded once")
