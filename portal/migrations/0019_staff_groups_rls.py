"""Row-level security on staff groups and their permissions: anyone may read the names, only
back office may change them (a row here can hand a staff member rights)."""
from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0018_webhook_limits"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        EnableRLS("group", table="auth_group", using="true", write="app_is_staff()"),
        EnableRLS("group_permissions", table="auth_group_permissions", using="true", write="app_is_staff()"),
    ]
