"""Telling a client's contacts: an in-app notification each, and an email unless they turned
that kind off. Each email is a job ("notification.email", portal.jobs) written with its
notification: sent with no transaction open, recorded right after, retried, never sent twice.

A notification keeps its message untranslated, with its values raw (Notification.text writes it
in the reader's language when shown); the email is written in the contact's language when it is
sent. Every email here and in the apps has the same branded look (portal/email/_layout.html):
brand_email_context() and branded_email() build it."""
from __future__ import annotations

import datetime
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from portal.branding import readable_on_white
from portal.jobs import jobs_enqueue_bulk
from portal.models import Client, Membership, Notification, NotificationKind, NotificationPreference
from portal.services import transaction_lock

EMAIL_JOB = "notification.email"
EmailStatus = Notification.EmailStatus

# The app that owns a notification's `attachment` ("invoice:12") supplies its file: a receiver
# gets `notification` and returns (file name, content, MIME type), or None when it is not its
# kind (invoices.documents.attachments). Sent by the email job with no transaction open.
email_attachment_wanted = Signal()


def money_arg(amount: Decimal, currency: str) -> dict:
    """A money value for a message, kept raw: written in the reader's language when shown."""
    return {"money": str(amount), "currency": currency}


def date_arg(day: datetime.date) -> dict:
    return {"date": day.isoformat()}


def _raw_args(title_args: dict) -> dict:
    raw = {}
    for name, value in title_args.items():
        if isinstance(value, datetime.datetime):
            raise TypeError(f"{name}: a moment is not a message value; pass its date")
        if isinstance(value, datetime.date):
            value = date_arg(value)
        elif isinstance(value, (Decimal, float)):
            raise TypeError(f"{name}: money needs its currency, money_arg(amount, currency)")
        raw[name] = value
    return raw


def notify_client(*, client: Client, kind: str, url: str, title: str, title_args: dict,
                  users: list | None = None, pay_url: str = "", attachment: str = "",
                  send_email: bool = True) -> list[Notification]:
    """One notification per contact of the client (or per one of `users`), with its email job
    in the same transaction (none when `send_email` is off: the caller emails them itself).
    `title` is a gettext_noop'd message with %(name)s placeholders, `title_args` its values:
    text, dates, and money as money_arg(amount, currency). They are stored as they are and
    written in the reader's language whenever the notification is shown or emailed.
    `pay_url` gives the email a Pay button; `attachment` ("invoice:<id>") attaches that PDF
    where the brand allows it."""
    created = []
    email_off = set(NotificationPreference.objects.filter(kind=kind, email=False).values_list("user_id", flat=True))
    memberships = Membership.objects.filter(client=client).select_related("user")
    if users is not None:
        memberships = memberships.filter(user__in=users)
    raw = _raw_args(title_args)
    with transaction.atomic():
        for membership in memberships:
            user = membership.user
            if not user.is_active:
                continue
            emailed = send_email and user.pk not in email_off
            status = (EmailStatus.HELD if emailed and _in_a_burst(user=user, client=client, kind=kind)
                      else EmailStatus.PENDING if emailed else EmailStatus.OFF)
            notification = Notification(client=client, user=user, kind=kind, url=url, message=title,
                                        message_args=raw, pay_url=pay_url, attachment=attachment, email_status=status)
            with translation.override(user.language):
                notification.title = notification.text[:300]  # what admin lists and searches
            notification.save()
            created.append(notification)
        jobs_enqueue_bulk(kind=EMAIL_JOB, jobs=[(f"notification:{n.pk}", {"notification": n.pk}, "")
                                                for n in created if n.email_status == EmailStatus.PENDING])
        # Held: due when the burst's wait is over; the first of them to run takes the others along.
        jobs_enqueue_bulk(kind=EMAIL_JOB, jobs=[(f"notification:{n.pk}", {"notification": n.pk}, "")
                                                for n in created if n.email_status == EmailStatus.HELD],
                          run_after=timezone.now() + _digest_wait())
    return created


# --- Bursts: one email for many --------------------------------------------------------------
# The first of the month, or an accounting system sending a year at once, would tell a contact of
# each of thousands of invoices in an email of its own: a flooded inbox, a PDF rendered and
# attached for each, and a mail provider's sending limits. After NOTIFICATION_DIGEST_AFTER emails
# of one kind to a contact of a client within NOTIFICATION_DIGEST_MINUTES, the next are held
# (EmailStatus.HELD) for that long; the first held one whose job runs sends one email of all the
# contact's held notifications of the kind (up to DIGEST_MOST), and each of those names it
# (`email_sent_with`). In-app, every notification stays one of its own.
DIGEST_MOST = 500  # notifications one email tells of (a longer burst: the next email takes the rest)
DIGEST_LISTED = 20  # of which the email lists this many, the rest as a count and a link


