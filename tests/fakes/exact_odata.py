"""The OData v2 conventions of Exact Online's REST API for the local fake (tests/fakes/exact.py): the
JSON envelope, `/Date(ms)/` dates, amounts as JSON numbers, the error body, `$select` (required),
`$filter` (the subset a client of ours uses), `$top`, and `__next` paging with `$skiptoken`.

Sources, as in ../shared/reference/api-facts.md §1.4:
- Envelope {"d": {"results": [...], "__next": "<absolute URL>"}} for a collection, {"d": {...}} for one
  entity; error {"error": {"code": "", "message": {"lang": "", "value": "..."}}}: picqer/exact-php-client
  src/Picqer/Financials/Exact/Connection.php (parseResponse(), parseExceptionForErrorMessages()).
- 60 rows per page on regular endpoints, 1,000 on sync and bulk ones: exactonline-api-dotnet-client
  Controller.cs ("at max 60 entities"), picqer issue #587 (sync "2 sets of a 1000").
- "Error 400: Please add a $select or a $top=1 statement to the query string.": picqer README
  "Troubleshooting" and issues #34, #62, #315 (Exact's own wording, quoted from live answers).
- Literals guid'…', datetime'…', 64-bit integers with an L suffix (Timestamp gt 123L): picqer
  Query/Findable.php, issue #587.
- Dates as /Date(<ms since 1970-01-01>)/: the official .NET SDK's JsDateTimeConverter.cs.
- Sync endpoints: "only the timestamp field is allowed as parameter" (Exact's own text in the sync
  endpoints' documentation, start.exactonline.nl/docs/HlpRestAPIResourcesDetails.aspx?name=
  SyncSalesInvoiceSalesInvoices, as generated into Pi-Systems/exact-online src/Entity/Sync/…).
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from urllib.parse import urlencode

SELECT_REQUIRED = "Please add a $select or a $top=1 statement to the query string."


class ODataError(Exception):
    """Answered as Exact's OData error body with this HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> dict:
    return {"error": {"code": "", "message": {"lang": "", "value": message}}}


