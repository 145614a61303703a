"""End to end: a signed POST, a real Celery worker on a real Redis, the invoice in the database."""
import time
from decimal import Decimal

from django.test import Client as HttpClient

from integrations.models import Connection
from invoices.documents.render import is_current
from invoices.models import Invoice, RenderedDocument
from portal.models import AuditEvent, Job
from portal.rls import staff_scope
from tests.integrations.helpers import CLIENT, event, invoice_data, post
from tests.portal.factories import BrandFactory

D = Decimal


def _wait_for(check, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with staff_scope():
            result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("the worker did not get there in time")


def test_signed_post_is_applied_by_a_real_worker(committed, celery_worker_process, secret):
    committed.create(lambda: Connection.objects.create(name="ERP", slug="erp", brand=BrandFactory(),
                                                       signing_secrets=secret))
    http = HttpClient()
    for payload in (event("client.upserted", CLIENT), event("invoice.created", invoice_data())):
        response = post(http, "erp", secret, payload)
        assert (response.status_code, response.json()["status"]) == (200, "accepted")

    invoice = _wait_for(lambda: Invoice.objects.filter(external_id="INV-EXT-1").select_related("client").first())
    with staff_scope():
        lines = list(invoice.lines.values_list("position", "description", "quantity", "net_amount", "tax_rate",
                                               "tax_amount", "line_total"))
        trail = list(AuditEvent.objects.filter(object_type="invoices.invoice", object_id=str(invoice.pk))
                     .order_by("id").values_list("action", "details"))
        outcomes = set(Job.objects.filter(kind="accounting.event").values_list("state", "result"))
    assert invoice.client.name == "Northwind Traders B.V." and invoice.status == Invoice.Status.OPEN
    assert (invoice.subtotal, invoice.tax_total, invoice.total, invoice.open_balance) == (
        D("1003.97"), D("204.36"), D("1208.33"), D("1208.33"))
    assert lines == [(1, "Consulting", D("10.000"), D("950.00"), D("21.00"), D("199.50"), D("1149.50")),
                     (2, "Books", D("3.000"), D("53.97"), D("9.00"), D("4.86"), D("58.83"))]
    assert [action for action, _ in trail] == ["invoice.created", "invoice.status_changed"]
    assert trail[0][1] == {"total": "1208.33", "currency": "EUR", "source": "erp"}
    assert (trail[1][1]["from"], trail[1][1]["to"]) == ("draft", "open")
    assert outcomes == {(Job.State.DONE, "applied client.upserted"), (Job.State.DONE, "applied invoice.created")}

    # The worker also pre-rendered the invoice's PDF, so the first download is served from storage.
    rendered = _wait_for(lambda: RenderedDocument.objects.filter(invoice=invoice).first())
    assert rendered.size > 10_000
    with staff_scope():
        assert is_current(Invoice.objects.select_related("client", "brand").get(pk=invoice.pk))
