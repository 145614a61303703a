"""From one record of an ERP's JSON to the canonical event (docs/webhooks.md), by the feed's
mapping: {canonical field: JMESPath over the record}.

- Dotted names build nested fields: "address.city", "payment_terms.days".
- A list is mapped item by item: "lines[]" says where the record's list is, and "lines[].quantity"
  and friends are JMESPath over one item of it (so are "tax_breakdown[]" and "allocations[]").
- The ERP's JSON is read with parse_float=Decimal (never a binary float), and each value is
  coerced by the type of the canonical field it lands in: money to a decimal string at 2 places
  ("242.00"), quantities, unit prices and percentages to decimal strings at their precision,
  dates to YYYY-MM-DD, moments to ISO 8601 with a time zone, payment-term days to a whole number,
  the rest to text. A value with more decimals than its field keeps is refused, never rounded.
- A field whose expression finds nothing (null) is left out; the schema then says if it was needed.
- Functions for what the ERP writes in its own way: date(value, '%d-%m-%Y'),
  moment(value, '%d-%m-%Y %H:%M') (a moment without a zone is Dutch time), decimal(value, ',')
  ("1.234,56"), cents(value) (whole cents), upper, lower, trim, replace(value, old, new).

A record that does not map, or whose event the ledger would refuse (integrations.validation
.event_problems), raises Unmappable with the reason, which is parked with the record."""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import jmespath
from jmespath import functions as jmespath_functions
from jmespath.exceptions import JMESPathError

from integrations import normalise
from integrations.validation import event_problems

DUTCH_TIME = ZoneInfo("Europe/Amsterdam")
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
VOID = "void"  # an invoice record whose mapped status is this becomes invoice.voided

# The canonical fields' types (docs/webhooks.schema.json), "[]" for an item of a list.
MONEY = {"subtotal", "tax_total", "total", "tax_breakdown[].base", "tax_breakdown[].tax", "amount",
         "allocations[].amount", "tax_total_in_tax_currency"}
DECIMALS = {"lines[].quantity": 3, "lines[].unit_price": 4, "lines[].tax_rate": 2, "lines[].discount_percent": 2,
            "tax_breakdown[].rate": 2}
DATES = {"issue_date", "due_date"}
MOMENTS = {"updated_at", "received_at", "occurred_at"}
INTEGERS = {"payment_terms.days"}
LISTS = ("lines", "tax_breakdown", "allocations")


class Unmappable(Exception):
    """The record does not make an event the ledger can take; the message says why."""


class MappingInvalid(Exception):
    """The mapping itself is wrong (an expression that does not compile, a list without "x[]")."""