def _digest_wait() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.NOTIFICATION_DIGEST_MINUTES)


def _in_a_burst(*, user, client: Client, kind: str) -> bool:
    """Whether the contact has had NOTIFICATION_DIGEST_AFTER emails (sent, waiting or held) of this
    kind from this client within the wait: a bounded read of the newest (notification_contact_recent)."""
    after = settings.NOTIFICATION_DIGEST_AFTER
    if after <= 0:
        return False
    recent = (Notification.objects.filter(user=user, client=client, kind=kind,
                                          created_at__gte=timezone.now() - _digest_wait())
              .exclude(email_status=EmailStatus.OFF).order_by())
    return recent[:after].count() >= after


def _take_along(notification: Notification) -> None:
    """A held notification's turn (its row and its burst locked): the contact's other held
    notifications of the kind go in its email. What is taken is fixed here, so a retry sends the
    same email."""
    others = (Notification.objects.select_for_update()
              .filter(user_id=notification.user_id, client_id=notification.client_id, kind=notification.kind,
                      email_status=EmailStatus.HELD, email_sent_with=None)
              .exclude(pk=notification.pk).order_by("created_at", "id").values_list("pk", flat=True))
    taken = list(others[:DIGEST_MOST - 1])
    Notification.objects.filter(pk__in=taken).update(email_sent_with=notification, email_status=EmailStatus.PENDING)
    Notification.objects.filter(pk=notification.pk).update(email_status=EmailStatus.PENDING)
    notification.email_status = EmailStatus.PENDING


def notification_email_deliver(*, notification_id: int, final: bool = False) -> str:
    """Send one notification's email unless it went out already: read (a transaction), send
    (none open), record (another). A failure is recorded and raised for the job to retry; after
    the `final` attempt the notification shows failed."""
    with transaction.atomic():
        held = Notification.objects.filter(pk=notification_id, email_status=EmailStatus.HELD).values_list(
            "user_id", "client_id", "kind").first()
        if held:
            # One held email of a contact's kind decided at a time: two workers taking held jobs
            # of the same burst at once would otherwise each send a part of it.
            transaction_lock("notification-burst:%s:%s:%s" % held)
        notification = (Notification.objects.select_for_update(of=("self",))
                        .select_related("user", "client__brand", "document_link").filter(pk=notification_id).first())
        if notification is None or notification.email_status in (EmailStatus.SENT, EmailStatus.OFF):
            return "skipped"
        if notification.email_sent_with_id is not None:
            return f"in the email of notification {notification.email_sent_with_id}"
        if notification.email_status == EmailStatus.HELD:
            _take_along(notification)
        together = list(notification.email_also.exclude(email_status__in=[EmailStatus.SENT, EmailStatus.OFF])
                        .order_by("created_at", "id"))
    try:
        if together:
            notification_digest_send(notification=notification, others=together)
        else:
            notification_email_send(notification=notification)
    except Exception as exc:
        notification_email_record(notification_id=notification_id, error=f"{type(exc).__name__}: {exc}",
                                  final=final)
        raise
    notification_email_record(notification_id=notification_id)
    return f"sent, telling of {len(together) + 1}" if together else "sent"


def site_link(path: str) -> str:
    """An absolute link for an email: the public address (settings.SITE_URL) and a site path."""
    return settings.SITE_URL.rstrip("/") + path


def brand_email_context(brand) -> dict:
    """What the branded email layout needs: the brand, its colour made readable on white, and
    the link to the notification settings."""
    return {"brand": brand, "brand_primary": readable_on_white(brand.primary_colour) if brand else "#1f4e79",
            "settings_link": site_link(reverse("portal:notification_preferences"))}


def branded_email(*, brand, subject: str, text: str, html: str, to: list[str],
                  headers: dict | None = None) -> EmailMultiAlternatives:
    """An email from the brand (its name as the sender, replies to its support address), text and HTML."""
    message = EmailMultiAlternatives(
        subject=subject, body=text, to=to,
        from_email=f"{brand.name} <{settings.DEFAULT_FROM_EMAIL}>" if brand else settings.DEFAULT_FROM_EMAIL,
        reply_to=[brand.support_email] if brand and brand.support_email else None, headers=headers)
    message.attach_alternative(html, "text/html")
    return message


