"""Telling a client's contacts: an in-app notification each, and an email unless they turned
that kind off. Emails are sent by a Celery task after the change commits, retried, recorded."""
from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from portal.models import Client, Membership, Notification, NotificationKind, NotificationPreference
from portal.tasks import send_notification_email

MAX_EMAIL_ATTEMPTS = 5


def notify_client(*, client: Client, kind: str, url: str, title: str, title_args: dict) -> list[Notification]:
    """One notification per contact of the client, its title in the contact's language.
    `title` is a gettext_noop'd message with %(name)s placeholders filled from title_args."""
    created = []
    email_off = set(NotificationPreference.objects.filter(kind=kind, email=False).values_list("user_id", flat=True))
    for membership in Membership.objects.filter(client=client).select_related("user"):
        user = membership.user
        if not user.is_active:
            continue
        with translation.override(user.language):
            text = translation.gettext(title) % title_args
        notification = Notification.objects.create(
            client=client, user=user, kind=kind, title=text[:300], url=url,
            email_status=Notification.EmailStatus.OFF if user.pk in email_off else Notification.EmailStatus.PENDING)
        if notification.email_status == Notification.EmailStatus.PENDING:
            transaction.on_commit(lambda pk=notification.pk: send_notification_email.delay(pk), robust=True)
        created.append(notification)
    return created


def notification_email_send(*, notification: Notification) -> None:
    """Send one notification's email now (HTML and text, brand look, contact's language)."""
    user, client = notification.user, notification.client
    brand = client.brand
    link = settings.SITE_URL.rstrip("/") + notification.url
    context = {"notification": notification, "user": user, "client": client, "brand": brand, "link": link,
               "document_link_url": _document_link_url(notification)}
    with translation.override(user.language):
        subject = render_to_string("portal/email/notification_subject.txt", context).strip()
        text = render_to_string("portal/email/notification.txt", context)
        html = render_to_string("portal/email/notification.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[user.email],
                                     from_email=f"{brand.name} <{settings.DEFAULT_FROM_EMAIL}>",
                                     reply_to=[brand.support_email])
    message.attach_alternative(html, "text/html")
    message.send()


def _document_link_url(notification: Notification) -> str:
    link = notification.document_link  # an invoices.DocumentLink; it knows its own URL
    if link is None or not link.is_usable(timezone.now()) or not notification.client.brand.allow_document_links:
        return ""
    return settings.SITE_URL.rstrip("/") + link.url_path()


def notification_email_record(*, notification_id: int, error: str = "") -> None:
    """Record a send attempt: sent, or failed with the reason (failed for good after the last)."""
    notification = Notification.objects.get(pk=notification_id)
    notification.email_attempts += 1
    if error:
        notification.email_error = error[:2000]
        if notification.email_attempts >= MAX_EMAIL_ATTEMPTS:
            notification.email_status = Notification.EmailStatus.FAILED
    else:
        notification.email_status, notification.emailed_at, notification.email_error = (
            Notification.EmailStatus.SENT, timezone.now(), "")
    notification.save(update_fields=["email_attempts", "email_error", "email_status", "emailed_at"])


def notification_open(*, notification: Notification) -> str:
    if notification.read_at is None:
        Notification.objects.filter(pk=notification.pk).update(read_at=timezone.now())
    return notification.url


def notifications_mark_all_read(*, user, client) -> int:
    return Notification.objects.filter(user=user, client=client, read_at__isnull=True).update(read_at=timezone.now())


def preferences_save(*, user, email_on: set[str]) -> None:
    for kind in NotificationKind.values:
        NotificationPreference.objects.update_or_create(user=user, kind=kind, defaults={"email": kind in email_on})
