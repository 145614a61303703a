"""Leases (integrations.oauth.lease): one holder at a time per key, in a row instead of a
session-level advisory lock; back office and jobs only."""

from django.db import migrations, models

from portal.rls import EnableRLS


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0013_peppol_rules_checked'),
    ]

    operations = [
        migrations.CreateModel(
            name='Lease',
            fields=[
                ('key', models.CharField(max_length=200, primary_key=True, serialize=False)),
                ('holder', models.UUIDField()),
                ('expires_at', models.DateTimeField()),
            ],
            options={
                'verbose_name': 'lease',
                'verbose_name_plural': 'leases',
            },
        ),
        EnableRLS("lease", using="app_is_staff()"),
    ]
