"""Connections to accounting systems, client links and the outbox of messages back to them."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.crypto import EncryptedJSONField, EncryptedTextField


class Connection(models.Model):
    class Kind(models.TextChoices):
        GENERIC_REST = "generic_rest", _("Custom ERP (REST/JSON)")
        GRAPHQL = "graphql", _("Custom ERP (GraphQL)")
        EXACT_ONLINE = "exact_online", _("Exact Online")
        TWINFIELD = "twinfield", _("Twinfield")
        ERP_PULL = "erp_pull", _("Custom ERP (REST/GraphQL pull)")

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("URL name"), unique=True,
                            help_text=_("Webhooks arrive at /webhooks/accounting/<URL name>/."))
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.GENERIC_REST)
    brand = models.ForeignKey("portal.Brand", on_delete=models.PROTECT, related_name="connections",
                              verbose_name=_("brand"))
    signing_secrets = EncryptedTextField(
        _("signing secrets"),
        help_text=_("Standard Webhooks secrets (whsec_...), one per line. During rotation list the new "
                    "and the old one; a signature by either is accepted."))
    enabled = models.BooleanField(_("enabled"), default=True)
    outbound_url = models.URLField(
        _("payments go to"), blank=True,
        help_text=_("Where payments, refunds and chargebacks are posted back (signed like inbound webhooks)."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("connection")
        verbose_name_plural = _("connections")

    def __str__(self):
        return self.name

    def secrets(self) -> list[str]:
        return [line.strip() for line in self.signing_secrets.splitlines() if line.strip()]


class ClientLink(models.Model):
    """Which portal client an accounting system's customer id stands for."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="client_links",
                                   verbose_name=_("connection"))
    external_id = models.CharField(_("customer id in accounting"), max_length=100)
    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE, related_name="links",
                               verbose_name=_("client"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("client link")
        verbose_name_plural = _("client links")
        constraints = [models.UniqueConstraint(fields=["connection", "external_id"], name="client_link_unique")]

    def __str__(self):
        return f"{self.connection} {self.external_id} → {self.client}"


class OutboxMessage(models.Model):
    """A message for an accounting system, written in the same transaction as the change it
    reports, with the job that delivers it (portal.jobs, kind "outbox.deliver"). The job is the
    one truth about delivery (state, attempts, next try, last error); the message keeps only
    what the other side answered, for staff to read."""

    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="outbox",
                                   verbose_name=_("connection"))
    message_id = models.CharField(_("message id"), max_length=64, unique=True,
                                  help_text=_("Sent as webhook-id: the receiver books a message id once."))
    event_type = models.CharField(_("type"), max_length=50)
    payload = EncryptedJSONField()
    response_status = models.PositiveSmallIntegerField(_("last answer (HTTP status)"), null=True, blank=True)
    created_at = models.DateTimeField(_("written"), auto_now_add=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")

    def __str__(self):
        return f"{self.event_type} {self.message_id}"

    @property
    def job_key(self) -> str:
        return f"outbox:{self.message_id}"


class Lease(models.Model):
    """One holder at a time for a key ("exact-token:12"), across processes and machines, kept in
    a row rather than in a database session, so it holds behind PgBouncer in transaction mode
    (integrations.oauth.lease). The database's clock decides when it has run out."""

    key = models.CharField(primary_key=True, max_length=200)
    holder = models.UUIDField()
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = _("lease")
        verbose_name_plural = _("leases")

    def __str__(self):
        return self.key


from integrations.exact.models import ExactConnection, ExactCursor, ExactEndpointErrors  # noqa: E402,F401
from integrations.twinfield.models import TwinfieldConnection, TwinfieldCursor  # noqa: E402,F401
from integrations.erp.models import ApiToken, ErpFeed, ErpParked, ErpPull  # noqa: E402,F401
from integrations.peppol.models import PeppolConnection, PeppolDelivery, PeppolReceiver  # noqa: E402,F401

