"""Peppol delivery: a brand's connection to its access-point provider (REST, API key and webhook
secret encrypted at rest), what discovery said of each client, and one delivery row per invoice
or credit note, whose state changes only through integrations.peppol.services.delivery_transition
(the table below; every change audited)."""
from __future__ import annotations

import datetime

from django.db import models
from django.db.models import Case, Value, When
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils.translation import gettext_lazy as _

from portal.crypto import EncryptedTextField

# How long a discovery answer is trusted: a client that registers with an access point (or
# leaves one) is seen within this many days.
RECHECK_AFTER = datetime.timedelta(days=7)


class DocumentKind(models.TextChoices):
    INVOICE = "invoice", _("Invoice")
    CREDIT_NOTE = "credit_note", _("Credit note")


class PeppolConnection(models.Model):
    """One brand's access point: the provider's REST API and the secret its status webhooks are
    signed with. The brand's own Peppol identifier is the brand's (portal.participants)."""

    brand = models.OneToOneField("portal.Brand", on_delete=models.PROTECT, related_name="peppol",
                                 verbose_name=_("brand"))
    slug = models.SlugField(_("URL name"), unique=True,
                            help_text=_("Status webhooks arrive at /webhooks/peppol/<URL name>/."))
    base_url = models.URLField(_("provider API base URL"))
    api_key = EncryptedTextField(_("API key"))
    webhook_secret = EncryptedTextField(_("webhook signing secret"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True,
                                  help_text=_("Off: no document is sent over Peppol for this brand."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("Peppol connection")
        verbose_name_plural = _("Peppol connections")

    def __str__(self):
        return str(self.brand)


class PeppolReceiver(models.Model):
    """What participant discovery answered for one client's identifier and one kind of document,
    and when: asked before the first delivery, and again once RECHECK_AFTER has passed."""

    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE, related_name="peppol_receivers",
                               verbose_name=_("client"))
    document = models.CharField(_("document"), max_length=20, choices=DocumentKind.choices)
    participant = models.CharField(_("Peppol identifier"), max_length=100)
    can_receive = models.BooleanField(_("can receive"))
    checked_at = models.DateTimeField(_("checked"))

    class Meta:
        verbose_name = _("Peppol discovery")
        verbose_name_plural = _("Peppol discovery")
        constraints = [models.UniqueConstraint(fields=["client", "document"], name="peppol_receiver_once")]

    def __str__(self):
        return f"{self.participant} ({self.document})"

    def fresh_for(self, participant: str, now: datetime.datetime) -> bool:
        return self.participant == participant and now - self.checked_at < RECHECK_AFTER


class PeppolDelivery(models.Model):
    """One document's way over Peppol. Exactly one per document (the unique one-to-one columns),
    written in the ledger's transaction with the job that sends it."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUBMITTED = "submitted", _("Submitted to the access point")
        ACCEPTED = "accepted", _("Accepted by the network")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        REFUSED_BY_RULES = "refused_by_rules", _("Refused by the rules")
        SKIPPED = "skipped", _("Skipped")

    class Skip(models.TextChoices):
        NOT_REACHABLE = "not_reachable", _("The client cannot receive this document over Peppol")
        SENT_BY_EXACT = "sent_by_exact", _("Sent by Exact Online")

    # Every change of state, and nothing else (services.delivery_transition checks it). A failed,
    # refused or skipped delivery goes back to pending when staff try it again.
    TRANSITIONS = {
        State.PENDING: {State.SUBMITTED, State.FAILED, State.REFUSED_BY_RULES, State.SKIPPED},
        State.SUBMITTED: {State.ACCEPTED, State.DELIVERED, State.FAILED},
        State.ACCEPTED: {State.DELIVERED, State.FAILED},
        State.DELIVERED: set(),
        State.FAILED: {State.PENDING},
        State.REFUSED_BY_RULES: {State.PENDING},
        State.SKIPPED: {State.PENDING},
    }
    RETRYABLE = (State.FAILED, State.REFUSED_BY_RULES, State.SKIPPED)

    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE, related_name="peppol_deliveries",
                               verbose_name=_("client"))
    brand = models.ForeignKey("portal.Brand", on_delete=models.PROTECT, related_name="+", verbose_name=_("brand"))
    document = models.CharField(_("document"), max_length=20, choices=DocumentKind.choices)
    invoice = models.OneToOneField("invoices.Invoice", null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="peppol_delivery", verbose_name=_("invoice"))
    credit_note = models.OneToOneField("invoices.CreditNote", null=True, blank=True, on_delete=models.CASCADE,
                                       related_name="peppol_delivery", verbose_name=_("credit note"))
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.PENDING)
    skip = models.CharField(_("skipped because"), max_length=20, choices=Skip.choices, blank=True)
    receiver = models.CharField(_("receiver"), max_length=100, blank=True)
    submission_id = models.CharField(_("provider's submission id"), max_length=200, blank=True, db_index=True)
    reason = models.TextField(_("reason"), blank=True)
    rule_failures = models.JSONField(_("failed rules"), default=list, blank=True,
                                     help_text=_("[{\"rule\", \"flag\", \"text\", \"location\"}] of a refused document."))
    rules_versions = models.CharField(_("rules checked"), max_length=300, blank=True,
                                      help_text=_("The rule sets and their versions the document was checked against."))
    attempt = models.PositiveSmallIntegerField(_("round"), default=1,
                                               help_text=_("Raised each time staff try it again."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    changed_at = models.DateTimeField(_("state changed"), auto_now_add=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("Peppol delivery")
        verbose_name_plural = _("Peppol deliveries")
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(document="invoice", invoice__isnull=False, credit_note__isnull=True)
                           | models.Q(document="credit_note", credit_note__isnull=False, invoice__isnull=True)),
                name="peppol_delivery_one_document"),
        ]
        indexes = [models.Index(fields=["state", "-created_at"], name="peppol_delivery_state")]

    def __str__(self):
        return f"{self.get_document_display()} {self.document_number}"

    @property
    def document_id(self) -> int:
        return self.invoice_id if self.document == DocumentKind.INVOICE else self.credit_note_id

    @property
    def document_number(self) -> str:
        target = self.invoice if self.document == DocumentKind.INVOICE else self.credit_note
        return target.number if target else "-"

    @property
    def job_key(self) -> str:
        """One send per document and round (a staff retry is a new round)."""
        key = f"peppol:{self.document}:{self.document_id}"
        return key if self.attempt == 1 else f"{key}:r{self.attempt}"

    @staticmethod
    def job_key_expression() -> models.Expression:
        """job_key in SQL, for a list of deliveries that finds each one's job in its one query
        (the admin); tests/integrations/test_peppol_delivery.py holds the two to one answer."""
        first = Concat(Value("peppol:"), "document", Value(":"),
                       Cast(Coalesce("invoice_id", "credit_note_id"), models.CharField()))
        return Case(When(attempt=1, then=first), default=Concat(first, Value(":r"), Cast("attempt", models.CharField())),
                    output_field=models.CharField())
