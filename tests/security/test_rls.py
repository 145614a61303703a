"""Row-level security under attack: every table covered, and SQL run as the application role,
inside a client's scope, cannot widen that scope whatever it tries (an injection's view)."""
import threading

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import override_settings

from portal import rls
from portal.models import User
from portal.rls import NO_RLS_NEEDED, client_scope, identity_scope, session_scope, staff_scope, user_scope
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory
from tests.support.models import SecretNote

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def _raw(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def _tables():
    """Every table PostgreSQL holds for the project, from pg_class: not from column names."""
    return _raw("""
        SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm', 'f') AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%'
        ORDER BY 1, 2""", [list(SYSTEM_SCHEMAS)])


def _visible() -> dict[str, int]:
    """Rows the current transaction can read in each table the application role may read."""
    counts = {}
    for schema, table, *_ in _tables():
        [(allowed,)] = _raw("SELECT has_table_privilege(current_user, %s, 'SELECT')", [f'"{schema}"."{table}"'])
        if allowed:
            [(counts[table],)] = _raw(f'SELECT count(*) FROM "{schema}"."{table}"')
    return counts


@pytest.fixture
def world(db):
    brand = BrandFactory(is_default=True)
    alpha, bravo = ClientFactory(brand=brand, name="Alpha B.V."), ClientFactory(brand=brand, name="Bravo B.V.")
    owner_a = MembershipFactory(client=alpha, user__email="owner@alpha.test").user
    owner_b = MembershipFactory(client=bravo, user__email="owner@bravo.test").user
    with staff_scope():
        SecretNote.objects.create(client=alpha, text="alpha secret")
        SecretNote.objects.create(client=bravo, text="bravo secret")
    return alpha, bravo, owner_a, owner_b


def test_every_table_has_forced_rls_and_a_policy_or_a_reviewed_reason_not_to(db):
    tables = _tables()
    names = {table for _, table, *_ in tables}
    assert {"portal_user", "django_session", "mfa_authenticator", "invoices_invoice"} <= names
    uncovered = [f"{schema}.{table}" for schema, table, enabled, forced, policies in tables
                 if not (enabled and forced and policies) and table not in NO_RLS_NEEDED]
    assert uncovered == [], f"tables with neither forced RLS and a policy nor a reason on the allow-list: {uncovered}"
    # The allow-list names only tables that exist and are really without RLS, each with a reason.
    assert set(NO_RLS_NEEDED) <= names
    assert all(len(reason) > 20 for reason in NO_RLS_NEEDED.values())


def test_every_policy_checks_the_scope_once_per_statement_not_once_per_row(db):
    bare = _raw("""
        SELECT c.relname, p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        WHERE concat(pg_get_expr(p.polqual, p.polrelid), ' ', pg_get_expr(p.polwithcheck, p.polrelid))
              ~ '(?<!SELECT )app_(client_id|user_id|is_staff|identity|session)\\(\\)'""")
    assert bare == []


def test_the_application_role_cannot_read_the_scope_key_nor_own_a_table(db):
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        _raw("SELECT * FROM app_scope_key")
    assert _raw("SELECT tablename FROM pg_tables WHERE tableowner = current_user") == []
    [(superuser, bypass, createrole)] = _raw(
        "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = current_user")
    assert not (superuser or bypass or createrole)


INJECTIONS = [
    # What a statement smuggled into a query could try to widen its own scope with.
    "SELECT set_config('app.staff', 'on', true)",
    "SELECT set_config('app.client_id', '{bravo}', true)",
    "SELECT set_config('app.user_id', '{owner_b}', true)",
    "SELECT set_config('app.scope', replace(current_setting('app.scope'), '|{alpha}|', '|{bravo}|'), true)",
    "SELECT set_config('app.scope', regexp_replace(current_setting('app.scope'), '\\|\\|\\|', '||staff|'), true)",
    "SELECT set_config('app.scope', 'v1||||9999999999|' || repeat('0', 64), true)",
    "SELECT set_config('app.scope', '{forged_staff}', true)",
    "SELECT set_config('app.scope', '{expired_staff}', true)",
    "SET app.scope = ''",
    "RESET app.scope",
    "RESET ALL",
    "SET LOCAL app.staff = 'on'",
]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_sql_inside_a_clients_scope_cannot_widen_it(world, injection):
    alpha, bravo, owner_a, owner_b = world
    with client_scope(alpha.pk, user_id=owner_a.pk), transaction.atomic():
        before = _visible()
        assert before["support_secretnote"] == 1 and before["portal_user"] == 1
        _raw(injection.format(
            alpha=alpha.pk, bravo=bravo.pk, owner_b=owner_b.pk,
            forged_staff=_signed(("", "", "staff", ""), secret="not the real key"),
            expired_staff=_signed(("", "", "staff", ""), now=0)))
        after = _visible()
        transaction.set_rollback(True)
    widened = {table: (before.get(table), count) for table, count in after.items() if count > before.get(table, 0)}
    assert widened == {}


def _signed(values, *, secret=None, now=None):
    with override_settings(RLS_SCOPE_KEY=secret or settings.RLS_SCOPE_KEY):
        return rls.scope_token(values, now=now)


@pytest.mark.parametrize("statement, error", [
    ("SET ROLE {owner}", "permission denied"),
    ("SET SESSION AUTHORIZATION {owner}", "permission denied"),
    ("ALTER TABLE support_secretnote NO FORCE ROW LEVEL SECURITY", "must be owner"),
    ("ALTER TABLE support_secretnote DISABLE ROW LEVEL SECURITY", "must be owner"),
    ("DROP POLICY tenant_isolation ON support_secretnote", "must be owner"),
    ("CREATE FUNCTION public.app_is_staff_too() RETURNS boolean LANGUAGE sql AS 'SELECT true'", "permission denied"),
    ("UPDATE portal_user SET is_staff = true, is_superuser = true", "staff rights"),
])
def test_sql_inside_a_clients_scope_cannot_become_someone_else(world, statement, error):
    alpha, _, owner_a, _ = world
    with client_scope(alpha.pk, user_id=owner_a.pk):
        with pytest.raises(DatabaseError, match=error), transaction.atomic():
            _raw(statement.format(owner=settings.DATABASE_OWNER_ROLE))
    with staff_scope():
        assert not User.objects.get(pk=owner_a.pk).is_staff


def test_a_user_sees_its_own_row_only_and_the_account_pages_see_no_client_data(world):
    alpha, bravo, owner_a, owner_b = world
    with user_scope(owner_a.pk):
        assert list(User.objects.values_list("email", flat=True)) == ["owner@alpha.test"]
        assert _raw("SELECT count(*) FROM account_emailaddress") == [(1,)]
    with identity_scope():
        # Logging in looks users up by email; no client's rows come with that.
        assert User.objects.filter(email__in=["owner@alpha.test", "owner@bravo.test"]).count() == 2
        assert _raw("SELECT count(*) FROM support_secretnote") == [(0,)]
        assert _raw("SELECT count(*) FROM portal_client") == [(0,)]
    assert _raw("SELECT count(*) FROM portal_user") == [(0,)]


def test_a_request_reads_its_own_session_row_only(world, client):
    _, _, owner_a, owner_b = world
    client.force_login(owner_a)
    mine = client.session.session_key
    other = type(client)()
    other.force_login(owner_b)
    theirs = other.session.session_key
    with session_scope(mine):
        assert {key for (key,) in _raw("SELECT session_key FROM django_session")} == {mine}
        assert _raw("SELECT count(*) FROM django_session WHERE session_key = %s", [theirs]) == [(0,)]
    assert _raw("SELECT count(*) FROM django_session") == [(0,)]


def test_the_scope_token_is_never_in_a_statement_text_other_sessions_can_read(committed):
    """pg_stat_activity shows sessions' statements: the token is a bound parameter there, never
    a literal a reader of it could copy."""
    seen = []
    applied = threading.Event()
    done = threading.Event()

    def staff_session():
        with staff_scope(), transaction.atomic():
            _raw("SELECT count(*) FROM portal_client")  # the scope is applied, then held open
            applied.set()
            done.wait(10)
        connection.close()

    worker = threading.Thread(target=staff_session)
    worker.start()
    try:
        assert applied.wait(10)
        # Read as the server's administrator: the application role may not read it at all (below).
        admin = conninfo_to_dict(settings.DATABASE_ADMIN_URL)
        with psycopg.connect(make_conninfo(**{**admin, "dbname": settings.DATABASES["default"]["NAME"]})) as reader:
            seen = [query for (query,) in reader.execute(
                "SELECT coalesce(query, '') FROM pg_stat_activity WHERE pid <> pg_backend_pid()").fetchall()]
    finally:
        done.set()
        worker.join()
    assert not any("|staff|" in query or "v1|" in query for query in seen), seen


def test_the_application_role_cannot_read_other_sessions_statements(db):
    """Statements carry values (a session key in a session lookup, say): db_bootstrap takes
    pg_stat_activity from the application role."""
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        _raw("SELECT query FROM pg_stat_activity")
