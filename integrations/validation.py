"""What a signed accounting event must be before it is answered: one the ledger can store and
render as it is. Checked in the request, so that an event the ledger cannot take is refused
with 422 and its reasons at once, rather than accepted and then failing on every retry.

Every problem names the field (a JSON Pointer into the event, or the header) and what is
wrong, and never quotes the value that was sent: reasons are stored in plain text and answered
to whoever sent the request. The limits are documented in docs/webhooks.md and the schema.
"""
from __future__ import annotations

import datetime
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import iso4217
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from integrations import normalise
from invoices.errors import TotalsMismatch
from invoices.money import line_amounts
from invoices.services import totals_validate
from portal.webhooks import NATURAL_KEY_MAX, Rejected, parse_json

DOCUMENT_TYPES = ("invoice.created", "invoice.updated", "credit_note.created")
# Visible ASCII, as Standard Webhooks ids are (msg_<ksuid>); longer ones are refused, never cut.
EVENT_ID = re.compile(r"[\x21-\x7e]{1,%d}" % NATURAL_KEY_MAX)
# C0 and C1 controls and DEL; texts that may run over several lines may hold tab and line breaks.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MULTI_LINE = {("data", "notes"), ("data", "reason"), ("data", "lines", "*", "description")}
MONEY_MAX = Decimal("999999999999.99")  # the ledger's amounts: 14 digits, 2 of them decimals
PERCENT_MAX = Decimal(100)
YEARS = range(1900, 3000)
ANSWERED_PROBLEMS = 20  # at most this many in one answer; the first five in the reason
EXEMPTION_CATEGORIES = ("E", "AE", "K", "G", "O")  # categories that may say why no VAT is charged
SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
TYPE_WORDS = {"string": "a string", "object": "an object", "array": "an array", "integer": "a whole number",
              "number": "a number", "boolean": "true or false", "null": "null"}


def event_validate(body: bytes, *, event_id: str) -> dict:
    """The event in `body`, or Rejected: 400 when it is not JSON (portal.webhooks.parse_json),
    422 with every problem found when the ledger could not take it."""
    payload = parse_json(body)
    problems = event_id_problems(event_id) + event_problems(payload)
    if problems:
        raise Rejected(422, "invalid event: " + _summary(problems), errors=problems[:ANSWERED_PROBLEMS])
    return payload


def _summary(problems: list[dict]) -> str:
    shown = "; ".join(f"{p['field']}: {p['reason']}" for p in problems[:5])
    return shown + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")


def event_id_problems(event_id: str) -> list[dict]:
    if EVENT_ID.fullmatch(event_id or ""):
        return []
    return [_problem("webhook-id", f"must be 1 to {NATURAL_KEY_MAX} visible ASCII characters")]


def event_problems(payload) -> list[dict]:
    """Every problem of an event, [] when the ledger can take it: control characters anywhere,
    then the schema (docs/webhooks.schema.json), then what a schema cannot say (currencies,
    dates that exist, totals that add up at the ledger's precision, amounts it can hold)."""
    problems = _text_problems(payload) + _schema_problems(payload)
    if problems:
        return _unique(problems)
    return _content_problems(payload)


def _problem(field: str, reason: str) -> dict:
    return {"field": field, "reason": reason}


def _unique(problems: list[dict]) -> list[dict]:
    seen, unique = set(), []
    for problem in problems:
        key = (problem["field"], problem["reason"])
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique


def pointer(path) -> str:
    """A JSON Pointer to the field; a name the schema does not know is shown as "*", so that a
    pointer never carries what the sender chose."""
    parts = []
    for part in path:
        if isinstance(part, int):
            parts.append(str(part))
        else:
            parts.append(part if SAFE_NAME.fullmatch(part) else "*")
    return "/" + "/".join(parts)


# --- Text -------------------------------------------------------------------------------------

def _text_problems(payload) -> list[dict]:
    """No control characters in any name or text; line breaks and tabs only in texts meant to
    hold several lines (notes, reasons, line descriptions)."""
    problems = []
    stack: list[tuple[object, tuple]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for name, item in value.items():
                if CONTROL.search(name):
                    problems.append(_problem(pointer(path), "a property name contains control characters"))
                stack.append((item, (*path, name)))
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif isinstance(value, str):
            allowed_breaks = _generic(path) in MULTI_LINE
            if (CONTROL_BUT_LINE_BREAKS if allowed_breaks else CONTROL).search(value):
                problems.append(_problem(pointer(path), "contains control characters" if allowed_breaks else
                                         "contains control characters (such as a line break)"))
    return sorted(problems, key=lambda p: p["field"])


def _generic(path: tuple) -> tuple:
    return tuple("*" if isinstance(part, int) else part for part in path)


# --- Schema -----------------------------------------------------------------------------------

def _schema_problems(payload) -> list[dict]:
    if normalise.schema_holds()(payload):  # the usual case, answered by compiled code
        return []
    errors = sorted(normalise.validator().iter_errors(payload),
                    key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path], e.validator))
    problems = []
    for error in errors:
        problems.extend(_schema_problem(error))
    return problems


