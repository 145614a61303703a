"""Twinfield's kinds against the local Twinfield (tests/fakes/twinfield.py): `twinfield.connect`
(the consent's code exchanged for tokens, the cluster learnt, then the offices listed) and
`twinfield.poll` (one poll of one connection: customers, sales transactions, what is paid).

The tests share the session's local Twinfield (tests/conftest.py `twinfield_server`), whose
address the workers already have; the bench starts one of its own."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import datetime

from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from integrations.models import Connection
from integrations.twinfield import connect
from integrations.twinfield.models import TwinfieldConnection
from integrations.twinfield.tasks import POLL_JOB, poll_enqueue
from invoices.models import Invoice
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.twinfield import FakeTwinfield
from tests.faults.drills import KindScenario
from tests.faults.harness import check, staff_client, states, wait_until
from tests.faults.kinds.common import CLIENT_TIMEOUT, Prepared, job_ids, worker_env
from tests.portal.factories import BrandFactory


class LocalTwinfield(FakeTwinfield):
    """The bench's own local Twinfield, for a client whose redirect URI is the portal's callback."""

    def __init__(self):
        super().__init__(f"faults-twinfield-{uuid.uuid4().hex[:8]}", "faults-twinfield-secret",
                         redirect_uri=connect.redirect_uri())


class TwinfieldConnectScenario(KindScenario):
    """Consents given: staff pressed Connect (`consent_start`, with a nonce), the user authorised
    at the local Twinfield, and the browser came back to the admin's callback (a staff member's
    Django test client), which keeps the code and writes the job. Done once: connected with the
    tokens of its own code (exchanged once), the cluster learnt and the offices listed.

    As with Exact (kinds/exact.py), a code is used once: the kill lands on the offices read after
    the exchange, and the failing remote is the cluster answering 500 every attempt after it (the
    retries list the offices with the stored tokens; the replay does too)."""

    kind = connect.CONNECT_JOB
    client_timeout = CLIENT_TIMEOUT
    kill_may_lose = True  # with several workers, another one may be inside its code exchange
    fault_labels = {"remote 500 / timeout": "cluster 500 every attempt (after the code exchange)"}
    dead_reason = "fault (500)"

    def __init__(self, remote=None):
        super().__init__(remote)
        self.coming = Prepared()
        self.of_job: dict[int, tuple[TwinfieldConnection, str]] = {}  # job -> (connection, its code)

    def start_remote(self):
        return LocalTwinfield()

    def worker_env(self, remote) -> dict:
        return worker_env(TWINFIELD_LOGIN_URL=remote.base_url)

    def prepare(self, remote: FakeTwinfield, count: int) -> None:
        if not remote.offices:
            remote.add_office("FLT001", "Fault drill B.V.")
        remote.credit_limit_per_minute = max(remote.credit_limit_per_minute, 10 * count + 100)
        made = []
        for _ in range(count):
            slug = f"faults-twinfield-{uuid.uuid4().hex[:10]}"
            with staff_scope(), transaction.atomic():
                link = Connection.objects.create(name=f"Fault drill Twinfield {slug}", slug=slug,
                                                 kind=Connection.Kind.TWINFIELD, brand=BrandFactory(),
                                                 signing_secrets="whsec_unused")
                made.append(TwinfieldConnection.objects.create(connection=link, client_id=remote.oauth.client_id,
                                                               client_secret=remote.oauth.client_secret))
        self.coming.put(made)

    def write(self, remote: FakeTwinfield, count: int, *, tag: str) -> list[int]:
        browser, _staff = staff_client()
        ids = []
        for twinfield in self.coming.take(count):
            with staff_scope():  # staff pressed Connect
                started = connect.consent_start(twinfield)
            query = {key: values[0] for key, values in parse_qs(urlsplit(started).query).items()}
            query["redirect_uri"] = remote.oauth.redirect_uri  # what the worker sends with the code
            with remote.lock:  # the user presses Authorize
                back = remote.oauth.consent_redirect(query, True, remote.now())
            answer = browser.get(reverse("admin:integrations_twinfieldconnection_callback"),
                                 {key: values[0] for key, values in parse_qs(urlsplit(back).query).items()})
            connecting = reverse("admin:integrations_twinfieldconnection_connecting", args=[twinfield.pk])
            check(answer.status_code == 302 and answer.headers["Location"] == connecting,
                  f"the callback takes the code: {answer.status_code} {answer.headers.get('Location')}")
            code = parse_qs(urlsplit(back).query)["code"][0]
            [job_id] = job_ids(kind=self.kind, keys=[f"{self.kind}:{twinfield.pk}:{query['state']}"])
            self.of_job[job_id] = (twinfield, code)
            ids.append(job_id)
        return ids

    def _exchanges(self, remote: FakeTwinfield, code: str, *, granted: bool) -> int:
        with remote.lock:
            return sum(1 for call in remote.token_calls
                       if call.get("code") == code and (not granted or call.get("status") == 200))

    def effects(self, remote: FakeTwinfield, job) -> int:
        twinfield, code = self.of_job[job.pk]
        with staff_scope():
            row = TwinfieldConnection.objects.get(pk=twinfield.pk)
        with remote.lock:
            ours = row.refresh_token in remote.oauth.refresh_tokens
        if row.state != TwinfieldConnection.State.CONNECTED or not row.offices or not ours \
                or row.cluster_url != remote.cluster_url:
            return 0
        return self._exchanges(remote, code, granted=True)

    def requests(self, remote: FakeTwinfield, job) -> int:
        """The code exchanges of the job's code (the offices read after it is its own call)."""
        return self._exchanges(remote, self.of_job[job.pk][1], granted=False)

    def requests_total(self, remote: FakeTwinfield) -> int:
        """Calls reaching the cluster (the offices read, the kill's moment)."""
        with remote.lock:
            return len(remote.requests)

    def lost_to_kill(self, remote: FakeTwinfield, job) -> bool:
        twinfield, code = self.of_job[job.pk]
        with staff_scope():
            held = TwinfieldConnection.objects.get(pk=twinfield.pk).refresh_token
        with remote.lock:
            lost = held not in remote.oauth.refresh_tokens
        return lost and self._exchanges(remote, code, granted=True) > 0

    def hold_next(self, remote: FakeTwinfield, seconds: float) -> None:
        """Held only a little less than the client waits: Twinfield keeps a request it is still
        answering in flight for the organisation (one at a time), so a longer hold would make the
        orphan's retry meet a 429 for the killed worker's call, an attempt spent on waiting."""
        remote.delay_next(1, seconds=self.client_timeout * 0.8)

    def fail_again(self, remote: FakeTwinfield, calls: int, *, attempt: int, last: bool) -> str:
        remote.fail_next(calls, 500)
        return "Twinfield's cluster answers 500"

    def remark(self, remote: FakeTwinfield, outcome, rows: list) -> str:
        cut = outcome.notes.get("known_lost", 0)
        if not cut:
            return ""
        return (f"{cut} consent(s) whose code exchange the kill cut off, by another worker than the one held: "
                f"Twinfield had used the code, the tokens never arrived; the job is dead with \"Press Connect "
                f"again\", shown to staff on the connecting page")


