"""From the canonical webhook JSON (docs/webhooks.md) to the ledger's Python values."""
from __future__ import annotations

import copy
import datetime
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Callable

import fastjsonschema
import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "webhooks.schema.json"


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft202012Validator:
    """The schema's reference validator: every error, with the rule and the path that the 422
    answer names (integrations.validation)."""
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


@lru_cache(maxsize=1)
def schema_holds() -> Callable[[object], bool]:
    """Whether an event meets the schema, answered by code compiled from it once (fastjsonschema):
    0.05 ms an event where validator() walks the schema's $refs, allOf and ifs for 2 ms. A yes
    is final; a no is only a hint, and validator() then finds and names every error (and has
    the last word: compiled code that refuses more than the schema costs time, never a wrong
    answer). tests/integrations/test_validation.py holds both to the same answers."""
    check = fastjsonschema.compile(_draft7(json.loads(SCHEMA_PATH.read_text())))

    def holds(payload) -> bool:
        try:
            check(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return holds


def _draft7(schema: dict) -> dict:
    """The schema in the draft fastjsonschema compiles (7): 2020-12's unevaluatedProperties,
    which this schema uses only beside an allOf of $refs to plain objects, becomes
    additionalProperties over its own properties and theirs (what it means there: a property
    that neither names is refused). Anything else that draft 7 lacks fails loudly here."""
    schema = copy.deepcopy(schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    definitions = schema.get("$defs", {})

    def convert(node):
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        for keyword in ("unevaluatedItems", "dependentSchemas", "prefixItems", "$dynamicRef", "$anchor"):
            if keyword in node:
                raise ValueError(f"the schema uses {keyword}: teach normalise._draft7 what it means in draft 7")
        if "unevaluatedProperties" in node:
            if node.pop("unevaluatedProperties") is not False:
                raise ValueError("unevaluatedProperties other than false: teach normalise._draft7")
            names = dict(node.get("properties", {}))
            for part in node.get("allOf", []):
                if set(part) != {"$ref"} or not part["$ref"].startswith("#/$defs/"):
                    raise ValueError("unevaluatedProperties beside an allOf that is not of $refs")
                target = definitions[part["$ref"].removeprefix("#/$defs/")]
                if set(target) - {"type", "required", "properties", "description"}:
                    raise ValueError(f"unevaluatedProperties over {part['$ref']}, which is not a plain object")
                names.update({name: {} for name in target.get("properties", {}) if name not in names})
            node["properties"], node["additionalProperties"] = names, False
        return {key: convert(value) for key, value in node.items()}

    return convert(schema)


def date(value: str) -> datetime.date:
    return datetime.date.fromisoformat(value)


def moment(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value} has no time zone")
    return parsed


def lines(data: dict) -> list[dict]:
    """The lines as invoices.services takes them; a line without a VAT category leaves it to the
    ledger (S, or Z at 0 %)."""
    return [{"description": line["description"], "quantity": Decimal(line["quantity"]), "unit": line.get("unit", ""),
             "unit_price": Decimal(line["unit_price"]),
             "discount_percent": Decimal(line.get("discount_percent", "0")), "tax_rate": Decimal(line["tax_rate"]),
             "tax_category": line.get("vat_category", ""), "tax_exemption_reason": line.get("vat_exemption_reason", "")}
            for line in data["lines"]]


def tax_currency(data: dict) -> dict:
    """An invoice's or credit note's VAT in the seller's accounting currency, as the ledger's
    fields: none when the event states none (the document's own currency is the VAT's)."""
    total = data.get("tax_total_in_tax_currency")
    return {"tax_currency": data.get("tax_currency", ""),
            "tax_total_in_tax_currency": Decimal(total) if total is not None else None}


def totals(data: dict) -> dict:
    return {"lines": lines(data), "subtotal": Decimal(data["subtotal"]), "tax_total": Decimal(data["tax_total"]),
            "total": Decimal(data["total"]), "tax_breakdown": data["tax_breakdown"]}
