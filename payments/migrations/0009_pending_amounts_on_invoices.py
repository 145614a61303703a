"""Invoices with a payment already pending at a gateway (before Invoice.amount_pending existed)
get that amount, method and date now, as payments.services keeps them from here on."""
from django.db import migrations

from portal.rls import staff_scope

PENDING = """
UPDATE invoices_invoice i
SET amount_pending = pending.total, pending_method = pending.method, pending_since = pending.since
FROM (
    SELECT item.invoice_id, sum(item.amount) AS total,
           (array_agg(attempt.method ORDER BY attempt.created_at DESC, item.id DESC))[1] AS method,
           max(attempt.created_at) AS since
    FROM payments_checkoutitem item JOIN payments_checkoutattempt attempt ON attempt.id = item.attempt_id
    WHERE attempt.status = 'pending'
    GROUP BY item.invoice_id
) pending
WHERE pending.invoice_id = i.id
"""


def backfill(apps, schema_editor):
    with staff_scope(), schema_editor.connection.cursor() as cursor:
        cursor.execute(PENDING)


class Migration(migrations.Migration):
    dependencies = [
        ("invoices", "0009_pending_void_and_payment_numbers"),
        ("payments", "0008_gateway_accounts_rls"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
