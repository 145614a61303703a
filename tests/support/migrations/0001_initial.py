import django.db.models.deletion
from django.db import migrations, models

import portal.crypto
from portal.rls import EnableRLS


class Migration(migrations.Migration):
    initial = True
    dependencies = [("portal", "0002_row_level_security")]

    operations = [
        migrations.CreateModel(
            name="SecretNote",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", portal.crypto.EncryptedTextField()),
                ("payload", portal.crypto.EncryptedJSONField(blank=True, null=True)),
                ("client", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="portal.client")),
            ],
        ),
        EnableRLS("secretnote"),
    ]
