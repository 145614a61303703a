"""A signed row-level-security scope, and a policy for every table that can hold a person's data.

The scope functions now trust only a signed token (portal/rls.py). Tables that are not
a client's own get policies that fit them: a user's own rows (user, emails, authenticators,
preferences), a session's own row, the account pages' identity scope, or back office only.
"""
from django.conf import settings
from django.db import migrations

from portal.rls import SIGNED_FUNCTIONS_SQL, EnableRLS

STAFF = "app_is_staff()"
IDENTITY = "app_is_staff() OR app_identity()"


def own(column: str) -> str:
    """A user's own rows; the account pages and back office see all."""
    return f"app_is_staff() OR app_identity() OR {column} = app_user_id()"


# A user may change its own row (last login, language, name), never make itself staff.
PRIVILEGES_SQL = """
CREATE OR REPLACE FUNCTION portal_user_privileges_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT' AND (NEW.is_staff OR NEW.is_superuser) OR TG_OP = 'UPDATE'
            AND (NEW.is_staff, NEW.is_superuser, NEW.is_active) IS DISTINCT FROM
                (OLD.is_staff, OLD.is_superuser, OLD.is_active))
            AND NOT app_is_staff() THEN
        RAISE EXCEPTION 'only back office grants or withdraws staff rights'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER portal_user_privileges_guard BEFORE INSERT OR UPDATE ON portal_user
    FOR EACH ROW EXECUTE FUNCTION portal_user_privileges_guard();
"""


def key_table_owner_only(apps, schema_editor):
    # The default privileges hand the application role every new table: not this one.
    app_role = schema_editor.quote_name(settings.DATABASE_APP_ROLE)
    schema_editor.execute(f"REVOKE ALL ON public.app_scope_key FROM PUBLIC, {app_role}")


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0016_webhook_ignored"),
        ("account", "0009_emailaddress_unique_primary_email"),
        ("mfa", "0003_authenticator_type_uniq"),
        ("sessions", "0001_initial"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunSQL(SIGNED_FUNCTIONS_SQL, reverse_sql=migrations.RunSQL.noop),
        migrations.RunPython(key_table_owner_only, migrations.RunPython.noop),
        EnableRLS("user", column="id", using=own("id")),
        migrations.RunSQL(PRIVILEGES_SQL, reverse_sql=(
            "DROP TRIGGER IF EXISTS portal_user_privileges_guard ON portal_user; "
            "DROP FUNCTION IF EXISTS portal_user_privileges_guard();")),
        EnableRLS("user_groups", table="portal_user_groups", using=own("user_id"), write=STAFF),
        EnableRLS("user_permissions", table="portal_user_user_permissions", using=own("user_id"), write=STAFF),
        EnableRLS("emailaddress", table="account_emailaddress", using=own("user_id"), check=IDENTITY),
        EnableRLS("emailconfirmation", table="account_emailconfirmation", using=IDENTITY),
        EnableRLS("authenticator", table="mfa_authenticator", using=own("user_id"), check=own("user_id")),
        EnableRLS("notificationpreference", using=own("user_id")),
        # A session row is read and written only by the request that holds its key (or by back
        # office, e.g. clearsessions); the scope carries a SHA-256 of the key, never the key.
        EnableRLS("session", table="django_session",
                  using="app_is_staff() OR encode(sha256(convert_to(session_key, 'UTF8')), 'hex') = app_session()"),
        EnableRLS("logentry", table="django_admin_log", using=STAFF),
        EnableRLS("scheduledrun", using=STAFF),
    ]
