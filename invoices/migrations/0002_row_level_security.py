from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("invoices", "0001_initial")]

    operations = [
        EnableRLS(model)
        for model in ("invoice", "invoiceline", "creditnote", "creditnoteline", "payment", "paymentallocation",
                      "clientcredit", "recurringschedule", "recurringline")
    ]