def _schema_problem(error) -> list[dict]:
    """A jsonschema error in words that name the rule, not the value (jsonschema's own messages
    quote the value)."""
    path, rule, limit = list(error.absolute_path), error.validator, error.validator_value
    if rule == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        return [_problem(pointer([*path, name]), "is required") for name in limit if name not in present]
    if rule == "type":
        words = [TYPE_WORDS.get(t, t) for t in ([limit] if isinstance(limit, str) else limit)]
        reason = "must be " + " or ".join(words)
    elif rule in ("additionalProperties", "unevaluatedProperties"):
        reason = "has a property the schema does not know"
    elif rule == "pattern":
        reason = error.schema.get("description") or "has the wrong format"
    elif rule == "enum":
        reason = "must be one of: " + ", ".join(str(choice) for choice in limit)
    elif rule == "const":
        reason = f"must be {limit}"
    elif rule == "maxLength":
        reason = f"must be at most {limit} characters"
    elif rule == "minLength":
        reason = "must not be empty" if limit == 1 else f"must be at least {limit} characters"
    elif rule == "maxItems":
        reason = f"must have at most {limit} items"
    elif rule == "minItems":
        reason = f"must have at least {limit} item" + ("s" if limit != 1 else "")
    elif rule == "minimum":
        reason = f"must be at least {limit}"
    elif rule == "maximum":
        reason = f"must be at most {limit}"
    else:
        reason = f"does not meet the schema's {rule}"
    return [_problem(pointer(path), reason)]


# --- Content ----------------------------------------------------------------------------------

def _content_problems(payload: dict) -> list[dict]:
    kind, data = payload["type"], payload["data"]
    problems = []
    if "occurred_at" in payload:
        problems += _moment_problems("/occurred_at", payload["occurred_at"])
    for name in ("currency", "default_currency", "tax_currency"):
        if name in data:
            problems += _currency_problems(f"/data/{name}", data[name])
    for name in ("issue_date", "due_date"):
        if name in data:
            problems += _date_problems(f"/data/{name}", data[name])
    for name in ("updated_at", "received_at"):
        if name in data:
            problems += _moment_problems(f"/data/{name}", data[name])
    if "number" in data and ".." in data["number"]:
        problems.append(_problem("/data/number", "must not contain two dots in a row"))
    if kind in DOCUMENT_TYPES:
        problems += _document_problems(data, credit=kind == "credit_note.created")
    elif kind == "payment.recorded":
        problems += _payment_problems(data)
    elif kind == "client.upserted":
        problems += _email_problems("/data/billing_email", data["billing_email"])
    return problems


@lru_cache(maxsize=1)
def currencies() -> frozenset[str]:
    """ISO 4217 codes of money (from the `iso4217` package, kept up to date with the standard;
    the e-invoice renderer, factur-x, checks codes against the same list). Codes with no minor
    unit are not money: gold, silver, SDRs, the test and "no currency" codes."""
    return frozenset(currency.code for currency in iso4217.Currency if currency.exponent is not None)


def _currency_problems(field: str, code: str) -> list[dict]:
    if code in currencies():
        return []
    return [_problem(field, "must be an ISO 4217 currency code, such as EUR")]


def _date_problems(field: str, value: str) -> list[dict]:
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        return [_problem(field, "is not a date that exists")]
    if day.year not in YEARS:
        return [_problem(field, f"must be in the years {YEARS.start} to {YEARS.stop - 1}")]
    return []


def _moment_problems(field: str, value: str) -> list[dict]:
    try:
        moment = normalise.moment(value)
    except ValueError:
        return [_problem(field, "is not a moment that exists (with a time zone)")]
    if moment.year not in YEARS:
        return [_problem(field, f"must be in the years {YEARS.start} to {YEARS.stop - 1}")]
    return []


def _email_problems(field: str, value: str) -> list[dict]:
    try:
        EmailValidator()(value)  # after the schema's length cap (254), which keeps it quick
    except ValidationError:
        return [_problem(field, "is not an email address")]
    return []


def _document_problems(data: dict, *, credit: bool) -> list[dict]:
    """Lines, tax breakdown and totals of an invoice or credit note, at the ledger's precision
    (the schema's patterns refuse more decimals than it keeps, rather than rounding them)."""
    problems = []
    for index, line in enumerate(data["lines"]):
        for name in ("discount_percent", "tax_rate"):
            if name in line and Decimal(line[name]) > PERCENT_MAX:
                problems.append(_problem(f"/data/lines/{index}/{name}", "must be at most 100"))
        problems += _vat_category_problems(index, line)
    problems += _tax_currency_problems(data)
    rates: dict[Decimal, int] = {}
    for index, row in enumerate(data["tax_breakdown"]):
        rate = Decimal(row["rate"]).normalize()
        if rate in rates:
            problems.append(_problem(f"/data/tax_breakdown/{index}/rate", "this rate has a row already"))
        rates.setdefault(rate, index)
    if problems:
        return problems
    try:
        problems += _line_amount_problems(data)
        if problems:
            return problems
        totals_validate(**normalise.totals(data))
    except TotalsMismatch as mismatch:
        return [_mismatch_problem(mismatch, rates)]
    except (InvalidOperation, ArithmeticError):
        return [_problem("/data/lines", "cannot be computed at the ledger's precision")]
    if Decimal(data["total"]) <= 0:
        problems.append(_problem("/data/total", "must be more than zero" if credit else
                                 "must be more than zero (send a credit_note.created to credit)"))
    return problems


