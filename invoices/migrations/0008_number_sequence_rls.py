"""Row-level security on the number sequences: issued by back office and jobs only."""
from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [
        ("invoices", "0007_payment_gateway_payment_id_and_more"),
        ("portal", "0017_signed_scope"),
    ]

    operations = [
        EnableRLS("numbersequence", using="app_is_staff()"),
    ]
