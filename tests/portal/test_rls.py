"""Row-level security holds against the real database, not only in Python."""
import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from portal.models import AuditEvent, Client, Membership
from portal.rls import client_scope, staff_scope
from portal.services import audit_record
from tests.support.models import SecretNote


def _raw(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def test_every_table_with_a_client_column_has_forced_rls_and_a_policy(db):
    rows = _raw("""
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM information_schema.columns col
        JOIN pg_class c ON c.relname = col.table_name
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = col.table_schema
        WHERE col.table_schema = 'public' AND col.column_name = 'client_id' AND c.relkind IN ('r', 'p')
    """)
    tables = {name for name, *_ in rows}
    assert {"portal_membership", "portal_auditevent", "support_secretnote"} <= tables
    unprotected = [name for name, enabled, forced, policies in rows if not (enabled and forced and policies)]
    assert unprotected == [], f"client-owned tables without forced RLS and a policy: {unprotected}"


def test_the_client_table_itself_is_under_rls(db):
    [(enabled, forced)] = _raw("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'portal_client'")
    assert enabled and forced


def test_application_role_is_not_superuser_owner_or_bypassrls(db):
    [(role, superuser, bypass)] = _raw(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert role == "portal_app"
    assert not superuser and not bypass
    owned = _raw("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
    assert owned == []


def test_raw_sql_under_client_a_scope_returns_only_client_a_rows(tenants):
    with staff_scope():
        SecretNote.objects.create(client=tenants.client_a, text="alpha secret")
        SecretNote.objects.create(client=tenants.client_b, text="bravo secret")
    with client_scope(tenants.client_a.pk):
        # No Python-side filter at all: only the database stands between A and B.
        assert {c for (c,) in _raw("SELECT client_id FROM support_secretnote")} == {tenants.client_a.pk}
        assert {c for (c,) in _raw("SELECT client_id FROM portal_membership")} == {tenants.client_a.pk}
        assert [name for (name,) in _raw("SELECT name FROM portal_client")] == ["Alpha B.V."]
        assert [n.text for n in SecretNote.objects.all()] == ["alpha secret"]
        with pytest.raises(Client.DoesNotExist):
            Client.objects.get(pk=tenants.client_b.pk)


def test_with_no_scope_nothing_client_owned_is_visible(tenants):
    with staff_scope():
        SecretNote.objects.create(client=tenants.client_a, text="alpha secret")
        audit_record(action=AuditEvent.Action.RECORD_VIEWED, client=tenants.client_a)
    for table in ("support_secretnote", "portal_membership", "portal_client", "portal_auditevent"):
        assert _raw(f"SELECT count(*) FROM {table}") == [(0,)], table


def test_staff_scope_sees_every_client_and_is_undone_on_exit(tenants):
    with staff_scope():
        assert _raw("SELECT count(*) FROM portal_client") == [(2,)]
    assert _raw("SELECT count(*) FROM portal_client") == [(0,)]


def test_a_client_cannot_write_rows_for_another_client(tenants):
    with client_scope(tenants.client_a.pk):
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            SecretNote.objects.create(client=tenants.client_b, text="planted")
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Membership.objects.create(client=tenants.client_b, user=tenants.owner_a)


def test_a_client_cannot_update_or_delete_another_clients_rows(tenants):
    with staff_scope():
        note = SecretNote.objects.create(client=tenants.client_b, text="bravo secret")
    with client_scope(tenants.client_a.pk):
        assert SecretNote.objects.filter(pk=note.pk).update(text="changed") == 0
        assert _raw("DELETE FROM support_secretnote WHERE id = %s RETURNING id", [note.pk]) == []
    with staff_scope():
        assert SecretNote.objects.get(pk=note.pk).text == "bravo secret"


def test_a_user_sees_only_its_own_memberships_before_choosing_a_client(tenants):
    with client_scope(None, user_id=tenants.member_of_both.pk):
        visible = set(Membership.objects.values_list("user__email", "client__name"))
    assert visible == {("both@alpha.test", "Alpha B.V."), ("both@alpha.test", "Bravo B.V.")}


def test_application_role_cannot_update_or_delete_audit_events(tenants):
    with staff_scope():
        audit_record(action=AuditEvent.Action.RECORD_VIEWED, client=tenants.client_a, details={"n": 1})
        for statement in ("UPDATE portal_auditevent SET action = 'tampered'",
                          "DELETE FROM portal_auditevent",
                          "TRUNCATE portal_auditevent"):
            with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
                _raw(statement)
        assert _raw("SELECT action, details->>'n' FROM portal_auditevent") == [("record.viewed", "1")]


def test_settings_do_not_leak_to_the_next_transaction(tenants):
    with client_scope(tenants.client_a.pk):
        pass
    assert _raw("SELECT current_setting('app.client_id', true), current_setting('app.staff', true)") in (
        [("", "")], [(None, None)])