def _vat_category_problems(index: int, line: dict) -> list[dict]:
    """Only the standard rate (S) charges VAT, and it charges some; a line without a category is
    S, or Z at 0 % (the ledger's rule: invoices.models.line_tax_constraints). A reason why no VAT
    is charged belongs to a category that charges none and is not zero rated (EN 16931 BR-S-10,
    BR-Z-10). The category named is one of the schema's codes, never free text."""
    category, rate = line.get("vat_category", ""), Decimal(line["tax_rate"])
    problems = []
    if category == "S" and rate == 0:
        problems.append(_problem(f"/data/lines/{index}/tax_rate", "must be more than 0 with the VAT category S "
                                                                  "(a line without VAT has another category)"))
    elif category not in ("", "S") and rate != 0:
        problems.append(_problem(f"/data/lines/{index}/tax_rate",
                                 f"must be 0 with the VAT category {category} (only S charges VAT)"))
    if line.get("vat_exemption_reason") and category not in EXEMPTION_CATEGORIES:
        problems.append(_problem(f"/data/lines/{index}/vat_exemption_reason",
                                 "must be left out unless the VAT category is " + ", ".join(EXEMPTION_CATEGORIES[:-1])
                                 + " or " + EXEMPTION_CATEGORIES[-1]))
    return problems


def _tax_currency_problems(data: dict) -> list[dict]:
    """The VAT in the seller's accounting currency comes with that currency and the currency with
    it, and that currency differs from the document's (a credit note's is its invoice's, checked
    when it is applied: integrations.handlers)."""
    if "tax_currency" in data and "tax_total_in_tax_currency" not in data:
        return [_problem("/data/tax_total_in_tax_currency", "is required with tax_currency")]
    if "tax_total_in_tax_currency" in data and "tax_currency" not in data:
        return [_problem("/data/tax_currency", "is required with tax_total_in_tax_currency")]
    if "tax_currency" in data and data["tax_currency"] == data.get("currency"):
        return [_problem("/data/tax_currency", "must differ from the currency (leave both tax_currency and "
                                               "tax_total_in_tax_currency out when VAT is accounted in it)")]
    return []


def _line_amount_problems(data: dict) -> list[dict]:
    problems = []
    for index, line in enumerate(normalise.lines(data)):
        amounts = line_amounts(quantity=line["quantity"], unit_price=line["unit_price"],
                               discount_percent=line["discount_percent"], tax_rate=line["tax_rate"])
        if max(abs(amounts.net), abs(amounts.total)) > MONEY_MAX:
            problems.append(_problem(f"/data/lines/{index}", f"comes to more than the ledger holds ({MONEY_MAX})"))
    return problems


def _mismatch_problem(mismatch: TotalsMismatch, rates: dict[Decimal, int]) -> dict:
    """Which field does not add up, and what the lines make of it (computed by us, so it quotes
    nothing that was sent)."""
    found = re.fullmatch(r"tax_breakdown\[(.+)%\]\.(base|tax)", mismatch.field)
    if found is None:
        return _problem(f"/data/{mismatch.field}",
                        f"does not add up: the lines make {mismatch.expected:.2f}")
    rate, part = Decimal(found.group(1)), found.group(2)
    if rate not in rates:
        return _problem("/data/tax_breakdown", f"has no row for the rate {rate}% the lines use "
                                               f"({part} {mismatch.expected:.2f})")
    return _problem(f"/data/tax_breakdown/{rates[rate]}/{part}",
                    f"does not add up: the lines at {rate}% make {mismatch.expected:.2f}")


def _payment_problems(data: dict) -> list[dict]:
    problems = []
    amount = Decimal(data["amount"])
    if amount <= 0:
        problems.append(_problem("/data/amount", "must be more than zero"))
    seen: set[str] = set()
    for index, row in enumerate(data["allocations"]):
        if Decimal(row["amount"]) <= 0:
            problems.append(_problem(f"/data/allocations/{index}/amount", "must be more than zero"))
        if row["invoice_external_id"] in seen:
            problems.append(_problem(f"/data/allocations/{index}/invoice_external_id",
                                     "names an invoice an earlier allocation names"))
        seen.add(row["invoice_external_id"])
    if sum((Decimal(row["amount"]) for row in data["allocations"]), Decimal(0)) > amount:
        problems.append(_problem("/data/allocations", "add up to more than the payment's amount"))
    return problems
