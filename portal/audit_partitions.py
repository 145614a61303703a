"""The audit log partitioned by month: the partitions made ahead, old months dropped by retention.

`portal_auditevent` is a PostgreSQL partitioned table (declarative partitioning, by range of
`created_at`; migration 0025), one partition per calendar month in UTC,
`portal_auditevent_y2026m11`, and a DEFAULT partition, so an insert never fails: an event for a
month with no partition of its own lands in the default one.

Partitions are made and dropped by `audit_partitions_maintain()`, a SQL function owned by the
table owner (SECURITY DEFINER): the application role creates nothing and owns nothing, and
calling the function can do no more than what it does anyway. A daily beat task
(portal.tasks.maintain_audit_partitions) calls it. It

- makes the partitions of this month and the next PARTITIONS_AHEAD, each with forced row-level
  security and the parent's policies, and no privilege for the application role (which reads
  and writes through the parent, whose grants and policies apply: a query on a partition by its
  own name is refused);
- makes no month whose events already sit in the default partition (creating it would fail the
  whole run); it says so in its result and the rows stay where they are, still read through the
  parent;
- drops the monthly partitions that ended more than AUDIT_RETENTION_MONTHS ago (0 keeps every
  month). The retention is compiled into `audit_retention_months()` by `migrate` (as the
  owner), so the application role cannot shorten it. Dropping a month is one catalogue change,
  not millions of DELETEs (which the append-only trigger refuses anyway).
"""
from __future__ import annotations

from django.conf import settings
from django.db import connection

PARENT = "portal_auditevent"
DEFAULT_PARTITION = "portal_auditevent_default"
PARTITIONS_AHEAD = 3

# Owned by the table owner; the application role may only EXECUTE audit_partitions_maintain.
FUNCTIONS_SQL = r"""
CREATE OR REPLACE FUNCTION public.audit_partition_secure(part text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    policy record;
    app_role text := public.audit_app_role();
BEGIN
    -- Read and written through the parent only: its grants and policies apply there. A partition
    -- by its own name is closed to the application role, and under forced RLS besides.
    EXECUTE format('REVOKE ALL ON public.%I FROM PUBLIC', part);
    IF app_role IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON public.%I FROM %I', part, app_role);
    END IF;
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', part);
    FOR policy IN
        SELECT p.polname, p.polcmd, pg_get_expr(p.polqual, p.polrelid) AS qual,
               pg_get_expr(p.polwithcheck, p.polrelid) AS checked
        FROM pg_policy p WHERE p.polrelid = 'public.portal_auditevent'::regclass
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = format('public.%I', part)::regclass
                       AND polname = policy.polname) THEN
            EXECUTE format('CREATE POLICY %I ON public.%I FOR %s%s%s', policy.polname, part,
                           CASE policy.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                              WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                           coalesce(' USING (' || policy.qual || ')', ''),
                           coalesce(' WITH CHECK (' || policy.checked || ')', ''));
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION public.audit_partition_create(month date) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    part text := format('portal_auditevent_y%sm%s', to_char(first, 'YYYY'), to_char(first, 'MM'));
    lower timestamptz := first::timestamp AT TIME ZONE 'UTC';
    upper timestamptz := (first + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    held boolean;
BEGIN
    IF to_regclass(format('public.%I', part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- Dynamic SQL: a static statement naming the default partition fails to plan before it
    -- exists (the migration makes the months that hold events before it makes the default one).
    IF to_regclass('public.portal_auditevent_default') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM public.portal_auditevent_default WHERE created_at >= $1 AND created_at < $2)'
            INTO held USING lower, upper;
        IF held THEN
            RETURN format('kept %s in the default partition (it holds events of that month)', part);
        END IF;
    END IF;
    EXECUTE format('CREATE TABLE public.%I PARTITION OF public.portal_auditevent FOR VALUES FROM (%L) TO (%L)',
                   part, lower, upper);
    PERFORM public.audit_partition_secure(part);
    RETURN format('created %s', part);
END $$;

CREATE OR REPLACE FUNCTION public.audit_partitions_maintain(months_ahead integer DEFAULT 3) RETURNS text[]
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    keep integer := public.audit_retention_months();
    done text[] := '{}';
    step text;
    part record;
BEGIN
    IF to_regclass('public.portal_auditevent_default') IS NULL THEN
        CREATE TABLE public.portal_auditevent_default PARTITION OF public.portal_auditevent DEFAULT;
        PERFORM public.audit_partition_secure('portal_auditevent_default');
        done := done || 'created portal_auditevent_default'::text;
    END IF;
    FOR i IN 0..least(greatest(coalesce(months_ahead, 3), 0), 24) LOOP
        step := public.audit_partition_create((this_month + make_interval(months => i))::date);
        IF step IS NOT NULL THEN
            done := done || step;
        END IF;
    END LOOP;
    IF keep > 0 THEN
        -- A month is dropped once all of it is older than the retention: its end on or before
        -- the first day of the month `keep` months back.
        FOR part IN
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'public.portal_auditevent'::regclass
              AND c.relname ~ '^portal_auditevent_y[0-9]{4}m[0-9]{2}$'
              AND (to_date(substr(c.relname, 20, 4) || substr(c.relname, 25, 2), 'YYYYMM') + interval '1 month')
                  <= (this_month - make_interval(months => keep))
            ORDER BY c.relname
        LOOP
            EXECUTE format('DROP TABLE public.%I', part.relname);
            done := done || format('dropped %s', part.relname);
        END LOOP;
    END IF;
    RETURN done;
END $$;
"""


def install_settings(connection) -> None:
    """Compile AUDIT_RETENTION_MONTHS and the application role's name into the functions the
    maintenance reads them from; run by `migrate` (0025 and after every migrate), as the owner."""
    months = int(settings.AUDIT_RETENTION_MONTHS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION public.audit_retention_months() RETURNS integer "
            f"LANGUAGE sql IMMUTABLE AS $$ SELECT {months} $$")
        cursor.execute(
            "CREATE OR REPLACE FUNCTION public.audit_app_role() RETURNS text "
            f"LANGUAGE sql IMMUTABLE AS $$ SELECT {_literal(settings.DATABASE_APP_ROLE)}::text $$")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def audit_partitions_maintain(*, months_ahead: int = PARTITIONS_AHEAD) -> list[str]:
    """Make the coming months' partitions and drop those past retention; what it did, one line
    each (nothing when all was in place)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT public.audit_partitions_maintain(%s)", [months_ahead])
        return list(cursor.fetchone()[0] or [])


def audit_partitions() -> list[str]:
    """The partitions of the audit log, oldest month first, the default partition last."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname = %s, c.relname", [PARENT, DEFAULT_PARTITION])
        return [name for (name,) in cursor.fetchall()]
