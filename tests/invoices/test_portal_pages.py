"""The client's invoice pages over HTTP: dashboard, list filters, detail, exports, roles, audit."""
import csv
import datetime
import io
import re
import zipfile
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices import services
from portal.models import AuditEvent, Membership
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def ledger(db):
    """Alpha has one invoice in each state; Bravo has its own."""
    brand = BrandFactory(is_default=True, iban="NL91ABNA0417164300")
    alpha = ClientFactory(brand=brand, name="Alpha B.V.", locale="en")
    bravo = ClientFactory(brand=brand, name="Bravo B.V.")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test", user__language="en").user
    viewer = MembershipFactory(client=alpha, role=Membership.Role.VIEWER, user__email="viewer@alpha.test").user
    invoices = {
        "open": make_invoice(alpha, number="A-OPEN", issue_date=TODAY - datetime.timedelta(days=5),
                             lines=[line("Hosting", unit_price="100.00")]),
        "partial": make_invoice(alpha, number="A-PART", issue_date=TODAY - datetime.timedelta(days=10),
                                lines=[line(unit_price="1000.00")]),
        "overdue": make_invoice(alpha, number="A-LATE", issue_date=TODAY - datetime.timedelta(days=60),
                                lines=[line(unit_price="300.00")], purchase_order="PO-LATE"),
        "paid": make_invoice(alpha, number="A-PAID", issue_date=TODAY - datetime.timedelta(days=90),
                             lines=[line(unit_price="50.00")]),
        "void": make_invoice(alpha, number="A-VOID", issue_date=TODAY - datetime.timedelta(days=20)),
    }
    pay(alpha, [(invoices["partial"], "210.00")])
    pay(alpha, [(invoices["paid"], "60.50")])
    with staff_scope():
        services.invoice_void(invoice=invoices["void"])
        services.credit_note_create(invoice=invoices["open"], number="A-CN-1", issue_date=TODAY,
                                    lines=[line(unit_price="10.00")])
    make_invoice(bravo, number="B-SECRET", lines=[line(unit_price="999.00")])
    return {"alpha": alpha, "bravo": bravo, "owner": owner, "viewer": viewer, **invoices}


def _numbers(response):
    return [n for n in ("A-OPEN", "A-PART", "A-LATE", "A-PAID", "A-VOID", "B-SECRET") if f">{n}<" in response.text]


def test_dashboard_shows_open_and_overdue_totals_next_due_and_activity(ledger, client):
    client.force_login(ledger["owner"])
    page = client.get("/")
    # Open: 121.00 − 12.10 (credit) + 1210.00 − 210.00 + 363.00 = 1471.90; overdue: A-LATE 363.00.
    assert "€1,471.90" in page.text and "€363.00" in page.text
    assert "1 invoice is overdue" in page.text and "Pay what is overdue" in page.text
    assert 'data-testid="next-due">A-PART<' in page.text  # the earliest due date still ahead
    assert "A-CN-1" in page.text and "Payment received" in page.text
    assert "B-SECRET" not in page.text


@pytest.mark.parametrize("params, expected", [
    ({}, ["A-OPEN", "A-PART", "A-LATE", "A-PAID", "A-VOID"]),
    ({"status": "open"}, ["A-LATE"]),
    ({"status": "partially_paid"}, ["A-PART"]),
    ({"status": "partly_credited"}, ["A-OPEN"]),
    ({"status": "overdue"}, ["A-LATE"]),
    ({"status": "paid"}, ["A-PAID"]),
    ({"status": "void"}, ["A-VOID"]),
    ({"amount_min": "300", "amount_max": "400"}, ["A-LATE"]),
    ({"q": "po-late"}, ["A-LATE"]),
    ({"q": "A-CN-1"}, ["A-OPEN"]),
])
def test_list_filters(ledger, client, params, expected):
    client.force_login(ledger["owner"])
    assert sorted(_numbers(client.get(reverse("invoices:list"), params))) == sorted(expected)


def test_the_list_rows_speak_the_contacts_language(ledger, client):
    # The rows are written in Python (invoices/templatetags/invoice_rows.py): every word in them
    # must reach the catalogue as the template's did.
    with staff_scope():
        ledger["owner"].language = "nl"
        ledger["owner"].save(update_fields=["language"])
    client.force_login(ledger["owner"])
    page = client.get(reverse("invoices:list")).text
    assert "Selecteer A-LATE" in page and 'data-label="Vervaldatum"' in page and ">Betalen<" in page
    assert "Select A-LATE" not in page


def test_a_filter_that_cannot_be_read_is_said_beside_its_field_and_read_out_with_it(ledger, client):
    client.force_login(ledger["owner"])
    page = client.get(reverse("invoices:list"), {"amount_min": "a lot"})
    assert page.status_code == 200
    described = re.search(r'<input[^>]*name="amount_min"[^>]*aria-describedby="([^"]+)"', page.text)
    assert described, "the field names its error as its description"
    assert re.search(rf'<p class="field-error" id="{described.group(1)}">[^<]+</p>', page.text)


