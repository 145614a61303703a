from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"

    def ready(self):
        from invoices.documents import attachments  # noqa: F401 - attaches PDFs to notification emails
