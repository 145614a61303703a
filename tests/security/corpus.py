"""The webhook fuzz's fixed corpus of nasty inputs (test_webhook_fuzz.py draws from it with a
seeded generator, so a failure replays). Each entry is something an attacker or a broken sender
can send; none needs the network."""
from __future__ import annotations

import copy
import json
import random
import string

_rng = random.Random(7)  # the corpus itself is fixed


def _deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _random_bytes(size: int) -> bytes:
    return bytes(_rng.randrange(256) for _ in range(size))


# Bodies any webhook may get. Sizes around the limits: the default body limit is 256 KiB; the
# largest ones are over any limit the intake may be given.
BODIES: list[bytes] = [
    b"", b" ", b"{}", b"[]", b"null", b"true", b'""', b"0", b"{", b"}", b'{"a":}', b"[1,]",
    _deep_array(1000), _deep_array(100_000), _deep_object(1000), _deep_object(50_000),
    b"1" * 5000, b'{"n": ' + b"9" * 4301 + b"}", b'{"n": ' + b"1" * 200_000 + b"}", b'{"n": 1e999999}',
    b'{"n": -1e-999999}', b'{"n": NaN}', b'{"n": Infinity}', b"[-Infinity]", b'{"n": 0.' + b"1" * 10_000 + b"}",
    b"\x00", b"\x00" * 1000, b'{"type": "invoice.created\x00"}', b'{"a": "\\u0000"}',
    b"\xff\xfe\xfd", b'{"a": "\xed\xa0\x80"}', b'{"a": "\\ud800"}', b'{"a": "\\udfff\\ud800"}',
    b"\xef\xbb\xbf{}", b'\xfe\xff\x00{\x00}', "{\"a\": \"\u202e\u0000\u0007\"}".encode(),
    b'{"id": "a", "id": "b", "type": "x", "type": "y"}',
    b'{' + b",".join(b'"k%d": %d' % (n, n) for n in range(20_000)) + b'}',
    b'[' + b",".join(b"1" for _ in range(100_000)) + b']',
    b'{"a": "' + b"x" * 250_000 + b'"}',
    b"x" * (256 * 1024 + 1), b"{" * (600 * 1024), b"A" * (3 * 1024 * 1024),
    b"id=" + b"tr_" + b"a" * 10_000, b"id=%00", b"id=%ff%fe", b"id=tr_%0d%0aX-Injected:%201",
    b"&" * 50_000, b"a=1&" * 20_000,
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><x>&lol2;</x>',
    b"--xyz\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\ntr_x\r\n--xyz--\r\n",
    _random_bytes(4096), _random_bytes(70_000),
]

CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
    "application/json; charset=bogus", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
    "multipart/form-data; boundary=xyz", "application/xml", "", "application/json\x00", "*/*; q=\"",
]

# Event ids (webhook-id) the intake must refuse: over the documented length (never cut), with control
# characters. And odd ones it may take as they are (an id is a key, never a path or SQL).
EVENT_IDS_REFUSED = ["a" * 201, "a" * 10_000, "msg\x00id", "msg\nid", "msg\r\nX-Injected: 1", "\x1b[31mred"]
EVENT_IDS_ODD = [" ", "msg_ü", "msg_" + "\u202e" * 10, "../../etc/passwd", "'; DROP TABLE portal_job; --", "a" * 200]
EVENT_IDS = EVENT_IDS_REFUSED + EVENT_IDS_ODD

SIGNATURES = ["", "v1,", "v1,AAAA", "v1," + "A" * 10_000, "v2,abc", "v1,not base64!!!", "\x00", "v1,\x00\x00",
              "t=1,v1=deadbeef", "t=abc,v1=", "t=" + "9" * 5000 + ",v1=00", "t=1700000000,v1=" + "0" * 64,
              "v1," + "=" * 100, ",,,,", "v1,a v1,b v1,c " * 500]

TIMESTAMPS = ["", "abc", "9" * 5000, "-1", "1e10", "0x10", " 123", "１２３", "\x00", "17000000000000000000000",
              "-9223372036854775809", "NaN"]

HEADER_VALUES = ["\x00", "a\r\nX-Injected: 1", "\x7f\x80\x9f", "é", "A" * 10_000, "\t", "", "\u202e", "v1,\x00"]

