"""From the canonical webhook JSON (docs/webhooks.md) to the ledger's Python values."""
from __future__ import annotations

import datetime
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "webhooks.schema.json"


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def date(value: str) -> datetime.date:
    return datetime.date.fromisoformat(value)


def moment(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value} has no time zone")
    return parsed


def lines(data: dict) -> list[dict]:
    return [{"description": line["description"], "quantity": Decimal(line["quantity"]), "unit": line.get("unit", ""),
             "unit_price": Decimal(line["unit_price"]),
             "discount_percent": Decimal(line.get("discount_percent", "0")), "tax_rate": Decimal(line["tax_rate"])}
            for line in data["lines"]]


def totals(data: dict) -> dict:
    return {"lines": lines(data), "subtotal": Decimal(data["subtotal"]), "tax_total": Decimal(data["tax_total"]),
            "total": Decimal(data["total"]), "tax_breakdown": data["tax_breakdown"]}
