"""Webhook rejections are counted per answer too (413, 401, 404, ignored ...), each with its own sample."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0017_signed_scope'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='webhookrejections',
            name='one_rejection_count_per_hour',
        ),
        migrations.AddField(
            model_name='webhookrejections',
            name='answer',
            field=models.PositiveSmallIntegerField(default=0, help_text='200 for a request answered as ignored.', verbose_name='answer (HTTP status)'),
        ),
        migrations.AddConstraint(
            model_name='webhookrejections',
            constraint=models.UniqueConstraint(fields=('source', 'account', 'hour', 'answer'), name='one_rejection_count_per_hour_and_answer'),
        ),
    ]
