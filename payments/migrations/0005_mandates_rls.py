from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("payments", "0004_checkoutattempt_provider_customer_id_and_more")]

    operations = [EnableRLS("mandate"), EnableRLS("mandatecollection")]
