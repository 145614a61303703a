"""The pull adapter's kind against the local ERP (tests/fakes/erp.py): `erp.pull`, one pull of one
custom ERP (integrations.erp.pull), written by `pull_enqueue` as the beat task and Pull now write it.

The tests share the session's local ERP (tests/conftest.py `erp_server`); the bench starts one of
its own. A connection's address is stored on its row, so the workers need no setting to reach it."""
from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import Count

from integrations.erp.models import ErpFeed, ErpPull
from integrations.erp.tasks import PULL_JOB, pull_enqueue
from integrations.models import ClientLink, Connection
from invoices.models import Invoice
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.erp import FakeErp
from tests.faults.drills import KindScenario
from tests.faults.harness import check, states, wait_until
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, worker_env
from tests.portal.factories import BrandFactory, ClientFactory

INVOICE_MAPPING = {
    "external_id": "id", "number": "number", "client_external_id": "customer_id", "issue_date": "date",
    "due_date": "due", "currency": "currency", "status": "status", "updated_at": "modified",
    "lines[]": "lines", "lines[].description": "text", "lines[].quantity": "qty", "lines[].unit_price": "price",
    "lines[].tax_rate": "vat", "lines[].discount_percent": "discount", "tax_breakdown[]": "vat_breakdown",
    "tax_breakdown[].rate": "rate", "tax_breakdown[].base": "base", "tax_breakdown[].tax": "amount",
    "subtotal": "totals.net", "tax_total": "totals.vat", "total": "totals.gross"}


class ErpPullScenario(KindScenario):
    """Pulls written by `pull_enqueue`, one connection per job, each reading the ERP's invoices
    (REST, bearer token, one feed; its customer linked beforehand, so an attempt is one call) with
    a request of its own (`invoices?drill=<slug>`, which the ERP ignores and the counting reads).
    Every connection reads the same books and keeps its own customer's invoices (a JMESPath filter
    where its records are); each job's own invoice is the one counted. Done once:
    that invoice in the portal under its connection once, with its lines once."""

    kind = PULL_JOB
    client_timeout = CLIENT_TIMEOUT
    fault_labels = {"remote 500 / timeout": "ERP 500 or timing out every attempt"}
    lines = [("Advies", 2, "100.00", 21), ("Boeken", 3, "19.95", 9)]

    def __init__(self, remote=None):
        super().__init__(remote)
        self.coming = Prepared()
        self.of_job: dict[int, tuple[ErpPull, str]] = {}  # job -> (connection, its invoice's id)
        self.settled: set[int] = set()

    def start_remote(self):
        return FakeErp()

    def worker_env(self, remote) -> dict:
        return worker_env()

    def prepare(self, remote: FakeErp, count: int) -> None:
        made = []
        for _ in range(count):
            customer = remote.add_customer("Fault drill B.V.")
            invoice = remote.add_invoice(customer["id"], self.lines)
            slug = f"faults-erp-{uuid.uuid4().hex[:10]}"
            with staff_scope(), transaction.atomic():
                brand = BrandFactory()
                link = Connection.objects.create(name=f"Fault drill ERP {slug}", slug=slug,
                                                 kind=Connection.Kind.ERP_PULL, brand=brand,
                                                 signing_secrets="whsec_unused")
                ClientLink.objects.create(connection=link, external_id=customer["id"],
                                          client=ClientFactory(brand=brand))
                erp = ErpPull.objects.create(connection=link, base_url=remote.rest_url, auth=ErpPull.Auth.BEARER,
                                             credentials={"token": remote.rest_token}, paging=ErpPull.Paging.LINK,
                                             page_size=200, enabled=True)
                ErpFeed.objects.create(erp=erp, entity=ErpFeed.Entity.INVOICES, request=f"invoices?drill={slug}",
                                       # Its own customer's invoices only: the others' customers are not linked.
                                       records=f"items[?customer_id=='{customer['id']}']", mapping=INVOICE_MAPPING, version="modified",
                                       since_param="modified_since")
            made.append((erp, invoice["id"]))
        self.coming.put(made)

    def write(self, remote: FakeErp, count: int, *, tag: str) -> list[int]:
        ids = []
        for erp, invoice_id in self.coming.take(count):
            with staff_scope(), transaction.atomic():
                job_id = pull_enqueue(erp=erp)
            check(job_id is not None, f"a pull of {erp.connection.slug} is written")
            self.of_job[job_id] = (erp, invoice_id)
            ids.append(job_id)
        return ids

    def _handed_on(self, job) -> None:
        """Wait for what the pull handed on (its connection's accounting events applied), once it is done."""
        if job.pk in self.settled or job.state != Job.State.DONE:
            return
        erp, _ = self.of_job[job.pk]
        with staff_scope():
            events = list(Job.objects.filter(kind="accounting.event", payload__account=erp.connection.slug)
                          .values_list("pk", flat=True))

        def applied() -> bool:
            waiting = states(events)
            return not any(waiting[s] for s in (Job.State.PENDING, Job.State.RUNNING, Job.State.RETRYING))

        if events:
            wait_until(applied, timeout=60, what="the pull's events applied", ids=events)
        self.settled.add(job.pk)

    def effects(self, remote: FakeErp, job) -> int:
        self._handed_on(job)
        erp, invoice_id = self.of_job[job.pk]
        with staff_scope():
            invoices = list(Invoice.objects.filter(connection_id=erp.connection_id, external_id=invoice_id)
                            .annotate(lines_written=Count("lines")))
        if len(invoices) != 1:
            return len(invoices)
        lines = invoices[0].lines_written
        return 1 if lines == len(self.lines) else (2 if lines > len(self.lines) else 0)

    def requests(self, remote: FakeErp, job) -> int:
        slug = self.of_job[job.pk][0].connection.slug
        with remote.lock:
            return sum(1 for r in remote.requests if f"drill={slug}" in (r.get("query") or ""))

    def requests_total(self, remote: FakeErp) -> int:
        with remote.lock:
            return len(remote.requests)
