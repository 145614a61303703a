"""Amounts as the reader's locale writes them: € 1.208,33 in Dutch, € 1,208.33 in English."""
from decimal import Decimal

from django import template
from django.utils.formats import number_format

register = template.Library()
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF"}


@register.filter
def money(amount, currency="EUR"):
    if amount in (None, ""):
        return ""
    amount = Decimal(amount)
    sign = "−" if amount < 0 else ""
    formatted = number_format(abs(amount), 2, use_l10n=True, force_grouping=True)
    return f"{sign}{SYMBOLS.get(currency, currency)} {formatted}"


@register.filter
def quantity(value):
    """3.000 → 3, 2.500 → 2,5 (nl) / 2.5 (en)."""
    value = Decimal(value).normalize()
    places = max(0, -value.as_tuple().exponent)
    return number_format(value, places, use_l10n=True, force_grouping=True)


@register.filter
def percent(value):
    return f"{quantity(value)}%"
