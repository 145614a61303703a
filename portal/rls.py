"""Row-level security: the scope the policies read, and the migration helper.

Policies read three transaction-local settings:

  app.client_id  the client a portal request acts for
  app.user_id    the logged-in user (lets a user see its own memberships)
  app.staff      'on' for back office, jobs and management commands

A scope is a context, not a transaction: `client_scope()` and `staff_scope()` set it for
the code inside them (a context variable, so threads and tasks keep their own), and every
transaction that code opens, however many, starts with the scope applied by
`set_config(..., true)`. So a scope can hold several short transactions with network calls
between them, and nothing is ever left on a pooled connection: a transaction's settings end
with it. Nothing set means nothing visible (fail closed): a statement run outside any scope
gets empty settings, whatever ran on that connection before.

How: an execute wrapper on every connection. Before the first statement of a transaction,
and before any statement after the scope changed inside one, it applies the scope. A
statement run in autocommit mode is wrapped in a transaction of its own so the scope holds
for it too.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

from django.db import transaction
from django.db.backends.signals import connection_created
from django.db.migrations.operations.base import Operation
from psycopg.pq import TransactionStatus

SETTINGS = ("app.client_id", "app.user_id", "app.staff")
NO_SCOPE = ("", "", "")
APPLY_SQL = "SELECT set_config('app.client_id', %s, true), set_config('app.user_id', %s, true), " \
            "set_config('app.staff', %s, true)"

# SQL functions the policies call; created by portal's first migration.
FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION app_client_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.client_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION app_user_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION app_is_staff() RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.staff', true), '') = 'on' $$;
"""

_scope_var: contextvars.ContextVar[tuple[str, str, str]] = contextvars.ContextVar("rls_scope", default=NO_SCOPE)
_applying: contextvars.ContextVar[bool] = contextvars.ContextVar("rls_applying", default=False)


def current_scope() -> tuple[str, str, str]:
    """(client id, user id, staff) as the policies will see them; empty strings when unset."""
    return _scope_var.get()


@contextmanager
def _scope(values: tuple[str, str, str]):
    token = _scope_var.set(values)
    try:
        yield
    finally:
        _scope_var.reset(token)


def client_scope(client_id: int | None, *, user_id: int | None = None, using: str | None = None):
    """Scope the enclosed work (any number of transactions) to one client and, optionally, one user."""
    return _scope((str(client_id or ""), str(user_id or ""), ""))


def staff_scope(using: str | None = None):
    """The back office's scope: every client's rows. For admin, jobs and commands only."""
    return _scope(("", "", "on"))


def no_scope():
    """Nothing client-owned visible (the state outside any scope), e.g. for an anonymous request."""
    return _scope(NO_SCOPE)


def _apply(connection, values) -> None:
    token = _applying.set(True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(APPLY_SQL, list(values))
    finally:
        _applying.reset(token)
    connection.rls_applied = values


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
    return f"app_is_staff() OR {column} = app_client_id()"


class EnableRLS(Operation):
    """`EnableRLS("invoice")` in a migration: ENABLE + FORCE row-level security and a
    tenant policy on the model's client column. `using` / `check` replace the policy's
    conditions where a table needs more (see portal's memberships and audit log)."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, column: str = "client_id", using: str | None = None,
                 check: str | None = None, insert_check: str | None = None):
        self.model_name = model_name
        self.column = column
        self.using = using
        self.check = check
        self.insert_check = insert_check

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "column": self.column}
        for name in ("using", "check", "insert_check"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return self.__class__.__name__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def _table(self, app_label, state):
        return state.apps.get_model(app_label, self.model_name)._meta.db_table

    def sql(self, table: str) -> list[str]:
        using = self.using or client_condition(self.column)
        check = self.check or using
        statements = [
            f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        ]
        if self.insert_check:
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
        for policy in ("tenant_isolation", "tenant_read", "tenant_insert"):
            schema_editor.execute(f'DROP POLICY IF EXISTS {policy} ON "{table}"')
        schema_editor.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        schema_editor.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')

    def describe(self):
        return f"Enable row-level security on {self.model_name}"

    @property
    def migration_name_fragment(self):
        return f"rls_{self.model_name.lower()}"
