"""Exact Online's kinds against the local Exact (tests/fakes/exact.py): `exact.sync` (one entity of
one connection, from its cursor), `exact.hint` (the same, asked by a signed webhook from Exact)
and `exact.connect` (the consent's code exchanged for tokens, then the divisions read).

Exact is only read by a sync, so what a sync job does is measured where it lands: the invoice it
read is in the portal once, with its lines once (through the accounting.event job the sync hands
its canonical event to). Each job has a connection and a division of its own: syncs of one
connection and entity run one at a time by design (one subject), and a sync waiting to start
takes the place of the next.

The tests share the session's local Exact (tests/conftest.py `exact_server`), whose address the
workers already have; the bench starts one of its own."""
from __future__ import annotations

import datetime
import itertools
import json
import random
import uuid
from urllib.parse import parse_qs, urlsplit

from django.db import transaction
from django.db.models import Count
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone

from integrations.exact import connect
from integrations.exact.models import ExactConnection, ExactCursor
from integrations.exact.tasks import sync_enqueue
from integrations.exact.webhooks import JOB_KIND as HINT_KIND, SYNC_JOB as SYNC_KIND
from integrations.models import Connection
from integrations.services import JOB_KIND as EVENT_KIND
from invoices.models import Invoice
from portal.models import Job, WebhookRequest
from portal.rls import staff_scope
from tests.fakes.exact import FakeExact
from tests.faults.drills import KindScenario
from tests.faults.harness import check, staff_client, states, wait_until
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, job_ids, last_job_id, settle, worker_env
from tests.portal.factories import BrandFactory

Entity = ExactCursor.Entity
LINES = [("Advies", 2, "100.00", "2"), ("Boeken", 3, "10.00", "5")]
# Divisions of their own on a local Exact the e2e tests share: far from theirs, apart per process.
_divisions = itertools.count(7_000_000 + random.randrange(1_000) * 1_000)


class LocalExact(FakeExact):
    """The bench's own local Exact, for an app whose redirect URI is the portal's callback."""

    def __init__(self):
        super().__init__(f"faults-exact-{uuid.uuid4().hex[:8]}", "faults-exact-secret", "faults-exact-webhook",
                         redirect_uri=connect.redirect_uri())


def _new_connection(remote: FakeExact, **fields) -> ExactConnection:
    slug = f"faults-exact-{uuid.uuid4().hex[:10]}"
    with staff_scope(), transaction.atomic():
        link = Connection.objects.create(name=f"Fault drill Exact {slug}", slug=slug,
                                         kind=Connection.Kind.EXACT_ONLINE, brand=BrandFactory(),
                                         signing_secrets="whsec_unused")
        return ExactConnection.objects.create(connection=link, client_id=remote.oauth.client_id,
                                              client_secret=remote.oauth.client_secret,
                                              webhook_secret=remote.webhook_secret, **fields)


def _connected(remote: FakeExact) -> ExactConnection:
    """Connected as a consent leaves it (tokens from the local Exact), with a division of its own."""
    division = remote.add_division(next(_divisions), "Fault drill B.V.")
    tokens, now = remote.grant(), timezone.now()
    return _new_connection(
        remote, division=division, divisions=[{"code": division, "name": "Fault drill B.V."}], journal="20",
        state=ExactConnection.State.CONNECTED, state_changed_at=now, access_token=tokens["access_token"],
        access_expires_at=now + datetime.timedelta(seconds=int(tokens["expires_in"])),
        refresh_token=tokens["refresh_token"], refreshed_at=now)


def _unfinished(ids: list[int]) -> bool:
    waiting = states(ids)
    return any(waiting[state] for state in (Job.State.PENDING, Job.State.RUNNING, Job.State.RETRYING))


