"""Branded PDFs of invoices, credit notes and statements, rendered with WeasyPrint.

A document's PDF is stored encrypted and keyed by a fingerprint of everything that went
into it (the HTML, which holds the data, the brand, the logo, the QR code and the template,
and the e-invoice XML). A download serves the stored PDF when its fingerprint is current,
and otherwise renders, stores and serves it; a per-document advisory lock makes two
downloads at once render it only once. Rendering never fetches a URL.
"""
from __future__ import annotations

import base64
import hashlib
import io
import mimetypes
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import facturx
import segno
from segno import helpers as segno_helpers
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import translation

from invoices.documents.einvoice import factur_x_xml
from invoices.models import CreditNote, Invoice, RenderedDocument
from invoices.selectors import document_tax_breakdown

RENDERER_VERSION = "1"  # bump when rendering changes in a way the HTML does not show
CSS_PATH = Path(settings.BASE_DIR) / "static" / "invoices" / "pdf.css"


def _url_fetcher():
    """data: URIs only: logos, QR codes and styles are inlined, so a render never fetches a URL
    (and a template that tries to stops the render instead of waiting on a network)."""
    from weasyprint.urls import URLFetcher  # lazy: WeasyPrint loads Pango and fonts; only renders need it

    return URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)


def _data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def _logo(brand) -> str:
    if not brand.logo:
        return ""
    with default_storage.open(brand.logo.name) as handle:
        content = handle.read()
    return _data_uri(content, mimetypes.guess_type(brand.logo.name)[0] or "image/png")


def epc_qr_payload(*, brand, amount: Decimal, reference: str) -> segno.QRCode | None:
    """The EPC069-12 (SEPA credit transfer) QR code for an open balance, or None when it
    cannot be paid that way (no IBAN, not in euro, nothing open)."""
    if not brand.iban or amount <= 0:
        return None
    return segno_helpers.make_epc_qr(name=(brand.bank_account_name or brand.name)[:70],
                                     iban=brand.iban.replace(" ", ""), amount=amount, text=reference[:140],
                                     bic=brand.bic or None, encoding="utf-8")


def _qr_uri(qr: segno.QRCode | None) -> str:
    if qr is None:
        return ""
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=5, border=4)
    return _data_uri(buffer.getvalue(), "image/png")


def _css() -> str:
    return CSS_PATH.read_text()


def document_context(document: Invoice | CreditNote) -> dict:
    is_credit = isinstance(document, CreditNote)
    invoice = document.invoice if is_credit else document
    open_amount = Decimal("0.00") if is_credit else invoice.open_balance
    qr = (epc_qr_payload(brand=document.brand, amount=open_amount, reference=invoice.number)
          if not is_credit and invoice.status in Invoice.PAYABLE and document.currency == "EUR" else None)
    lines = list(document.lines.all())
    return {
        "document": document, "invoice": invoice, "is_credit": is_credit, "brand": document.brand,
        "client": document.client, "lines": lines, "has_discount": any(line.discount_percent for line in lines),
        "tax_breakdown": document_tax_breakdown(document=document),
        "open_amount": open_amount, "logo": _logo(document.brand), "qr": _qr_uri(qr), "css": _css(),
        "overdue": not is_credit and invoice.is_overdue(),
    }


def _sources(document) -> tuple[str, bytes, str]:
    """(HTML, Factur-X XML, language) of a document, in its client's language."""
    language = document.client.locale
    with translation.override(language):
        html = render_to_string("invoices/pdf/document.html", document_context(document) | {"language": language})
    return html, factur_x_xml(document), language


def _fingerprint(*parts: bytes) -> str:
    digest = hashlib.sha256(RENDERER_VERSION.encode())
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML  # lazy: see _url_fetcher

    return HTML(string=html, url_fetcher=_url_fetcher(), base_url=None).write_pdf(pdf_variant="pdf/a-3b")


def render_document(document: Invoice | CreditNote) -> bytes:
    """Render now: the branded PDF/A-3 with its Factur-X XML embedded."""
    html, xml, language = _sources(document)
    return _render(document, html, xml, language)


def _render(document, html: str, xml: bytes, language: str) -> bytes:
    pdf = html_to_pdf(html)
    return facturx.generate_from_binary(
        pdf, xml, flavor="factur-x", level="en16931", check_xsd=True, lang=language,
        pdf_metadata={"author": document.brand.name, "keywords": "Factur-X, invoice",
                      "title": f"{document.brand.name}: {document.number}",
                      "subject": f"{document.number} {document.client.name}"})


@dataclass(frozen=True)
class StoredPdf:
    content: bytes
    file_name: str
    rendered_now: bool


def document_pdf(document: Invoice | CreditNote) -> StoredPdf:
    """The current PDF of a document: stored if its fingerprint is current, else rendered,
    stored (encrypted) and returned. Older versions of the same document are removed."""
    owner = {"credit_note": document} if isinstance(document, CreditNote) else {"invoice": document}
    html, xml, language = _sources(document)
    fingerprint = _fingerprint(html.encode(), xml)
    storage = storages["encrypted"]
    download_name = f"{document.number}.pdf"
    with transaction.atomic():
        with connection.cursor() as cursor:
            # One render at a time per document; the second waits, then finds it stored.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"pdf:{list(owner)[0]}:{document.pk}"])
        stored = RenderedDocument.objects.filter(**owner, fingerprint=fingerprint).first()
        if stored is not None and storage.exists(stored.file_name):
            with storage.open(stored.file_name) as handle:
                return StoredPdf(handle.read(), download_name, rendered_now=False)
        pdf = _render(document, html, xml, language)
        kind = list(owner)[0]
        name = storage.save(f"documents/{document.client_id}/{kind}-{document.pk}-{fingerprint[:24]}.pdf",
                            ContentFile(pdf))
        stale = list(RenderedDocument.objects.filter(**owner).exclude(fingerprint=fingerprint))
        RenderedDocument.objects.filter(pk__in=[row.pk for row in stale]).delete()
        RenderedDocument.objects.filter(**owner, fingerprint=fingerprint).delete()
        RenderedDocument.objects.create(client=document.client, fingerprint=fingerprint, file_name=name,
                                        size=len(pdf), **owner)
        stale_files = [row.file_name for row in stale]
        transaction.on_commit(lambda: [storage.delete(f) for f in stale_files if storage.exists(f)])
    return StoredPdf(pdf, download_name, rendered_now=True)


def stored_pdf(document: Invoice | CreditNote) -> StoredPdf | None:
    """The stored PDF of a document when it is current, else None: nothing is rendered, and no
    transaction is held for one (an email job renders what is missing itself, outside one)."""
    owner = {"credit_note": document} if isinstance(document, CreditNote) else {"invoice": document}
    html, xml, _ = _sources(document)
    stored = RenderedDocument.objects.filter(**owner, fingerprint=_fingerprint(html.encode(), xml)).first()
    storage = storages["encrypted"]
    if stored is None or not storage.exists(stored.file_name):
        return None
    with storage.open(stored.file_name) as handle:
        return StoredPdf(handle.read(), f"{document.number}.pdf", rendered_now=False)


def is_current(document: Invoice | CreditNote) -> bool:
    owner = {"credit_note": document} if isinstance(document, CreditNote) else {"invoice": document}
    html, xml, _ = _sources(document)
    return RenderedDocument.objects.filter(**owner, fingerprint=_fingerprint(html.encode(), xml)).exists()

