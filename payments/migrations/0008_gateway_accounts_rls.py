"""Row-level security on gateway accounts and the sandbox gateway's own payments.

A client paying reads its brand's gateway account (which methods it offers; the keys stay
encrypted); only back office creates, changes or deletes one. The sandbox's payments stand
for the gateway's side of a payment: back office (and the sandbox itself) only."""
from django.db import migrations

from portal.rls import EnableRLS

OWN_BRAND = "app_is_staff() OR brand_id = (SELECT brand_id FROM portal_client WHERE id = app_client_id())"


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0007_attempt_awaiting_answer"),
        ("portal", "0017_signed_scope"),
    ]

    operations = [
        EnableRLS("gatewayaccount", using=OWN_BRAND, write="app_is_staff()"),
        EnableRLS("sandboxpayment", using="app_is_staff()"),
    ]
