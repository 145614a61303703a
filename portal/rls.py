"""Row-level security: the scope the policies read, how it is signed, and the migration helper.

The policies call SQL functions that say who is asking:

  app_client_id()  the client a portal request acts for
  app_user_id()    the logged-in user (its own memberships, emails, authenticators, preferences)
  app_is_staff()   back office, jobs and management commands: every row
  app_identity()   the account pages (log in, sign up, reset, second factor): identity tables only
  app_session()    a SHA-256 of the session key: the one session row a request may read

Those functions trust nothing a statement can set on its own. The scope travels in one
transaction-local setting, `app.scope`, as a token signed with HMAC-SHA256; `app_scope()`, a
SECURITY DEFINER function owned by the table owner, checks the signature against a key kept in
a table the application role cannot read (`app_scope_key`, written by `migrate` from
RLS_SCOPE_KEY), and an invalid, expired or missing token means nothing visible. So SQL run as
the application role, an injection say, cannot widen its scope: `set_config` of any setting,
`SET`, `RESET` or `SET ROLE` yields at best the scope it already had. The token is sent as a
bound parameter, so it never appears in the query text other sessions could read.

A scope is a context, not a transaction: `client_scope()` and `staff_scope()` set it for the
code inside them (a context variable, so threads and tasks keep their own), and every
transaction that code opens, however many, starts with the scope applied by
`set_config(..., true)`. So a scope can hold several short transactions with network calls
between them, and nothing is ever left on a pooled connection: a transaction's settings end
with it. Nothing set means nothing visible (fail closed).

How: an execute wrapper on every connection. Before the first statement of a transaction,
and before any statement after the scope changed inside one, it applies the scope. A
statement run in autocommit mode is wrapped in a transaction of its own so the scope holds
for it too.
"""
from __future__ import annotations

import contextvars
import hashlib
import hmac
import re
import time
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from django.conf import settings
from django.db import transaction
from django.db.backends.signals import connection_created
from django.db.migrations.operations.base import Operation
from psycopg.pq import TransactionStatus

# (client id, user id, role, session hash); role is "staff", "identity" or "".
NO_SCOPE = ("", "", "", "")
STAFF, IDENTITY = "staff", "identity"
APPLY_SQL = "SELECT set_config('app.scope', %s, true)"
TOKEN_VERSION = "v1"
# A token is good for this long after it was made (checked against the transaction's start,
# so clocks of the application and database servers must agree to within it).
TOKEN_SECONDS = 900

