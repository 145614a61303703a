"""Branded PDFs of invoices, credit notes and statements, rendered with WeasyPrint.

A document's PDF is stored encrypted and keyed by a fingerprint of everything that goes into it:
the rows it is made of (the document, its brand, its client and, for a credit note, the invoice
it credits, each with every field, the lines by the revision the database keeps of them), whether
it shows as overdue today, and the sources of the rendering (templates, stylesheet, translations,
the code and library versions that shape the output). So a download computes the fingerprint from
rows it has already loaded, without rendering anything, and a stored PDF costs one indexed lookup
and one decrypt. When the fingerprint has no stored PDF the download renders, stores and serves
it; a per-document advisory lock makes two downloads at once render it only once. Rendering never
fetches a URL.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import importlib.metadata
import io
import math
import secrets
import mimetypes
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import facturx
import segno
from segno import helpers as segno_helpers
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.signals import setting_changed
from django.db.models.fields.files import FieldFile
from django.dispatch import receiver
from django.core.files.storage import default_storage, storages
from django.db import transaction
from django.template.loader import get_template, render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from invoices.documents.einvoice import factur_x_xml
from invoices.models import CreditNote, Invoice, RenderedDocument
from invoices.selectors import document_tax_breakdown
from portal.formatting import format_money, format_number
from portal.services import transaction_lock

RENDERER_VERSION = "2"  # bump when rendering changes in a way _sources_digest does not see
CSS_PATH = Path(settings.BASE_DIR) / "static" / "invoices" / "pdf.css"
DOCUMENT_TEMPLATE = "invoices/pdf/document.html"
# The code whose change changes a PDF (context, filters, labels, the e-invoice XML) and the
# libraries that draw it: a deploy that changes any of them renders every PDF again.
SOURCE_MODULES = ("invoices.documents.render", "invoices.documents.einvoice", "invoices.models",
                  "invoices.selectors", "invoices.templatetags.money", "portal.formatting")
QR_MASK = 0
FILE_WAIT_SECONDS = 5  # how long a download waits for the upload of a render that just committed
LIBRARIES = ("Django", "weasyprint", "pydyf", "factur-x", "segno", "tinycss2", "fonttools")


def _url_fetcher():
    """data: URIs only: logos, QR codes and styles are inlined, so a render never fetches a URL
    (and a template that tries to stops the render instead of waiting on a network)."""
    from weasyprint.urls import URLFetcher  # lazy: WeasyPrint loads Pango and fonts; only renders need it

    return URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)


def _data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


# A logo's name -> its data: URI. An upload never reuses a name (fingerprint, below), so a name
# always means the same bytes: read from the storage (S3: a network call) once per process, and
# so never inside the render's transaction once document_pdf has read it before.
_logos: dict[str, str] = {}
LOGOS_KEPT = 64


def _logo(brand) -> str:
    if not brand.logo:
        return ""
    name = brand.logo.name
    uri = _logos.get(name)
    if uri is None:
        with default_storage.open(name) as handle:
            uri = _data_uri(handle.read(), mimetypes.guess_type(name)[0] or "image/png")
        if len(_logos) >= LOGOS_KEPT:
            _logos.clear()
        _logos[name] = uri
    return uri


@receiver(setting_changed, dispatch_uid="invoices.pdf_logos")
def _storage_moved(*, setting, **kwargs):
    if setting in ("STORAGES", "MEDIA_ROOT"):
        _logos.clear()


def epc_qr_payload(*, brand, amount: Decimal, reference: str) -> segno.QRCode | None:
    """The EPC069-12 (SEPA credit transfer) QR code for an open balance, or None when it
    cannot be paid that way (no IBAN, not in euro, nothing open)."""
    if not brand.iban or amount <= 0:
        return None
    data = segno_helpers._make_epc_qr_data(name=(brand.bank_account_name or brand.name)[:70],
                                           iban=brand.iban.replace(" ", ""), amount=amount, text=reference[:140],
                                           bic=brand.bic or None, encoding="utf-8")
    # As segno.helpers.make_epc_qr (level M, at most version 13), with a fixed mask: any of the
    # eight is valid (ISO/IEC 18004), and scoring all eight cost more than the rest of the code.
    qr = segno.make_qr(data, error="m", boost_error=False, mask=QR_MASK)
    if qr.version > 13:
        raise ValueError(f"An EPC QR code is at most version 13, this one would be {qr.designator}")
    return qr


def _qr_uri(qr: segno.QRCode | None) -> str:
    if qr is None:
        return ""
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=5, border=4)
    return _data_uri(buffer.getvalue(), "image/png")


def _css() -> str:
    return CSS_PATH.read_text()


_parsed = threading.local()  # WeasyPrint's objects are not shared between threads


def _stylesheet():
    """pdf.css, parsed once per thread and handed to every render (the brand's colours arrive as
    variables in the HTML): parsing it in each document's <style> cost a fifth of a 1-page render."""
    if not hasattr(_parsed, "stylesheet"):
        from weasyprint import CSS  # lazy: see _url_fetcher

        _parsed.stylesheet = CSS(string=_css(), url_fetcher=_url_fetcher(), base_url=None)
    return _parsed.stylesheet


