import os

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        # Imported for their side effects: signal receivers, and the row-level-security
        # scope wrapper that every database connection gets when it opens.
        from portal import receivers, rls  # noqa: F401

        if os.environ.get("TXGUARD_LOG"):  # a web server or worker started by the tests
            from portal import txguard  # test-only: loaded where the tests ask for it

            txguard.install()
