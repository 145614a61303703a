import os

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _
from django.db import connections
from django.db.models.signals import post_migrate


def _secure_scope(sender, using, **kwargs):
    """After every `migrate` (run as the owner): the scope key where only the database's scope
    check reads it, every policy in its fast form (portal/rls.py), and the audit log's retention."""
    from portal import rls

    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.app_scope_key') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return
    rls.install_scope_key(connection)
    rls.harden_policies(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regprocedure('public.audit_partitions_maintain(integer)') IS NOT NULL")
        partitioned = cursor.fetchone()[0]
    if partitioned:  # AUDIT_RETENTION_MONTHS where the audit log's maintenance reads it
        from portal import audit_partitions

        audit_partitions.install_settings(connection)


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = _("Portal")

    def ready(self):
        # Imported for their side effects: signal receivers, and the row-level-security
        # scope wrapper that every database connection gets when it opens.
        from portal import live, receivers, rls  # noqa: F401

        # Every back-office list counts its rows once: not also the unfiltered total beside a
        # filtered count (Django's default), a second COUNT(*) on every list (issue 17, point 2).
        # Set on the base class so Django's and allauth's own lists count once too.
        from django.contrib import admin

        admin.ModelAdmin.show_full_result_count = False

        post_migrate.connect(_secure_scope, sender=self, dispatch_uid="portal.secure_scope")

        if os.environ.get("TXGUARD_LOG"):  # a web server or worker started by the tests
            from portal import txguard  # test-only: loaded where the tests ask for it

            txguard.install()
