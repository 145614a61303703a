"""Template filters for amounts, numbers and dates in the reader's language (portal.formatting):
`{{ x|money:currency }}` € 1.208,33 / €1,208.33, `{{ d|day }}` 17 dec 2026, `{{ d|day:"long" }}`."""
from django import template

from portal.formatting import format_day, format_moment, format_money, format_number

register = template.Library()


@register.filter
def money(amount, currency="EUR"):
    return format_money(amount, currency or "EUR")


@register.filter
def quantity(value):
    """3.000 → 3, 2.500 → 2,5 (nl) / 2.5 (en)."""
    return format_number(value)


@register.filter
def percent(value):
    return f"{format_number(value)}%"


@register.filter
def day(value, style="medium"):
    return format_day(value, style)


@register.filter
def moment(value):
    return format_moment(value)
