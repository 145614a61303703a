"""Reminder policies (escalation steps around the due date), holds, and the dispatch log that
makes every step go out once per invoice."""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from invoices.models import MONEY


class ReminderPolicy(models.Model):
    """Either a brand's default, or a client's own (which wins)."""

    name = models.CharField(_("name"), max_length=200)
    brand = models.ForeignKey("portal.Brand", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="reminder_policies", verbose_name=_("brand"))
    client = models.OneToOneField("portal.Client", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="reminder_policy", verbose_name=_("client"), help_text=_("Set for a client's own policy."))
    business_days_only = models.BooleanField(_("send on business days only"), default=True)
    business_hours_start = models.TimeField(_("send from"), null=True, blank=True,
                                            help_text=_("In the client's time zone; empty: any hour."))
    business_hours_end = models.TimeField(_("send until"), null=True, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("reminder policy")
        verbose_name_plural = _("reminder policies")
        constraints = [
            models.CheckConstraint(condition=Q(brand__isnull=False) ^ Q(client__isnull=False),
                                   name="policy_for_brand_or_client"),
            models.UniqueConstraint(fields=["brand"], condition=Q(client__isnull=True),
                                    name="one_default_policy_per_brand"),
        ]

    def __str__(self):
        return self.name


class ReminderStep(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        IN_APP = "in_app", _("In the portal")
        BOTH = "both", _("Email and portal")

    class Level(models.TextChoices):
        FRIENDLY = "friendly", _("Friendly")
        FIRM = "firm", _("Firm")
        FINAL = "final", _("Final")

    policy = models.ForeignKey(ReminderPolicy, on_delete=models.CASCADE, related_name="steps")
    offset_days = models.SmallIntegerField(_("days from the due date"), help_text=_("Negative: before it."))
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices, default=Channel.BOTH)
    level = models.CharField(_("level"), max_length=10, choices=Level.choices, default=Level.FRIENDLY)
    subject_en = models.CharField(_("subject (English)"), max_length=200)
    body_en = models.TextField(_("text (English)"))
    subject_nl = models.CharField(_("subject (Dutch)"), max_length=200)
    body_nl = models.TextField(_("text (Dutch)"))
    attach_letter = models.BooleanField(_("attach a reminder letter (PDF)"), default=False)
    late_fee_fixed = models.DecimalField(_("late fee (fixed)"), max_digits=10, decimal_places=2, default=0)
    late_fee_percent = models.DecimalField(_("late fee (percentage of the open balance)"), max_digits=5, decimal_places=2,
                                           default=0)

    class Meta:
        ordering = ["policy", "offset_days"]
        verbose_name = _("reminder step")
        verbose_name_plural = _("reminder steps")
        constraints = [models.UniqueConstraint(fields=["policy", "offset_days"], name="one_step_per_day")]

    def __str__(self):
        return f"{self.policy}: {self.offset_days:+d} days ({self.get_level_display()})"


class ReminderHold(models.Model):
    """No reminders for this invoice while it is paused or disputed."""

    class Reason(models.TextChoices):
        PAUSED = "paused", _("Paused")
        DISPUTED = "disputed", _("Disputed")

    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE, related_name="+", verbose_name=_("client"))
    invoice = models.OneToOneField("invoices.Invoice", on_delete=models.CASCADE, related_name="reminder_hold",
                                   verbose_name=_("invoice"))
    reason = models.CharField(_("reason"), max_length=10, choices=Reason.choices, default=Reason.PAUSED)
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("reminder hold")
        verbose_name_plural = _("reminder holds")

    def __str__(self):
        return f"{self.invoice} ({self.get_reason_display()})"


class ReminderDispatch(models.Model):
    """One step for one invoice: created once (unique) with its send job, then sent (every
    recipient reached, see ReminderDelivery), failed (after the job's last attempt) or bounced."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        BOUNCED = "bounced", _("Bounced")

    client = models.ForeignKey("portal.Client", on_delete=models.CASCADE, related_name="+", verbose_name=_("client"))
    invoice = models.ForeignKey("invoices.Invoice", on_delete=models.CASCADE, related_name="reminders",
                                verbose_name=_("invoice"))
    step = models.ForeignKey(ReminderStep, on_delete=models.PROTECT, related_name="dispatches",
                             verbose_name=_("step"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    open_balance = models.DecimalField(_("open balance when sent"), **MONEY)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("last error"), blank=True)
    fee_invoice = models.OneToOneField("invoices.Invoice", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="fee_for_reminder")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("reminder dispatch")
        verbose_name_plural = _("reminder dispatches")
        constraints = [models.UniqueConstraint(fields=["invoice", "step"], name="one_dispatch_per_invoice_step")]

    def __str__(self):
        return f"{self.invoice}: {self.step}"


class ReminderDelivery(models.Model):
    """One recipient of one reminder on one channel, recorded the moment it went out (or why
    it did not), so that a retry sends only to whom the reminder has not reached yet."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        IN_APP = "in_app", _("In the portal")

    client = models.ForeignKey("portal.Client", verbose_name=_("client"), on_delete=models.CASCADE, related_name="+")
    dispatch = models.ForeignKey(ReminderDispatch, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    recipient = models.CharField(_("recipient"), max_length=254,
                                 help_text=_("The email address; in the portal, the contact's user id."))
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    error = models.TextField(_("last error"), blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dispatch", "channel", "recipient"]
        verbose_name = _("reminder delivery")
        verbose_name_plural = _("reminder deliveries")
        constraints = [models.UniqueConstraint(fields=["dispatch", "channel", "recipient"],
                                               name="one_delivery_per_recipient")]

    def __str__(self):
        return f"{self.get_channel_display()} → {self.recipient}"
