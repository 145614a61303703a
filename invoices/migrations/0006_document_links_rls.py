from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("invoices", "0005_document_links")]

    operations = [EnableRLS("documentlink")]