class ErpFunctions(jmespath_functions.Functions):
    """JMESPath's functions, with decimals counted as numbers, and the ones ERPs need."""

    def _get_allowed_pytypes(self, types):
        allowed, subtypes = super()._get_allowed_pytypes(types)
        allowed = [*allowed, "Decimal"] if "float" in allowed else allowed
        return allowed, [(*kinds, "Decimal") if "float" in kinds else kinds for kinds in subtypes]

    @jmespath_functions.signature({"types": []})
    def _func_to_string(self, value):
        if isinstance(value, Decimal):
            return format(value, "f")
        return super()._func_to_string(value)

    @jmespath_functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_date(self, value, pattern):
        if value is None:
            return None
        try:
            return datetime.datetime.strptime(value.strip(), pattern).date().isoformat()
        except ValueError:
            raise Unmappable(f"{value!r} is not a date written as {pattern}") from None

    @jmespath_functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_moment(self, value, pattern):
        if value is None:
            return None
        try:
            moment = datetime.datetime.strptime(value.strip(), pattern)
        except ValueError:
            raise Unmappable(f"{value!r} is not a moment written as {pattern}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=DUTCH_TIME)
        return moment.isoformat()

    @jmespath_functions.signature({"types": ["string", "number", "null"]}, {"types": ["string"]})
    def _func_decimal(self, value, point):
        if value is None or not isinstance(value, str):
            return value
        grouping = "." if point == "," else ","
        text = value.strip().replace(grouping, "").replace(" ", "").replace(point, ".")
        try:
            return Decimal(text)
        except InvalidOperation:
            raise Unmappable(f"{value!r} is not a number with {point!r} as its decimal point") from None

    @jmespath_functions.signature({"types": ["string", "number", "null"]})
    def _func_cents(self, value):
        if value is None:
            return None
        try:
            return Decimal(str(value).strip()) / 100
        except InvalidOperation:
            raise Unmappable(f"{value!r} is not a number of cents") from None

    @jmespath_functions.signature({"types": ["string", "null"]})
    def _func_upper(self, value):
        return value.upper() if value is not None else None

    @jmespath_functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value):
        return value.lower() if value is not None else None

    @jmespath_functions.signature({"types": ["string", "null"]})
    def _func_trim(self, value):
        return value.strip() if value is not None else None

    @jmespath_functions.signature({"types": ["string", "null"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace(self, value, old, new):
        return value.replace(old, new) if value is not None else None


OPTIONS = jmespath.Options(custom_functions=ErpFunctions())


def compile_expression(expression: str):
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise MappingInvalid(f"{expression!r} is not JMESPath: {exc}") from None


def search(expression: str, data):
    """JMESPath over `data` with the ERP functions. Unmappable when the expression fails on it."""
    try:
        return compile_expression(expression).search(data, options=OPTIONS)
    except JMESPathError as exc:
        raise Unmappable(f"{expression}: {exc}") from None


def mapping_problems(mapping) -> list[str]:
    """What is wrong with a mapping itself (for the admin form), [] when nothing."""
    if not isinstance(mapping, dict) or not mapping:
        return ["The mapping is an object of canonical field: JMESPath expression."]
    problems = []
    for field, expression in mapping.items():
        if not isinstance(expression, str) or not expression.strip():
            problems.append(f"{field}: the expression must be a text")
            continue
        try:
            compile_expression(expression)
        except MappingInvalid as exc:
            problems.append(f"{field}: {exc}")
        if "[]." in field and field.split("[].", 1)[0] + "[]" not in mapping:
            problems.append(f"{field}: say where the list is with \"{field.split('[].', 1)[0]}[]\"")
    return problems


def parse(body: bytes | str):
    """The ERP's JSON, with decimals kept exact."""
    return json.loads(body, parse_float=Decimal)


# --- Values ---------------------------------------------------------------------------------------

def _decimal(value, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str, float)):
        raise Unmappable(f"{field}: expected a number, got {_kind(value)}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise Unmappable(f"{field}: {str(value)[:40]!r} is not a number") from None
    if not number.is_finite():
        raise Unmappable(f"{field}: {str(value)[:40]!r} is not a number")
    return number


def _at_places(number: Decimal, places: int, field: str, *, fixed: bool) -> str:
    step = Decimal(1).scaleb(-places)
    try:
        at_places = number.quantize(step)
    except InvalidOperation:
        raise Unmappable(f"{field}: {number} is more than the ledger holds") from None
    if at_places != number:
        raise Unmappable(f"{field}: {number} has more than {places} decimals")
    return format(at_places if fixed else number.normalize(), "f")


def _date(value, field: str) -> str:
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 10 and text[10] in "T ":
            text = text[:10]  # a moment: its day as the ERP wrote it
        try:
            if ISO_DATE.fullmatch(text):
                return datetime.date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise Unmappable(f"{field}: {str(value)[:40]!r} is not a date as YYYY-MM-DD "
                     f"(for another format map it with date(value, '%d-%m-%Y'))")


def _moment(value, field: str) -> str:
    if isinstance(value, str):
        try:
            moment = normalise.moment(value.strip())
            return moment.isoformat().replace("+00:00", "Z")
        except ValueError:
            pass
    raise Unmappable(f"{field}: {str(value)[:40]!r} is not a moment with a time zone "
                     f"(for another format map it with moment(value, '%d-%m-%Y %H:%M'))")


def _kind(value) -> str:
    return {dict: "an object", list: "a list", bool: "true or false"}.get(type(value), type(value).__name__)


def coerce(field: str, value):
    """`value` as the canonical field `field` ("lines[].unit_price") takes it."""
    if field in MONEY:
        return _at_places(_decimal(value, field), 2, field, fixed=True)
    if field in DECIMALS:
        return _at_places(_decimal(value, field), DECIMALS[field], field, fixed=False)
    if field in DATES:
        return _date(value, field)
    if field in MOMENTS:
        return _moment(value, field)
    if field in INTEGERS:
        number = _decimal(value, field)
        if number != number.to_integral_value():
            raise Unmappable(f"{field}: {number} is not a whole number")
        return int(number)
    if isinstance(value, (dict, list)):
        raise Unmappable(f"{field}: expected a text, got {_kind(value)}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


# --- Records --------------------------------------------------------------------------------------

def _put(target: dict, dotted: str, value) -> None:
    *parents, name = dotted.split(".")
    for parent in parents:
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise Unmappable(f"{dotted}: {parent} is mapped as a value and as an object")
    target[name] = value


def map_data(mapping: dict, record) -> dict:
    """The canonical event's data for one record (not checked against the schema yet)."""
    data: dict = {}
    lists: dict[str, dict[str, str]] = {}
    for field, expression in mapping.items():
        if "[]" in field:
            name, _, item_field = field.partition("[]")
            lists.setdefault(name, {})
            if item_field:
                lists[name][item_field.lstrip(".")] = expression
            continue
        value = search(expression, record)
        if value is not None:
            _put(data, field, coerce(field, value))
    for name, item_mapping in lists.items():
        if f"{name}[]" not in mapping:
            raise MappingInvalid(f"say where the list {name} is with \"{name}[]\"")
        items = search(mapping[f"{name}[]"], record)
        if items is None:
            continue
        if not isinstance(items, list):
            raise Unmappable(f"{name}[]: expected a list, got {_kind(items)}")
        mapped = []
        for item in items:
            row: dict = {}
            for item_field, expression in item_mapping.items():
                value = search(expression, item)
                if value is not None:
                    _put(row, item_field, coerce(f"{name}[].{item_field}", value))
            mapped.append(row)
        _put(data, name, mapped)
    return data


def map_record(*, entity: str, mapping: dict, record) -> dict:
    """The canonical event for one record of a feed becoming `entity`, checked as the ledger
    checks an event; Unmappable with the reasons otherwise. An invoice whose mapped status is
    "void" becomes invoice.voided."""
    if not isinstance(record, dict):
        raise Unmappable(f"the record is {_kind(record)}, not an object")
    data = map_data(mapping, record)
    kind = entity
    if entity in ("invoice.updated", "invoice.created") and data.get("status") == VOID:
        kind = "invoice.voided"
        data = {name: data[name] for name in ("external_id", "updated_at", "reason") if name in data}
        data.setdefault("reason", "voided in the ERP")
    elif entity == "invoice.voided":
        data.pop("status", None)
    event = {"type": kind, "data": data}
    problems = event_problems(json.loads(json.dumps(event), parse_float=Decimal))
    if problems:
        raise Unmappable("; ".join(f"{p['field']}: {p['reason']}" for p in problems[:8])
                         + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""))
    return event


def record_key(expression: str, record) -> str:
    """The record's id in the ERP (the feed's `key`), as text; Unmappable when it has none."""
    value = search(expression or "id", record) if isinstance(record, dict) else None
    if value is None or value == "" or isinstance(value, (dict, list)):
        raise Unmappable(f"the record has no id at {expression or 'id'}")
    return coerce("key", value)[:200]


def record_version(expression: str, record):
    """The record's modification moment or version (the feed's `version`), or None."""
    if not expression or not isinstance(record, dict):
        return None
    try:
        value = search(expression, record)
    except Unmappable:
        return None
    return None if value is None or isinstance(value, (dict, list)) else value


def version_later(a, b) -> bool:
    """Whether version `a` comes after `b`: as moments when both are, as numbers when both are,
    else as texts."""
    for convert in (lambda v: normalise.moment(str(v)), lambda v: Decimal(str(v))):
        try:
            return convert(a) > convert(b)
        except (ValueError, InvalidOperation, TypeError):
            continue
    return str(a) > str(b)


def data_digest(event: dict) -> str:
    """The event's data, hashed: a record read again unchanged is the same natural key."""
    return hashlib.sha256(json.dumps(event["data"], sort_keys=True).encode()).hexdigest()[:24]