def test_list_filters_by_issue_and_due_date_and_sorts(ledger, client):
    client.force_login(ledger["owner"])
    since = (TODAY - datetime.timedelta(days=30)).isoformat()
    assert sorted(_numbers(client.get(reverse("invoices:list"), {"issued_from": since}))) == [
        "A-OPEN", "A-PART", "A-VOID"]
    due_until = (TODAY - datetime.timedelta(days=1)).isoformat()
    assert sorted(_numbers(client.get(reverse("invoices:list"), {"due_to": due_until}))) == ["A-LATE", "A-PAID"]
    by_total = client.get(reverse("invoices:list"), {"sort": "total"}).text
    assert by_total.index(">A-PAID<") < by_total.index(">A-OPEN<") < by_total.index(">A-PART<")
    largest_first = client.get(reverse("invoices:list"), {"sort": "-total"}).text
    assert largest_first.index(">A-PART<") < largest_first.index(">A-OPEN<") < largest_first.index(">A-PAID<")


def test_column_headers_sort_and_say_how_and_a_second_click_reverses(ledger, client):
    client.force_login(ledger["owner"])
    newest_first = client.get(reverse("invoices:list"), {"status": "paid"}).text
    # Unsorted means newest first: the issue date header says so and a click turns it around.
    assert 'aria-sort="descending"' in newest_first and newest_first.count("aria-sort=") == 1
    assert 'href="?status=paid&amp;sort=date"' in newest_first
    assert 'href="?status=paid&amp;sort=-total"' in newest_first  # amounts: largest first
    by_number = client.get(reverse("invoices:list"), {"status": "paid", "sort": "number", "page": "1"}).text
    assert 'aria-sort="ascending"' in by_number and 'href="?status=paid&amp;sort=-number"' in by_number
    for header in ("Number", "Issue date", "Due date", "Total", "Open", "Status"):
        assert f">{header}<span" in by_number, header


def test_a_ticked_nothing_download_or_payment_goes_back_to_the_list_with_a_message(ledger, client):
    client.force_login(ledger["owner"])
    for name in ("invoices:download_zip", "payments:checkout"):
        response = client.post(reverse(name), {}, follow=True)
        assert response.redirect_chain[0] == (reverse("invoices:list"), 302), name
        assert "class=\"message" in response.text, name
    page = client.get(reverse("invoices:list")).text
    # Both act on the selection with a POST: no token in any URL.
    assert 'formaction="/pay/"' in page and 'method="post" action="/invoices/download.zip"' in page
    client.force_login(ledger["viewer"])
    assert "Pay selected" not in client.get(reverse("invoices:list")).text


def test_htmx_gets_only_the_results_and_no_js_gets_the_whole_page(ledger, client):
    client.force_login(ledger["owner"])
    partial = client.get(reverse("invoices:list"), {"status": "paid"}, HTTP_HX_REQUEST="true")
    assert "<html" not in partial.text and ">A-PAID<" in partial.text
    # The filter button's count and the sort choice outside the results follow them.
    assert '<span id="filter-count" hx-swap-oob="innerHTML">Filters (1)' in partial.text
    assert 'data-sort="-date"' in partial.text
    full = client.get(reverse("invoices:list"), {"status": "paid"})
    assert "<html" in full.text and 'name="status"' in full.text


def test_empty_states_say_what_is_empty(ledger, client):
    client.force_login(ledger["owner"])
    with staff_scope():
        pay(ledger["alpha"], [(ledger["overdue"], "363.00")])
    overdue = client.get(reverse("invoices:list"), {"status": "overdue"}).text
    assert "Nothing is overdue." in overdue and "Show all invoices" in overdue
    unmatched = client.get(reverse("invoices:list"), {"q": "nothing", "status": "paid"}).text
    assert "No invoices match these filters." in unmatched and "Filters (2)" in unmatched
    assert unmatched.count(f'href="{reverse("invoices:list")}">Clear filters') == 2  # the form's and the empty state's


def test_pagination_keeps_the_filters(ledger, client):
    for n in range(25):
        make_invoice(ledger["alpha"], number=f"A-BULK-{n:02d}")
    client.force_login(ledger["owner"])
    first = client.get(reverse("invoices:list"), {"status": "open"})
    assert "Page 1 of 2" in first.text and "status=open&amp;page=2" in first.text
    second = client.get(reverse("invoices:list"), {"status": "open", "page": "2"})
    assert "Page 2 of 2" in second.text


def test_csv_export_has_the_filtered_rows_only_and_is_audited(ledger, client):
    client.force_login(ledger["owner"])
    response = client.get(reverse("invoices:export_csv"), {"status": "partially_paid"})
    assert response["Content-Type"] == "text/csv; charset=utf-8" and response["Cache-Control"] == "private, no-store"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [(r["number"], r["open_balance"]) for r in rows] == [("A-PART", "1000.00")]
    everything = b"".join(client.get(reverse("invoices:export_csv")).streaming_content).decode("utf-8-sig")
    assert "B-SECRET" not in everything and "A-OPEN" in everything
    with staff_scope():
        exports = AuditEvent.objects.filter(action=AuditEvent.Action.RECORDS_EXPORTED).order_by("id")
        assert [event.details["rows"] for event in exports] == [1, len(everything.splitlines()) - 1]


