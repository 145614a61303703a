"""Portal downloads: invoice and credit note PDFs, UBL XML and account statements."""

from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from invoices.documents.einvoice import ubl_xml
from invoices.documents.render import document_pdf
from invoices.documents.statement import statement_pdf
from invoices.forms import StatementForm
from invoices.models import CreditNote, Invoice
from invoices.selectors import client_credit_note_get, client_invoice_get
from portal.http import download_response
from portal.models import AuditEvent
from portal.services import audit_record
from portal.views import client_required


def _invoice(request, pk: int) -> Invoice:
    try:
        return client_invoice_get(client=request.client, pk=pk)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice")


def _downloaded(request, obj, file_format: str) -> None:
    audit_record(action=AuditEvent.Action.FILE_DOWNLOADED, request=request, obj=obj,
                 details={"format": file_format, "number": obj.number})


@client_required
def invoice_pdf(request, pk: int):
    invoice = _invoice(request, pk)
    pdf = document_pdf(invoice)
    _downloaded(request, invoice, "pdf")
    return download_response(pdf.content, file_name=pdf.file_name, content_type="application/pdf")


@client_required
def invoice_ubl(request, pk: int):
    invoice = _invoice(request, pk)
    _downloaded(request, invoice, "ubl")
    return download_response(ubl_xml(invoice), file_name=f"{invoice.number}.xml", content_type="application/xml")


@client_required
def credit_note_pdf(request, pk: int):
    try:
        credit_note = client_credit_note_get(client=request.client, pk=pk)
    except CreditNote.DoesNotExist:
        raise Http404("No such credit note")
    pdf = document_pdf(credit_note)
    _downloaded(request, credit_note, "pdf")
    return download_response(pdf.content, file_name=pdf.file_name, content_type="application/pdf")


def statement_response(request, client):
    """The statement form, or with a valid range the statement PDF (portal and admin alike)."""
    today = timezone.localdate()
    form = StatementForm(request.GET or None, initial={"start": today.replace(month=1, day=1), "end": today})
    if request.GET and form.is_valid():
        pdf, file_name = statement_pdf(client=client, **form.cleaned_data)
        audit_record(action=AuditEvent.Action.FILE_DOWNLOADED, request=request, client=client, obj=client,
                     details={"format": "statement", "start": form.cleaned_data["start"].isoformat(),
                              "end": form.cleaned_data["end"].isoformat()})
        return download_response(pdf, file_name=file_name, content_type="application/pdf")
    return render(request, "invoices/statement_form.html", {"form": form, "client": client},
                  status=400 if request.GET else 200)


@client_required
def statement(request):
    return statement_response(request, request.client)


