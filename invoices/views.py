"""The client's invoices in the portal: list, detail, downloads, export and statements."""
import io
import zipfile
from dataclasses import dataclass
from itertools import islice

from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from invoices.documents.einvoice import ubl_xml
from invoices.documents.render import document_pdf
from invoices.documents.statement import StatementTooLong, statement_pdf
from invoices.filters import InvoiceFilter, active_filter_count, compiled_list_page, invoice_filter, sort_headers
from invoices.links import LinkRefused, document_link_use
from invoices.forms import StatementForm
from invoices.models import CreditNote, Invoice
from invoices.selectors import (client_credit_note_get, client_invoice_detail, client_invoice_get, client_invoices,
                                document_tax_breakdown)
from invoices.signals import credit_note_detail_context, invoice_detail_context
from portal.csv_export import csv_writer
from portal.formatting import format_number
from portal.http import download_response, streaming_download_response
from portal.middleware import file_response, outside_request_transaction
from portal.models import AuditEvent
from portal.services import audit_record
from portal.permissions import client_required, role_required
from portal.rls import client_scope

ZIP_LIMIT = 50
_PK_MARK = 987_654_321_012_345  # an id no row has: reversed once, then each row's id put in its place


def _each_pk_url(name: str):
    """A function from a row's id to the URL `name` gives it, from one reverse for a whole page
    of rows instead of one per row and link (a reverse costs more than the rest of a row's link)."""
    prefix, _mark, suffix = reverse(name, args=[_PK_MARK]).partition(str(_PK_MARK))
    return lambda pk: f"{prefix}{int(pk)}{suffix}"


@dataclass(frozen=True)
class RowLinks:
    """Where a row of the invoice list links to."""
    detail: str
    pdf: str
    pay: str


def _invoice(request, pk: int, **options) -> Invoice:
    try:
        return client_invoice_get(client=request.client, pk=pk, **options)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice")


def _downloaded(request, obj, file_format: str) -> None:
    audit_record(action=AuditEvent.Action.FILE_DOWNLOADED, request=request, obj=obj,
                 details={"format": file_format, "number": obj.number})


@file_response
@outside_request_transaction
@client_required
def invoice_pdf(request, pk: int):
    # The invoice and the download's audit event in one short transaction, before the file is
    # read (or rendered): no PDF leaves without its event, and the read that allows it writes it.
    with transaction.atomic():
        invoice = _invoice(request, pk, with_stored_pdf=True)
        _downloaded(request, invoice, "pdf")
    pdf = document_pdf(invoice)
    return download_response(pdf.content, file_name=pdf.file_name, content_type="application/pdf")


@file_response
@client_required
def invoice_ubl(request, pk: int):
    invoice = _invoice(request, pk)
    _downloaded(request, invoice, "ubl")
    return download_response(ubl_xml(invoice), file_name=f"{invoice.number}.xml", content_type="application/xml")


@file_response
@outside_request_transaction
@client_required
def credit_note_pdf(request, pk: int):
    with transaction.atomic():  # as invoice_pdf: the credit note and the audit event together
        try:
            credit_note = client_credit_note_get(client=request.client, pk=pk, with_stored_pdf=True)
        except CreditNote.DoesNotExist:
            raise Http404("No such credit note")
        _downloaded(request, credit_note, "pdf")
    pdf = document_pdf(credit_note)
    return download_response(pdf.content, file_name=pdf.file_name, content_type="application/pdf")


def statement_response(request, client):
    """The statement form, or with a valid range the statement PDF (portal and admin alike)."""
    today = timezone.localdate()
    form = StatementForm(request.GET or None, initial={"start": today.replace(month=1, day=1), "end": today})
    if request.GET and form.is_valid():
        try:
            pdf, file_name = statement_pdf(client=client, **form.cleaned_data)
        except StatementTooLong as too_long:
            form.add_error(None, ngettext(
                "This period holds %(count)s movement; a statement holds at most %(most)s. Choose a shorter period.",
                "This period holds %(count)s movements; a statement holds at most %(most)s. Choose a shorter period.",
                too_long.entries) % {"count": format_number(too_long.entries, places=0),
                                     "most": format_number(too_long.most, places=0)})
            return render(request, "invoices/statement_form.html", {"form": form, "client": client}, status=400)
        audit_record(action=AuditEvent.Action.FILE_DOWNLOADED, request=request, client=client, obj=client,
                     details={"format": "statement", "start": form.cleaned_data["start"].isoformat(),
                              "end": form.cleaned_data["end"].isoformat()})
        return download_response(pdf, file_name=file_name, content_type="application/pdf")
    return render(request, "invoices/statement_form.html", {"form": form, "client": client},
                  status=400 if request.GET else 200)


