"""Exact Online's side of a connection (kind exact_online): the app's credentials, the tokens and
the state staff see (integrations.oauth.AuthorisedApp, shared with Twinfield), the division, the
budgets Exact allows, and a sync cursor per entity. Exact's refresh tokens are single-use and
rotate (integrations.exact.tokens)."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from integrations.oauth import AuthorisedApp
from portal.crypto import EncryptedTextField

# Exact's country sites; each is its own OAuth server and API base (docs: "Exact Online sites").
HOSTS = {
    "nl": "https://start.exactonline.nl", "be": "https://start.exactonline.be", "de": "https://start.exactonline.de",
    "uk": "https://start.exactonline.co.uk", "us": "https://start.exactonline.com", "es": "https://start.exactonline.es",
    "fr": "https://start.exactonline.fr",
}


class ExactConnection(AuthorisedApp):
    class Country(models.TextChoices):
        NL = "nl", _("Netherlands (start.exactonline.nl)")
        BE = "be", _("Belgium (start.exactonline.be)")
        DE = "de", _("Germany (start.exactonline.de)")
        UK = "uk", _("United Kingdom (start.exactonline.co.uk)")
        US = "us", _("United States (start.exactonline.com)")
        ES = "es", _("Spain (start.exactonline.es)")
        FR = "fr", _("France (start.exactonline.fr)")

    connection = models.OneToOneField("integrations.Connection", on_delete=models.CASCADE, related_name="exact",
                                      verbose_name=_("connection"))
    country = models.CharField(_("Exact site"), max_length=2, choices=Country.choices, default=Country.NL)
    webhook_secret = EncryptedTextField(_("webhook secret"), blank=True)
    division = models.PositiveIntegerField(_("division"), null=True, blank=True)
    divisions = models.JSONField(_("divisions the user can reach"), default=list, blank=True,
                                 help_text=_("[{\"code\": 123, \"name\": \"...\"}], read at connecting."))
    journal = models.CharField(_("bank journal"), max_length=20, blank=True,
                               help_text=_("The journal (bank or payment service) portal payments are booked on."))
    journals = models.JSONField(_("bank journals in the division"), default=list, blank=True,
                                help_text=_("[{\"code\": \"20\", \"name\": \"...\", \"type\": 12}], read when the division was chosen."))
    sends_peppol = models.BooleanField(
        _("Exact sends invoices over Peppol"), default=False,
        help_text=_("Exact Online delivers this brand's invoices and credit notes over Peppol itself "
                    "(PrintedSalesInvoices with SendInvoiceViaPeppol): the portal does not send them a second time."))
    # What Exact's last answer said of the budgets (X-RateLimit-*), per app and division.
    day_limit = models.PositiveIntegerField(default=5000)
    day_remaining = models.PositiveIntegerField(null=True, blank=True)
    day_resets_at = models.DateTimeField(null=True, blank=True)
    minute_remaining = models.PositiveIntegerField(null=True, blank=True)
    minute_resets_at = models.DateTimeField(null=True, blank=True)
    rate_limited_until = models.DateTimeField(_("rate-limited until"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Exact Online connection")
        verbose_name_plural = _("Exact Online connections")

    def __str__(self):
        return str(self.connection)

    @property
    def base_url(self) -> str:
        from django.conf import settings

        return (settings.EXACT_BASE_URL or HOSTS[self.country]).rstrip("/")


class ExactCursor(models.Model):
    """The highest Exact `Timestamp` applied per Sync API entity: the next sync asks for more."""

    class Entity(models.TextChoices):
        ACCOUNTS = "accounts", _("Customers")
        SALES_INVOICES = "sales_invoices", _("Sales invoices")
        TRANSACTION_LINES = "transaction_lines", _("Transaction lines")
        DELETED = "deleted", _("Deleted records")

    exact = models.ForeignKey(ExactConnection, on_delete=models.CASCADE, related_name="cursors")
    entity = models.CharField(_("entity"), max_length=20, choices=Entity.choices)
    timestamp = models.BigIntegerField(_("cursor"), default=1)
    synced_at = models.DateTimeField(_("last sync"), null=True, blank=True)

    class Meta:
        verbose_name = _("sync cursor")
        verbose_name_plural = _("sync cursors")
        constraints = [models.UniqueConstraint(fields=["exact", "entity"], name="exact_cursor_once")]


class ExactEndpointErrors(models.Model):
    """Errors (400/401/403/404) per endpoint and hour: Exact blocks an app for an hour after more
    than ten, so the client stops calling an endpoint before that."""

    exact = models.ForeignKey(ExactConnection, on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=200)
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["exact", "endpoint", "hour"], name="exact_errors_once")]
