from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self):
        from payments import receivers  # noqa: F401 - connects to the ledger's signals (app loading)