# The first policies' functions (portal 0002); kept for that migration's history.
FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION app_client_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.client_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION app_user_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION app_is_staff() RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.staff', true), '') = 'on' $$;
"""

# The signed scope (portal 0017). `app_scope()` runs as the owner (SECURITY DEFINER) with a
# search path that no temporary object of the caller can shadow; it returns
# {client, user, role, session} or NULL. The HMAC is computed from the two padded keys
# (key XOR ipad, key XOR opad) that `install_scope_key` stores, with PostgreSQL's own sha256.
SIGNED_FUNCTIONS_SQL = r"""
CREATE TABLE IF NOT EXISTS public.app_scope_key (
    id integer PRIMARY KEY CHECK (id = 1),
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64)
);
REVOKE ALL ON public.app_scope_key FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.app_scope() RETURNS text[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    token text := current_setting('app.scope', true);
    parts text[];
    pads record;
BEGIN
    IF token IS NULL OR length(token) > 400 THEN RETURN NULL; END IF;
    parts := string_to_array(token, '|');
    IF cardinality(parts) <> 7 OR parts[1] <> 'v1' OR parts[6] !~ '^[0-9]{1,12}$'
            OR parts[7] !~ '^[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    IF to_timestamp(parts[6]::bigint) < now() THEN RETURN NULL; END IF;
    SELECT inner_pad, outer_pad INTO pads FROM public.app_scope_key WHERE id = 1;
    IF NOT FOUND THEN RETURN NULL; END IF;
    IF encode(sha256(pads.outer_pad || sha256(pads.inner_pad
            || convert_to(array_to_string(parts[1:6], '|'), 'UTF8'))), 'hex') <> parts[7] THEN
        RETURN NULL;
    END IF;
    RETURN parts[2:5];
END $$;

CREATE OR REPLACE FUNCTION public.app_client_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT CASE WHEN (s)[1] ~ '^[0-9]{1,18}$' THEN (s)[1]::bigint END FROM public.app_scope() s $$;
CREATE OR REPLACE FUNCTION public.app_user_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT CASE WHEN (s)[2] ~ '^[0-9]{1,18}$' THEN (s)[2]::bigint END FROM public.app_scope() s $$;
CREATE OR REPLACE FUNCTION public.app_is_staff() RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT coalesce((public.app_scope())[3] = 'staff', false) $$;
CREATE OR REPLACE FUNCTION public.app_identity() RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT coalesce((public.app_scope())[3] = 'identity', false) $$;
CREATE OR REPLACE FUNCTION public.app_session() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT NULLIF((public.app_scope())[4], '') $$;
"""
SCOPE_FUNCTIONS = ("app_client_id", "app_user_id", "app_is_staff", "app_identity", "app_session")


# The reviewed allow-list: tables with no row-level security, each with why nothing in it is
# something a client may not see. Every other table has forced RLS and a policy; the test
# that walks pg_class (tests/security/test_rls.py) fails on a table that is neither.
NO_RLS_NEEDED = {
    "django_migrations": "which migrations ran: app and migration names, no data",
    "django_content_type": "the names of the models; written by migrate (as the owner)",
    "auth_permission": "the names of the permissions; written by migrate (as the owner). A row grants "
                       "nothing until back office assigns it (user and group links are under RLS)",
    "portal_brand": "the issuer's brands: name, logo, colours, address and legal footer, printed on "
                    "every invoice and shown on the login page before anyone logs in",
    "app_scope_key": "the scope key: the application role holds no privilege on it at all; only "
                     "app_scope() (SECURITY DEFINER, run as the owner) reads it",
}


@lru_cache(maxsize=4)
def _hmac_key(secret: str) -> bytes:
    return hashlib.sha256(("portal rls scope\0" + secret).encode()).digest()


def _pads(secret: str) -> tuple[bytes, bytes]:
    key = _hmac_key(secret).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def scope_token(values: tuple[str, str, str, str], *, now: float | None = None) -> str:
    """The signed form of a scope, as `app_scope()` checks it."""
    expires = int(now if now is not None else time.time()) + TOKEN_SECONDS
    payload = "|".join((TOKEN_VERSION, *values, str(expires)))
    mac = hmac.new(_hmac_key(settings.RLS_SCOPE_KEY), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}|{mac}"


def install_scope_key(connection) -> None:
    """Store RLS_SCOPE_KEY where `app_scope()` reads it; run by `migrate`, as the owner."""
    inner, outer = _pads(settings.RLS_SCOPE_KEY)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO public.app_scope_key (id, inner_pad, outer_pad) VALUES (1, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET inner_pad = EXCLUDED.inner_pad, outer_pad = EXCLUDED.outer_pad "
            "WHERE app_scope_key.inner_pad <> EXCLUDED.inner_pad", [inner, outer])


_BARE_CALL = re.compile(r"(?<!SELECT )\b(" + "|".join(SCOPE_FUNCTIONS) + r")\(\)")


def harden_policies(connection) -> list[str]:
    """Rewrite every policy so each scope function is a scalar subquery: PostgreSQL then runs it
    (and checks the signature) once per statement, not once per row. Idempotent; run by
    `migrate`, as the owner. Returns the policies it changed."""
    changed = []
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT p.polname, c.relname, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
            FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'""")
        for name, table, using, check in cursor.fetchall():
            new_using = _BARE_CALL.sub(r"(SELECT \1())", using) if using else using
            new_check = _BARE_CALL.sub(r"(SELECT \1())", check) if check else check
            if (new_using, new_check) == (using, check):
                continue
            clauses = (f" USING ({new_using})" if new_using else "") + (
                f" WITH CHECK ({new_check})" if new_check else "")
            cursor.execute(f'ALTER POLICY "{name}" ON "{table}"{clauses}')
            changed.append(f"{table}.{name}")
    return changed


_scope_var: contextvars.ContextVar[tuple[str, str, str, str]] = contextvars.ContextVar("rls_scope", default=NO_SCOPE)
_applying: contextvars.ContextVar[bool] = contextvars.ContextVar("rls_applying", default=False)


def current_scope() -> tuple[str, str, str, str]:
    """(client id, user id, role, session hash) as the policies will see them; empty strings when unset."""
    return _scope_var.get()


@contextmanager
def _scope(values: tuple[str, str, str, str]):
    token = _scope_var.set(values)
    try:
        yield
    finally:
        _scope_var.reset(token)


def client_scope(client_id: int | None, *, user_id: int | None = None, using: str | None = None):
    """Scope the enclosed work (any number of transactions) to one client and, optionally, one user."""
    return _scope((str(client_id or ""), str(user_id or ""), "", _scope_var.get()[3]))


def user_scope(user_id: int | None):
    """One user's own rows (its user, emails, authenticators, preferences, memberships), no client's."""
    return client_scope(None, user_id=user_id)


def staff_scope(using: str | None = None):
    """The back office's scope: every client's rows. For admin, jobs and commands only."""
    return _scope(("", "", STAFF, ""))


