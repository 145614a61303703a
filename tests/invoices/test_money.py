"""Money rules: Decimal with a currency, half-up per line, totals that must add up."""
from decimal import Decimal

import pytest

from invoices.errors import TotalsMismatch
from invoices.money import Money, document_totals, line_amounts, round_money
from invoices.services import totals_validate
from tests.invoices.factories import line

D = Decimal


def test_rounding_is_half_up_per_line():
    assert round_money(D("0.005")) == D("0.01")
    assert round_money(D("2.675")) == D("2.68")  # a float would give 2.67
    assert round_money(D("-0.005")) == D("-0.01")
    # 3 × 0.335 = 1.005 → 1.01 net; 21% of 1.01 = 0.2121 → 0.21
    amounts = line_amounts(quantity=D("3"), unit_price=D("0.335"), discount_percent=D("0"), tax_rate=D("21"))
    assert (amounts.net, amounts.tax, amounts.total) == (D("1.01"), D("0.21"), D("1.22"))


def test_discount_applies_before_tax():
    amounts = line_amounts(quantity=D("2"), unit_price=D("49.95"), discount_percent=D("10"), tax_rate=D("9"))
    assert (amounts.net, amounts.tax) == (D("89.91"), D("8.09"))


def test_totals_and_tax_breakdown_per_rate():
    totals = document_totals([line(unit_price="100.00", tax_rate="21"), line(unit_price="50.00", tax_rate="9"),
                              line(unit_price="10.00", tax_rate="21"), line(unit_price="5.00", tax_rate="0")])
    assert (totals.subtotal, totals.tax_total, totals.total) == (D("165.00"), D("27.60"), D("192.60"))
    assert totals.tax_breakdown == {D("0"): (D("5.00"), D("0.00")), D("9"): (D("50.00"), D("4.50")),
                                    D("21"): (D("110.00"), D("23.10"))}


def test_money_never_takes_a_float_or_mixes_currencies():
    with pytest.raises(TypeError):
        Money(0.1, "EUR")
    with pytest.raises(ValueError, match="EUR and USD"):
        Money(D("1"), "EUR") + Money(D("1"), "USD")
    assert str(Money(D("1.005"), "EUR") + Money(D("2"), "EUR")) == "EUR 3.01"


@pytest.mark.parametrize("field, kwargs, message", [
    ("subtotal", dict(subtotal=D("99.99")), "subtotal: expected 100.00, received 99.99"),
    ("tax_total", dict(tax_total=D("21.01")), "tax_total: expected 21.00, received 21.01"),
    ("total", dict(total=D("120.00")), "total: expected 121.00, received 120.00"),
    ("tax_breakdown[21%].tax", dict(tax_breakdown=[{"rate": "21", "base": "100.00", "tax": "20.00"}]),
     "tax_breakdown[21%].tax: expected 21.00, received 20.00"),
    ("tax_breakdown[9%].base", dict(tax_breakdown=[{"rate": "21", "base": "100.00", "tax": "21.00"},
                                                   {"rate": "9", "base": "1.00", "tax": "0.09"}]),
     "tax_breakdown[9%].base: expected 0.00, received 1.00"),
])
def test_totals_that_do_not_add_up_are_rejected_naming_the_field(field, kwargs, message):
    given = dict(subtotal=D("100.00"), tax_total=D("21.00"), total=D("121.00"),
                 tax_breakdown=[{"rate": "21", "base": "100.00", "tax": "21.00"}]) | kwargs
    with pytest.raises(TotalsMismatch) as error:
        totals_validate(lines=[line()], **given)
    assert str(error.value) == message and error.value.field == field


def test_totals_that_add_up_pass():
    totals_validate(lines=[line()], subtotal=D("100.00"), tax_total=D("21.00"), total=D("121.00"),
                    tax_breakdown=[{"rate": "21.00", "base": "100.00", "tax": "21.00"}])


def test_formatted_amounts_and_dates_follow_each_readers_language_when_made_again():
    # Each text is made once per process (portal.formatting): the second time reads the same.
    import datetime

    from portal.formatting import format_day, format_money
    for _ in range(2):
        assert format_money(D("1306.80"), "EUR", language="nl") == "€\xa01.306,80"
        assert format_money(D("1306.80"), "EUR", language="en") == "€1,306.80"
        assert format_money(D("1306.8"), "USD", language="en") == "US$1,306.80"
        assert format_money(D("-0.00"), "EUR", language="nl") == "€\xa0-0,00"
        assert format_money(D("0.00"), "EUR", language="nl") == "€\xa00,00"
        assert format_day(datetime.date(2026, 12, 17), language="nl") == "17 dec 2026"
        assert format_day(datetime.date(2026, 12, 17), "long", language="nl") == "17 december 2026"
        assert format_day(datetime.date(2026, 12, 17), language="en") == "17 Dec 2026"