class ExactSyncScenario(KindScenario):
    """Syncs of the invoices of a division holding one new invoice (its customer synced before),
    written by `sync_enqueue` as the safety sync and "Sync now" write them.

    A call is one page of the Sync API (one page here); the VAT codes read after it when a page
    has invoices are not counted as the job's calls. A 500 is retried and a timeout too: a read
    does nothing at Exact. Done once: the invoice is in the portal once, with its lines once."""

    kind = SYNC_KIND
    client_timeout = CLIENT_TIMEOUT
    entity = Entity.SALES_INVOICES
    path = "sync/SalesInvoice/SalesInvoices"

    def __init__(self, remote=None):
        super().__init__(remote)
        self.coming = Prepared()  # (connection, the invoice's InvoiceID)
        self.of_job: dict[int, tuple[ExactConnection, str]] = {}
        self.settled: set[int] = set()

    def start_remote(self):
        return LocalExact()

    def worker_env(self, remote) -> dict:
        return worker_env(EXACT_BASE_URL=remote.url)

    def prepare(self, remote: FakeExact, count: int) -> None:
        """A connection per coming job; its division holds a customer, synced into the portal now
        (by the workers), and an invoice for the job to bring in."""
        since, made = last_job_id(), []
        for _ in range(count):
            exact = _connected(remote)
            customer = remote.add_account(f"Klant {exact.division} B.V.", division=exact.division,
                                          email=f"finance@{exact.division}.test", address_line="Keizersgracht 1",
                                          postcode="1015 CJ", city="Amsterdam")
            invoice = remote.add_invoice(customer, LINES, division=exact.division)
            with staff_scope(), transaction.atomic():
                sync_enqueue(exact=exact, entity=Entity.ACCOUNTS)
            made.append((exact, invoice["InvoiceID"]))
        settle(since, what="the customers synced")
        self.coming.put(made)

    def write(self, remote: FakeExact, count: int, *, tag: str) -> list[int]:
        ids = []
        for exact, invoice_id in self.coming.take(count):
            with staff_scope(), transaction.atomic():
                job_id = sync_enqueue(exact=exact, entity=self.entity)
            check(job_id is not None, f"a sync of {exact.connection.slug} is written")
            self.of_job[job_id] = (exact, invoice_id)
            ids.append(job_id)
        return ids

    def _handed_on(self, job) -> None:
        """Wait for what the sync handed on, its connection's accounting events applied (once per
        job, once it is done: a count on the way, as after a kill, waits for nothing)."""
        if job.pk in self.settled or job.state != Job.State.DONE:
            return
        exact, _ = self.of_job[job.pk]
        with staff_scope():
            events = list(Job.objects.filter(kind=EVENT_KIND, payload__account=exact.connection.slug)
                          .values_list("pk", flat=True))
        if events:
            wait_until(lambda: not _unfinished(events), timeout=60, what="the sync's events applied", ids=events)
        self.settled.add(job.pk)

    def effects(self, remote: FakeExact, job) -> int:
        """1: the invoice in the portal once with its lines once (from one stored event); 0: not
        there, or only part of it; more: twice, or stored twice."""
        self._handed_on(job)
        exact, invoice_id = self.of_job[job.pk]
        with staff_scope():
            invoices = list(Invoice.objects.filter(connection_id=exact.connection_id, external_id=invoice_id)
                            .annotate(lines_written=Count("lines")))
            stored = WebhookRequest.objects.filter(account=exact.connection.slug,
                                                   natural_key__startswith=f"invoice:{invoice_id}:").count()
        if len(invoices) != 1:
            return len(invoices)
        lines = invoices[0].lines_written
        if lines != len(LINES):
            return 2 if lines > len(LINES) else 0
        return stored

    def _reads(self, remote: FakeExact, division: int | None = None) -> int:
        with remote.lock:
            return sum(1 for r in remote.requests if r["endpoint"] == self.path
                       and (division is None or r["division"] == division))

    def requests(self, remote: FakeExact, job) -> int:
        return self._reads(remote, self.of_job[job.pk][0].division)

    def requests_total(self, remote: FakeExact) -> int:
        return self._reads(remote)

    def heal(self, remote: FakeExact) -> None:
        super().heal(remote)
        with remote.lock:
            remote.api_delays.clear()


class ExactHintScenario(ExactSyncScenario):
    """Exact's webhooks, signed with the app's webhook secret, posted to /webhooks/exact/<slug>/
    through the Django test client (the one intake: stored, answered, its job written; with Redis
    down the bell fails quietly and the sweep rings later), one new invoice each."""

    kind = HINT_KIND

    def write(self, remote: FakeExact, count: int, *, tag: str) -> list[int]:
        browser, ids = Browser(), []
        for exact, invoice_id in self.coming.take(count):
            content = json.dumps({"Topic": "SalesInvoices", "ClientId": remote.oauth.client_id,
                                  "Division": exact.division, "Action": "Create", "Key": invoice_id,
                                  "ExactOnlineEndpoint": f"{remote.url}/api/v1/{exact.division}/salesinvoice/"
                                                         f"SalesInvoices(guid'{invoice_id}')",
                                  "EventCreatedOn": timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]})
            body = '{"Content":' + content + ',"HashCode":"' + remote.hash_code(content) + '"}'
            answer = browser.post(reverse("integrations:exact_webhook", args=[exact.connection.slug]), body,
                                  content_type="application/json")
            check(answer.status_code == 200 and answer.json().get("status") == "accepted",
                  f"Exact's webhook is accepted: {answer.status_code} {answer.content[:200]}")
            [job_id] = job_ids(kind=self.kind, keys=[f"webhook:{answer.json()['webhook']}"])
            self.of_job[job_id] = (exact, invoice_id)
            ids.append(job_id)
        return ids


