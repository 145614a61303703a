"""Sorting a client's invoices by status read from an index, as every other sortable column is: at
50,000 invoices for one client the sort read them all to keep the first 20 (10 ms a statement;
bench/README.md, "50,000 invoices"). Built concurrently, so the invoices table takes writes
meanwhile: outside a transaction, straight through psycopg, as 0017's VACUUM (the scope wrapper,
portal/rls.py, opens a transaction around each statement, and Django's AddIndexConcurrently runs
through it). Inside one (a test database's set-up) it is built plainly."""
from django.db import migrations, models

INDEX = "invoice_client_status"


def create(apps, schema_editor):
    connection = schema_editor.connection
    connection.ensure_connection()
    raw = connection.connection
    how = "CONCURRENTLY " if raw.autocommit else ""
    raw.execute(f"CREATE INDEX {how}IF NOT EXISTS {INDEX} ON invoices_invoice (client_id, status, id)")


def drop(apps, schema_editor):
    connection = schema_editor.connection
    connection.ensure_connection()
    raw = connection.connection
    raw.execute(f"DROP INDEX {'CONCURRENTLY ' if raw.autocommit else ''}IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('integrations', '0014_lease'),
        ('invoices', '0017_vacuum_after_search_key'),
        ('portal', '0028_notification_email_digest'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create, drop)],
            state_operations=[migrations.AddIndex(
                model_name='invoice', index=models.Index(fields=['client', 'status', 'id'], name=INDEX))],
        ),
    ]