def notification_email_send(*, notification: Notification) -> None:
    """Send one notification's email now: HTML and text, the brand's look, the contact's
    language, the amount and due date, a Pay button where there is something to pay, the PDF
    where the brand allows, and the way to the notification settings. Call it with no
    transaction open (the PDF may be rendered here)."""
    user, client = notification.user, notification.client
    brand = client.brand
    attachments = _attachments(notification) if notification.attachment and brand.email_attach_pdf else []
    with translation.override(user.language):
        context = {**brand_email_context(brand), "notification": notification, "user": user, "client": client,
                   "title": notification.text, "facts": notification.shown_args,
                   "link": site_link(notification.url),
                   "pay_link": site_link(notification.pay_url) if notification.pay_url else "",
                   "document_link_url": _document_link_url(notification), "language": user.language,
                   "attached": [name for name, _, _ in attachments]}
        subject = render_to_string("portal/email/notification_subject.txt", context).strip()
        text = render_to_string("portal/email/notification.txt", context)
        html = render_to_string("portal/email/notification.html", context)
    message = branded_email(brand=brand, subject=subject, text=text, html=html, to=[user.email],
                            # The same id however often it is sent, so a repeat can be recognised.
                            headers={"Message-ID": _message_id(notification)})
    for name, content, mime in attachments:
        message.attach(name, content, mime)
    message.send()


def notification_digest_send(*, notification: Notification, others: list[Notification]) -> None:
    """One email telling a contact of `notification` and `others` (a burst, all of one kind): each
    listed with its link, up to DIGEST_LISTED, the rest counted, with the way to the portal. No PDF
    is attached (hundreds would not fit in an email); each is in the portal. The same Message-ID as
    the notification's own email would have, so a repeat is recognised."""
    user, client = notification.user, notification.client
    brand = client.brand
    every = [notification, *others]
    with translation.override(user.language):
        listed = [{"title": each.text, "link": site_link(each.url)} for each in every[:DIGEST_LISTED]]
        context = {**brand_email_context(brand), "user": user, "client": client, "count": len(every),
                   "kind": NotificationKind(notification.kind).label, "listed": listed,
                   "unlisted": len(every) - len(listed), "link": site_link(reverse("portal:notifications")),
                   "language": user.language}
        subject = render_to_string("portal/email/digest_subject.txt", context).strip()
        text = render_to_string("portal/email/digest.txt", context)
        html = render_to_string("portal/email/digest.html", context)
    branded_email(brand=brand, subject=subject, text=text, html=html, to=[user.email],
                  headers={"Message-ID": _message_id(notification)}).send()


def _attachments(notification: Notification) -> list[tuple[str, bytes, str]]:
    return [found for _, found in email_attachment_wanted.send(sender=Notification, notification=notification)
            if found]


def _document_link_url(notification: Notification) -> str:
    link = notification.document_link  # an invoices.DocumentLink; it knows its own URL
    if link is None or not link.is_usable(timezone.now()) or not notification.client.brand.allow_document_links:
        return ""
    return site_link(link.url_path())


def _message_id(notification: Notification) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip("> ") or "localhost"
    return f"<notification-{notification.pk}@{domain}>"


def notification_email_record(*, notification_id: int, error: str = "", final: bool = False) -> None:
    """Record a send attempt in a transaction of its own: sent, or the reason it failed
    (failed for good after the final attempt); the notifications its email told of too alike."""
    with transaction.atomic():
        told = Notification.objects.filter(Q(pk=notification_id) | Q(email_sent_with_id=notification_id))
        if error:
            told.exclude(email_status__in=[EmailStatus.SENT, EmailStatus.OFF]).update(
                email_attempts=F("email_attempts") + 1, email_error=error[:2000],
                email_status=EmailStatus.FAILED if final else EmailStatus.PENDING)
        else:
            told.exclude(email_status=EmailStatus.OFF).update(
                email_attempts=F("email_attempts") + 1, email_status=EmailStatus.SENT, emailed_at=timezone.now(),
                email_error="")


def notification_email_dead(*, notification_id: int, reason: str) -> None:
    """The email job is dead, however it died: the notification (and those its email would have
    told of too) shows its email failed."""
    Notification.objects.filter(Q(pk=notification_id) | Q(email_sent_with_id=notification_id),
                                email_status__in=[EmailStatus.PENDING, EmailStatus.HELD]).update(
        email_status=EmailStatus.FAILED, email_error=reason[:2000])


def notification_open(*, notification: Notification) -> str:
    if notification.read_at is None:
        Notification.objects.filter(pk=notification.pk).update(read_at=timezone.now())
    return notification.url


def notifications_mark_all_read(*, user, client) -> int:
    return Notification.objects.filter(user=user, client=client, read_at__isnull=True).update(read_at=timezone.now())


def preferences_save(*, user, email_on: set[str]) -> None:
    for kind in NotificationKind.values:
        NotificationPreference.objects.update_or_create(user=user, kind=kind, defaults={"email": kind in email_on})
