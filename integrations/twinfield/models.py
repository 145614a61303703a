"""Twinfield's side of a connection (kind twinfield): the app's credentials, the tokens and the
state staff see (integrations.oauth.AuthorisedApp, shared with Exact Online), the cluster the
organisation lives on, the office and bank daybook, Twinfield's credit budget, and a poll cursor
per entity.

Twinfield has no webhooks: everything comes in by polling (integrations.twinfield.sync)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from integrations.oauth import AuthorisedApp


class TwinfieldConnection(AuthorisedApp):
    connection = models.OneToOneField("integrations.Connection", on_delete=models.CASCADE, related_name="twinfield",
                                      verbose_name=_("connection"))
    # OpenID Connect asks for a nonce on every authorisation request (Wolters Kluwer's samples).
    oauth_nonce = models.CharField(max_length=64, blank=True)
    # Discovered from the access token (accesstokenvalidation's twf.clusterUrl): where the SOAP
    # services of this organisation are.
    cluster_url = models.URLField(_("cluster"), blank=True)
    organisation = models.CharField(_("organisation"), max_length=100, blank=True)
    office = models.CharField(_("office"), max_length=40, blank=True,
                              help_text=_("The administration (company code) this connection keeps in step."))
    offices = models.JSONField(_("offices the user can reach"), default=list, blank=True,
                               help_text=_("[{\"code\": \"001\", \"name\": \"...\"}], read at connecting."))
    daybook = models.CharField(_("bank daybook"), max_length=20, blank=True,
                               help_text=_("The bank (or cash) daybook portal payments are booked on."))
    daybooks = models.JSONField(_("daybooks in the office"), default=list, blank=True)
    bank_account = models.CharField(_("bank daybook's general ledger account"), max_length=20, blank=True)
    receivables_account = models.CharField(_("debtors account"), max_length=20, blank=True, default="1300",
                                           help_text=_("The general ledger account of the customers' open items."))
    poll_minutes = models.PositiveIntegerField(
        _("poll every (minutes)"), default=5,
        help_text=_("How often new transactions and open items are read. Each poll costs a few credits."))
    # Twinfield's fair-use budget: credits a minute (1 a query, 3 another request), and a 429's Retry-After.
    credits_minute = models.DateTimeField(null=True, blank=True)  # the minute `credits_this_minute` counts
    credits_this_minute = models.PositiveIntegerField(_("credits this minute"), default=0)
    credits_day = models.DateField(null=True, blank=True)
    credits_today = models.PositiveIntegerField(_("credits today"), default=0)
    throttled_until = models.DateTimeField(_("throttled until"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Twinfield connection")
        verbose_name_plural = _("Twinfield connections")

    def __str__(self):
        return str(self.connection)

    @property
    def login_url(self) -> str:
        """Wolters Kluwer's login (OAuth/OpenID Connect); the only address configured."""
        return settings.TWINFIELD_LOGIN_URL.rstrip("/")


class TwinfieldCursor(models.Model):
    """Where the next poll of an entity starts: "loaded" once every customer was read; for
    transactions, the last modification moment seen (Twinfield's clock, YYYYMMDDHHMMSS)."""

    class Entity(models.TextChoices):
        CUSTOMERS = "customers", _("Customers")
        # What is paid of an invoice is read with its customer line (a match changes it).
        TRANSACTIONS = "transactions", _("Sales transactions and payments")

    twinfield = models.ForeignKey(TwinfieldConnection, on_delete=models.CASCADE, related_name="cursors")
    entity = models.CharField(_("entity"), max_length=20, choices=Entity.choices)
    position = models.CharField(_("cursor"), max_length=100, blank=True)
    polled_at = models.DateTimeField(_("last poll"), null=True, blank=True)

    class Meta:
        verbose_name = _("poll cursor")
        verbose_name_plural = _("poll cursors")
        constraints = [models.UniqueConstraint(fields=["twinfield", "entity"], name="twinfield_cursor_once")]
