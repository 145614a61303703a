"""Webhooks are stored by the one intake (portal.WebhookRequest) and processed as jobs
(portal.Job): the inbound event store goes. An outbox message's delivery state is its job's;
the message keeps what the receiver answered. No production data yet, so nothing is carried over."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0003_outbox'),
    ]

    operations = [
        migrations.DeleteModel(
            name='InboundEvent',
        ),
        migrations.AlterModelOptions(
            name='outboxmessage',
            options={'ordering': ['-created_at', '-id'], 'verbose_name': 'outbox message', 'verbose_name_plural': 'outbox messages'},
        ),
        migrations.RemoveIndex(
            model_name='outboxmessage',
            name='outbox_due',
        ),
        migrations.RemoveField(
            model_name='outboxmessage',
            name='attempts',
        ),
        migrations.RemoveField(
            model_name='outboxmessage',
            name='last_error',
        ),
        migrations.RemoveField(
            model_name='outboxmessage',
            name='next_attempt_at',
        ),
        migrations.RemoveField(
            model_name='outboxmessage',
            name='status',
        ),
        migrations.AlterField(
            model_name='outboxmessage',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, verbose_name='written'),
        ),
        migrations.AlterField(
            model_name='outboxmessage',
            name='delivered_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='delivered'),
        ),
        migrations.AlterField(
            model_name='outboxmessage',
            name='event_type',
            field=models.CharField(max_length=50, verbose_name='type'),
        ),
        migrations.AlterField(
            model_name='outboxmessage',
            name='message_id',
            field=models.CharField(help_text='Sent as webhook-id: the receiver books a message id once.', max_length=64, unique=True, verbose_name='message id'),
        ),
        migrations.AlterField(
            model_name='outboxmessage',
            name='response_status',
            field=models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='last answer (HTTP status)'),
        ),
    ]
