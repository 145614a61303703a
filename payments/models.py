"""Paying in the portal: gateway accounts per brand, checkout attempts (one per click, with an
idempotency key), what the built-in sandbox gateway holds, and direct-debit mandates and their
collections. Gateway webhooks are kept by the one intake (portal.webhooks), not here."""
from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from invoices.models import MONEY, Invoice
from portal.crypto import EncryptedTextField


def creditor_id_valid(value: str) -> None:
    """A SEPA creditor identifier (EPC262-08, "AT-02"): country, check digits, business code, id."""
    from stdnum.eu import at_02
    from stdnum.exceptions import ValidationError as StdnumError

    try:
        at_02.validate(value)
    except StdnumError:
        raise ValidationError(_("This is not a valid SEPA creditor identifier (e.g. NL57ZZZ999999999999)."))


class GatewayAccount(models.Model):
    class CheckoutMode(models.TextChoices):
        EMBEDDED = "embedded", _("In the portal's page")
        HOSTED = "hosted", _("On the gateway's page")

    class Provider(models.TextChoices):
        SANDBOX = "sandbox", _("Sandbox (development)")
        MOLLIE = "mollie", _("Mollie")
        STRIPE = "stripe", _("Stripe")

    class Mode(models.TextChoices):
        TEST = "test", _("Test")
        LIVE = "live", _("Live")

    brand = models.ForeignKey("portal.Brand", verbose_name=_("brand"), on_delete=models.CASCADE, related_name="gateways")
    provider = models.CharField(_("provider"), max_length=10, choices=Provider.choices)
    mode = models.CharField(_("mode"), max_length=4, choices=Mode.choices, default=Mode.TEST)
    ideal = models.BooleanField(_("iDEAL"), default=True)
    card = models.BooleanField(_("card"), default=True)
    sepa_direct_debit = models.BooleanField(_("SEPA direct debit"), default=False)
    api_key = EncryptedTextField(_("API key"), blank=True)
    webhook_secret = EncryptedTextField(_("webhook secret"), blank=True)
    allow_partial = models.BooleanField(_("allow partial payments"), default=False)
    partial_minimum = models.DecimalField(_("smallest partial payment"), max_digits=14, decimal_places=2, default=10)
    enabled = models.BooleanField(_("enabled"), default=True)
    checkout_mode = models.CharField(
        _("checkout"), max_length=8, choices=CheckoutMode.choices, default=CheckoutMode.EMBEDDED,
        help_text=_("Embedded: clients pay in the portal's own page (cards, SEPA direct debit; iDEAL passes "
                    "through the bank). Hosted: clients go to the gateway's page. The portal falls back to the "
                    "hosted page by itself when the gateway's script cannot load in a client's browser."))
    publishable_key = models.CharField(
        _("publishable key"), max_length=200, blank=True,
        help_text=_("Stripe: the publishable key (pk_...) that the embedded checkout needs. Not a secret."))
    profile_id = models.CharField(
        _("profile ID"), max_length=40, blank=True,
        help_text=_("Mollie: the website profile ID (pfl_...) that the embedded card fields need."))
    creditor_id = models.CharField(
        _("SEPA creditor identifier"), max_length=35, blank=True, validators=[creditor_id_valid],
        help_text=_("The identifier direct debits are collected under, shown to clients in the mandate text "
                    "(with Mollie: the one in your Mollie dashboard)."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["brand__name", "provider"]
        verbose_name = _("gateway account")
        verbose_name_plural = _("gateway accounts")
        constraints = [models.UniqueConstraint(fields=["brand", "provider"], name="one_account_per_provider")]

    def __str__(self):
        return f"{self.brand} · {self.get_provider_display()} ({self.get_mode_display()})"

    def methods(self) -> list[str]:
        return [name for name in ("ideal", "card", "sepa_direct_debit") if getattr(self, name)]

    def clean(self):
        """Embedded checkout needs the gateway's public identifier; staff are told which."""
        if self.checkout_mode == self.CheckoutMode.EMBEDDED:
            if self.provider == self.Provider.STRIPE and not self.publishable_key:
                raise ValidationError({"publishable_key": _("Stripe's embedded checkout needs the publishable key "
                                                            "(or choose the gateway's page).")})
            if self.provider == self.Provider.MOLLIE and not self.profile_id:
                raise ValidationError({"profile_id": _("Mollie's card fields need the profile ID (or choose the "
                                                       "gateway's page).")})

    @property
    def embeds(self) -> bool:
        """Whether the checkout page embeds this gateway's own form (with what it needs set)."""
        if self.checkout_mode != self.CheckoutMode.EMBEDDED:
            return False
        return bool({self.Provider.STRIPE: self.publishable_key, self.Provider.MOLLIE: self.profile_id}.get(
            self.provider))


# Gateways' failure reasons (Mollie's details.failureReason, Stripe's decline codes), first match wins.
FAILURE_TEXTS = [
    (("insufficient_funds",), _("Your card was declined: insufficient funds. Please use another card or another "
                                "way to pay.")),
    (("expired",), _("Your card has expired. Please use another card.")),
    (("invalid_card_number", "incorrect_number", "invalid_cvv", "incorrect_cvc", "invalid_card_holder"),
     _("The card details were not correct. Please check them and try again.")),
    (("authentication",), _("Your bank could not confirm the payment (3-D Secure). No money was taken; you can "
                            "try again.")),
    (("declined", "refused", "fraud", "not_supported", "do_not_honor"),
     _("Your card was declined. Please try another card or another way to pay.")),
]


class CheckoutAttempt(models.Model):
    """One click on Pay: what is being paid, where, and what the gateway says about it."""

    class Status(models.TextChoices):
        CREATED = "created", _("Created")
        OPEN = "open", _("Waiting for you at the payment page")
        PENDING = "pending", _("Pending")
        PAID = "paid", _("Paid")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Cancelled")
        EXPIRED = "expired", _("Expired")

    FINAL = (Status.PAID, Status.FAILED, Status.CANCELED, Status.EXPIRED)
    TRANSITIONS = {
        Status.CREATED: {Status.OPEN, Status.PENDING, Status.PAID, Status.FAILED, Status.CANCELED, Status.EXPIRED},
        Status.OPEN: {Status.PENDING, Status.PAID, Status.FAILED, Status.CANCELED, Status.EXPIRED},
        Status.PENDING: {Status.PAID, Status.FAILED, Status.CANCELED, Status.EXPIRED},
        Status.PAID: set(), Status.FAILED: set(), Status.CANCELED: set(), Status.EXPIRED: set(),
    }

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="checkout_attempts")
    gateway = models.ForeignKey(GatewayAccount, on_delete=models.PROTECT, related_name="attempts")
    user = models.ForeignKey("portal.User", null=True, on_delete=models.SET_NULL, related_name="+")
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True)
    method = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATED)
    provider_payment_id = models.CharField(max_length=100, blank=True)
    provider_reference = models.CharField(max_length=100, blank=True, db_index=True,
                                          help_text="Stripe: the PaymentIntent behind the Checkout Session.")
    checkout_url = models.URLField(max_length=500, blank=True)
    wants_mandate = models.BooleanField(default=False, help_text=_("A first payment that also sets up a mandate."))
    provider_customer_id = models.CharField(max_length=100, blank=True)
    mandate = models.ForeignKey("payments.Mandate", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", help_text=_("The mandate this direct debit collects on."))
    embedded = models.BooleanField(_("in the portal's page"), default=False)
    # Stripe's embedded checkout: the key its script opens the session with. Encrypted at rest,
    # never logged, handed only to the client's own browser.
    client_secret = EncryptedTextField(blank=True)
    failure = models.CharField(_("why it failed"), max_length=200, blank=True,
                               help_text=_("What the gateway said, e.g. the card was declined."))
    payment = models.ForeignKey("invoices.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    flagged = models.TextField(blank=True, help_text=_("Why staff must look at this attempt (nothing was applied)."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("checkout attempt")
        verbose_name_plural = _("checkout attempts")
        constraints = [
            models.UniqueConstraint(fields=["gateway", "provider_payment_id"], condition=~Q(provider_payment_id=""),
                                    name="one_attempt_per_gateway_payment"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="attempt_amount_positive"),
        ]
        indexes = [
            # Attempts still waiting for the gateway's answer to their create: a webhook naming an
            # unknown payment id is ours only while one of these is recent (payments/webhooks.py).
            models.Index(fields=["gateway", "created_at"], condition=Q(provider_payment_id=""),
                         name="attempt_awaiting_answer"),
        ]

    def __str__(self):
        return f"{self.currency} {self.amount} ({self.get_status_display()})"

    @property
    def failure_text(self) -> str:
        """Why it failed, in the client's words (the gateway's reason codes, Mollie's and Stripe's)."""
        if not self.failure:
            return _("The payment did not go through. No money was taken; you can try again.")
        reason = self.failure.lower()
        for codes, text in FAILURE_TEXTS:
            if any(code in reason for code in codes):
                return text
        return _("The payment did not go through. No money was taken; you can try again.")


class CheckoutItem(models.Model):
    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.PROTECT, related_name="+")
    attempt = models.ForeignKey(CheckoutAttempt, on_delete=models.CASCADE, related_name="items")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="checkout_items")
    amount = models.DecimalField(**MONEY)

    class Meta:
        verbose_name = _("checkout item")
        verbose_name_plural = _("checkout items")

    def __str__(self):
        return str(self.invoice)