# The lines table is laid out with fixed column widths (`table-layout: fixed`): WeasyPrint's
# automatic layout measures every cell's text twice more, for the widths, on each page the table
# crosses, which cost a fifth of a long invoice's render. Each column but the description is as
# wide as its longest text (the header in bold 8.5pt, the values in 9.5pt, measured with the
# font's own advance widths), rounded up to whole `ch` (pdf.css has a `w<n>` class per width), so
# a column never wraps or overflows; the description takes the rest. When long amounts would leave
# the description too little, or the font is not where we look, the automatic layout.
FONT_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}  # pdf.css's font, as fontconfig finds it
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
BODY_PT, HEADER_PT = 9.5, 8.5  # pdf.css: html, table.lines th
COLUMN_CH = range(2, 31)
LINES_CH = 83  # the A4 text width (178 mm) in ch of the table's 9.5pt DejaVu Sans (6.04pt)
CELL_PADDING_CH = 2  # 4 mm of padding a cell
DESCRIPTION_CH = 16


@functools.cache
def _advances(bold: bool) -> tuple[dict[str, float], float] | None:
    """Each character's advance width in em of DejaVu Sans (bold or not), and the fallback for a
    character it lacks; None when the font file is not found."""
    from fontTools.ttLib import TTFont

    path = next((found for folder in FONT_DIRS for found in sorted(Path(folder).rglob(FONT_FILES[bold]))), None)
    if path is None:
        return None
    font = TTFont(path, lazy=True)
    scale = font["head"].unitsPerEm
    metrics = font["hmtx"].metrics
    advances = {chr(code): metrics[glyph][0] / scale for code, glyph in font.getBestCmap().items()}
    return advances, max(advances.values())


def _text_ch(texts, *, bold: bool, size: float) -> int | None:
    """The width of the widest text in ch of the table's body font (9.5pt), rounded up."""
    body, bold_face = _advances(False), _advances(bold)
    if body is None or bold_face is None:
        return None
    advances, widest = bold_face
    ch = body[0]["0"] * BODY_PT
    return math.ceil(max((sum(advances.get(c, widest) for c in text) * size for text in texts), default=0) / ch)


def _column_widths(document, lines, has_discount: bool) -> dict[str, int] | None:
    currency = document.currency
    columns = {
        "position": (_("No."), [str(line.position) for line in lines]),
        "quantity": (_("Quantity"), [format_number(line.quantity) for line in lines]),
        "unit": (_("Unit"), [line.unit for line in lines]),
        "unit_price": (_("Unit price"), [format_money(line.unit_price, currency) for line in lines]),
        "tax_rate": (_("VAT"), [f"{format_number(line.tax_rate)}%" for line in lines]),
        "amount": (_("Amount"), [format_money(line.net_amount, currency) for line in lines]),
    }
    if has_discount:
        columns["discount"] = (_("Discount"), [f"{format_number(line.discount_percent)}%" for line in lines])
    widths = {}
    for name, (header, values) in columns.items():
        header_ch, values_ch = _text_ch([header], bold=True, size=HEADER_PT), _text_ch(set(values), bold=False, size=BODY_PT)
        if header_ch is None or values_ch is None:
            return None
        widths[name] = max(header_ch, values_ch, COLUMN_CH[0])
    if max(widths.values()) > COLUMN_CH[-1] or sum(widths.values()) + CELL_PADDING_CH * len(widths) > LINES_CH - DESCRIPTION_CH:
        return None  # amounts too long to leave the description its room: the automatic layout
    return widths


def _font_config():
    """WeasyPrint's font configuration (fontconfig and Pango's font map), made once per thread:
    made for each render it cost about a fifth of a 1-page render. pdf.css has no @font-face,
    so nothing a document brings stays in it."""
    if not hasattr(_parsed, "font_config"):
        from weasyprint.text.fonts import FontConfiguration  # lazy: see _url_fetcher

        _parsed.font_config = FontConfiguration()
    return _parsed.font_config


