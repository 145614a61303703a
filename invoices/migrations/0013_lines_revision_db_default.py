"""lines_revision starts at 0 in the database too, so bulk fills that write invoices or credit
notes with SQL or COPY (benchmarks, imports) need not name it."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("invoices", "0012_lines_revision"),
    ]

    operations = [
        migrations.AlterField(model_name="invoice", name="lines_revision",
                              field=models.PositiveIntegerField(db_default=0, default=0, editable=False)),
        migrations.AlterField(model_name="creditnote", name="lines_revision",
                              field=models.PositiveIntegerField(db_default=0, default=0, editable=False)),
    ]