class ExactConnectScenario(KindScenario):
    """Consents given: staff pressed Connect (`exact_consent_start`), the user authorised at the
    local Exact, and Exact sent the browser back to the admin's callback (a staff member's Django
    test client), which keeps the code and writes the job. Done once: connected with the tokens of
    its own code (exchanged once) and the divisions read.

    Two things differ from the other kinds, both from OAuth: a code is used once (RFC 6749
    §4.1.2), so a code exchange that timed out or was cut off by a kill may have used the code
    with the tokens lost on the way; nothing can recover them, the job ends dead with "Press
    Connect again" and staff do (tests/integrations/exact/test_admin.py). So the kill lands on
    the divisions read after the exchange (tokens committed; the retry reads them again with
    them), and the failing remote answers 500 every attempt (not executed: the code stays good,
    and the replay exchanges it)."""

    kind = connect.CONNECT_JOB
    client_timeout = CLIENT_TIMEOUT
    kill_may_lose = True  # with several workers, another one may be inside its code exchange
    fault_labels = {"remote 500 / timeout": "remote 500 every attempt (a timed-out code exchange cannot be retried)"}
    dead_reason = "answered 500"

    def __init__(self, remote=None):
        super().__init__(remote)
        self.coming = Prepared()
        self.of_job: dict[int, tuple[ExactConnection, str]] = {}  # job -> (connection, its code)

    def start_remote(self):
        return LocalExact()

    def worker_env(self, remote) -> dict:
        return worker_env(EXACT_BASE_URL=remote.url)

    def prepare(self, remote: FakeExact, count: int) -> None:
        if remote.current_division is None:
            remote.add_division(next(_divisions), "Fault drill B.V.")
        # Every consent here is the fake's one user, so every job reads the divisions of one
        # division, whose 60 calls a minute real consents (each a company of its own) do not
        # share: past 30 jobs that budget, not the fault, would set the pace.
        # Likewise the user's 200 token calls a day.
        remote.minute_limit = max(remote.minute_limit, 2 * count + 10)
        remote.token_day_limit = max(remote.token_day_limit, len(remote.token_calls) + 3 * count + 10)
        self.coming.put([_new_connection(remote) for _ in range(count)])

    def write(self, remote: FakeExact, count: int, *, tag: str) -> list[int]:
        browser, _staff = staff_client()
        ids = []
        for exact in self.coming.take(count):
            with staff_scope():  # staff pressed Connect
                started = connect.consent_start(exact)
            query = {key: values[0] for key, values in parse_qs(urlsplit(started).query).items()}
            query["redirect_uri"] = remote.oauth.redirect_uri  # what the worker sends with the code
            with remote.lock:  # the user presses Authorize
                back = remote.oauth.consent_redirect(query, True, remote.now())
            answer = browser.get(reverse("admin:integrations_exactconnection_callback"),
                                 {key: values[0] for key, values in parse_qs(urlsplit(back).query).items()})
            connecting = reverse("admin:integrations_exactconnection_connecting", args=[exact.pk])
            check(answer.status_code == 302 and answer.headers["Location"] == connecting,
                  f"the callback takes the code: {answer.status_code} {answer.headers.get('Location')}")
            code = parse_qs(urlsplit(back).query)["code"][0]
            [job_id] = job_ids(kind=self.kind, keys=[f"{self.kind}:{exact.pk}:{query['state']}"])
            self.of_job[job_id] = (exact, code)
            ids.append(job_id)
        return ids

    def effects(self, remote: FakeExact, job) -> int:
        exact, code = self.of_job[job.pk]
        with staff_scope():
            row = ExactConnection.objects.get(pk=exact.pk)
        with remote.lock:
            exchanged = sum(1 for call in remote.token_calls if call.get("code") == code and call["status"] == 200)
            ours = row.refresh_token in remote.oauth.chains
        if row.state != ExactConnection.State.CONNECTED or not row.divisions or not ours:
            return 0
        return exchanged

    def requests(self, remote: FakeExact, job) -> int:
        """The code exchanges of the job's code (the divisions read after it is its own call)."""
        _, code = self.of_job[job.pk]
        with remote.lock:
            return sum(1 for call in remote.token_calls if call.get("code") == code)

    def requests_total(self, remote: FakeExact) -> int:
        """Calls reaching Exact's REST API (the divisions read, the kill's moment): with every
        connection waiting for its job, none is made but by these jobs."""
        with remote.lock:
            return len(remote.requests)

    def lost_to_kill(self, remote: FakeExact, job) -> bool:
        """Exact exchanged the job's code, and the connection holds none of the tokens it gave."""
        exact, code = self.of_job[job.pk]
        with staff_scope():
            held = ExactConnection.objects.get(pk=exact.pk).refresh_token
        with remote.lock:
            exchanged = any(call.get("code") == code and call["status"] == 200 for call in remote.token_calls)
            return exchanged and held not in remote.oauth.chains

    def hold_next(self, remote: FakeExact, seconds: float) -> None:
        remote.delay_api_next(1, seconds=seconds)

    def remark(self, remote: FakeExact, outcome, rows: list) -> str:
        cut = outcome.notes.get("known_lost", 0)
        if not cut:
            return ""
        return (f"{cut} consent(s) whose code exchange the kill cut off, by another worker than the one held: "
                f"Exact had used the code, the tokens never arrived (a code is used once, RFC 6749 §4.1.2); "
                f"the job is dead with \"Press Connect again\", shown to staff on the connecting page")

    def fail_again(self, remote: FakeExact, calls: int, *, attempt: int, last: bool) -> str:
        remote.fail_next(calls, 500)
        return "Exact's token endpoint answers 500"

    def heal(self, remote: FakeExact) -> None:
        super().heal(remote)
        with remote.lock:
            remote.api_delays.clear()