def identity_scope():
    """The account pages' scope: the identity tables (users, emails, authenticators) to log in,
    sign up, reset a password or check a second factor; the current client's rows stay as they
    were (none for a visitor), no other client's."""
    client, user, _, session = _scope_var.get()
    return _scope((client, user, IDENTITY, session))


def session_scope(session_key: str | None):
    """Add one session row to the current scope (by a hash of its key: the key itself, which
    is enough to take over the session, is never sent to the database as part of a scope)."""
    client, user, role, _ = _scope_var.get()
    return _scope((client, user, role, session_hash(session_key) if session_key else ""))


def session_hash(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()


def no_scope():
    """Nothing client-owned visible (the state outside any scope), e.g. for an anonymous request."""
    return _scope(NO_SCOPE)


def _apply(connection, values) -> None:
    # Straight through psycopg, not Django's cursor: a server-side bound parameter, so the token
    # is not part of the statement text that pg_stat_activity shows.
    token = _applying.set(True)
    started = time.monotonic()
    try:
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(APPLY_SQL, [scope_token(values) if values != NO_SCOPE else ""])
    finally:
        _applying.reset(token)
    connection.rls_applied = values
    if connection.queries_logged:
        # It is a statement like any other: where Django counts queries (DEBUG, the test suite's
        # query budgets), it counts too; logged without the token.
        connection.queries_log.append({"sql": APPLY_SQL % "'<scope>'",
                                       "time": "%.3f" % (time.monotonic() - started)})


def _scoped_execute(execute, sql, params, many, context):
    if _applying.get():
        return execute(sql, params, many, context)
    connection = context["connection"]
    wanted = _scope_var.get()
    if connection.get_autocommit() and not connection.in_atomic_block:
        # One statement, one transaction: make it explicit so the scope holds for it.
        with transaction.atomic(using=connection.alias):
            _apply(connection, wanted)
            return execute(sql, params, many, context)
    status = connection.connection.info.transaction_status
    if status == TransactionStatus.IDLE or (
            status == TransactionStatus.INTRANS and getattr(connection, "rls_applied", None) != wanted):
        # A new transaction starts with this statement, or the scope changed inside one.
        _apply(connection, wanted)
    return execute(sql, params, many, context)


def install(connection) -> None:
    if _scoped_execute not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _scoped_execute)


def _on_connection_created(sender, connection, **kwargs):
    install(connection)


connection_created.connect(_on_connection_created, dispatch_uid="portal.rls.install")


def client_condition(column: str) -> str:
    return f"(SELECT app_is_staff()) OR {column} = (SELECT app_client_id())"


class EnableRLS(Operation):
    """`EnableRLS("invoice")` in a migration: ENABLE + FORCE row-level security and a
    tenant policy on the model's client column. `using` / `check` replace the policy's
    conditions where a table needs more (see portal's memberships and audit log)."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, column: str = "client_id", using: str | None = None,
                 check: str | None = None, insert_check: str | None = None, write: str | None = None,
                 table: str | None = None):
        self.model_name = model_name
        self.column = column
        self.using = using
        self.check = check
        self.insert_check = insert_check
        self.write = write
        self.table = table

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "column": self.column}
        for name in ("using", "check", "insert_check", "write", "table"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return self.__class__.__name__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def _table(self, app_label, state):
        # `table` names a table of another app (allauth's, Django's), which portal's migrations cover.
        return self.table or state.apps.get_model(app_label, self.model_name)._meta.db_table

    def sql(self, table: str) -> list[str]:
        using = self.using or client_condition(self.column)
        check = self.check or using
        statements = [
            f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        ]
        if self.write:
            # Read under `using`; insert, change and delete under `write`.
            statements += [
                f'CREATE POLICY tenant_read ON "{table}" FOR SELECT USING ({using})',
                f'CREATE POLICY tenant_write ON "{table}" USING ({self.write}) WITH CHECK ({self.write})',
            ]
        elif self.insert_check:
            # Read under `using`; insert under `insert_check`; no other command allowed.
            statements += [
                f'CREATE POLICY tenant_read ON "{table}" FOR SELECT USING ({using})',
                f'CREATE POLICY tenant_insert ON "{table}" FOR INSERT WITH CHECK ({self.insert_check})',
            ]
        else:
            statements.append(f'CREATE POLICY tenant_isolation ON "{table}" USING ({using}) WITH CHECK ({check})')
        return statements

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        for statement in self.sql(self._table(app_label, to_state)):
            schema_editor.execute(statement)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        table = self._table(app_label, from_state)
        for policy in ("tenant_isolation", "tenant_read", "tenant_insert", "tenant_write"):
            schema_editor.execute(f'DROP POLICY IF EXISTS {policy} ON "{table}"')
        schema_editor.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        schema_editor.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')

    def describe(self):
        return f"Enable row-level security on {self.model_name}"

    @property
    def migration_name_fragment(self):
        return f"rls_{self.model_name.lower()}"
