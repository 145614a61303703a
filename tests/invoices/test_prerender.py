"""PDF pre-renders as jobs ("pdf.prerender"): every change to what a document shows leaves one
job, written with the change, that renders and stores the PDF before the first download."""
import pytest

from invoices import services
from invoices.documents import render
from invoices.models import CreditNote, Invoice
from invoices.tasks import prerender_pdf
from portal import jobs
from portal.models import Job
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory


@pytest.fixture
def bells(monkeypatch):
    """The test runs the jobs itself: no bell reaches a worker (one may be running already)."""
    monkeypatch.setattr(jobs.current_app, "send_task", lambda name, args=None, kwargs=None, **options: None)


def _prerenders(subject: str) -> list[Job]:
    with staff_scope():
        return list(Job.objects.filter(kind="pdf.prerender", subject=subject).order_by("id"))


def _served_from_storage(document) -> bool:
    with staff_scope():
        model = CreditNote if isinstance(document, CreditNote) else Invoice
        return not render.document_pdf(model.objects.get(pk=document.pk)).rendered_now


def test_each_change_leaves_one_prerender_job_and_the_first_download_is_served_from_storage(committed, bells):
    invoice = committed.create(lambda: make_invoice(ClientFactory(brand=BrandFactory(is_default=True)),
                                                    lines=[line(unit_price="10.00")]))
    subject = f"invoice:{invoice.pk}"
    [created] = _prerenders(subject)  # created and opened in one transaction: one render
    assert created.payload == {"kind": "invoice", "pk": invoice.pk}
    assert created.key.startswith(f"pdf:invoice:{invoice.pk}:")
    assert jobs.job_run(created.pk) == Job.State.DONE
    with staff_scope():
        assert Job.objects.get(pk=created.pk).result == "rendered"
    assert _served_from_storage(invoice)

    pay(invoice.client, [(invoice, "5.00")])  # the balance on the PDF changes: it renders again
    [_, paid] = _prerenders(subject)
    assert paid.key != created.key
    assert jobs.job_run(paid.pk) == Job.State.DONE
    assert jobs.job_run(paid.pk) is None  # a second bell changes nothing
    with staff_scope():
        paid = Job.objects.get(pk=paid.pk)
        assert paid.result == "rendered"
        assert prerender_pdf(paid) == "current"  # its work done again finds the PDF current
    assert _served_from_storage(invoice)


def test_a_credit_note_is_prerendered_too(committed, bells):
    invoice = committed.create(lambda: make_invoice(ClientFactory(brand=BrandFactory(is_default=True)),
                                                    lines=[line(unit_price="10.00")]))
    with staff_scope():
        credit_note = services.credit_note_create(invoice=invoice, number="CN-P-1", issue_date=TODAY,
                                                  lines=[line(unit_price="2.00")])
    [job] = _prerenders(f"credit_note:{credit_note.pk}")
    assert len(_prerenders(f"invoice:{invoice.pk}")) == 2  # the credit changed the invoice's balance too
    assert jobs.job_run(job.pk) == Job.State.DONE
    assert _served_from_storage(credit_note)
