"""Indexes for a client's pages at any size (issue 17, point 3; bench/portal.py): the invoice list
reads its page of 20 from an index in the order it sorts by (each sortable column with the id
that breaks ties), not by sorting all of a client's invoices; which invoices a filter or a deep
page names, the counts, the dashboard's totals and the number search are read from an index
alone; a client's latest payments and credit notes likewise. Plain CREATE INDEX, as everywhere
here: the scope wrapper (portal/rls.py) runs each statement in a transaction, where CREATE INDEX
CONCURRENTLY cannot run; at a million invoices the migration takes about 40 s."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("invoices", "0013_lines_revision_db_default"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="invoice",
            index=models.Index(fields=["client", "status", "due_date"],
                               include=["currency", "open_balance", "amount_pending"],
                               name="invoice_client_status_due")),
        migrations.RemoveIndex(model_name="invoice", name="invoices_in_client__4463ab_idx"),
        migrations.AddIndex(model_name="invoice",
                            index=models.Index(fields=["client", "issue_date", "id"],
                                               include=["status", "due_date", "total", "open_balance", "amount_paid",
                                                        "amount_credited"],
                                               name="invoice_client_issued")),
        migrations.AddIndex(model_name="invoice",
                            index=models.Index(fields=["client", "due_date", "id"], name="invoice_client_due")),
        migrations.AddIndex(model_name="invoice",
                            index=models.Index(fields=["client", "total", "id"], name="invoice_client_total")),
        migrations.AddIndex(model_name="invoice",
                            index=models.Index(fields=["client", "open_balance", "id"], name="invoice_client_open")),
        migrations.AddIndex(
            model_name="invoice",
            index=models.Index(fields=["client", "number", "id"], include=["purchase_order", "status"],
                               name="invoice_client_number")),
        migrations.AddIndex(
            model_name="invoice",
            index=models.Index(fields=["client", "pending_since", "id"], condition=models.Q(amount_pending__gt=0),
                               name="invoice_client_pending")),
        migrations.AddIndex(model_name="payment",
                            index=models.Index(fields=["client", "received_at", "id"], name="payment_client_received")),
        migrations.AddIndex(
            model_name="creditnote",
            index=models.Index(fields=["client", "issue_date", "id"], name="credit_note_client_issued")),
    ]