def document_context(document: Invoice | CreditNote) -> dict:
    is_credit = isinstance(document, CreditNote)
    invoice = document.invoice if is_credit else document
    open_amount = Decimal("0.00") if is_credit else invoice.open_balance
    qr = (epc_qr_payload(brand=document.brand, amount=open_amount, reference=invoice.number)
          if not is_credit and invoice.status in Invoice.PAYABLE and document.currency == "EUR" else None)
    lines = list(document.lines.all())
    has_discount = any(line.discount_percent for line in lines)
    return {
        "document": document, "invoice": invoice, "is_credit": is_credit, "brand": document.brand,
        "client": document.client, "lines": lines, "has_discount": has_discount,
        "column_widths": _column_widths(document, lines, has_discount),
        "tax_breakdown": document_tax_breakdown(document=document, lines=lines),
        "open_amount": open_amount, "logo": _logo(document.brand), "qr": _qr_uri(qr),
        "overdue": not is_credit and invoice.is_overdue(),
    }


def _sources(document) -> tuple[str, bytes, str]:
    """(HTML, Factur-X XML, language) of a document, in its client's language."""
    language = document.client.locale
    with translation.override(language):
        html = render_to_string("invoices/pdf/document.html", document_context(document) | {"language": language})
    return html, factur_x_xml(document), language


