"""One-invoice links: a signed token that names one DocumentLink row; the row says which
invoice, which contact, until when, and whether staff or a newer link revoked it."""
from __future__ import annotations

import datetime

from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from invoices.models import DocumentLink, Invoice
from portal.models import AuditEvent
from portal.rls import staff_scope
from portal.services import audit_record

SALT = DocumentLink.TOKEN_SALT


def link_token(link: DocumentLink) -> str:
    return link.token()


@transaction.atomic
def document_link_issue(*, invoice: Invoice, user) -> DocumentLink:
    """A new link for this invoice and contact; older ones for the same pair stop working."""
    now = timezone.now()
    DocumentLink.objects.filter(invoice=invoice, user=user, revoked_at__isnull=True).update(revoked_at=now)
    return DocumentLink.objects.create(
        client=invoice.client, invoice=invoice, user=user,
        expires_at=now + datetime.timedelta(days=invoice.brand.document_link_days))


@transaction.atomic
def document_link_revoke(*, link: DocumentLink, actor=None, request=None) -> None:
    if link.revoked_at is None:
        DocumentLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
        audit_record(action=AuditEvent.Action.ADMIN_CHANGED, actor=actor, request=request, client=link.client,
                     obj=link, details={"revoked": True})


class LinkRefused(Exception):
    def __init__(self, reason: str, status: int):
        super().__init__(reason)
        self.status = status


def document_link_use(*, token: str, request) -> DocumentLink:
    """Resolve a token into its link, or refuse (404 for a bad token, 410 for an expired or
    revoked one). Reading the link row is the one place a visitor without a login needs the
    staff scope: the signed token is the credential, and it names exactly one row."""
    try:
        link_id = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise LinkRefused("not a valid link", 404) from None
    with staff_scope():
        link = (DocumentLink.objects.select_related("invoice", "invoice__brand", "invoice__client", "user", "client")
                .filter(pk=link_id).first())
        if link is None:
            raise LinkRefused("not a valid link", 404)
        if not link.is_usable(timezone.now()) or not link.invoice.brand.allow_document_links \
                or link.invoice.status == Invoice.Status.DRAFT:
            raise LinkRefused("this link has expired or was withdrawn", 410)
        DocumentLink.objects.filter(pk=link.pk).update(use_count=F("use_count") + 1, last_used_at=timezone.now())
        audit_record(action=AuditEvent.Action.RECORD_VIEWED, request=request, client=link.client, obj=link.invoice,
                     actor_email=link.user.email,
                     details={"via": "document_link", "link": link.pk, "path": request.path})
    return link