def test_zip_of_selected_pdfs_skips_other_clients_invoices(ledger, client):
    client.force_login(ledger["owner"])
    with staff_scope():
        from invoices.models import Invoice

        secret = Invoice.objects.get(number="B-SECRET")
    response = client.post(reverse("invoices:download_zip"),
                           {"invoice": [ledger["open"].pk, ledger["paid"].pk, secret.pk]})
    assert response["Content-Type"] == "application/zip"
    names = sorted(zipfile.ZipFile(io.BytesIO(response.content)).namelist())
    assert names == ["A-OPEN.pdf", "A-PAID.pdf"]


def test_detail_shows_everything_and_is_audited(ledger, client):
    client.force_login(ledger["owner"])
    page = client.get(reverse("invoices:detail", args=[ledger["open"].pk]))
    for expected in ("A-OPEN", "Hosting", "A-CN-1", "€108.90", "21%", "Pay now", "Download PDF", "Download UBL"):
        assert expected in page.text, expected
    partial = client.get(reverse("invoices:detail", args=[ledger["partial"].pk]))
    assert "Bank transfer" in partial.text and "€210.00" in partial.text
    with staff_scope():
        assert AuditEvent.objects.filter(action=AuditEvent.Action.RECORD_VIEWED,
                                         object_id=str(ledger["open"].pk)).count() == 1
        from invoices.models import CreditNote

        note = CreditNote.objects.get(number="A-CN-1")
    back = client.get(reverse("invoices:credit_note_detail", args=[note.pk]))
    assert reverse("invoices:detail", args=[ledger["open"].pk]) in back.text


def test_another_clients_invoice_detail_is_404(ledger, client):
    client.force_login(ledger["owner"])
    with staff_scope():
        from invoices.models import Invoice

        secret = Invoice.objects.get(number="B-SECRET")
    for name in ("invoices:detail", "invoices:pay", "invoices:invoice_pdf"):
        assert client.get(reverse(name, args=[secret.pk])).status_code == 404, name


def test_a_viewer_sees_but_cannot_pay(ledger, client):
    client.force_login(ledger["viewer"])
    detail = client.get(reverse("invoices:detail", args=[ledger["open"].pk]))
    assert detail.status_code == 200 and "Pay now" not in detail.text
    assert client.get(reverse("invoices:pay", args=[ledger["open"].pk])).status_code == 403
    client.force_login(ledger["owner"])
    to_checkout = client.get(reverse("invoices:pay", args=[ledger["open"].pk]))
    assert to_checkout.status_code == 302 and to_checkout.url == f"/pay/?invoice={ledger['open'].pk}"
    assert client.get(to_checkout.url).status_code == 200


def test_the_filter_form_shows_each_requests_own_values_language_and_errors(ledger, client):
    # The fields' HTML is kept per language and values (invoices/templatetags/invoice_rows.py):
    # every request must still see its own.
    def fields(response):
        html = response.text
        return html[html.index('<div class="filters__grid">'):html.index('<div class="filters__actions">')]

    client.force_login(ledger["owner"])
    url = reverse("invoices:list")
    plain, again = fields(client.get(url)), fields(client.get(url))
    assert plain == again and "Search number or reference" in plain
    overdue = fields(client.get(url, {"status": "overdue", "amount_min": "12.50"}))
    assert re.search(r'<option value="overdue" selected>', overdue) and 'value="12.50"' in overdue
    assert not re.search(r'<option value="overdue" selected>', fields(client.get(url)))
    wrong = fields(client.get(url, {"status": "overdue", "amount_min": "a lot"}))
    assert 'class="field-error"' in wrong and 'value="a lot"' in wrong
    assert 'class="field-error"' not in fields(client.get(url, {"status": "overdue", "amount_min": "12.50"}))
    client.post(reverse("set_language"), {"language": "nl"})
    dutch = fields(client.get(url))
    assert "Zoek" in dutch and "Search number or reference" not in dutch


def test_the_kept_filter_fields_are_bounded_oldest_first(ledger, client, monkeypatch):
    from invoices.templatetags import invoice_rows

    monkeypatch.setattr(invoice_rows, "_FILTER_FIELDS", {})
    monkeypatch.setattr(invoice_rows, "_FILTER_FIELDS_KEPT", 3)
    client.force_login(ledger["owner"])
    for amount in ("1", "2", "3", "4", "5"):
        assert f'value="{amount}"' in client.get(reverse("invoices:list"), {"amount_min": amount}).text
    kept = [dict(values)["amount_min"] for _language, _bound, values in invoice_rows._FILTER_FIELDS]
    assert kept == [("3",), ("4",), ("5",)]