class SandboxPayment(models.Model):
    """The built-in sandbox gateway's own record of a payment (its 'server side')."""

    provider_payment_id = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=300)
    status = models.CharField(max_length=10, default="open")
    redirect_url = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)


class Mandate(models.Model):
    """A SEPA direct-debit mandate a client gave (Mollie): signed in the portal's IBAN form
    through Mollie's Mandates API, or with a first payment."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        VALID = "valid", _("Valid")
        INVALID = "invalid", _("Invalid")
        REVOKED = "revoked", _("Revoked")

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.CASCADE, related_name="mandates")
    gateway = models.ForeignKey(GatewayAccount, on_delete=models.PROTECT, related_name="mandates")
    provider_customer_id = models.CharField(max_length=100)
    provider_mandate_id = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices)
    consumer_name = models.CharField(max_length=200, blank=True)
    consumer_account = models.CharField(max_length=40, blank=True, help_text=_("Shown masked."))
    signed_on = models.DateField(null=True, blank=True)
    collects_all = models.BooleanField(
        _("collects every invoice"), default=False,
        help_text=_("The client agreed that new invoices are collected with it on their due date."))
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("direct-debit mandate")
        verbose_name_plural = _("direct-debit mandates")
        constraints = [models.UniqueConstraint(fields=["gateway", "provider_mandate_id"], name="mandate_once")]

    def __str__(self):
        return f"{self.consumer_name} {self.masked_account}"

    @property
    def masked_account(self) -> str:
        account = self.consumer_account.replace(" ", "")
        return f"{account[:4]} •••• {account[-4:]}" if len(account) > 8 else account


class MandateCollection(models.Model):
    """One invoice collected by direct debit on its due date: told a few days before, collected once."""

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.CASCADE, related_name="+")
    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, related_name="mandate_collection")
    mandate = models.ForeignKey(Mandate, on_delete=models.PROTECT, related_name="collections")
    opted_in = models.BooleanField(default=False, help_text=_("Chosen by the client (recurring invoices need not be)."))
    prenotified_at = models.DateTimeField(null=True, blank=True)
    attempt = models.OneToOneField(CheckoutAttempt, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
