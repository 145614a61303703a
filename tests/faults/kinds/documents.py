"""`pdf.prerender`: a document's PDF rendered and stored ahead of its first download, by a job the
ledger writes with the change (invoices.services._document_changed). No remote end: the faults
are Redis stopped while invoices are issued, and the worker killed in the middle of a render.
Done once: exactly one stored rendering of the document's current version (one row per
document and fingerprint, its encrypted file there)."""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from django.db import connection as db

from invoices.models import RenderedDocument
from invoices.services import PRERENDER_JOB
from portal.rls import staff_scope
from tests.faults.drills import KindScenario
from tests.faults.kinds.common import job_ids, worker_env
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import ClientFactory

# A render holds this advisory lock (invoices/documents/render.py) for as long as it runs.
RENDERS_RUNNING_SQL = """
SELECT count(*) FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.objid IN (SELECT ((hashtext('pdf:invoice:' || pk)::bigint) & 4294967295)::oid FROM unnest(%s::bigint[]) pk)
"""


class Renders:
    """The stand-in remote end: where the workers store encrypted files (FAULTS_MEDIA_DIR), to see
    what a render left. Rendering has no remote to fail, delay or hold."""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures: list[int] = []
        self.delays: list[float] = []
        self._directory = tempfile.TemporaryDirectory(prefix="faults-media-")
        self.directory = Path(self._directory.name)

    def __enter__(self) -> "Renders":
        return self

    def __exit__(self, *exc) -> None:
        self._directory.cleanup()

    def files(self, client_id: int, invoice_id: int, fingerprint: str) -> list[Path]:
        return list((self.directory / "documents" / str(client_id)).glob(
            f"invoice-{invoice_id}-{fingerprint[:24]}*.pdf"))


class PdfPrerenderScenario(KindScenario):
    """Invoices issued through the ledger's service (each one writes its pre-render job)."""

    kind = PRERENDER_JOB
    faults = ("redis stopped", "worker killed")

    def __init__(self, remote=None):
        super().__init__(remote)
        self.client = None
        self.invoice_of: dict[int, int] = {}  # job id -> invoice id
        self.guard = threading.Lock()

    def start_remote(self):
        return Renders()

    def worker_env(self, remote: Renders) -> dict:
        return worker_env(FAULTS_MEDIA_DIR=str(remote.directory))

    def prepare(self, remote: Renders, count: int) -> None:
        if self.client is None:
            self.client = ClientFactory(locale="en")

    def write(self, remote: Renders, count: int, *, tag: str) -> list[int]:
        ids = []
        for number in range(count):
            invoice = make_invoice(self.client, number=f"PDF-{tag}-{number}"[:40], lines=[line(unit_price="80.00")])
            [job_id] = job_ids(kind=self.kind, keys=self._keys(invoice.pk)) or [None]
            with self.guard:
                self.invoice_of[job_id] = invoice.pk
            ids.append(job_id)
        return ids

    @staticmethod
    def _keys(invoice_id: int) -> list[str]:
        from portal.models import Job

        with staff_scope():
            return list(Job.objects.filter(kind=PRERENDER_JOB, subject=f"invoice:{invoice_id}")
                        .values_list("key", flat=True))

    def _renderings(self, remote: Renders, job) -> tuple[int, int]:
        """(renderings stored with their file, files of the document's rendered version)."""
        with staff_scope():
            rows = list(RenderedDocument.objects.filter(invoice_id=self.invoice_of[job.pk]))
        stored = files = 0
        for row in rows:
            found = remote.files(row.client_id, self.invoice_of[job.pk], row.fingerprint)
            stored += any(path.name == Path(row.file_name).name for path in found)
            files += len(found)
        return stored, files

    def effects(self, remote: Renders, job) -> int:
        return self._renderings(remote, job)[0]

    def requests(self, remote: Renders, job) -> int:
        return job.attempts

    def requests_total(self, remote: Renders) -> int:
        """Renders stored or running for our invoices (a render has begun: kill now)."""
        with self.guard:
            invoices = list(self.invoice_of.values())
        with staff_scope():
            stored = RenderedDocument.objects.filter(invoice_id__in=invoices).count()
        with db.cursor() as cursor:
            cursor.execute(RENDERS_RUNNING_SQL, [invoices])
            return stored + cursor.fetchone()[0]

    def hold_next(self, remote: Renders, seconds: float) -> None:
        pass  # a render takes long enough: the kill lands in WeasyPrint

    def remark(self, remote: Renders, outcome, rows: list) -> str:
        leaked = sum(max(0, files - stored) for stored, files in (self._renderings(remote, job) for job in rows))
        return f"{leaked} file(s) left by a render killed after it stored its file" if leaked else ""
