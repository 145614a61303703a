"""Row-level security on the tenancy tables, and the audit log made append-only."""
from django.conf import settings
from django.db import migrations

from portal.rls import FUNCTIONS_SQL, EnableRLS

MEMBER_OF = "id IN (SELECT client_id FROM portal_membership WHERE user_id = app_user_id())"


def audit_append_only(apps, schema_editor):
    table = apps.get_model("portal", "AuditEvent")._meta.db_table
    app_role = schema_editor.quote_name(settings.DATABASE_APP_ROLE)
    schema_editor.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON "{table}" FROM {app_role}, PUBLIC')
    schema_editor.execute(f'GRANT SELECT, INSERT ON "{table}" TO {app_role}')
    schema_editor.execute(
        """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege'; END $$"""
    )
    schema_editor.execute(
        f'CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON "{table}" '
        f"FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
    )


def audit_append_only_undo(apps, schema_editor):
    table = apps.get_model("portal", "AuditEvent")._meta.db_table
    schema_editor.execute(f'DROP TRIGGER IF EXISTS audit_append_only ON "{table}"')


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTIONS_SQL, reverse_sql=(
            "DROP FUNCTION IF EXISTS app_client_id(); DROP FUNCTION IF EXISTS app_user_id(); "
            "DROP FUNCTION IF EXISTS app_is_staff();")),
        # A user sees the clients it belongs to (to pick one), and its own memberships.
        EnableRLS("client", column="id", using=f"app_is_staff() OR id = app_client_id() OR {MEMBER_OF}",
                  check="app_is_staff()"),
        EnableRLS("membership", using="app_is_staff() OR client_id = app_client_id() OR user_id = app_user_id()",
                  check="app_is_staff() OR client_id = app_client_id()"),
        # Anyone may add an event about itself (a failed login has no client); reading is scoped.
        EnableRLS("auditevent", insert_check="app_is_staff() OR client_id IS NULL OR client_id = app_client_id()"),
        migrations.RunPython(audit_append_only, audit_append_only_undo),
    ]
