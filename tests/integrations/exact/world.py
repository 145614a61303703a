"""A connected Exact Online connection against the local fake (tests/fakes/exact.py), with its jobs run
in-process: the fixtures the sync, booking and webhook tests share (imported by them)."""
from __future__ import annotations

import datetime
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.wsgi import get_wsgi_application
from django.utils import timezone

from integrations.exact import tasks as exact_tasks  # noqa: F401 - registers the exact.* job handlers
from integrations.exact.models import ExactConnection, ExactCursor
from integrations.exact.sync import sync_entity
from integrations.models import Connection
from invoices.models import Invoice
from portal.rls import staff_scope
from tests.fakes.exact import FakeExact
from tests.portal.factories import BrandFactory

CLIENT_ID = "5b0f7c2e-1d44-4a8e-9f31-7c2d9e0a6b18"
CLIENT_SECRET = "fake-exact-secret"
WEBHOOK_SECRET = "Wh5ecretOfTheExactApp"
DIVISION = 1234567
BANK_JOURNAL = "20"
KINDS = ("exact.sync", "exact.hint", "accounting.event", "outbox.deliver")


@pytest.fixture
def fake_exact(settings):
    with FakeExact(CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET) as fake:
        fake.add_division(DIVISION, "Boekhouding B.V.")
        settings.EXACT_BASE_URL = fake.url
        yield fake


@pytest.fixture
def exact(committed, fake_exact):
    """Connected (tokens as a consent gives them), division and bank journal chosen."""
    tokens = fake_exact.grant()
    now = timezone.now()

    def build():
        link = Connection.objects.create(name="Boekhouding", slug="boekhouding", kind=Connection.Kind.EXACT_ONLINE,
                                         brand=BrandFactory(is_default=True), signing_secrets="whsec_unused")
        return ExactConnection.objects.create(
            connection=link, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_secret=WEBHOOK_SECRET,
            division=DIVISION, divisions=[{"code": DIVISION, "name": "Boekhouding B.V."}], journal=BANK_JOURNAL,
            state=ExactConnection.State.CONNECTED, state_changed_at=now, access_token=tokens["access_token"],
            access_expires_at=now + datetime.timedelta(seconds=int(tokens.get("expires_in", 600))),
            refresh_token=tokens["refresh_token"], refreshed_at=now)

    return committed.create(build)


@pytest.fixture
def run(worker):
    """Run every due job of the Exact and accounting kinds, as the worker does when rung."""
    worker.kinds = KINDS

    def run_all() -> int:
        total = 0
        while True:
            ran = worker.run()
            total += ran
            if not ran:
                return total

    return run_all


def sync(exact: ExactConnection, *entities: str) -> list[dict]:
    """Sync these entities now, in this process (as the exact.sync job does), from their cursors."""
    with staff_scope():
        return [sync_entity(exact, entity) for entity in entities]


def cursor(exact: ExactConnection, entity: str) -> int:
    with staff_scope():
        return ExactCursor.objects.get(exact=exact, entity=entity).timestamp


def invoice(number) -> Invoice:
    with staff_scope():
        return Invoice.objects.select_related("client").get(number=str(number))


@pytest.fixture
def portal_server(committed):
    """The portal served over HTTP in a thread, for Exact's own calls to it (the empty validation
    POST of a webhook subscription, notify())."""
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_ThreadedServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


class _ThreadedServer(WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass
