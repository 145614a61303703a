from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [EnableRLS("checkoutattempt"), EnableRLS("checkoutitem")]