@outside_request_transaction
@client_required
def statement(request):
    return statement_response(request, request.client)




@client_required
def invoice_list(request):
    filterset = _filtered(request)
    page = compiled_list_page(filterset, client=request.client, number=request.GET.get("page"))
    detail, pdf, pay = (_each_pk_url(f"invoices:{name}") for name in ("detail", "invoice_pdf", "pay"))
    for invoice in page.object_list:
        invoice.links = RowLinks(detail=detail(invoice.pk), pdf=pdf(invoice.pk), pay=pay(invoice.pk))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter": filterset, "page": page, "query": query.urlencode(), "headers": sort_headers(request.GET),
               "filter_count": active_filter_count(request.GET), "htmx": bool(request.headers.get("HX-Request"))}
    template = "invoices/_results.html" if context["htmx"] else "invoices/list.html"
    return render(request, template, context)


def _filtered(request) -> InvoiceFilter:
    """The client's invoices as the list's URL filters and sorts them; a filter that is not
    valid is left out (the form says why) and the others still apply."""
    return invoice_filter(request.GET, client_invoices(client=request.client), client=request.client)


@client_required
def invoice_detail(request, pk: int):
    try:
        detail = client_invoice_detail(client=request.client, pk=pk)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice")
    invoice = detail.invoice
    audit_record(action=AuditEvent.Action.RECORD_VIEWED, request=request, obj=invoice,
                 details={"number": invoice.number})
    # What the apps above the ledger add to this page (payments: the direct-debit mandate).
    extras = {}
    for _receiver, added in invoice_detail_context.send(sender=Invoice, invoice=invoice, client=request.client):
        extras |= added or {}
    return render(request, "invoices/detail.html", {
        **extras,
        "invoice": invoice, "lines": detail.lines,
        "tax_breakdown": document_tax_breakdown(document=invoice, lines=detail.lines),
        "credit_notes": detail.credit_notes, "payments": detail.allocations})


@client_required
def credit_note_detail(request, pk: int):
    try:
        credit_note = client_credit_note_get(client=request.client, pk=pk, for_page=True)
    except CreditNote.DoesNotExist:
        raise Http404("No such credit note")
    audit_record(action=AuditEvent.Action.RECORD_VIEWED, request=request, obj=credit_note,
                 details={"number": credit_note.number})
    lines = list(credit_note.lines.all())
    extras = {}  # what the apps above the ledger add (integrations: its Peppol delivery)
    for _receiver, added in credit_note_detail_context.send(sender=CreditNote, credit_note=credit_note,
                                                            client=request.client):
        extras |= added or {}
    return render(request, "invoices/credit_note_detail.html", {
        **extras, "credit_note": credit_note, "lines": lines,
        "tax_breakdown": document_tax_breakdown(document=credit_note, lines=lines)})


@client_required
@role_required("pay")
def pay(request, pk: int):
    """Pay now on one invoice: the checkout, with this invoice selected."""
    invoice = _invoice(request, pk)
    return redirect(f"{reverse('payments:checkout')}?invoice={invoice.pk}")


CSV_HEADER = ["number", "issue_date", "due_date", "currency", "subtotal", "tax", "total", "paid", "credited",
              "open_balance", "status", "overdue", "purchase_order"]
CSV_FIELDS = ("number", "issue_date", "due_date", "currency", "subtotal", "tax_total", "total", "amount_paid",
              "amount_credited", "open_balance", "status", "purchase_order")
CSV_FETCH = 500  # rows per round trip of the server-side cursor: at most two such batches are held
CSV_ROWS_PER_CHUNK = 500  # rows per piece of the response