@functools.cache
def _sources_digest() -> bytes:
    """What every PDF is made with besides its rows, read once per process: the PDF templates
    (as the template engine finds them), the stylesheet, the compiled translations, the code
    and the library versions."""
    digest = hashlib.sha256(RENDERER_VERSION.encode())
    folder = Path(get_template(DOCUMENT_TEMPLATE).origin.name).parent
    files = sorted(folder.glob("*.html")) + [CSS_PATH]
    files += [Path(importlib.import_module(name).__file__) for name in SOURCE_MODULES]
    files += sorted(mo for root in settings.LOCALE_PATHS for mo in Path(root).rglob("*.mo"))
    for path in files:
        digest.update(str(path).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    for library in LIBRARIES:
        digest.update(f"{library}={importlib.metadata.version(library)}".encode())
    digest.update(sys.version.encode())
    return digest.digest()


@receiver(setting_changed, dispatch_uid="invoices.pdf_sources_digest")
def _sources_moved(*, setting, **kwargs):
    if setting in ("TEMPLATES", "LOCALE_PATHS", "INSTALLED_APPS"):
        _sources_digest.cache_clear()


def _row(instance) -> bytes:
    """Every stored field of a row as loaded (file fields by name), but its timestamps."""
    values = []
    for field in instance._meta.concrete_fields:
        if field.attname in ("created_at", "updated_at"):
            continue
        value = field.value_from_object(instance)
        values.append(f"{field.attname}={value.name if isinstance(value, FieldFile) else value!r}")
    return f"{instance._meta.label}:{instance.pk}:{'|'.join(values)}".encode()


def fingerprint(document: Invoice | CreditNote) -> str:
    """The version of a document's PDF, from rows already loaded (document, brand, client, and a
    credit note's invoice; the lines by their revision): nothing is rendered and nothing read.
    A brand's logo is named by its file name, which an upload never reuses (the storage finds a
    free name), so a new logo is a new name."""
    is_credit = isinstance(document, CreditNote)
    rows = [document, document.brand, document.client] + ([document.invoice] if is_credit else [])
    digest = hashlib.sha256(_sources_digest())
    digest.update(b"overdue" if not is_credit and document.is_overdue() else b"not overdue")
    for row in rows:
        part = _row(row)
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML  # lazy: see _url_fetcher

    return HTML(string=html, url_fetcher=_url_fetcher(), base_url=None).write_pdf(
        pdf_variant="pdf/a-3b", stylesheets=[_stylesheet()], font_config=_font_config())


def render_document(document: Invoice | CreditNote) -> bytes:
    """Render now: the branded PDF/A-3 with its Factur-X XML embedded."""
    html, xml, language = _sources(document)
    return _render(document, html, xml, language)


def _render(document, html: str, xml: bytes, language: str) -> bytes:
    pdf = html_to_pdf(html)
    return facturx.generate_from_binary(
        pdf, xml, flavor="factur-x", level="en16931", check_xsd=False, lang=language,  # factur_x_xml checked it
        pdf_metadata={"author": document.brand.name, "keywords": "Factur-X, invoice",
                      "title": f"{document.brand.name}: {document.number}",
                      "subject": f"{document.number} {document.client.name}"})


@dataclass(frozen=True)
class StoredPdf:
    content: bytes
    file_name: str
    rendered_now: bool


def _owner(document) -> dict:
    return {"credit_note": document} if isinstance(document, CreditNote) else {"invoice": document}


def _stored(document, owner: dict, version: str) -> StoredPdf | None:
    """The stored PDF of this version of the document: one indexed lookup and one decrypt."""
    name = RenderedDocument.objects.filter(**owner, fingerprint=version).values_list("file_name", flat=True).first()
    return None if name is None else _read(document, name)


def _read(document, name: str) -> StoredPdf | None:
    try:
        with storages["encrypted"].open(name) as handle:
            return StoredPdf(handle.read(), f"{document.number}.pdf", rendered_now=False)
    except FileNotFoundError:  # its row outlived its file, or its file is still on its way
        return None


def _await_file(document, name: str) -> StoredPdf | None:
    """The file another render of this version recorded, once its upload (right after that
    render's commit) has landed; None if it does not within FILE_WAIT_SECONDS."""
    deadline = time.monotonic() + FILE_WAIT_SECONDS
    while True:
        stored = _read(document, name)
        if stored is not None or time.monotonic() >= deadline:
            return stored
        time.sleep(0.02)


def document_pdf(document: Invoice | CreditNote) -> StoredPdf:
    """The current PDF of a document (as just loaded, with its brand and client): stored if its
    fingerprint is, else rendered, stored (encrypted) and returned. Older versions of the same
    document are removed.

    One render at a time per document: the second waits on a lock, then finds it recorded. The
    file itself is written once the transaction has committed, never inside it (in object
    storage a write is a network call): so the row can name a file that is still on its way,
    which the waiter reads once it lands. A file that never lands is rendered again, under the
    same lock."""
    owner = _owner(document)
    version = fingerprint(document)
    if hasattr(document, "stored_pdf_fingerprint"):  # read with the document (selectors.with_stored_pdf_of)
        current = document.stored_pdf_fingerprint == version
        stored = _read(document, document.stored_pdf_file) if current else None
    else:
        stored = _stored(document, owner, version)
    if stored is not None:
        return stored
    storage = storages["encrypted"]
    kind = list(owner)[0]
    _logo(document.brand)  # read now, not inside the transaction below
    missing = None  # a name whose file never landed (its render died before its upload)
    while True:
        pdf, stale_files = None, []
        with transaction.atomic():
            transaction_lock(f"pdf:{kind}:{document.pk}")
            name = (RenderedDocument.objects.filter(**owner, fingerprint=version)
                    .values_list("file_name", flat=True).first())
            if name is None or name == missing:
                html, xml, language = _sources(document)
                pdf = _render(document, html, xml, language)
                # A new name for every render (no upload replaces a file a reader may be reading,
                # and none has to ask the storage for a free name first).
                name = f"documents/{document.client_id}/{kind}-{document.pk}-{version[:24]}-{secrets.token_hex(4)}.pdf"
                stale = list(RenderedDocument.objects.filter(**owner))
                RenderedDocument.objects.filter(pk__in=[row.pk for row in stale]).delete()
                RenderedDocument.objects.create(client=document.client, fingerprint=version, file_name=name,
                                                size=len(pdf), **owner)
                stale_files = [row.file_name for row in stale]
        if pdf is not None:
            break
        stored = _await_file(document, name)
        if stored is not None:
            return stored
        # Rendered again under the lock, so that of several waiters only the first renders and
        # the others wait for its file.
        missing = name
    saved = storage.save(name, ContentFile(pdf))
    if saved != name:  # the local disk found the name taken after all (a leftover): follow it
        RenderedDocument.objects.filter(**owner, fingerprint=version, file_name=name).update(file_name=saved)
    transaction.on_commit(lambda: [storage.delete(f) for f in stale_files if storage.exists(f)])
    return StoredPdf(pdf, f"{document.number}.pdf", rendered_now=True)


def stored_pdf(document: Invoice | CreditNote) -> StoredPdf | None:
    """The stored PDF of a document when it is current, else None: nothing is rendered, and no
    transaction is held for one (an email job renders what is missing itself, outside one)."""
    return _stored(document, _owner(document), fingerprint(document))


def is_current(document: Invoice | CreditNote) -> bool:
    return RenderedDocument.objects.filter(**_owner(document), fingerprint=fingerprint(document)).exists()
