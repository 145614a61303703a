"""The audit log partitioned by month (PostgreSQL declarative partitioning; portal/audit_partitions.py).

The table is made again as a partitioned table with the same columns, indexes, policies, grants
and append-only trigger, and its rows copied into monthly partitions. What changes:
- the primary key is (id, created_at): a partitioned table's unique keys must hold its partition
  column. `id` alone stays unique in practice (one sequence for every partition), and Django
  keeps reading an event by its id; no foreign key points at the log (it points at nothing
  either, db_constraint=False, so it outlives the rows it names);
- `id` takes its values from a sequence of the parent, not an identity column (PostgreSQL 16
  has no identity columns on partitioned tables);
- the partitions are closed to the application role, which reads and writes through the parent.
Django's model state is unchanged: only the database is.
"""
from django.conf import settings
from django.db import migrations

from portal.audit_partitions import FUNCTIONS_SQL, PARTITIONS_AHEAD, install_settings

TABLE = "portal_auditevent"
OLD = "portal_auditevent_unpartitioned"


def _all(cursor, sql, params=()):
    cursor.execute(sql, params)
    return cursor.fetchall()


def partition(apps, schema_editor):
    connection = schema_editor.connection
    app_role = schema_editor.quote_name(settings.DATABASE_APP_ROLE)
    with connection.cursor() as cursor:
        indexes = _all(cursor, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                               "AND tablename = %s AND indexname <> %s", [TABLE, f"{TABLE}_pkey"])
        policies = _all(cursor, """
            SELECT p.polname, p.polcmd, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
            FROM pg_policy p WHERE p.polrelid = %s::regclass ORDER BY p.polname""", [TABLE])
        # The owner reads every row of the old table (its policies would show it none: no scope).
        cursor.execute(f'ALTER TABLE "{TABLE}" DISABLE ROW LEVEL SECURITY')
        [(next_id,)] = _all(cursor, f'SELECT coalesce(max(id), 0) + 1 FROM "{TABLE}"')

        cursor.execute(f'ALTER TABLE "{TABLE}" RENAME TO "{OLD}"')
        cursor.execute(f'ALTER TABLE "{OLD}" ALTER COLUMN id DROP IDENTITY IF EXISTS')
        cursor.execute(f'CREATE TABLE "{TABLE}" (LIKE "{OLD}" INCLUDING DEFAULTS INCLUDING STORAGE) '
                       "PARTITION BY RANGE (created_at)")
        cursor.execute(f'CREATE SEQUENCE "{TABLE}_id_seq" AS bigint START WITH {int(next_id)} '
                       f'OWNED BY "{TABLE}".id')
        cursor.execute(f"""ALTER TABLE "{TABLE}" ALTER COLUMN id SET DEFAULT nextval('"{TABLE}_id_seq"')""")

        # The old table's policies and grants on the parent (each partition copies the policies).
        commands = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
        for name, command, using, check in policies:
            cursor.execute(f'CREATE POLICY "{name}" ON "{TABLE}" FOR {commands[command]}'
                           + (f" USING ({using})" if using else "") + (f" WITH CHECK ({check})" if check else ""))
        cursor.execute(f'REVOKE ALL ON "{TABLE}" FROM PUBLIC')
        cursor.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON "{TABLE}" FROM {app_role}')
        cursor.execute(f'GRANT SELECT, INSERT ON "{TABLE}" TO {app_role}')
        cursor.execute(f'GRANT USAGE ON SEQUENCE "{TABLE}_id_seq" TO {app_role}')

        # The maintenance, then a partition for every month that has events, and the coming ones.
        cursor.execute(FUNCTIONS_SQL)
        install_settings(connection)
        for function in ("audit_partition_secure(text)", "audit_partition_create(date)",
                         "audit_partitions_maintain(integer)", "audit_retention_months()", "audit_app_role()"):
            cursor.execute(f"REVOKE ALL ON FUNCTION public.{function} FROM PUBLIC")
        cursor.execute(f"GRANT EXECUTE ON FUNCTION public.audit_partitions_maintain(integer) TO {app_role}")
        months = _all(cursor, "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date "
                              f'FROM "{OLD}" ORDER BY 1')
        for (month,) in months:
            cursor.execute("SELECT public.audit_partition_create(%s)", [month])
        # Nothing dropped in a migration: the first run of the daily task applies the retention.
        cursor.execute("CREATE OR REPLACE FUNCTION public.audit_retention_months() RETURNS integer "
                       "LANGUAGE sql IMMUTABLE AS $$ SELECT 0 $$")
        cursor.execute("SELECT public.audit_partitions_maintain(%s)", [PARTITIONS_AHEAD])
        install_settings(connection)

        cursor.execute(f'INSERT INTO "{TABLE}" SELECT * FROM "{OLD}"')
        cursor.execute(f'DROP TABLE "{OLD}"')
        cursor.execute(f'ALTER TABLE "{TABLE}" ENABLE ROW LEVEL SECURITY')
        cursor.execute(f'ALTER TABLE "{TABLE}" FORCE ROW LEVEL SECURITY')

        # Keys, indexes (by their old names, so later migrations find them) and the trigger; made
        # on the parent, PostgreSQL makes them on every partition, now and to come.
        cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{TABLE}_pkey" PRIMARY KEY (id, created_at)')
        for _name, definition in indexes:
            cursor.execute(definition)
        cursor.execute(f'CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON "{TABLE}" '
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")


class Migration(migrations.Migration):
    # One transaction: the log is never seen half copied.
    atomic = True

    dependencies = [("portal", "0024_job_claim_plans")]

    operations = [migrations.RunPython(partition, migrations.RunPython.noop, elidable=False)]
