"""docs/integrations/custom-erp.md as its reader runs it: every GraphQL example (query, variables
and the answer shown) against the real API in the order the guide gives them, each curl and Python
example sending exactly that call (and a repeat answering what the guide says a repeat answers),
every mapping example turning its ERP record into the canonical event shown (through the pull
adapter's own mapping, accepted by the ledger's rules), and every "payments told back" example
building the request shown (through the push's own builder).

The guide marks its examples with an HTML comment on the line before the fenced block:

    <!-- example: <name> <role> [key=value ...] -->

Roles: query, variables, answer, curl, python (the GraphQL API; a python block without a query of
its name is run for what it defines, as the helper is); record, mapping (entity=...), event (the pull
mapping; a record may name another example's mapping with mapping=<name>); message,
request-config (push=rest|graphql, endpoint=..., auth=...), request (message=<name> when the
message is another example's)."""
from __future__ import annotations

import datetime
import json
import re
import shlex
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from graphql import parse as graphql_parse, print_ast
from requests.structures import CaseInsensitiveDict

from integrations.erp import push
from integrations.erp.mapping import map_record, mapping_problems, parse as erp_json
from integrations.erp.models import ErpPull
from integrations.validation import event_problems
from invoices import services
from invoices.models import Invoice, Payment
from portal.rls import staff_scope
from tests.integrations.erp.api_support import make_token

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "integrations" / "custom-erp.md"
MARKED = re.compile(r"<!-- example: (?P<name>[a-z0-9-]+) (?P<role>[a-z-]+)(?P<attrs>(?: [a-z_]+=\S+)*) -->\n"
                    r"```(?P<lang>[a-z]*)\n(?P<body>.*?)\n```", re.S)
ROLES = {"query", "variables", "answer", "curl", "python", "record", "mapping", "event", "message",
         "request-config", "request"}
MUTATIONS = {"upsertClient", "upsertInvoice", "voidInvoice", "createCreditNote", "recordPayment"}
PORTAL_URL = "https://portal.example.nl"
# Values that differ from run to run: opaque cursors (they carry row ids).
VOLATILE = {"cursor", "endCursor"}


@dataclass
class Block:
    name: str
    role: str
    lang: str
    body: str
    line: int
    attrs: dict = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)


def _blocks() -> list[Block]:
    text = GUIDE.read_text()
    found = []
    for match in MARKED.finditer(text):
        attrs = dict(pair.split("=", 1) for pair in match["attrs"].split())
        found.append(Block(match["name"], match["role"], match["lang"], match["body"],
                           text.count("\n", 0, match.start()) + 1, attrs))
    return found


BLOCKS = _blocks()
BY_NAME = {(block.name, block.role): block for block in BLOCKS}


def _block(name: str, role: str) -> Block | None:
    return BY_NAME.get((name, role))


def _normal(query: str) -> str:
    return print_ast(graphql_parse(query))


def _operation_fields(query: str) -> set[str]:
    document = graphql_parse(query)
    return {selection.name.value for definition in document.definitions
            for selection in definition.selection_set.selections}


