"""Telling a client's contacts: an in-app notification each, and an email unless they turned
that kind off. Each email is a job ("notification.email", portal.jobs) written with its
notification: sent with no transaction open, recorded right after, retried, never sent twice."""
from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone, translation

from portal.jobs import jobs_enqueue_bulk
from portal.models import Client, Membership, Notification, NotificationKind, NotificationPreference

EMAIL_JOB = "notification.email"
EmailStatus = Notification.EmailStatus


def notify_client(*, client: Client, kind: str, url: str, title: str, title_args: dict,
                  users: list | None = None) -> list[Notification]:
    """One notification per contact of the client (or per one of `users`), its title in the
    contact's language, with its email job in the same transaction.
    `title` is a gettext_noop'd message with %(name)s placeholders filled from title_args."""
    created = []
    email_off = set(NotificationPreference.objects.filter(kind=kind, email=False).values_list("user_id", flat=True))
    memberships = Membership.objects.filter(client=client).select_related("user")
    if users is not None:
        memberships = memberships.filter(user__in=users)
    with transaction.atomic():
        for membership in memberships:
            user = membership.user
            if not user.is_active:
                continue
            with translation.override(user.language):
                text = translation.gettext(title) % title_args
            created.append(Notification.objects.create(
                client=client, user=user, kind=kind, title=text[:300], url=url,
                email_status=EmailStatus.OFF if user.pk in email_off else EmailStatus.PENDING))
        jobs_enqueue_bulk(kind=EMAIL_JOB, jobs=[(f"notification:{n.pk}", {"notification": n.pk}, "")
                                                for n in created if n.email_status == EmailStatus.PENDING])
    return created


def notification_email_deliver(*, notification_id: int, final: bool = False) -> str:
    """Send one notification's email unless it went out already: read (a transaction), send
    (none open), record (another). A failure is recorded and raised for the job to retry; after
    the `final` attempt the notification shows failed."""
    with transaction.atomic():
        notification = (Notification.objects.select_related("user", "client__brand", "document_link")
                        .filter(pk=notification_id).first())
    if notification is None or notification.email_status in (EmailStatus.SENT, EmailStatus.OFF):
        return "skipped"
    try:
        notification_email_send(notification=notification)
    except Exception as exc:
        notification_email_record(notification_id=notification_id, error=f"{type(exc).__name__}: {exc}",
                                  final=final)
        raise
    notification_email_record(notification_id=notification_id)
    return "sent"


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
                                     reply_to=[brand.support_email],
                                     # The same id however often it is sent, so a repeat can be recognised.
                                     headers={"Message-ID": _message_id(notification)})
    message.attach_alternative(html, "text/html")
    message.send()


def _document_link_url(notification: Notification) -> str:
    link = notification.document_link  # an invoices.DocumentLink; it knows its own URL
    if link is None or not link.is_usable(timezone.now()) or not notification.client.brand.allow_document_links:
        return ""
    return settings.SITE_URL.rstrip("/") + link.url_path()


def _message_id(notification: Notification) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip("> ") or "localhost"
    return f"<notification-{notification.pk}@{domain}>"


def notification_email_record(*, notification_id: int, error: str = "", final: bool = False) -> None:
    """Record a send attempt in a transaction of its own: sent, or the reason it failed
    (failed for good after the final attempt)."""
    with transaction.atomic():
        if error:
            Notification.objects.filter(pk=notification_id).exclude(email_status=EmailStatus.SENT).update(
                email_attempts=F("email_attempts") + 1, email_error=error[:2000],
                email_status=EmailStatus.FAILED if final else EmailStatus.PENDING)
        else:
            Notification.objects.filter(pk=notification_id).update(
                email_attempts=F("email_attempts") + 1, email_status=EmailStatus.SENT, emailed_at=timezone.now(),
                email_error="")


def notification_email_dead(*, notification_id: int, reason: str) -> None:
    """The email job is dead, however it died: the notification shows its email failed."""
    Notification.objects.filter(pk=notification_id, email_status=EmailStatus.PENDING).update(
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
