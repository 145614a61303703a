"""Gateway webhooks are kept by the one intake (portal.WebhookRequest) and processed as jobs
(portal.Job): the payments app's own store of them goes. Its rows are dropped with it (there was
no production data)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("payments", "0005_mandates_rls")]

    operations = [migrations.DeleteModel(name="GatewayEvent")]