# Addresses a client may really have (the peer address is the web server's, never the sender's
# choice); what the sender does choose goes in the headers below.
ADDRESSES = ["203.0.113.5", "203.0.113.6", "198.51.100.1", "192.0.2.44", "2001:db8::1", "::1", "127.0.0.1",
             "::ffff:198.51.100.9", "10.0.0.7"]

SPOOFED = ["", "not-an-ip", "999.999.999.999", "1.2.3.4, 5.6.7.8", "1.2.3.4\x00", "fe80::1%eth0", "::ffff:1.2.3.4",
           "1" * 10_000, "127.0.0.1, " * 1000, "unknown", "[2001:db8::1]:443", "2001:db8::1::1", "\r\n"]


def hostile_headers(rng: random.Random) -> dict[str, str]:
    """Headers a sender chooses: spoofed client addresses, control characters, odd user agents."""
    found = {}
    if rng.random() < 0.5:
        found["X-Forwarded-For"] = rng.choice(SPOOFED)
    if rng.random() < 0.5:
        found["X-Real-IP"] = rng.choice(SPOOFED)
    if rng.random() < 0.5:
        found["User-Agent"] = rng.choice(HEADER_VALUES)
    if rng.random() < 0.3:
        found["webhook-id"] = rng.choice(EVENT_IDS)
    if rng.random() < 0.2:
        found["Stripe-Signature"] = rng.choice(SIGNATURES)
    if rng.random() < 0.2:
        found["Content-Encoding"] = rng.choice(["gzip", "br", "\x00"])
    return found


def slug(rng: random.Random) -> str:
    """A connection slug that is not ours (the URL only takes slugs)."""
    size = rng.choice([1, 8, 40, 99, 100, 101, 300])
    return "".join(rng.choice(string.ascii_lowercase + string.digits + "-_") for _ in range(size))


def payment_ids(rng: random.Random) -> list[str]:
    """Payment ids nobody created here: well formed and not."""
    made_up = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.choice([1, 10, 64])))
    return [f"tr_{made_up}", f"tr_{made_up}", f"tr_{made_up}", "tr_" + "a" * 65, "tr_" + "A" * 10_000, "tr_x\x00",
            "tr_x y", "", "tr_", f"sb_{made_up}", f"re_{made_up}", "tr_fuzzKnown0 ", "TR_FUZZKNOWN0", "tr_ü"]


def mollie_forms(known: str) -> list[bytes]:
    """Odd bodies that name (or almost name) a payment of ours."""
    return [f"id={known}&id={known}".encode(), f"id={known}&id=tr_other".encode(), f"id={known}%00".encode(),
            f"id={known}\x00".encode(), json.dumps({"id": known}).encode(), f"ID={known}".encode(),
            f"id[]={known}".encode(), f"id={known}&".encode() + b"x=1&" * 5000, f"id={known}".encode("utf-16"),
            f" id={known}".encode(), f"id=%{known}".encode()]


def _invoice_event(data: dict, kind: str = "invoice.created") -> dict:
    return {"type": kind, "occurred_at": "2026-11-01T10:00:00Z", "data": data}


def with_value(data, path: tuple, value):
    """A deep copy of `data` with the value at `path` (keys and indexes) replaced; at the empty
    path, `value` itself."""
    if not path:
        return value
    changed = copy.deepcopy(data)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


# Which canonical invoice events the ledger must refuse (issue 11, "validation before 202"): a
# currency that is not ISO 4217, a date that does not exist, more precision than the ledger keeps,
# totals that do not add up or are not positive, control characters in text. Other odd values
# in the corpus may be accepted (a formula in a purchase order is text; the CSV export escapes it).
MUST_REFUSE = "must refuse"
MAY_ACCEPT = "may accept"


