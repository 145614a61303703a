from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("portal", "0005_notifications")]

    # A contact sees its own notifications for the client it acts for; the worker (staff) all.
    operations = [EnableRLS("notification", using="app_is_staff() OR (client_id = app_client_id() AND "
                                                  "user_id = app_user_id())",
                            check="app_is_staff() OR client_id = app_client_id()")]
