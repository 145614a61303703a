"""Connections to accounting systems, the inbound event store and client links."""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from portal.crypto import EncryptedJSONField, EncryptedTextField


class Connection(models.Model):
    class Kind(models.TextChoices):
        GENERIC_REST = "generic_rest", _("Custom ERP (REST/JSON)")
        GRAPHQL = "graphql", _("Custom ERP (GraphQL)")
        EXACT_ONLINE = "exact_online", _("Exact Online")
        TWINFIELD = "twinfield", _("Twinfield")

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("URL name"), unique=True,
                            help_text=_("Webhooks arrive at /webhooks/accounting/<URL name>/."))
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.GENERIC_REST)
    brand = models.ForeignKey("portal.Brand", on_delete=models.PROTECT, related_name="connections")
    signing_secrets = EncryptedTextField(
        _("signing secrets"),
        help_text=_("Standard Webhooks secrets (whsec_...), one per line. During rotation list the new "
                    "and the old one; a signature by either is accepted."))
    enabled = models.BooleanField(_("enabled"), default=True)
    outbound_url = models.URLField(
        _("payments go to"), blank=True,
        help_text=_("Where payments, refunds and chargebacks are posted back (signed like inbound webhooks)."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def secrets(self) -> list[str]:
        return [line.strip() for line in self.signing_secrets.splitlines() if line.strip()]


class ClientLink(models.Model):
    """Which portal client an accounting system's customer id stands for."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="client_links")
    external_id = models.CharField(max_length=100)
    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE, related_name="links")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "external_id"], name="client_link_unique")]

    def __str__(self):
        return f"{self.connection} {self.external_id} → {self.client}"


class InboundEvent(models.Model):
    """A webhook as it arrived, kept (encrypted) before anything else happens to it."""

    class Status(models.TextChoices):
        REJECTED = "rejected", _("Rejected (4xx)")
        PENDING = "pending", _("Pending")
        PROCESSING = "processing", _("Processing")
        WAITING = "waiting", _("Waiting (retry scheduled)")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored (stale)")
        DEAD = "dead", _("Dead")

    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="events")
    event_id = models.CharField(_("event id"), max_length=200, blank=True)
    event_type = models.CharField(_("type"), max_length=50, blank=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices)
    headers = EncryptedJSONField(default=dict)
    body = EncryptedTextField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # Only accepted events claim their id: a forged request cannot block the real one.
            models.UniqueConstraint(fields=["connection", "event_id"], condition=~Q(status="rejected"),
                                    name="inbound_event_once"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status__in=["pending", "waiting"]),
                         name="inbound_event_due"),
        ]

    def __str__(self):
        return f"{self.event_type or '?'} {self.event_id or '?'} ({self.get_status_display()})"


class OutboxMessage(models.Model):
    """A message for an accounting system, written in the same transaction as the change it
    reports, then delivered (signed), retried with backoff, and parked as dead after the last try."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        WAITING = "waiting", _("Waiting (retry scheduled)")
        DELIVERED = "delivered", _("Delivered")
        DEAD = "dead", _("Dead")

    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="outbox")
    message_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=50)
    payload = EncryptedJSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(status__in=["pending", "waiting"]),
                                name="outbox_due")]

    def __str__(self):
        return f"{self.event_type} {self.message_id} ({self.get_status_display()})"
