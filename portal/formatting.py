"""Money, numbers and dates as the reader's language writes them, and money as a client types it:
the one place the portal formats or parses them (Babel's CLDR data, not hand-written rules).

    format_money(Decimal("1306.80"), "EUR")  # nl: "€ 1.306,80", en: "€1,306.80"
    format_day(date(2026, 12, 17))           # nl: "17 dec. 2026", en: "17 Dec 2026"
    parse_money("10,50")                     # nl: Decimal("10.50"); "1.050" is 1050 in Dutch
"""
from __future__ import annotations

import datetime
import functools
import re
from decimal import Decimal, InvalidOperation

from babel import Locale
from babel.dates import format_date as _babel_date
from babel.dates import format_time as _babel_time
from babel.numbers import NumberFormatError, format_currency, format_decimal, parse_decimal
from django.conf import settings
from django.utils import timezone, translation

# The CLDR locale each portal language formats with: English dates read "17 Dec 2026" (British
# order, as the EU clients of a Dutch business expect), not the US "Dec 17, 2026".
CLDR_LOCALES = {"en": "en_GB", "nl": "nl_NL"}
MAX_MONEY_DIGITS = 12  # what a DecimalField(max_digits=14, decimal_places=2) holds


class MoneyParseError(ValueError):
    """What the client typed is not an amount (the message is for the client, translated)."""


def cldr_locale(language: str | None = None) -> str:
    language = (language or translation.get_language() or settings.LANGUAGE_CODE).split("-")[0]
    return CLDR_LOCALES.get(language, CLDR_LOCALES[settings.LANGUAGE_CODE])


@functools.cache
def _parsed_locale(identifier: str) -> Locale:
    return Locale.parse(identifier)


def babel_locale(language: str | None = None) -> Locale:
    """The Babel locale a language formats with, parsed once per process (parsing it again for
    every amount and date on a page costs more than formatting them; there are two)."""
    return _parsed_locale(cldr_locale(language))


# A page formats dozens of amounts and dates, and the same ones page after page: each text is
# made once per process. Keyed by the amount's exact text (str keeps the sign of -0.00, which
# equal Decimals do not) and the CLDR locale; both caches are bounded.
@functools.lru_cache(maxsize=4096)
def _money_text(amount: str, currency: str, identifier: str) -> str:
    return format_currency(Decimal(amount), currency, locale=_parsed_locale(identifier))


@functools.lru_cache(maxsize=4096)
def _day_text(value: datetime.date, style: str, identifier: str) -> str:
    return _babel_date(value, format=style, locale=_parsed_locale(identifier))


def format_money(amount, currency: str = "EUR", *, language: str | None = None) -> str:
    """`€ 1.306,80` (nl), `€1,306.80` (en); negative amounts with the locale's minus sign."""
    if amount in (None, ""):
        return ""
    if isinstance(amount, float):
        raise TypeError("money is never a float")
    return _money_text(str(Decimal(amount)), currency, cldr_locale(language))


def format_number(value, *, places: int | None = None, language: str | None = None) -> str:
    """A quantity or rate: `2,5` (nl), `2.5` (en); trailing zeros dropped unless `places` is given."""
    if value in (None, ""):
        return ""
    value = Decimal(value)
    if places is None:
        value = value.normalize()
        places = max(0, -value.as_tuple().exponent)
    pattern = "#,##0" + ("." + "0" * places if places else "")
    return format_decimal(value, format=pattern, locale=babel_locale(language))


def format_day(value: datetime.date | datetime.datetime | None, style: str = "medium", *,
               language: str | None = None) -> str:
    """A date: `17 dec. 2026` (nl, medium), `17 december 2026` (nl, long), `17 Dec 2026` (en).
    A datetime is shown as the date it is in the portal's time zone."""
    if value in (None, ""):
        return ""
    if isinstance(value, datetime.datetime):
        value = timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    return _day_text(value, style, cldr_locale(language))


def format_moment(value: datetime.datetime | None, *, language: str | None = None) -> str:
    """A point in time in the portal's time zone, to the minute: `17 dec. 2026 14:05` (nl)."""
    if value in (None, ""):
        return ""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    locale = babel_locale(language)
    return str(locale.datetime_formats["medium"]).format(
        _babel_time(local, format="short", locale=locale), _babel_date(local.date(), format="medium", locale=locale))


_SPACES = re.compile(r"[\s\u00a0\u202f']")


def parse_money(text: str, *, language: str | None = None) -> Decimal:
    """What a client typed, read the way their language writes it, as a Decimal with at most two
    decimals. Dutch `10,50` and English `10.50` are ten fifty; `1.050,00` (nl) and `1,050.00` (en)
    are one thousand and fifty. A lone separator followed by one or two digits is a decimal point
    whichever it is (`10.50` typed on a Dutch page is ten fifty, never one thousand and fifty); a
    separator followed by three digits groups thousands only where the language groups with it.
    Raises MoneyParseError with a message for the client."""
    locale = babel_locale(language)
    decimal_symbol = locale.number_symbols["latn"]["decimal"]
    group_symbol = locale.number_symbols["latn"]["group"]
    cleaned = _SPACES.sub("", str(text or ""))
    for symbol in ("€", "$", "£", "EUR", "USD", "GBP", "CHF"):
        cleaned = cleaned.replace(symbol, "")
    cleaned = cleaned.replace("\u2212", "-")
    if not cleaned:
        raise MoneyParseError(translation.gettext("Enter an amount."))
    if len(cleaned) > 40 or not re.fullmatch(r"-?[0-9.,]+", cleaned):
        raise MoneyParseError(translation.gettext("Enter an amount in numbers, such as %(example)s.")
                              % {"example": format_decimal(Decimal("10.50"), format="#,##0.00", locale=locale)})
    other = "." if decimal_symbol == "," else ","
    lone = re.fullmatch(r"-?[0-9]+([.,])([0-9]{1,2})", cleaned)
    if lone and lone.group(1) == other:
        cleaned = cleaned.replace(other, decimal_symbol)
    try:
        value = parse_decimal(cleaned, locale=locale, strict=True)
    except NumberFormatError:
        raise MoneyParseError(translation.gettext("Enter an amount in numbers, such as %(example)s.")
                              % {"example": format_decimal(Decimal("10.50"), format="#,##0.00", locale=locale)})
    except InvalidOperation:  # pragma: no cover - parse_decimal raises NumberFormatError first
        raise MoneyParseError(translation.gettext("Enter an amount."))
    if group_symbol in cleaned and decimal_symbol not in cleaned and not re.fullmatch(
            r"-?[0-9]{1,3}(" + re.escape(group_symbol) + r"[0-9]{3})+", cleaned):
        raise MoneyParseError(translation.gettext("Enter an amount in numbers, such as %(example)s.")
                              % {"example": format_decimal(Decimal("10.50"), format="#,##0.00", locale=locale)})
    if value != value.quantize(Decimal("0.01")):
        raise MoneyParseError(translation.gettext("Use at most two decimals."))
    if value.adjusted() >= MAX_MONEY_DIGITS:
        raise MoneyParseError(translation.gettext("That amount is too large."))
    return value.quantize(Decimal("0.01"))
