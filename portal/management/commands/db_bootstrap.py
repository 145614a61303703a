"""Create the database roles and the database: idempotent, on the embedded or an external server."""
import os

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class Command(BaseCommand):
    help = (
        "Create the owner role (owns the tables, runs migrations), the application role "
        "(no superuser, no BYPASSRLS, owns nothing) and the database. Uses DATABASE_URL's "
        "credentials, which must be allowed to create roles and databases. A database that does not "
        "exist yet is a copy of DATABASE_TEMPLATE when that names one (tests and benchmarks: an "
        "empty, migrated database, tests/support/template.py), else an empty one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", default="",
                            help="the database to create and prepare (default: the settings' database)")
        parser.add_argument("--template", default=os.environ.get("DATABASE_TEMPLATE", ""),
                            help="a template database to copy when creating it (default: DATABASE_TEMPLATE)")

    def handle(self, *args, **options):
        app_role, owner_role = settings.DATABASE_APP_ROLE, settings.DATABASE_OWNER_ROLE
        name = options["name"] or settings.DATABASES["default"]["NAME"]
        admin = conninfo_to_dict(settings.DATABASE_ADMIN_URL)
        # Run by manage.py, the settings are the owner's and know both passwords; run from a test's
        # plumbing (the application's settings), only the application role's, and a role whose
        # password is not known keeps the one it has.
        default = settings.DATABASES["default"]
        passwords = {default["USER"]: default["PASSWORD"]}
        if hasattr(settings, "DATABASE_APP_PASSWORD"):
            passwords[app_role] = settings.DATABASE_APP_PASSWORD

        with psycopg.connect(make_conninfo(**{**admin, "dbname": "postgres"}), autocommit=True) as conn:
            for role in (owner_role, app_role):
                password = passwords.get(role, "")
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
                verb = "ALTER" if exists else "CREATE"
                statement = sql.SQL(
                    "{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOINHERIT"
                ).format(sql.SQL(verb), sql.Identifier(role))
                if password:
                    statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
                conn.execute(statement)
                if not exists:
                    self.stdout.write(f"created role {role}")
            # The admin must be a member of the owner role to hand it a database (PG 16+).
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(owner_role)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                template = self._template(conn, options["template"])
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(owner_role), sql.Identifier(template)))
                self.stdout.write(f"created database {name}" + (f" from {template}" if template != "template0" else ""))

        with psycopg.connect(make_conninfo(**{**admin, "dbname": name}), autocommit=True) as conn:
            owner, app = sql.Identifier(owner_role), sql.Identifier(app_role)
            for statement in (
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {app}",
                "ALTER SCHEMA public OWNER TO {owner}",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                "GRANT USAGE ON SCHEMA public TO {app}",
                # What the owner creates from now on, the application may use row by row.
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                "GRANT USAGE, SELECT ON SEQUENCES TO {app}",
            ):
                conn.execute(sql.SQL(statement).format(db=sql.Identifier(name), owner=owner, app=app))
            self._hide_other_sessions_statements(conn, owner)
        self.stdout.write(self.style.SUCCESS(
            f"database {name}: owner {owner_role}, application role {app_role}"))

    def _template(self, conn, template: str) -> str:
        """The template asked for if it is a database that may be copied, else template0 (empty)."""
        if template and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s AND datistemplate",
                                     [template]).fetchone():
            return template
        if template:
            self.stderr.write(self.style.WARNING(f"no template database {template}: creating an empty database"))
        return "template0"

    def _hide_other_sessions_statements(self, conn, owner) -> None:
        """pg_stat_activity shows every session's current statement to sessions of the same role:
        an injection in one request could read another request's session key from it. Only the
        owner (and superusers) may read it in this database. Needs a superuser (the functions
        belong to one); without one, say so and go on."""
        try:
            for function in ("pg_stat_get_activity(integer)", "pg_stat_get_backend_activity(integer)"):
                conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION pg_catalog.{} FROM PUBLIC").format(sql.SQL(function)))
                conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {}").format(sql.SQL(function), owner))
        except psycopg.errors.InsufficientPrivilege:
            self.stderr.write(self.style.WARNING(
                "could not hide other sessions' statements from the application role (not a superuser): "
                "ask your database administrator to REVOKE EXECUTE ON FUNCTION pg_stat_get_activity(integer) "
                "and pg_stat_get_backend_activity(integer) FROM PUBLIC in this database"))
