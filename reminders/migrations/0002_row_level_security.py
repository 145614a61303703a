from django.db import migrations

from portal.rls import EnableRLS


class Migration(migrations.Migration):
    dependencies = [("reminders", "0001_initial")]

    # A client's own policy is back-office data; clients never read policies.
    operations = [EnableRLS("reminderpolicy", using="app_is_staff()", check="app_is_staff()"),
                  EnableRLS("reminderhold"), EnableRLS("reminderdispatch")]