def malformed_invoice_events(data: dict) -> list[tuple[str, object]]:
    """Canonical invoice events for a good signature to cover: (verdict, event or raw bytes)."""
    line = ("lines", 0)
    refuse = [
        *(with_value(data, ("currency",), value) for value in ("ZZZ", "EUR\n", "eur", "", "EURO", 978, None, "€")),
        *(with_value(data, ("issue_date",), value) for value in ("2026-02-30", "2026-13-01", "99999-01-01", "2026-1-1",
                                                            "", 20261101, "0000-01-01", "2026-11-01T00:00:00Z")),
        with_value(data, ("due_date",), "2026-02-29"), with_value(data, ("updated_at",), "2026-11-01T25:00:00Z"),
        with_value(data, ("updated_at",), "yesterday"),
        *(with_value(data, (*line, "quantity"), value) for value in ("1.2345", "NaN", "Infinity", "1" * 5000, 1.5,
                                                              "0x10", "10\n", "")),
        *(with_value(data, (*line, "unit_price"), value) for value in ("95.00001", "1e400", "9" * 40, "1,5")),
        *(with_value(data, ("total",), value) for value in ("0.00", "-1208.33", "1208.3300001", "1e400", "NaN")),
        with_value(data, ("subtotal",), "0"), with_value(data, ("tax_total",), "-204.36"),
        with_value(data, (*line, "description"), "Consulting\x00"), with_value(data, (*line, "description"), "\x1b[2J"),
        with_value(data, ("number",), "2026-0001\r\nX: 1"), with_value(data, ("external_id",), "INV\x00"),
    ]
    may = [
        with_value(data, ("currency",), "XTS"),
        *(with_value(data, (*line, "quantity"), value) for value in ("1e3", "-1", " 10")),
        with_value(data, (*line, "unit_price"), "-95.00"), with_value(data, ("lines",), []),
        with_value(data, ("lines",), [data["lines"][0]] * 3000),
        with_value(data, (*line, "description"), "x" * 100_000), with_value(data, (*line, "description"), "\u202egnitlusnoC"),
        with_value(data, (*line, "tax_rate"), "121"), with_value(data, (*line, "discount_percent"), "150"),
        with_value(data, ("external_id",), "x" * 500), with_value(data, ("client_external_id",), ""),
        with_value(data, ("purchase_order",), "=HYPERLINK(\"http://evil.test\")"),
        with_value(data, ("payment_terms", "days"), -30), with_value(data, ("payment_terms", "days"), 10**30),
        {**data, "nested": json.loads(_deep_object(30))},
    ]
    not_events = [  # not a canonical event at all: refused whatever the checks
        _invoice_event(data, "invoice.deleted"), _invoice_event(data, ""), _invoice_event(data, "x" * 10_000),
        {"type": "invoice.created"}, {"type": "invoice.created", "data": None}, {"data": data},
        {"type": "invoice.created", "occurred_at": "never", "data": data}, [data], "invoice",
        b'{"type": "invoice.created", "occurred_at": "2026-11-01T10:00:00Z", "data": NaN}',
    ]
    return ([(MUST_REFUSE, _invoice_event(v)) for v in refuse] + [(MAY_ACCEPT, _invoice_event(v)) for v in may]
            + [(MUST_REFUSE, e) for e in not_events])


def malformed_stripe_events(event: dict) -> list[tuple[str, object]]:
    """Stripe-shaped events a good signature may cover: (verdict, event). An event without a
    usable id or type, or with an id over the documented length, must be refused (never cut)."""
    obj = ("data", "object")
    refuse = [
        {k: v for k, v in event.items() if k != "id"}, {k: v for k, v in event.items() if k != "type"},
        with_value(event, ("id",), "evt_" + "x" * 300), with_value(event, ("id",), "evt_\x00"), with_value(event, ("id",), ""),
        with_value(event, ("id",), None), with_value(event, ("id",), ["evt_a"]), with_value(event, ("type",), ""),
        [event], "evt", None,
    ]
    may = [
        with_value(event, ("id",), 12345), with_value(event, ("type",), 7), with_value(event, ("type",), "x" * 10_000),
        with_value(event, ("data",), None), with_value(event, ("data",), "object"), with_value(event, obj, []),
        with_value(event, obj, None), with_value(event, (*obj, "payment_intent"), "pi_" + "x" * 10_000),
        with_value(event, (*obj, "payment_intent"), {"a": 1}), with_value(event, (*obj, "amount_total"), -12100),
        with_value(event, (*obj, "amount_total"), 10**40), with_value(event, (*obj, "currency"), "zzz"),
        with_value(event, ("created",), "yesterday"), with_value(event, (*obj, "metadata"), json.loads(_deep_object(30))),
    ]
    return [(MUST_REFUSE, e) for e in refuse] + [(MAY_ACCEPT, e) for e in may]