@file_response
@client_required
def export_csv(request):
    """The filtered invoices as CSV, streamed: read through a server-side cursor 500 rows at a
    time and sent as they are written, so memory stays flat however many there are.
    The export is audited (with how many rows the filter matched) before anything is sent."""
    invoices = _filtered(request).qs.prefetch_related(None)
    audit_record(action=AuditEvent.Action.RECORDS_EXPORTED, request=request,
                 details={"format": "csv", "rows": invoices.count(), "filters": request.GET.urlencode()})
    stamp = timezone.localdate().isoformat()
    rows = _csv_rows(invoices.values_list(*CSV_FIELDS), client_id=request.client.pk, user_id=request.user.pk)
    return streaming_download_response(rows, file_name=f"invoices-{stamp}.csv", content_type="text/csv; charset=utf-8")


def _csv_rows(rows, *, client_id: int, user_id: int):
    """The CSV in pieces. It is read after the view has returned, outside the request's
    transaction and scope: in a transaction of its own (the server-side cursor lives in it) and
    in the client's scope around each read only, so the scope is never left set between pieces."""
    today = timezone.localdate()
    buffer = io.StringIO()
    writer = csv_writer(buffer)  # formula-looking text from accounting is escaped
    buffer.write("\ufeff")  # a byte order mark: spreadsheets then read the file as UTF-8
    writer.writerow(CSV_HEADER)
    with transaction.atomic():
        with client_scope(client_id, user_id=user_id):
            cursor = rows.iterator(chunk_size=CSV_FETCH)
            chunk = list(islice(cursor, CSV_ROWS_PER_CHUNK))
        while chunk:
            for (number, issued, due, currency, subtotal, tax, total, paid, credited, open_balance, status,
                 purchase_order) in chunk:
                overdue = status in Invoice.PAYABLE and open_balance > 0 and due < today  # Invoice.is_overdue
                writer.writerow([number, issued.isoformat(), due.isoformat(), currency, subtotal, tax, total, paid,
                                 credited, open_balance, status, "yes" if overdue else "no", purchase_order])
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            with client_scope(client_id, user_id=user_id):
                chunk = list(islice(cursor, CSV_ROWS_PER_CHUNK))
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


@require_POST
@client_required
def download_zip(request):
    ids = [int(pk) for pk in request.POST.getlist("invoice") if pk.isdigit()][:ZIP_LIMIT]
    invoices = list(client_invoices(client=request.client).filter(pk__in=ids))
    if not invoices:
        messages.info(request, _("Tick at least one invoice to download."))
        return redirect("invoices:list")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for invoice in invoices:
            pdf = document_pdf(invoice)
            archive.writestr(pdf.file_name, pdf.content)
            _downloaded(request, invoice, "pdf (zip)")
    stamp = timezone.localdate().isoformat()
    return download_response(buffer.getvalue(), file_name=f"invoices-{stamp}.zip", content_type="application/zip")


def _link_or_refusal(request, token):
    try:
        return document_link_use(token=token, request=request), None
    except LinkRefused as refusal:
        return None, render(request, "invoices/document_link_refused.html", {"reason": str(refusal)},
                            status=refusal.status)


@never_cache  # someone's invoice, reachable without a login: no browser or proxy keeps a copy
def document_link(request, token: str):
    """One invoice, no password: only what the signed link names; everything else needs a login."""
    link, refusal = _link_or_refusal(request, token)
    if refusal:
        return refusal
    with client_scope(link.client_id):
        invoice = link.invoice
        return render(request, "invoices/document_link.html", {
            "invoice": invoice, "lines": list(invoice.lines.all()), "token": token, "brand": invoice.brand,
            "tax_breakdown": document_tax_breakdown(document=invoice)})


@outside_request_transaction
@never_cache
def document_link_pdf(request, token: str):
    link, refusal = _link_or_refusal(request, token)
    if refusal:
        return refusal
    with client_scope(link.client_id):
        pdf = document_pdf(link.invoice)
    return download_response(pdf.content, file_name=pdf.file_name, content_type="application/pdf")
