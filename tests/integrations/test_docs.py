"""docs/webhooks.md: every example is valid against the schema and its totals add up, and every
documented answer is what the webhook really answers."""
import json
import re
import uuid
from pathlib import Path

from integrations import validation
from integrations.signing import generate_secret
from tests.integrations.helpers import CLIENT, event, invoice_data, post

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def _examples():
    blocks = re.findall(r"### `([a-z_.]+)`.*?```json\n(.*?)\n```", DOC.read_text(), re.S)
    return {name: json.loads(body) for name, body in blocks}


def _answers() -> list[tuple[int, dict]]:
    """The rows of the answers table: (HTTP status, body)."""
    rows = re.findall(r"^\| (\d{3}) \| `(\{.*?\})` \|", DOC.read_text(), re.M)
    return [(int(status), json.loads(body)) for status, body in rows]


def test_there_is_one_valid_example_per_event_type():
    examples = _examples()
    assert set(examples) == {"invoice.created", "invoice.updated", "invoice.voided", "credit_note.created",
                             "payment.recorded", "client.upserted"}
    for name, payload in examples.items():
        assert payload["type"] == name
        # The schema, and everything the schema cannot say (currencies, dates, totals).
        assert validation.event_problems(json.loads(json.dumps(payload))) == [], name


def test_every_documented_answer_is_what_the_webhook_answers(client, connection, secret, worker, settings):
    answers = _answers()
    assert [status for status, _ in answers] == [200, 200, 400, 401, 404, 413, 422, 429]
    good = event("client.upserted", CLIENT)

    def over_the_rate():
        settings.WEBHOOK_RATE_PER_IP = "1/h"
        address = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
        for _ in range(2):
            response = post(client, "erp", secret, good, REMOTE_ADDR=address)
        return response

    requests = {  # one request per documented row, in the table's order
        "accepted": lambda: post(client, "erp", secret, good, msg_id="msg_docs"),
        "duplicate": lambda: post(client, "erp", secret, good, msg_id="msg_docs"),
        400: lambda: post(client, "erp", secret, None, raw=b"not json"),
        401: lambda: post(client, "erp", generate_secret(), good),
        404: lambda: post(client, "old-erp", secret, good),
        413: lambda: post(client, "erp", secret, None, raw=b" " * (settings.WEBHOOK_MAX_BODY_BYTES + 1)),
        422: lambda: post(client, "erp", secret, event("invoice.created", invoice_data(total="1208.34"))),
        429: over_the_rate,
    }
    for (status, documented), send in zip(answers, requests.values(), strict=True):
        response = send()
        assert response.status_code == status, documented
        if documented["status"] == "accepted":
            assert set(response.json()) == set(documented) and isinstance(response.json()["webhook"], int)
        elif status == 429:  # the seconds to wait differ
            retry_after = response["Retry-After"]
            assert response.json() == {**documented, "error": documented["error"].replace("42", retry_after)}
        else:
            assert response.json() == documented
