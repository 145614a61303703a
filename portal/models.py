"""Tenancy (brands, clients, memberships), users and the append-only audit log."""
from __future__ import annotations

import datetime
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.crypto import EncryptedJSONField, EncryptedTextField
from portal.formatting import format_day, format_money
from portal.participants import Scheme, clean_participant

def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("Use a time zone like Europe/Amsterdam."))


hex_colour = RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Use a colour like #1a73e8."))
iso_currency = RegexValidator(r"^[A-Z]{3}$", _("Use an ISO 4217 code like EUR."))


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email, password, **extra):
        if not email:
            raise ValueError("A user needs an email address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person who logs in: a client contact or a back-office staff member. Email is the login."""

    username = None
    email = models.EmailField(_("email address"), unique=True)
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES, default="en")

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []
    objects = UserManager()

    class Meta:
        ordering = ["email"]
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self):
        return self.email


class Brand(models.Model):
    """The issuing company whose name, colours and legal text a client sees."""

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(unique=True)
    logo = models.ImageField(_("logo"), upload_to="brands/", blank=True)
    primary_colour = models.CharField(_("primary colour"), max_length=7, default="#1f4e79", validators=[hex_colour])
    accent_colour = models.CharField(_("accent colour"), max_length=7, default="#f2a900", validators=[hex_colour])
    legal_footer = models.TextField(_("legal footer"), blank=True)
    support_email = models.EmailField(_("support email"))
    bank_account_name = models.CharField(_("account holder"), max_length=200, blank=True)
    iban = models.CharField(_("IBAN"), max_length=34, blank=True)
    bic = models.CharField(_("BIC"), max_length=11, blank=True)
    kvk_number = models.CharField(_("KvK number"), max_length=8, blank=True)
    vat_number = models.CharField(_("VAT number"), max_length=20, blank=True)
    address_line = models.CharField(_("address"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=16, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    country = models.CharField(_("country"), max_length=2, default="NL")
    peppol_scheme = models.CharField(_("Peppol identifier scheme"), max_length=4, choices=Scheme.choices, blank=True,
                                     db_default="")
    peppol_id = models.CharField(_("Peppol identifier"), max_length=40, blank=True, db_default="",
                                 help_text=_("Where the Peppol network delivers to this company and what its "
                                             "e-invoices name as its legal entity."))
    is_default = models.BooleanField(_("default brand"), default=False)
    allow_document_links = models.BooleanField(
        _("one-invoice links in emails"), default=False,
        help_text=_("Emails about a new invoice carry a link that opens that one invoice without a password."))
    document_link_days = models.PositiveSmallIntegerField(_("one-invoice links last (days)"), default=14)
    email_attach_pdf = models.BooleanField(
        _("PDF attached to emails"), default=True,
        help_text=_("Emails about a new invoice or credit note carry its PDF."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("brand")
        verbose_name_plural = _("brands")
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_brand"),
            models.CheckConstraint(condition=Q(peppol_scheme="", peppol_id="") | (~Q(peppol_scheme="") & ~Q(peppol_id="")),
                                   name="brand_peppol_scheme_with_id"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        clean_participant(self)

    @property
    def logo_url(self) -> str:
        """Where a page shows the logo: through the portal, whatever storage holds it."""
        return reverse("portal:brand_logo", kwargs={"pk": self.pk, "name": self.logo.name}) if self.logo else ""


class Client(models.Model):
    """A customer company: the tenant. Every client-owned row points here."""

    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="clients")
    name = models.CharField(_("name"), max_length=200)
    kvk_number = models.CharField(_("KvK number"), max_length=8, blank=True,
                                  validators=[RegexValidator(r"^\d{8}$", _("A KvK number has 8 digits."))])
    vat_number = models.CharField(_("VAT number"), max_length=20, blank=True,
                                  validators=[RegexValidator(r"^[A-Z]{2}[0-9A-Z+*]{2,18}$",
                                                             _("Use a VAT number like NL123456789B01."))])
    billing_email = models.EmailField(_("billing email"))
    address_line = models.CharField(_("address"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=16, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    country = models.CharField(_("country"), max_length=2, default="NL")
    peppol_scheme = models.CharField(_("Peppol identifier scheme"), max_length=4, choices=Scheme.choices, blank=True,
                                     db_default="")
    peppol_id = models.CharField(_("Peppol identifier"), max_length=40, blank=True, db_default="",
                                 help_text=_("Where the Peppol network delivers to this company and what its "
                                             "e-invoices name as its legal entity."))
    buyer_reference = models.CharField(
        _("buyer reference"), max_length=100, blank=True, db_default="",
        help_text=_("The client's own reference for our invoices (its cost centre or contact code), used "
                    "on e-invoices that carry no purchase order."))
    default_currency = models.CharField(_("default currency"), max_length=3, default="EUR", validators=[iso_currency])
    locale = models.CharField(_("locale"), max_length=8, choices=settings.LANGUAGES, default="nl")
    time_zone = models.CharField(_("time zone"), max_length=50, default="Europe/Amsterdam",
                                 validators=[validate_time_zone],
                                 help_text=_("Reminders respect business days and hours here."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("client")
        verbose_name_plural = _("clients")
        constraints = [
            models.CheckConstraint(condition=Q(peppol_scheme="", peppol_id="") | (~Q(peppol_scheme="") & ~Q(peppol_id="")),
                                   name="client_peppol_scheme_with_id"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        clean_participant(self)


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        FINANCE = "finance", _("Finance")
        VIEWER = "viewer", _("Viewer")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["client__name"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["user", "client"], name="one_membership_per_user_client")]

    def __str__(self):
        return f"{self.user} @ {self.client} ({self.get_role_display()})"


class AuditEvent(models.Model):
    """Append-only: the application role may insert and read, never change or delete
    (grants plus a trigger, see migration 0002). Write through portal.services.audit_record.
    Partitioned by month in the database (portal/audit_partitions.py, migration 0025): its
    primary key there is (id, created_at), and old months are dropped by retention."""

    class Action(models.TextChoices):
        LOGIN = "auth.login", _("Logged in")
        LOGOUT = "auth.logout", _("Logged out")
        LOGIN_FAILED = "auth.login_failed", _("Failed login")
        CLIENT_SWITCHED = "tenancy.client_switched", _("Switched client")
        ADMIN_ADDED = "admin.added", _("Added in admin")
        ADMIN_CHANGED = "admin.changed", _("Changed in admin")
        ADMIN_DELETED = "admin.deleted", _("Deleted in admin")
        RECORD_VIEWED = "record.viewed", _("Viewed")
        FILE_DOWNLOADED = "record.downloaded", _("Downloaded")
        RECORDS_EXPORTED = "record.exported", _("Exported")
        KEYS_ROTATED = "crypto.reencrypted", _("Re-encrypted with the newest key")
        INVOICE_CREATED = "invoice.created", _("Invoice created")
        INVOICE_UPDATED = "invoice.updated", _("Invoice updated")
        INVOICE_STATUS = "invoice.status_changed", _("Invoice status changed")
        INVOICE_OVERDUE = "invoice.overdue", _("Invoice became overdue")
        CREDIT_NOTE_STATUS = "credit_note.status_changed", _("Credit note status changed")
        PAYMENT_RECORDED = "payment.recorded", _("Payment recorded")
        PAYMENT_REVERSED = "payment.reversed", _("Payment refunded or charged back")
        CLIENT_CREDITED = "client.credited", _("Client credit added")
        RECURRING_STATUS = "recurring.status_changed", _("Recurring schedule status changed")
        RECURRING_GENERATED = "recurring.invoice_generated", _("Recurring invoice generated")
        EVENT_REPLAYED = "integration.event_replayed", _("Inbound event replayed")
        JOB_REPLAYED = "job.replayed", _("Background job replayed")
        CHECKOUT_STARTED = "checkout.started", _("Checkout started")
        CHECKOUT_STATUS = "checkout.status_changed", _("Checkout status changed")
        CHECKOUT_FLAGGED = "checkout.flagged", _("Checkout flagged for staff")
        MANDATE_CHANGED = "mandate.changed", _("Direct-debit mandate changed")
        REMINDER_SENT = "reminder.sent", _("Payment reminder sent")
        API_CALL = "api.call", _("API call")
        API_TOKEN_CREATED = "api.token_created", _("API token created")
        API_TOKEN_REVOKED = "api.token_revoked", _("API token revoked")
        PEPPOL_DELIVERY = "peppol.delivery_status", _("Peppol delivery status changed")

    # No database-level foreign keys: the log outlives the users and clients it names.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.DO_NOTHING,
                               db_constraint=False, related_name="+")
    action = models.CharField(max_length=64, choices=Action.choices)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [
            models.Index(fields=["client", "-created_at"]),
            models.Index(fields=["action", "-created_at"]),
            models.Index(fields=["object_type", "object_id"]),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_email or '-'} {self.action} {self.object_repr}"


class NotificationKind(models.TextChoices):
    INVOICE_ISSUED = "invoice_issued", _("New invoice")
    PAYMENT_RECEIVED = "payment_received", _("Payment received")
    CREDIT_NOTE_ISSUED = "credit_note_issued", _("Credit note issued")
    COLLECTION_UPCOMING = "collection_upcoming", _("Direct debit coming up")
    REMINDER = "reminder", _("Payment reminder")


class Notification(models.Model):
    """An in-app notification for one contact of one client, and the state of its email.
    Its text is written when it is shown, in the reader's language at that moment: `message`
    is the untranslated message and `message_args` its values as they are, not as any
    language writes them (money {"money": "1306.80", "currency": "EUR"}, a date
    {"date": "2026-12-17"})."""

    class EmailStatus(models.TextChoices):
        PENDING = "pending", _("Pending")
        HELD = "held", _("Held, to go in one email with others")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        OFF = "off", _("Email turned off")

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30, choices=NotificationKind.choices)
    title = models.CharField(max_length=300, help_text=_(
        "As written when it was made, in the contact's language then: shown only when there is no message."))
    message = models.CharField(max_length=300, blank=True, help_text=_(
        "The untranslated message, with named placeholders; translated whenever it is shown."))
    message_args = models.JSONField(default=dict, blank=True)
    url = models.CharField(max_length=300, help_text=_("The deep link, relative to the site."))
    pay_url = models.CharField(max_length=300, blank=True, help_text=_(
        "Where the email's Pay button leads, relative to the site (empty: no Pay button)."))
    attachment = models.CharField(max_length=50, blank=True, help_text=_(
        "The document whose PDF the email carries, as kind:id (invoice:12, credit_note:3)."))
    read_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(max_length=10, choices=EmailStatus.choices, default=EmailStatus.PENDING)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    email_error = models.TextField(blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    document_link = models.ForeignKey("invoices.DocumentLink", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    # In a burst (portal.notifications: NOTIFICATION_DIGEST_AFTER), one email tells a contact of
    # several notifications: each of the others names the one whose email carries it.
    email_sent_with = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="email_also",
        verbose_name=_("email sent with"),
        help_text=_("The notification whose email told of this one too, in one email of several."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "client", "read_at"]),
                   # A contact's newest first, by an index walked backwards: the notifications page
                   # (50 of 50,000 after a storm) and whether a burst is on (portal.notifications).
                   models.Index(fields=["user", "client", "created_at", "id"], name="notification_contact_recent")]

    def __str__(self):
        return self.text

    @property
    def text(self) -> str:
        """What it says, in the active language, with money and dates written that language's way."""
        if not self.message:
            return self.title
        try:
            return gettext(self.message) % self.shown_args
        except (KeyError, TypeError, ValueError):  # a translation that lost a placeholder
            return self.title

    @property
    def shown_args(self) -> dict[str, str]:
        """The message's values as the active language writes them (`amount`, `due`, ...)."""
        return {name: shown_value(value) for name, value in (self.message_args or {}).items()}


def shown_value(value) -> str:
    """A stored message value as the active language writes it: money and dates formatted."""
    if isinstance(value, dict) and "money" in value:
        return format_money(Decimal(value["money"]), value.get("currency") or "EUR")
    if isinstance(value, dict) and "date" in value:
        return format_day(datetime.date.fromisoformat(value["date"]))
    return str(value)


class NotificationPreference(models.Model):
    """Per contact and kind: email on or off. In-app notifications are always on."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=30, choices=NotificationKind.choices)
    email = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="one_preference_per_kind")]


class ScheduledRun(models.Model):
    """When each scheduled job last ran: the health page warns when one has gone quiet."""

    name = models.CharField(max_length=100, unique=True)
    last_run_at = models.DateTimeField()
    last_result = models.CharField(max_length=300, blank=True)

    def __str__(self):
        return self.name


class Job(models.Model):
    """One piece of background work, the single truth about it: claimed in a committed
    transaction of its own, done with no transaction open, its outcome recorded in another.
    Celery only rings the bell; a lost message or a dead worker loses nothing (the sweep)."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        RETRYING = "retrying", _("Waiting to retry")
        DONE = "done", _("Done")
        DEAD = "dead", _("Dead")

    kind = models.CharField(_("kind"), max_length=50)
    key = models.CharField(_("key"), max_length=200, unique=True,
                           help_text=_("What makes the job unique; also the idempotency key sent outside."))
    subject = models.CharField(_("subject"), max_length=100, blank=True,
                               help_text=_("Jobs with the same subject run one at a time, in the order written."))
    payload = models.JSONField(default=dict, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    max_attempts = models.PositiveSmallIntegerField(_("attempts allowed"), default=6)
    run_after = models.DateTimeField(_("next attempt"), db_index=False)
    lease_expires_at = models.DateTimeField(_("lease expires"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    result = models.CharField(_("result"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("background job")
        verbose_name_plural = _("background jobs")
        indexes = [
            # What a claim walks, in its order (portal.jobs.READY): due jobs by run_after, of any
            # kind or of one; then leases that ran out.
            models.Index(fields=["run_after", "id"], condition=Q(state__in=["pending", "retrying"]), name="job_due"),
            models.Index(fields=["kind", "run_after", "id"], condition=Q(state__in=["pending", "retrying"]),
                         name="job_due_kind"),
            models.Index(fields=["lease_expires_at", "id"], condition=Q(state="running"), name="job_leased"),
            models.Index(fields=["subject", "id"], condition=Q(state__in=["pending", "running", "retrying"]) & ~Q(subject=""),
                         name="job_open_subject"),
        ]

    def __str__(self):
        return f"{self.kind} {self.key} ({self.get_state_display()})"


class WebhookRequest(models.Model):
    """A webhook as it arrived, from any source (accounting, Mollie, Stripe, the sandbox),
    kept (encrypted) before anything else happens to it; accepted ones leave a job."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")
        IGNORED = "ignored", _("Ignored (not about anything of ours)")

    source = models.CharField(_("source"), max_length=20)
    account = models.CharField(_("account"), max_length=100,
                               help_text=_("Which connection or gateway account it came for."))
    natural_key = models.CharField(_("event id"), max_length=200, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    headers = EncryptedJSONField(default=dict)
    body = EncryptedTextField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    error = models.TextField(_("why it was rejected"), blank=True)
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
        constraints = [
            # Only accepted requests claim their event id: a forged request cannot block the real one.
            models.UniqueConstraint(fields=["source", "account", "natural_key"],
                                    condition=Q(status="accepted") & ~Q(natural_key=""), name="webhook_once"),
        ]

    def __str__(self):
        return f"{self.source} {self.natural_key or self.pk} ({self.get_status_display()})"


class WebhookRejections(models.Model):
    """Rejected and ignored requests per source, account, answer and hour: the first few of each
    are kept as a sample (portal.webhooks), the rest only counted. A request for an account that
    is not ours counts under the account "" whatever name it gave, so names cannot add rows."""

    source = models.CharField(max_length=20)
    account = models.CharField(max_length=100)
    hour = models.DateTimeField()
    answer = models.PositiveSmallIntegerField(_("answer (HTTP status)"), default=0,
                                              help_text=_("200 for a request answered as ignored."))
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "account", "hour", "answer"],
                                               name="one_rejection_count_per_hour_and_answer")]
