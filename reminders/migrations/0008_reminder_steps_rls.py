"""Row-level security on reminder steps (their texts), as on their policies: back office only."""
from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [
        ("reminders", "0007_deliveries"),
        ("portal", "0017_signed_scope"),
    ]

    operations = [
        EnableRLS("reminderstep", using="app_is_staff()"),
    ]