def wire(value):
    """A stored value as Exact writes it in JSON: dates as /Date(ms)/, amounts as numbers."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return f"/Date({int(moment.timestamp() * 1000)})/"
    if isinstance(value, date):
        return f"/Date({int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp() * 1000)})/"
    if isinstance(value, Decimal):
        return float(value)  # JSON has only numbers; a client parses them with parse_float=Decimal
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def dumps(body) -> bytes:
    return json.dumps(wire(body)).encode()


# $filter: `Field op literal` clauses joined by `and`, optionally `trim(Field)`.
_CLAUSE = re.compile(
    r"\s*(?:trim\((?P<trimmed>\w+)\)|(?P<field>\w+))\s+(?P<op>eq|ne|gt|ge|lt|le)\s+"
    r"(?P<literal>guid'[^']*'|datetime'[^']*'|'(?:[^']|'')*'|-?\d+L|-?\d+(?:\.\d+)?[Mm]?|true|false|null)\s*")
_OPS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}


def _literal(text: str):
    if text.startswith("guid'"):
        return ("guid", text[5:-1].lower())
    if text.startswith("datetime'"):
        try:
            return ("datetime", datetime.fromisoformat(text[9:-1]))
        except ValueError:
            raise ODataError(400, f"Invalid datetime literal {text}") from None
    if text.startswith("'"):
        return ("string", text[1:-1].replace("''", "'"))
    if text in ("true", "false"):
        return ("bool", text == "true")
    if text == "null":
        return ("null", None)
    if text.endswith("L"):
        return ("int", int(text[:-1]))
    return ("number", Decimal(text.rstrip("Mm")))


def parse_filter(text: str) -> list[tuple[str, bool, str, tuple]]:
    """[(field, trimmed, op, (kind, value))] for `a eq 1 and b gt 2L`; anything else is a 400."""
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _CLAUSE.fullmatch(part)
        if not match:
            raise ODataError(400, f"The fake Exact Online understands only 'Field op literal' clauses joined "
                                  f"by 'and'; not: {part!r}")
        field = match.group("trimmed") or match.group("field")
        clauses.append((field, bool(match.group("trimmed")), match.group("op"), _literal(match.group("literal"))))
    return clauses


def _comparable(value, kind: str):
    if kind == "guid":
        return str(value).lower() if value is not None else None
    if kind == "datetime" and isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    if kind == "datetime" and isinstance(value, datetime) and value.tzinfo:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if kind == "number" and value is not None:
        return Decimal(str(value))
    return value


def matches(row: dict, clauses) -> bool:
    for field, trimmed, op, (kind, expected) in clauses:
        value = row.get(field)
        if trimmed and isinstance(value, str):
            value = value.strip()
        value = _comparable(value, kind)
        if value is None or expected is None:  # only eq/ne compare with null
            same = (value is None) == (expected is None)
            if not (same if op == "eq" else not same if op == "ne" else False):
                return False
            continue
        try:
            if not _OPS[op](value, expected):
                return False
        except TypeError:
            raise ODataError(400, f"Operator '{op}' incompatible with operand types for {field}") from None
    return True


def select(row: dict, fields: list[str] | None, expanded: dict[str, list[dict]] | None = None,
           deferred_uri=None) -> dict:
    """The row with only the selected fields (all for `*` or None); a navigation property such as
    SalesInvoiceLines is {"results": [...]} when $expand names it, else {"__deferred": {"uri": ...}}."""
    expanded = expanded or {}
    out = {}
    names = [f for f in (fields or ["*"]) if "/" not in f]
    for name in (list(row) if "*" in names else names):
        if name.startswith("_"):
            continue
        if isinstance(row.get(name), list):  # a navigation property
            if name in expanded:
                sub = [f.split("/", 1)[1] for f in (fields or []) if f.startswith(name + "/")] or None
                out[name] = {"results": [select(line, sub) for line in expanded[name]]}
            else:
                out[name] = {"__deferred": {"uri": deferred_uri(name) if deferred_uri else name}}
            continue
        out[name] = row.get(name)
    return out


class Query:
    """One GET's query options, checked as Exact checks them."""

    def __init__(self, params: dict[str, str], fields: set[str], *, sync: bool):
        self.params = params
        top = params.get("$top")
        try:
            self.top = int(top) if top is not None else None
        except ValueError:
            raise ODataError(400, f"Invalid $top value {top!r}") from None
        raw = params.get("$select")
        if raw is None and self.top != 1:
            raise ODataError(400, SELECT_REQUIRED)
        self.fields = [f.strip() for f in raw.split(",") if f.strip()] if raw else None
        for name in self.fields or []:
            if name != "*" and name.split("/", 1)[0] not in fields:
                raise ODataError(400, f"'{name}' is not a property of this entity")
        self.expand = {f.strip() for f in params.get("$expand", "").split(",") if f.strip()}
        self.filter = parse_filter(params["$filter"]) if params.get("$filter") else []
        for field, _, _, _ in self.filter:
            if sync and field != "Timestamp":
                raise ODataError(400, "Only the Timestamp field is allowed as parameter on a sync endpoint")
            if field not in fields:
                raise ODataError(400, f"'{field}' is not a property of this entity")
        self.skiptoken = params.get("$skiptoken")


def page(rows: list[dict], key: str, query: Query, page_size: int, next_base: str):
    """(rows on this page, the absolute __next URL or None). Rows are in key order; $skiptoken is
    the key of the last row of the previous page, written as Exact writes literals (123L, guid'…')."""
    rows = sorted(rows, key=lambda r: r[key])
    if query.skiptoken:
        kind, after = _literal(query.skiptoken)
        if kind == "guid":
            rows = [r for r in rows if str(r[key]).lower() > after]
        else:
            rows = [r for r in rows if r[key] > after]
    if query.top is not None:
        rows = rows[:query.top]
        page_size = min(page_size, query.top)
        remaining_top = query.top
    else:
        remaining_top = None
    current, rest = rows[:page_size], rows[page_size:]
    if not rest:
        return current, None
    last = current[-1][key]
    token = f"{last}L" if isinstance(last, int) else f"guid'{last}'"
    params = {k: v for k, v in query.params.items() if k != "$skiptoken"}
    if remaining_top is not None:
        params["$top"] = str(remaining_top - len(current))
    params["$skiptoken"] = token
    return current, f"{next_base}?{urlencode(params, safe=chr(36) + chr(39) + ',()')}"
