"""docs/webhooks.md: every example is valid against the schema and its totals add up."""
import json
import re
from pathlib import Path

from integrations import normalise
from invoices.services import totals_validate

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def _examples():
    blocks = re.findall(r"### `([a-z_.]+)`.*?```json\n(.*?)\n```", DOC.read_text(), re.S)
    return {name: json.loads(body) for name, body in blocks}


def test_there_is_one_valid_example_per_event_type():
    examples = _examples()
    assert set(examples) == {"invoice.created", "invoice.updated", "invoice.voided", "credit_note.created",
                             "payment.recorded", "client.upserted"}
    for name, payload in examples.items():
        assert payload["type"] == name
        assert normalise.schema_errors(payload) == [], name
        if "lines" in payload["data"]:
            totals_validate(**normalise.totals(payload["data"]))
