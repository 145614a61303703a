"""An empty, migrated database to copy, for test and benchmark plumbing only.

Migrating a database from nothing takes seconds (most of a tiny benchmark's run; the second
pytest-xdist worker's start). `CREATE DATABASE ... TEMPLATE` copies one in a fraction of one. So
the test session keeps a template, `<test database>_template`: the first worker that sets up
its database, when it has just made it from nothing and migrated it, copies it into the template
(and empties the copy); otherwise (an older database, or one something else is connected to) it
migrates the template itself. Databases that do not
exist yet are then made from it: the other worker's (tests/conftest.py, `django_db_setup`) and
the benchmarks' (tests/test_benchmarks.py passes DATABASE_TEMPLATE to db_bootstrap). A database
that exists is left as it is and migrated as before.

The template's comment is a fingerprint of the migration files it was made with; when they
change, it is made again. It holds the test settings' apps, so a benchmark run with the
development settings (bench/connections.py) finds one more table than `make run` makes, the
tests' own (tests.support), which nothing there touches.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import django
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TEMPLATE_ALIAS = "template"
ROOT = Path(__file__).resolve().parents[2]
# The project's modules whose SQL a migration runs (`from portal.rls import FUNCTIONS_SQL`); a test
# below checks that this list names every one a migration imports.
MIGRATION_SQL_MODULES = ("portal.audit_partitions", "portal.rls")


def _admin(dbname: str = "postgres"):
    from django.conf import settings

    return psycopg.connect(make_conninfo(**{**conninfo_to_dict(settings.DATABASE_ADMIN_URL), "dbname": dbname}),
                           autocommit=True)


def base_name() -> str:
    """The test database's name without the pytest-xdist worker's suffix (portal/settings_test.py)."""
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    suffix = f"_gw{worker}" if worker != "0" else ""
    return name.removesuffix(suffix) if suffix else name


def template_name() -> str:
    return f"{base_name()}_template"


def fingerprint() -> str:
    """What the migrations are: Django's version, every migration file of every installed app, and
    the project's modules whose SQL a migration runs (a function changed there changes the
    database a fresh migrate makes)."""
    from django.apps import apps

    digest = hashlib.sha256(django.get_version().encode())
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        folder = Path(config.path) / "migrations"
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            digest.update(f"{config.label}/{path.name}".encode())
            digest.update(path.read_bytes())
    for module in MIGRATION_SQL_MODULES:
        digest.update(module.encode())
        digest.update((ROOT / (module.replace(".", "/") + ".py")).read_bytes())
    return f"migrations {digest.hexdigest()}"


def current() -> str | None:
    """The template's name when it exists and was made from the migrations as they are now."""
    name = template_name()
    with _admin() as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                           "WHERE datname = %s AND datistemplate", [name]).fetchone()
    return name if row and row[0] == fingerprint() else None


def ensure(source: str, *, fresh: bool) -> str:
    """The template, made now if it is missing or stale: a copy of `source`, emptied, when `source`
    was made from nothing and migrated just now (`fresh`) and nothing else is connected to it; else
    migrated from nothing. (A database that lived through earlier runs may hold a migration as it
    was when it was applied, before someone changed it: its copy would hand that on.) Call it where
    no other process makes it at the same time (the test set-up's lock)."""
    from django.conf import settings

    if current():
        return template_name()
    name, owner = template_name(), settings.DATABASE_OWNER_ROLE
    with _admin() as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        copied = False
        busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [source]).fetchone()[0]
        if fresh and not busy:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(owner), sql.Identifier(source)))
                copied = True
            except psycopg.errors.ObjectInUse:  # someone connected meanwhile
                pass
    _migrate_or_empty(name, copied=copied)
    with _admin() as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(fingerprint())))
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name)))
    return name


def _migrate_or_empty(name: str, *, copied: bool) -> None:
    """As the owner, on the template: empty the copy (the source may hold a test's rows), or migrate."""
    import io

    from django.core.management import call_command
    from django.db import connections

    from tests.support.owner import as_owner

    if not copied:  # created empty, with the owner, schema and grants every database gets
        call_command("db_bootstrap", name=name, stdout=io.StringIO())
    with as_owner() as owner:
        connections.settings[TEMPLATE_ALIAS] = {**connections.settings[owner], "NAME": name}
        try:
            if copied:
                call_command("flush", database=TEMPLATE_ALIAS, interactive=False, verbosity=0)
            else:
                call_command("migrate", database=TEMPLATE_ALIAS, interactive=False, verbosity=0, stdout=io.StringIO())
        finally:
            try:
                if hasattr(connections._connections, TEMPLATE_ALIAS):
                    connections[TEMPLATE_ALIAS].close()
                    del connections[TEMPLATE_ALIAS]
            finally:
                del connections.settings[TEMPLATE_ALIAS]
