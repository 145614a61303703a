"""The row-level-security scope is a context, not a transaction: it holds for every short
transaction opened inside it, never outlives it on a pooled connection, and fails closed."""
import pytest
from django.db import connection, transaction
from django.test import Client as HttpClient
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from portal import urls as portal_urls
from portal.models import Client
from portal.rls import NO_SCOPE, client_scope, current_scope, staff_scope
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory
from tests.support.models import SecretNote


def _raw(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def _visible_client_ids() -> set[int]:
    # No Python-side filter: only the database decides what is seen.
    return {c for (c,) in _raw("SELECT client_id FROM support_secretnote")}


@pytest.fixture
def two_clients(committed):
    def build():
        brand = BrandFactory(is_default=True)
        a, b = ClientFactory(brand=brand, name="Alpha B.V."), ClientFactory(brand=brand, name="Bravo B.V.")
        SecretNote.objects.create(client=a, text="alpha")
        SecretNote.objects.create(client=b, text="bravo")
        member = MembershipFactory(client=a, user__email="member@alpha.test").user
        return a, b, member

    return committed.create(build)


def test_one_scope_holds_across_several_short_transactions(two_clients):
    a, b, _ = two_clients
    with client_scope(a.pk):
        with transaction.atomic():
            first = _visible_client_ids()
        # Between the transactions nothing is open: this is where a network call would go.
        assert not connection.in_atomic_block
        with transaction.atomic():
            second = _visible_client_ids()
        autocommit = _visible_client_ids()  # a statement in autocommit mode is scoped too
    assert first == second == autocommit == {a.pk}


def test_no_scope_sees_nothing_client_owned(two_clients):
    assert current_scope() == NO_SCOPE
    assert _visible_client_ids() == set()
    assert _raw("SELECT count(*) FROM portal_client") == [(0,)]
    with transaction.atomic():
        assert _visible_client_ids() == set()


def test_a_pooled_connection_keeps_no_scope_after_the_scope_ends(two_clients):
    a, b, _ = two_clients
    with staff_scope():
        assert _visible_client_ids() == {a.pk, b.pk}
    # Same connection, next piece of work, no scope: the staff scope is gone with its transactions.
    assert _raw("SELECT current_setting('app.staff', true), current_setting('app.client_id', true)") in (
        [("", "")], [(None, None)])
    assert _visible_client_ids() == set()


def test_no_scope_survives_an_exception(two_clients):
    a, b, _ = two_clients
    with pytest.raises(ZeroDivisionError):
        with client_scope(a.pk), transaction.atomic():
            assert _visible_client_ids() == {a.pk}
            1 / 0
    with pytest.raises(ZeroDivisionError):
        with staff_scope():
            assert _visible_client_ids() == {a.pk, b.pk}
            1 / 0
    assert _visible_client_ids() == set()
    with client_scope(b.pk):
        assert _visible_client_ids() == {b.pk}


def test_a_scope_changed_inside_a_transaction_applies_at_once_and_is_restored(two_clients):
    a, b, _ = two_clients
    with transaction.atomic():
        with client_scope(a.pk):
            assert _visible_client_ids() == {a.pk}
            with client_scope(b.pk):
                assert _visible_client_ids() == {b.pk}
            assert _visible_client_ids() == {a.pk}
        assert _visible_client_ids() == set()


def _boom(request):
    list(SecretNote.objects.all())
    raise RuntimeError("the view failed half-way")


def _transaction_state(request):
    from django.http import JsonResponse

    return JsonResponse({"in_transaction": connection.in_atomic_block, "notes": len(SecretNote.objects.all())})


urlpatterns = [path("boom/", _boom), path("state/", csrf_exempt(_transaction_state)), *portal_urls.urlpatterns]


@pytest.mark.urls("tests.portal.test_scope")
def test_the_next_request_on_the_same_connection_inherits_nothing(two_clients, settings):
    a, b, member = two_clients
    browser = HttpClient(raise_request_exception=False)
    browser.force_login(member)
    assert browser.get("/boom/").status_code == 500
    # The request ran in client A's scope and failed; the connection stays open (same thread).
    assert connection.connection is not None
    assert _visible_client_ids() == set()
    assert Client.objects.count() == 0


def test_raw_sql_without_python_filter_sees_only_the_scoped_client(two_clients):
    a, b, _ = two_clients
    with client_scope(b.pk):
        assert [t for (t,) in _raw("SELECT name FROM portal_client ORDER BY name")] == ["Bravo B.V."]
        assert _visible_client_ids() == {b.pk}


@pytest.mark.urls("tests.portal.test_scope")
def test_a_read_runs_in_one_transaction_and_a_write_request_in_none(two_clients):
    a, b, member = two_clients
    browser = HttpClient()
    browser.force_login(member)
    # Reading: one snapshot, the scope applied once per change, not around every query.
    assert browser.get("/state/").json() == {"in_transaction": True, "notes": 1}
    # Changing (it may call a gateway): no request-wide transaction; services open their own.
    assert browser.post("/state/").json() == {"in_transaction": False, "notes": 1}
