"""Custom ERPs (issue 16): API tokens for the GraphQL API (integrations.erp.api) and the pull
adapter for ERPs that can only be read (integrations.erp.pull), with what they send back
(integrations.erp.push).

Both feed the one canonical event path (integrations.services.event_store and the
"accounting.event" job); nothing here creates an invoice or records a payment itself."""
from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.crypto import EncryptedJSONField, EncryptedTextField

TOKEN_PREFIX = "ptk_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the GraphQL API, acting for one connection. Shown once when made;
    only its SHA-256 is kept (a random 256-bit token needs no slow hash)."""

    connection = models.ForeignKey("integrations.Connection", on_delete=models.CASCADE, related_name="api_tokens",
                                   verbose_name=_("connection"))
    name = models.CharField(_("name"), max_length=100, help_text=_("What uses it, e.g. \"ERP production\"."))
    prefix = models.CharField(_("token starts with"), max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    can_read = models.BooleanField(_("may read"), default=True)
    can_write = models.BooleanField(_("may write"), default=False)
    expires_at = models.DateTimeField(_("expires"))
    rate_per_minute = models.PositiveIntegerField(_("calls a minute"), default=120)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   editable=False, related_name="+", verbose_name=_("made by"))
    created_at = models.DateTimeField(_("made"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def new_secret() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)

    def set_secret(self, token: str) -> None:
        self.prefix = token[:len(TOKEN_PREFIX) + 8]
        self.digest = token_digest(token)

    @property
    def scopes(self) -> list[str]:
        return [name for name, held in (("read", self.can_read), ("write", self.can_write)) if held]

    def usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now


class ErpPull(models.Model):
    """How the portal reads an ERP that cannot push (a connection of kind "erp_pull"), and how it
    tells that ERP of portal payments, refunds and chargebacks."""

    class Style(models.TextChoices):
        REST = "rest", _("REST (JSON over HTTP GET)")
        GRAPHQL = "graphql", _("GraphQL (POST a query)")

    class Auth(models.TextChoices):
        NONE = "none", _("None")
        BEARER = "bearer", _("Bearer token")
        BASIC = "basic", _("HTTP Basic (user name and password)")
        OAUTH2 = "oauth2", _("OAuth2 client credentials")

    class Paging(models.TextChoices):
        OFFSET = "offset", _("Offset and limit")
        CURSOR = "cursor", _("Cursor (the next page's cursor in the answer)")
        LINK = "link", _("Link header (rel=\"next\")")
        RELAY = "relay", _("GraphQL Relay (pageInfo.endCursor)")

    class Push(models.TextChoices):
        NONE = "none", _("Not told")
        WEBHOOK = "webhook", _("Signed webhook (the connection's \"payments go to\")")
        REST = "rest", _("A REST call")
        GRAPHQL = "graphql", _("A GraphQL mutation")

    connection = models.OneToOneField("integrations.Connection", on_delete=models.CASCADE, related_name="erp",
                                      verbose_name=_("connection"))
    style = models.CharField(_("API style"), max_length=10, choices=Style.choices, default=Style.REST)
    base_url = models.URLField(_("endpoint"), help_text=_("The ERP's API address, e.g. https://erp.example.com/api/ "
                                                          "(REST) or https://erp.example.com/graphql (GraphQL)."))
    auth = models.CharField(_("authentication"), max_length=10, choices=Auth.choices, default=Auth.BEARER)
    # {"token": ...} | {"username": ..., "password": ...} |
    # {"token_url": ..., "client_id": ..., "client_secret": ..., "scope": ...}
    credentials = EncryptedJSONField(_("credentials"), default=dict, blank=True)
    paging = models.CharField(_("pagination"), max_length=10, choices=Paging.choices, default=Paging.OFFSET)
    page_size = models.PositiveIntegerField(_("records a page"), default=100)
    poll_minutes = models.PositiveIntegerField(_("pull every (minutes)"), default=15)
    enabled = models.BooleanField(_("pulling"), default=False,
                                  help_text=_("Turn on after the preview shows the records mapped."))
    push = models.CharField(_("tell the ERP of payments by"), max_length=10, choices=Push.choices,
                            default=Push.NONE)
    # REST: {"method": "POST", "path": "payments", "body": {field: JMESPath over the outbox message}}
    # GraphQL: {"mutation": "mutation($input: ...) {...}", "variables": {name: JMESPath}}
    push_request = models.JSONField(_("request that tells it"), default=dict, blank=True)
    # The OAuth2 access token (client credentials), kept until it expires.
    access_token = EncryptedTextField(blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    last_pull_at = models.DateTimeField(_("last pull"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    # When a preview (one page fetched live) last mapped at least one record: pulling may be
    # turned on only after one did.
    previewed_at = models.DateTimeField(_("last preview that mapped records"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("ERP pull connection")
        verbose_name_plural = _("ERP pull connections")

    def __str__(self):
        return str(self.connection)


class ErpFeed(models.Model):
    """One kind of record read from the ERP and the canonical event it becomes."""

    class Entity(models.TextChoices):
        CLIENTS = "client.upserted", _("Customers")
        INVOICES = "invoice.updated", _("Invoices")
        VOIDS = "invoice.voided", _("Voided invoices")
        CREDIT_NOTES = "credit_note.created", _("Credit notes")
        PAYMENTS = "payment.recorded", _("Payments")

    erp = models.ForeignKey(ErpPull, on_delete=models.CASCADE, related_name="feeds", verbose_name=_("ERP"))
    entity = models.CharField(_("becomes"), max_length=30, choices=Entity.choices)
    position = models.PositiveSmallIntegerField(_("order"), default=0,
                                                help_text=_("Feeds are pulled in this order (customers first)."))
    # REST: the path under the endpoint ("customers"); GraphQL: the query, with $first, $after
    # (Relay) and $since (the watermark) as variables.
    request = models.TextField(_("path or query"))
    records = models.CharField(_("records at (JMESPath)"), max_length=300, default="@",
                               help_text=_("Where the page's list of records is, e.g. data.invoices.edges[].node"))
    next_cursor = models.CharField(_("next cursor at (JMESPath)"), max_length=300, blank=True,
                                   help_text=_("Cursor paging: where the next page's cursor is in the answer."))
    # {canonical field: JMESPath over one record}; dotted names for nested canonical fields
    # ("address.city"), "lines[]" for a list mapped per item ("lines[].description").
    mapping = models.JSONField(_("mapping"), default=dict)
    key = models.CharField(_("record id at (JMESPath)"), max_length=300, default="id")
    version = models.CharField(_("modified at (JMESPath)"), max_length=300, blank=True,
                               help_text=_("The record's modification moment: the watermark of incremental pulls."))
    since_param = models.CharField(_("modified-since parameter"), max_length=60, blank=True,
                                   help_text=_("Query parameter (REST) or variable (GraphQL) that asks only for "
                                               "records changed since the watermark."))
    watermark = models.CharField(_("watermark"), max_length=100, blank=True)
    cursor = models.CharField(_("cursor"), max_length=500, blank=True)
    pulled_at = models.DateTimeField(_("last pull"), null=True, blank=True)
    # The progress of the running pull (or the last one): records and pages read of this feed.
    records_seen = models.PositiveIntegerField(_("records read"), default=0)
    pages_read = models.PositiveIntegerField(_("pages read"), default=0)

    class Meta:
        ordering = ["erp", "position", "pk"]
        verbose_name = _("ERP feed")
        verbose_name_plural = _("ERP feeds")
        constraints = [models.UniqueConstraint(fields=["erp", "entity"], name="erp_feed_once")]

    def __str__(self):
        return f"{self.erp} · {self.get_entity_display()}"


class ErpParked(models.Model):
    """A record that did not map to a canonical event: kept with its reason until staff fix the
    mapping and replay it (or it maps on a later pull)."""

    feed = models.ForeignKey(ErpFeed, on_delete=models.CASCADE, related_name="parked", verbose_name=_("feed"))
    record_key = models.CharField(_("record id"), max_length=200)
    record = EncryptedJSONField(_("record"))
    reason = models.TextField(_("why it did not map"))
    parked_at = models.DateTimeField(_("parked"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        ordering = ["-parked_at"]
        verbose_name = _("parked ERP record")
        verbose_name_plural = _("parked ERP records")
        constraints = [models.UniqueConstraint(fields=["feed", "record_key"], name="erp_parked_once")]

    def __str__(self):
        return f"{self.feed} {self.record_key}"
