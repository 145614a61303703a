"""Row-level security: the per-transaction scope the policies read, and the migration helper.

Policies read three transaction-local settings (set with set_config(..., true),
so nothing leaks to the next user of a pooled connection):

  app.client_id  the client a portal request acts for
  app.user_id    the logged-in user (lets a user see its own memberships)
  app.staff      'on' for back office, Celery tasks and management commands

Nothing set means nothing visible. Code sets a scope only through
`client_scope()` and `staff_scope()`; both restore the previous scope on exit.
"""
from __future__ import annotations

from contextlib import contextmanager

from django.db import connections, transaction
from django.db.migrations.operations.base import Operation

SETTINGS = ("app.client_id", "app.user_id", "app.staff")

# SQL functions the policies call; created by portal's first migration.
FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION app_client_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.client_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION app_user_id() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION app_is_staff() RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.staff', true), '') = 'on' $$;
"""


def _current(cursor) -> dict[str, str]:
    cursor.execute("SELECT " + ", ".join(f"current_setting('{name}', true)" for name in SETTINGS))
    return dict(zip(SETTINGS, (value or "" for value in cursor.fetchone())))


def _apply(cursor, values: dict[str, str]) -> None:
    cursor.execute(
        "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in values),
        [item for pair in values.items() for item in pair],
    )


@contextmanager
def _scope(values: dict[str, str], using: str = "default"):
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            previous = _current(cursor)
            _apply(cursor, values)
        yield
        # Reached only on success; on an exception (or a rollback asked for) the atomic
        # block rolls back, and set_config(..., true) is rolled back with it.
        if not connections[using].needs_rollback:
            with connections[using].cursor() as cursor:
                _apply(cursor, previous)


def client_scope(client_id: int | None, *, user_id: int | None = None, using: str = "default"):
    """Scope the enclosed work (one transaction) to one client and, optionally, one user."""
    return _scope(
        {"app.client_id": str(client_id or ""), "app.user_id": str(user_id or ""), "app.staff": ""}, using
    )


def staff_scope(using: str = "default"):
    """The back office's scope: every client's rows. For admin, Celery tasks and commands only."""
    return _scope({"app.client_id": "", "app.user_id": "", "app.staff": "on"}, using)


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
