"""The ledger in the back office: filters, search, inlines, read-only amounts, state-machine actions."""
import datetime
from decimal import Decimal

from django.urls import reverse

from invoices.models import Invoice, RecurringSchedule
from portal.models import AuditEvent
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay


def _rows(page):
    return page.text.count('class="field-number"')


def test_invoice_list_filters_by_status_overdue_client_and_searches(client_a, client_b, client, staff):
    late = make_invoice(client_a, number="A-LATE", issue_date=TODAY - datetime.timedelta(days=60))
    paid = make_invoice(client_a, number="A-PAID")
    pay(client_a, [(paid, "121.00")])
    make_invoice(client_b, number="B-OPEN", purchase_order="PO-XYZ")
    client.force_login(staff)
    url = reverse("admin:invoices_invoice_changelist")
    assert _rows(client.get(url)) == 3
    by_status = client.get(url, {"status__exact": "paid"})
    assert _rows(by_status) == 1 and "A-PAID" in by_status.text
    overdue = client.get(url, {"overdue": "yes"})
    assert _rows(overdue) == 1 and "A-LATE" in overdue.text and late.pk
    assert "B-OPEN" in client.get(url, {"q": "PO-XYZ"}).text
    assert _rows(client.get(url, {"client__id__exact": client_b.pk})) == 1
    # The client and connection filters are typed, not lists of every client (a query per view):
    # the typed name keeps the other filters and the search.
    page = client.get(url)
    assert 'name="client_name"' in page.text and 'name="connection_name"' in page.text
    assert _rows(client.get(url, {"client_name": client_b.name[2:].lower()})) == 1
    assert _rows(client.get(url, {"client_name": client_a.name, "status__exact": "paid"})) == 1
    kept = client.get(url, {"client_name": client_a.name, "status__exact": "paid"}).text
    assert '<input type="hidden" name="status__exact" value="paid">' in kept
    assert f'name="client_name" value="{client_a.name}"' in kept
    assert _rows(client.get(url, {"connection_name": "no such connection"})) == 0


def test_invoice_detail_shows_lines_and_payments_read_only(client_a, client, staff):
    invoice = make_invoice(client_a, lines=[line("Audit work", quantity="3")])
    pay(client_a, [(invoice, "100.00")])
    client.force_login(staff)
    page = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200
    assert "Audit work" in page.text and "100.00" in page.text
    assert 'name="total"' not in page.text and 'name="status"' not in page.text  # nothing to edit by hand


def test_void_action_goes_through_the_state_machine(client_a, client, staff):
    invoice = make_invoice(client_a)
    client.force_login(staff)
    client.post(reverse("admin:invoices_invoice_changelist"),
                {"action": "void_invoices", "_selected_action": [invoice.pk]})
    with staff_scope():
        assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.VOID
        assert AuditEvent.objects.filter(action=AuditEvent.Action.INVOICE_STATUS, actor=staff,
                                         details__to="void").exists()


def test_staff_add_a_recurring_schedule_with_lines_and_pause_it(client_a, client, staff):
    client.force_login(staff)
    response = client.post(reverse("admin:invoices_recurringschedule_add"), {
        "client": client_a.pk, "brand": client_a.brand_id, "name": "Support plan", "currency": "EUR",
        "interval_unit": "months", "interval_count": 3, "next_date": "2026-12-01", "payment_terms_days": 14,
        "lines-TOTAL_FORMS": 1, "lines-INITIAL_FORMS": 0,
        "lines-0-position": 1, "lines-0-description": "Support", "lines-0-quantity": "1", "lines-0-unit": "quarter",
        "lines-0-unit_price": "600.00", "lines-0-discount_percent": "0", "lines-0-tax_rate": "21",
    })
    assert response.status_code == 302, response.text[:2000]
    with staff_scope():
        schedule = RecurringSchedule.objects.get(name="Support plan")
        assert schedule.start_date == datetime.date(2026, 12, 1)
        assert list(schedule.lines.values_list("net_amount", "tax_amount", "line_total")) == [
            (Decimal("600.00"), Decimal("126.00"), Decimal("726.00"))]
    client.post(reverse("admin:invoices_recurringschedule_changelist"),
                {"action": "pause", "_selected_action": [schedule.pk]})
    with staff_scope():
        assert RecurringSchedule.objects.get(pk=schedule.pk).status == RecurringSchedule.Status.PAUSED
