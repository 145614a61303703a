"""Row-level security on connections (their credentials) and the outbox: back office and jobs only."""
from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_jobs_replace_inbound_events_and_outbox_state"),
        ("portal", "0017_signed_scope"),
    ]

    operations = [
        EnableRLS("connection", using="app_is_staff()"),
        EnableRLS("outboxmessage", using="app_is_staff()"),
    ]
