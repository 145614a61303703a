from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]

    operations = [EnableRLS("clientlink")]
