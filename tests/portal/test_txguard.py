"""The transaction guard: an HTTP call or an email started inside a transaction of the code's own
is refused and recorded; outside one, or inside only the test's own transaction, it goes through."""
import json
import urllib.request

import pytest
import requests
from django.core import mail
from django.db import transaction

from portal import txguard
from tests.conftest import fail_on_txguard_violations
from tests.fakes.base import JsonHandler, LocalServer


class Echo(LocalServer):
    def __init__(self):
        self.hits = 0
        super().__init__()

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            def do_GET(self):
                server.hits += 1
                self.send_json(200, {"ok": True})

        return Handler


@pytest.fixture
def echo():
    with Echo() as server:
        yield server


@pytest.fixture
def expected_violations():
    """For tests that cause violations on purpose: hands them over and leaves none for the autouse check."""
    yield txguard.violations
    txguard.violations.clear()


def _email():
    return mail.EmailMessage("Subject", "Body", "from@portal.test", ["to@portal.test"])


def test_an_http_request_inside_atomic_is_refused_and_recorded(db, echo, expected_violations):
    with transaction.atomic():
        with pytest.raises(txguard.ExternalCallInTransaction, match="transaction is open on default"):
            requests.get(echo.url, timeout=5)
    assert echo.hits == 0
    [record] = expected_violations
    host, port = echo.server.server_address
    assert record["call"] == f"{host}:{port}" and record["databases"] == ["default"]
    assert any("tests/portal/test_txguard.py" in frame for frame in record["stack"])


def test_urllib_inside_atomic_is_refused_too(db, echo, expected_violations):
    with transaction.atomic():
        with pytest.raises(txguard.ExternalCallInTransaction):
            urllib.request.urlopen(echo.url, timeout=5)
    assert len(expected_violations) == 1 and echo.hits == 0


def test_a_swallowed_violation_still_fails_the_test(db, echo, expected_violations):
    with transaction.atomic():
        try:
            requests.get(echo.url, timeout=5)
        except RuntimeError:
            pass  # what careless code does
    assert len(expected_violations) == 1
    # The autouse fixture's check, called here directly: it fails the test and empties the list.
    with pytest.raises(pytest.fail.Exception, match="127.0.0.1:.* inside a transaction on default"):
        fail_on_txguard_violations()
    assert txguard.violations == []


def test_a_kept_alive_connection_opened_outside_is_still_checked_inside(db, echo, expected_violations):
    session = requests.Session()
    assert session.get(echo.url, timeout=5).ok
    with transaction.atomic():
        with pytest.raises(txguard.ExternalCallInTransaction):
            session.get(echo.url, timeout=5)
    assert len(expected_violations) == 1 and echo.hits == 1


def test_an_http_request_outside_any_transaction_passes(echo):
    assert requests.get(echo.url, timeout=5).json() == {"ok": True}
    assert urllib.request.urlopen(echo.url, timeout=5).status == 200
    assert echo.hits == 2 and txguard.violations == []


def test_an_http_request_inside_only_the_tests_own_transaction_passes(db, echo):
    assert requests.get(echo.url, timeout=5).ok
    assert echo.hits == 1 and txguard.violations == []


def test_an_email_sent_inside_atomic_is_refused_and_recorded(db, expected_violations):
    with transaction.atomic():
        with pytest.raises(txguard.ExternalCallInTransaction, match="email"):
            _email().send()
    assert mail.outbox == []
    [record] = expected_violations
    assert record["call"] == "email"


def test_an_email_sent_inside_only_the_tests_own_transaction_passes(db):
    _email().send()
    assert len(mail.outbox) == 1 and txguard.violations == []


def test_an_email_sent_on_commit_passes(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            transaction.on_commit(lambda: _email().send())
    assert len(mail.outbox) == 1 and txguard.violations == []


def test_a_transaction_begun_without_autocommit_counts(django_db_setup, django_db_blocker, echo,
                                                      expected_violations):
    # No TestCase atomics here (no `db`): the connection is in no atomic block; psycopg tells.
    from django.db import connection

    with django_db_blocker.unblock():
        transaction.set_autocommit(False)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            assert not connection.in_atomic_block
            with pytest.raises(txguard.ExternalCallInTransaction, match="default"):
                requests.get(echo.url, timeout=5)
        finally:
            connection.rollback()
            transaction.set_autocommit(True)
        assert requests.get(echo.url, timeout=5).ok  # autocommit again, idle: passes
    assert len(expected_violations) == 1


def test_a_log_directory_gets_a_line_per_violation(db, echo, expected_violations, tmp_path, monkeypatch):
    monkeypatch.setenv("TXGUARD_LOG", str(tmp_path))
    with transaction.atomic(), pytest.raises(txguard.ExternalCallInTransaction):
        _email().send()
    [line] = [json.loads(x) for f in tmp_path.iterdir() for x in f.read_text().splitlines()]
    assert line["call"] == "email" and txguard.read_log(tmp_path) == [line] == expected_violations


def test_install_is_idempotent():
    import urllib3.connection

    before = urllib3.connection.HTTPConnection.connect
    txguard.install()
    txguard.install()
    assert urllib3.connection.HTTPConnection.connect is before and before.__txguard__