class TwinfieldPollScenario(KindScenario):
    """Polls written by `poll_enqueue` (as the beat task writes them), one connection and office
    per job, each office holding a customer and one sales invoice: the poll's first load brings
    both in. A call is the Finder page of customers each poll starts with (the rest of the first
    load follows it). Twinfield keeps one request of an organisation in flight at a time, and
    every connection here is the fake's one organisation: so the kill holds its call only a
    little (see TwinfieldConnectScenario.hold_next) and the failing remote answers 500 every
    attempt (a timed-out call still in flight would turn the next job's call into a 429).
    Done once: the invoice in the portal once, with its lines once."""

    kind = POLL_JOB
    client_timeout = CLIENT_TIMEOUT
    fault_labels = {"remote 500 / timeout": "cluster 500 every attempt"}
    dead_reason = "fault (500)"
    lines = [("Advies", "100.00", "VH"), ("Boeken", "10.00", "VL")]

    def __init__(self, remote=None):
        super().__init__(remote)
        self.coming = Prepared()
        self.of_job: dict[int, tuple[TwinfieldConnection, str]] = {}  # job -> (connection, invoice external id)
        self.settled: set[int] = set()

    def start_remote(self):
        return LocalTwinfield()

    def worker_env(self, remote) -> dict:
        return worker_env(TWINFIELD_LOGIN_URL=remote.base_url)

    def prepare(self, remote: FakeTwinfield, count: int) -> None:
        remote.credit_limit_per_minute = max(remote.credit_limit_per_minute, 40 * count + 100)
        made = []
        for _ in range(count):
            office = remote.add_office(f"F{uuid.uuid4().hex[:8].upper()}", "Fault drill B.V.")
            customer = remote.add_customer(office, "Klant B.V.", email="finance@klant.test", street="Dam 1",
                                           postcode="1012 JS", city="Amsterdam")
            invoice = remote.add_sales_invoice(office, customer["code"], self.lines)
            granted, now = remote.grant(), timezone.now()
            slug = f"faults-twinfield-{uuid.uuid4().hex[:10]}"
            with staff_scope(), transaction.atomic():
                link = Connection.objects.create(name=f"Fault drill Twinfield {slug}", slug=slug,
                                                 kind=Connection.Kind.TWINFIELD, brand=BrandFactory(),
                                                 signing_secrets="whsec_unused")
                twinfield = TwinfieldConnection.objects.create(
                    connection=link, client_id=remote.oauth.client_id, client_secret=remote.oauth.client_secret,
                    state=TwinfieldConnection.State.CONNECTED, state_changed_at=now,
                    access_token=granted["access_token"], refresh_token=granted["refresh_token"],
                    access_expires_at=now + datetime.timedelta(seconds=int(granted["expires_in"])),
                    refreshed_at=now, cluster_url=remote.cluster_url, organisation=remote.organisation,
                    office=office, offices=[{"code": office, "name": "Fault drill B.V."}], daybook="BNK")
            made.append((twinfield, f"{invoice['code']}:{invoice['number']}"))
        self.coming.put(made)

    def write(self, remote: FakeTwinfield, count: int, *, tag: str) -> list[int]:
        ids = []
        for twinfield, external_id in self.coming.take(count):
            with staff_scope(), transaction.atomic():
                job_id = poll_enqueue(twinfield=twinfield)
            check(job_id is not None, f"a poll of {twinfield.connection.slug} is written")
            self.of_job[job_id] = (twinfield, external_id)
            ids.append(job_id)
        return ids

    def _handed_on(self, job) -> None:
        """Wait for what the poll handed on (its connection's accounting events applied), once it is done."""
        if job.pk in self.settled or job.state != Job.State.DONE:
            return
        twinfield, _ = self.of_job[job.pk]
        with staff_scope():
            events = list(Job.objects.filter(kind="accounting.event", payload__account=twinfield.connection.slug)
                          .values_list("pk", flat=True))

        def applied() -> bool:
            waiting = states(events)
            return not any(waiting[s] for s in (Job.State.PENDING, Job.State.RUNNING, Job.State.RETRYING))

        if events:
            wait_until(applied, timeout=60, what="the poll's events applied", ids=events)
        self.settled.add(job.pk)

    def effects(self, remote: FakeTwinfield, job) -> int:
        self._handed_on(job)
        twinfield, external_id = self.of_job[job.pk]
        with staff_scope():
            invoices = list(Invoice.objects.filter(connection_id=twinfield.connection_id, external_id=external_id)
                            .annotate(lines_written=Count("lines")))
        if len(invoices) != 1:
            return len(invoices)
        lines = invoices[0].lines_written
        return 1 if lines == len(self.lines) else (2 if lines > len(self.lines) else 0)

    def _reads(self, remote: FakeTwinfield, office: str | None = None) -> int:
        with remote.lock:
            return sum(1 for r in remote.requests if r.get("service") == "finder"
                       and (office is None or r.get("office") == office))

    def requests(self, remote: FakeTwinfield, job) -> int:
        return self._reads(remote, self.of_job[job.pk][0].office)

    def requests_total(self, remote: FakeTwinfield) -> int:
        with remote.lock:
            return len(remote.requests)

    def hold_next(self, remote: FakeTwinfield, seconds: float) -> None:
        remote.delay_next(1, seconds=self.client_timeout * 0.8)

    def fail_again(self, remote: FakeTwinfield, calls: int, *, attempt: int, last: bool) -> str:
        remote.fail_next(calls, 500)
        return "Twinfield's cluster answers 500"
