from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("invoices", "0003_rendered_documents")]

    operations = [EnableRLS("rendereddocument")]
