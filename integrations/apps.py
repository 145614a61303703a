from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self):
        from integrations import receivers  # noqa: F401 - connects the ledger's signals (app loading)