def _same_shape(documented, actual, path="answer"):
    """The answer as the guide shows it: the same keys and values, but for cursors (opaque)."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict) and set(documented) == set(actual), \
            f"{path}: the guide shows {sorted(documented)}, the API answers {actual}"
        for key in documented:
            if key in VOLATILE:
                assert isinstance(actual[key], str) and actual[key], f"{path}.{key}: {actual[key]!r}"
            else:
                _same_shape(documented[key], actual[key], f"{path}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(documented) == len(actual), \
            f"{path}: the guide shows {len(documented)} items, the API answers {actual}"
        for i, (shown, real) in enumerate(zip(documented, actual)):
            _same_shape(shown, real, f"{path}[{i}]")
    else:
        assert documented == actual, f"{path}: the guide shows {documented!r}, the API answers {actual!r}"


def _repeat_of(documented: dict) -> dict:
    """What the guide says a repeat of a mutation answers: the same, with duplicate: true."""
    repeated = json.loads(json.dumps(documented))
    for payload in repeated["data"].values():
        if "duplicate" in payload:
            payload["duplicate"] = True
    return repeated


def _curl(text: str, env: dict) -> tuple[str, dict, str]:
    """(url, headers, body) of a curl command as the guide writes it."""
    words = shlex.split(text.replace("\\\n", " "))
    assert words[0] == "curl", text
    url, headers, body = "", {}, None
    words = iter(words[1:])
    for word in words:
        if word in ("-sS", "-s", "-S", "--fail-with-body"):
            continue
        if word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("--data", "-d", "--data-raw", "--data-binary"):
            body = next(words)
        else:
            assert not word.startswith("-"), f"an option the test does not know: {word}"
            url = word

    def expand(value: str) -> str:
        return re.sub(r"\$([A-Z_]+)", lambda found: env[found.group(1)], value)

    return expand(url), {name: expand(value) for name, value in headers.items()}, body


def _http_block(text: str) -> tuple[str, str, dict, object]:
    """(method, url, headers, JSON body) of a request as the guide shows it."""
    head, _, body = text.partition("\n\n")
    first, *header_lines = head.splitlines()
    method, url = first.split(" ", 1)
    headers = dict(line.split(": ", 1) for line in header_lines)
    return method, url, headers, json.loads(body)


class Portal:
    """The reader's HTTP calls, answered by the real API through Django's test client."""

    def __init__(self, http):
        self.http = http
        self.sent: list[tuple[dict, dict]] = []  # (headers, JSON body) of each call, in order

    def post(self, path: str, body: bytes, headers: dict):
        headers = {name: value for name, value in headers.items()
                   if name.lower() not in ("content-type", "content-length", "host", "user-agent", "accept",
                                           "accept-encoding", "connection")}
        return self.http.generic("POST", path, data=body, content_type="application/json", headers=headers)

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        assert f"{url.scheme}://{url.netloc}" == PORTAL_URL, request.url
        assert request.method == "POST" and request.headers["Content-Type"] == "application/json"
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        self.sent.append((dict(request.headers), json.loads(body)))
        answer = self.post(url.path, body, dict(request.headers))
        response = requests.models.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        response.headers = CaseInsensitiveDict(answer.items())
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        return response


def _portal_payment_by_ideal() -> None:
    """What the feed example shows: Northwind pays the rest of 2026-0001 in the portal by iDEAL."""
    with staff_scope():
        invoice = Invoice.objects.select_related("client").get(external_id="INV-8841")
        services.payment_record(client=invoice.client, amount=invoice.open_balance, currency="EUR",
                                source=Payment.Source.GATEWAY, method=Payment.Method.IDEAL,
                                received_at=datetime.datetime(2026, 11, 21, 14, 2, 11, tzinfo=datetime.UTC),
                                allocations=[(invoice, invoice.open_balance)], reference="2026-0001",
                                gateway_payment_id="tr_WDqYK6vllg")


# What happens in the world before an example, as the guide tells it.
BEFORE = {"payments-since": _portal_payment_by_ideal}


def test_the_guide_marks_its_examples_and_covers_every_mutation_and_the_feed():
    assert BLOCKS, "no marked examples found"
    assert {block.role for block in BLOCKS} <= ROLES, {block.role for block in BLOCKS} - ROLES
    assert len(BY_NAME) == len(BLOCKS), "an example name and role is marked twice"
    shown_everywhere = set()
    for block in BLOCKS:
        if block.role == "query":
            for role in ("variables", "answer"):
                assert _block(block.name, role), f"{block.name}: no {role} block"
            if _block(block.name, "curl") and _block(block.name, "python"):
                shown_everywhere |= _operation_fields(block.body)
    assert MUTATIONS | {"paymentsSince", "invoices"} <= shown_everywhere, \
        "every mutation, the payments feed and the invoices list need a query, curl and Python example"
    for block in BLOCKS:
        if block.role in ("curl", "python") and block.name != "helper":
            assert _block(block.name, "query"), f"{block.name} {block.role}: no query block of that name"


def test_the_guides_graphql_examples_run_in_order_against_the_api(client, connection, settings, monkeypatch,
                                                                   tmp_path):
    settings.GRAPHQL_FEED_SETTLE_SECONDS = 0  # the feed example reads a payment made a moment before
    env = {"PORTAL_URL": PORTAL_URL, "PORTAL_TOKEN": make_token(connection)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # the feed example keeps its cursor in a file
    portal = Portal(client)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", lambda adapter, request, **kwargs: portal.send(request))
    namespace: dict = {"__name__": "guide"}
    ran = []

    for block in BLOCKS:
        query, variables = _block(block.name, "query"), _block(block.name, "variables")
        curl = _block(block.name, "curl")
        key = _curl(curl.body, env)[1].get("Idempotency-Key") if curl else None
        where = f"{GUIDE.name}:{block.line} ({block.name} {block.role})"
        if block.role == "answer":
            BEFORE.get(block.name, lambda: None)()
            headers = {"Authorization": f"Bearer {env['PORTAL_TOKEN']}", **({"Idempotency-Key": key} if key else {})}
            body = json.dumps({"query": query.body, "variables": variables.json()}).encode()
            answer = portal.post("/api/graphql/", body, headers)
            assert answer.status_code == 200, (where, answer.content)
            assert "errors" not in answer.json(), (where, answer.json())
            _same_shape(block.json(), answer.json(), where)
            ran.append(block.name)
        elif block.role == "curl":
            url, headers, body = _curl(block.body, env)
            assert url == f"{PORTAL_URL}/api/graphql/", where
            assert headers.pop("Authorization") == f"Bearer {env['PORTAL_TOKEN']}", where
            assert headers.pop("Content-Type") == "application/json", where
            sent = json.loads(body)
            assert _normal(sent["query"]) == _normal(query.body), f"{where}: not the query shown above it"
            assert sent["variables"] == variables.json(), f"{where}: not the variables shown above it"
            answer = portal.post("/api/graphql/", body.encode(), {"Authorization": f"Bearer {env['PORTAL_TOKEN']}",
                                                                  **headers})
            assert answer.status_code == 200, (where, answer.content)
            documented = _block(block.name, "answer").json()
            is_mutation = bool(_operation_fields(query.body) & MUTATIONS)
            _same_shape(_repeat_of(documented) if is_mutation else documented, answer.json(), where)
        elif block.role == "python":
            before = len(portal.sent)
            exec(compile(block.body, where, "exec"), namespace)  # noqa: S102 - the guide's own example
            if query is None:
                assert len(portal.sent) == before, f"{where}: a definition only, it should call nothing"
                continue
            assert len(portal.sent) > before, f"{where}: called nothing"
            headers, sent = portal.sent[before]
            assert _normal(sent["query"]) == _normal(query.body), f"{where}: not the query shown above it"
            assert sent["variables"] == variables.json(), f"{where}: not the variables shown above it"
            assert headers.get("Idempotency-Key") == key, f"{where}: not the curl example's Idempotency-Key"
            assert headers["Authorization"] == f"Bearer {env['PORTAL_TOKEN']}"
    assert ran == [block.name for block in BLOCKS if block.role == "answer"]
    assert (tmp_path / "portal-payments.cursor").read_text().strip(), "the feed loop keeps its cursor"


def _mapping_examples():
    return [pytest.param(block, id=block.name) for block in BLOCKS if block.role == "record"]


@pytest.mark.parametrize("record", _mapping_examples())
def test_each_mapping_example_makes_the_event_shown(record):
    mapping = _block(record.attrs.get("mapping", record.name), "mapping")
    event = _block(record.name, "event")
    assert mapping and event, f"{record.name}: a record needs a mapping and an event"
    assert mapping_problems(mapping.json()) == [], "the admin form would refuse this mapping"
    mapped = map_record(entity=mapping.attrs["entity"], mapping=mapping.json(), record=erp_json(record.body))
    assert mapped == event.json()
    assert event_problems(json.loads(event.body, parse_float=Decimal)) == []


def _push_examples():
    return [pytest.param(block, id=block.name) for block in BLOCKS if block.role == "request-config"]


@pytest.mark.parametrize("config", _push_examples())
def test_each_payment_told_back_is_the_request_shown(config):
    shown = _block(config.name, "request")
    message = _block(shown.attrs.get("message", config.name), "message")
    assert set(message.json()["data"]) == set(push.sample_payload()["data"]), \
        "the guide's message is not what the outbox writes"
    auth = ErpPull.Auth.BEARER if config.attrs["push"] == "rest" else ErpPull.Auth.OAUTH2
    erp = ErpPull(style=config.attrs["push"], base_url=config.attrs["endpoint"], auth=auth,
                  push=config.attrs["push"], push_request=config.json())
    built = push.push_preview(erp, message.json())
    assert "error" not in built, built
    method, url, headers, body = _http_block(shown.body)
    assert (built["method"], built["url"], built["body"]) == (method, url, body)
    assert built["headers"] == headers
