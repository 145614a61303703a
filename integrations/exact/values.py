"""Exact Online's values as Python ones: `/Date(ms)/` dates and moments, amounts as Decimal (never
float), and JSON bodies both ways.

Sources (../shared/reference/api-facts.md §1.4): Exact writes dates as `/Date(<ms since 1970>)/`
(its own .NET SDK, Helpers/JsDateTimeConverter.cs) and amounts as JSON numbers; a webhook's
`EventCreatedOn` has also been seen as ISO text (`2020-01-06T16:26:08.587`), so both are read.
"""
from __future__ import annotations

import datetime
import json
import re
import uuid
from decimal import Decimal
from typing import Any

# "/Date(1700000000000)/", optionally with an offset ("/Date(1700000000000+0100)/"): the
# milliseconds are UTC whatever the offset says (the offset only tells the writer's zone).
DATE_PATTERN = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
CODE_WIDTH = 18  # crm/Accounts.Code: a right-aligned, space-padded string of 18


def parse_moment(value) -> datetime.datetime | None:
    """An Exact moment (`/Date(ms)/`, or ISO text as in webhooks) as an aware UTC datetime;
    None for None or an empty string. Anything else raises ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value).strip()
    found = DATE_PATTERN.match(text)
    if found:
        return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            milliseconds=int(found.group(1)))
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    # ISO text without an offset: Exact's servers write UTC (the .NET SDK reads it as such).
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def parse_date(value) -> datetime.date | None:
    """An Exact date (`/Date(ms)/` of its midnight) as a date; None for None or ""."""
    moment = parse_moment(value)
    return moment.date() if moment else None


def loads(text: str | bytes) -> Any:
    """Exact's JSON with every non-integer number as a Decimal: amounts are never floats."""
    return json.loads(text, parse_float=Decimal)


def dumps(body: Any) -> str:
    """JSON for Exact with Decimals written as JSON numbers (`12.50`, not `"12.50"` nor a float's
    `12.5000000001`), dates and moments as `yyyy-mm-ddThh:mm:ss` (as Exact's own SDK writes
    them), UUIDs as text."""
    marks: dict[str, str] = {}

    def prepare(value):
        if isinstance(value, dict):
            return {key: prepare(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [prepare(item) for item in value]
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"not an amount: {value}")
            mark = f"\x00decimal{len(marks)}\x00"
            marks[json.dumps(mark)] = format(value, "f")
            return mark
        if isinstance(value, float):
            raise TypeError("a float is no amount: pass a Decimal")
        if isinstance(value, datetime.datetime):
            return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        if isinstance(value, datetime.date):
            return value.strftime("%Y-%m-%dT00:00:00")
        if isinstance(value, uuid.UUID):
            return str(value)
        return value

    text = json.dumps(prepare(body), separators=(",", ":"))
    for quoted_mark, number in marks.items():
        text = text.replace(quoted_mark, number, 1)
    return text


def account_code(code: str | int) -> str:
    """A customer code as crm/Accounts.Code holds it (18 characters, right-aligned), for a
    `$filter=Code eq '...'`; read codes back with `.strip()`."""
    return str(code).strip().rjust(CODE_WIDTH)
