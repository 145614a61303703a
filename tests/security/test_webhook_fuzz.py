"""Webhook fuzz: at least 10,000 mixed requests to each webhook (the accounting webhook, Mollie's and
Stripe's), in process through Django's test client, from a seeded generator over a fixed corpus of
nasty inputs (corpus.py beside this file): huge and empty bodies, deep JSON, long numbers, NUL
bytes, bad UTF-8, control characters in headers, wrong and missing signatures, valid signatures
over malformed events, duplicates, made-up payment ids, over-long event ids, bad currencies and
dates, unknown accounts, odd client addresses.

Each run asserts:
- no answer is a server error: 200 (accepted, duplicate, ignored) or 202, or a 4xx with a reason;
- storage is bounded: the webhook tables grow by at most a constant (the kept samples and the
  counters the intake allows per source, account, answer and hour, and the few valid events of
  the pool), not by anything proportional to the requests;
- no job is left for unsigned or made-up input: jobs grow by at most the valid events sent;
- at the end a new valid event is still accepted, with its job.

Rate limits are off for the fuzz (WEBHOOK_RATE_*); one test per webhook floods from one address
with a low limit and expects 429 with Retry-After."""
from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pytest
from django.db import connection, transaction
from django.test import Client as Browser

from integrations.models import Connection
from integrations.signing import generate_secret, signed_headers
from payments.models import CheckoutAttempt, GatewayAccount
from portal import webhooks
from portal.models import Job
from portal.rls import staff_scope
from tests.fakes.stripe import sign as stripe_sign
from tests.integrations.helpers import CLIENT, event, invoice_data
from tests.portal.factories import BrandFactory, ClientFactory
from tests.security import corpus

SEED = 20261125
REQUESTS_PER_WEBHOOK = int(__import__("os").environ.get("FUZZ_REQUESTS", "10000"))
VALID_POOL = 8  # distinct valid events per webhook, each sent many times (the rest are duplicates)
ID_POOL = 32  # event ids that signed malformed events use: even one the intake accepts is kept once
STRIPE_SECRET = "whsec_fuzz_0000000000000000000000"
HIGH_RATE = "999999999/m"
TABLES = ("portal_webhookrequest", "portal_webhookrejections")


# --- The webhooks and their data --------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict
    content_type: str
    signed: bool = False          # signed with the account's secret (Mollie: names a payment of ours)
    verdict: str = "refuse"       # "valid", corpus.MUST_REFUSE, corpus.MAY_ACCEPT, or "refuse" (unsigned)
    url: str | None = None        # another URL of the same webhook (an account that is not ours)
    method: str = "POST"
    label: str = ""


@dataclass
class Target:
    name: str
    url: str
    valid: Callable[[int], Request]                     # the n-th valid event of the pool
    forged: list[Callable[[random.Random], Request]]    # its source's own nasty requests
    unknown_url: Callable[[random.Random], str]         # the same webhook for an account that is not ours
    fresh: Callable[[], Request]                        # a valid event never sent before (the final check)


@pytest.fixture(scope="module")
def targets(module_committed) -> dict[str, Target]:
    secret = generate_secret()

    def build():
        brand = BrandFactory(is_default=True)
        client = ClientFactory(brand=brand)
        erp = Connection.objects.create(name="Fuzzed ERP", slug="fuzz-erp", brand=brand, signing_secrets=secret)
        mollie = GatewayAccount.objects.create(brand=brand, provider="mollie", api_key="test_fuzzfuzzfuzzfuzzfuzzfuzzfu")
        stripe = GatewayAccount.objects.create(brand=brand, provider="stripe", api_key="sk_test_fuzz",
                                               webhook_secret=STRIPE_SECRET)
        # Payments of ours at Mollie: one the fuzz names over and over, one kept for the end. None
        # waits for Mollie's answer to its create, so every other id is made up.
        known = [CheckoutAttempt.objects.create(client=client, gateway=mollie, method="ideal", amount=10,
                                                currency="EUR", status="open",
                                                provider_payment_id=f"tr_fuzzKnown{n}").provider_payment_id
                 for n in range(2)]
        return erp, mollie, stripe, known

    erp, mollie, stripe, known = module_committed.create(build)
    return {"accounting": _accounting(f"/webhooks/accounting/{erp.slug}/", secret),
            "mollie": _mollie(f"/webhooks/payments/mollie/{mollie.pk}/", known),
            "stripe": _stripe(f"/webhooks/payments/stripe/{stripe.pk}/")}


def _accounting(url: str, secret: str) -> Target:
    def signed(body: bytes, msg_id: str, verdict: str, label: str, timestamp: int | None = None) -> Request:
        return Request(body, signed_headers(secret, msg_id, body, timestamp=timestamp), "application/json",
                       signed=timestamp is None, verdict=verdict, label=label)

    def valid(n: int) -> Request:
        payload = event("client.upserted", {**CLIENT, "external_id": f"C-FUZZ-{n}"}) if n % 2 else \
            event("invoice.created", invoice_data(external_id=f"INV-FUZZ-{n}", number=f"FZ-{n}"))
        return signed(json.dumps(payload).encode(), f"msg_fuzz_valid_{n}", "valid", "valid")

    malformed = [(verdict, item if isinstance(item, bytes) else json.dumps(item).encode())
                 for verdict, item in corpus.malformed_invoice_events(invoice_data(external_id="INV-BAD"))]

    def signed_malformed(rng: random.Random) -> Request:
        # A good signature over an event the ledger cannot store (or over any corpus body).
        verdict, body = rng.choice(malformed) if rng.random() < 0.8 else (corpus.MUST_REFUSE, rng.choice(corpus.BODIES))
        if rng.random() < 0.1:  # a good signature over a valid event with an odd or unusable event id
            good = valid(rng.randrange(VALID_POOL))
            if rng.random() < 0.5:
                return signed(good.body, rng.choice(corpus.EVENT_IDS_REFUSED), corpus.MUST_REFUSE, "signed, bad event id")
            return signed(good.body, rng.choice(corpus.EVENT_IDS_ODD), corpus.MAY_ACCEPT, "signed, odd event id")
        return signed(body, f"msg_bad_{rng.randrange(ID_POOL)}", verdict, "signed, malformed")

    def bad_signature(rng: random.Random) -> Request:
        good = valid(rng.randrange(VALID_POOL))
        body, headers = good.body, dict(good.headers)
        mutation = rng.randrange(6)
        if mutation == 0:
            headers["webhook-signature"] = rng.choice(corpus.SIGNATURES)
        elif mutation == 1:
            del headers[rng.choice(list(headers))]
        elif mutation == 2:
            headers["webhook-timestamp"] = rng.choice(corpus.TIMESTAMPS)
        elif mutation == 3:  # signed long ago or far ahead
            return signed(body, f"msg_stale_{rng.randrange(10**9)}", "refuse", "stale signature",
                          timestamp=int(time.time()) + rng.choice([-10**6, -400, 400, 10**8]))
        elif mutation == 4:
            body = body + b" "  # the body changed after signing
        else:
            headers = {name: rng.choice(corpus.HEADER_VALUES) for name in headers}
        return Request(body, headers, "application/json", label="bad signature")

    return Target("accounting", url, valid, [signed_malformed, bad_signature],
                  lambda rng: f"/webhooks/accounting/{corpus.slug(rng)}/", fresh=lambda: valid(10**6))


def _mollie(url: str, known: list[str]) -> Target:
    def form(value: str, **kwargs) -> Request:
        return Request(f"id={value}".encode(), {}, "application/x-www-form-urlencoded", **kwargs)

    def made_up(rng: random.Random) -> Request:
        return form(rng.choice(corpus.payment_ids(rng)), label="made-up payment id")

    def odd_form(rng: random.Random) -> Request:
        return Request(rng.choice(corpus.mollie_forms(known[0])), {}, rng.choice(corpus.CONTENT_TYPES),
                       verdict=corpus.MAY_ACCEPT, signed=True, label="odd form naming ours")

    return Target("mollie", url, lambda n: form(known[0], signed=True, verdict="valid", label="valid"),
                  [made_up, odd_form], lambda rng: f"/webhooks/payments/mollie/{rng.randrange(10**6, 10**9)}/",
                  fresh=lambda: form(known[1], signed=True, verdict="valid", label="fresh"))


def _stripe_event(event_id: str, intent: str, kind: str = "checkout.session.completed") -> dict:
    return {"id": event_id, "object": "event", "api_version": "2024-06-20", "created": int(time.time()),
            "type": kind, "livemode": False,
            "data": {"object": {"id": f"cs_{intent}", "object": "checkout.session", "payment_intent": intent,
                                "payment_status": "paid", "amount_total": 12100, "currency": "eur",
                                "metadata": {"idempotency_key": "00000000-0000-0000-0000-000000000000"}}}}


def _stripe(url: str) -> Target:
    def signed(body: bytes, verdict: str, label: str, timestamp: int | None = None) -> Request:
        return Request(body, {"Stripe-Signature": stripe_sign(body, STRIPE_SECRET, timestamp)}, "application/json",
                       signed=timestamp is None, verdict=verdict, label=label)

    def valid(n: int) -> Request:
        return signed(json.dumps(_stripe_event(f"evt_fuzz_valid_{n}", f"pi_fuzz_{n}")).encode(), "valid", "valid")

    malformed = [[(verdict, json.dumps(item).encode())
                  for verdict, item in corpus.malformed_stripe_events(_stripe_event(f"evt_bad_{n}", f"pi_bad_{n}"))]
                 for n in range(ID_POOL)]

    def signed_malformed(rng: random.Random) -> Request:
        if rng.random() < 0.2:
            return signed(rng.choice(corpus.BODIES), corpus.MUST_REFUSE, "signed, corpus body")
        return signed(*rng.choice(rng.choice(malformed))[::-1], label="signed, malformed")

    def bad_signature(rng: random.Random) -> Request:
        good = valid(rng.randrange(VALID_POOL))
        body, headers = good.body, good.headers
        mutation = rng.randrange(4)
        if mutation == 0:
            headers = {"Stripe-Signature": rng.choice(corpus.SIGNATURES)}
        elif mutation == 1:
            headers = {}
        elif mutation == 2:  # signed long ago (the SDK lets a future time pass: only the secret's holder makes one)
            return signed(body, "refuse", "stale signature", timestamp=int(time.time()) + rng.choice([-10**6, -400]))
        else:
            body = body.replace(b"paid", b"PAID")
        return Request(body, headers, "application/json", label="bad signature")

    return Target("stripe", url, valid, [signed_malformed, bad_signature],
                  lambda rng: f"/webhooks/payments/stripe/{rng.randrange(10**6, 10**9)}/", fresh=lambda: valid(10**6))


# --- Sending, judging, measuring --------------------------------------------------------------

@dataclass
class Outcome:
    answers: Counter = field(default_factory=Counter)
    accepted: Counter = field(default_factory=Counter)   # label -> requests answered "accepted"
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def problem(self, n: int, request: Request, url: str, what: str) -> None:
        if len(self.problems) < 25:
            self.problems.append(f"#{n} {request.label or 'corpus'} {request.method} {url} "
                                 f"headers={request.headers!r:.160} body={request.body[:160]!r}: {what}")


def _send(http: Browser, url: str, request: Request, ip: str):
    return http.generic(request.method, url, data=request.body, content_type=request.content_type,
                        headers=request.headers, REMOTE_ADDR=ip)


def _judge(response, request: Request) -> str | None:
    """None when the answer is one the intake may give this request; otherwise what is wrong."""
    status = response.status_code
    if status >= 500:
        return f"{status} (server error)"
    if status == 405:
        return None if response.get("Allow") else "405 without Allow"
    try:
        answer = json.loads(response.content)
    except ValueError:
        return f"{status} with a body that is not JSON: {response.content[:120]!r}"
    if 400 <= status < 500:
        return None if answer.get("error") or answer.get("reason") else f"{status} without a reason: {answer}"
    if status not in (200, 202) or answer.get("status") not in ("accepted", "duplicate", "ignored"):
        return f"{status} {answer}"
    if answer["status"] == "accepted" and not request.signed:
        return "accepted without a valid signature (or naming nothing of ours)"
    if answer["status"] == "accepted" and request.verdict == corpus.MUST_REFUSE:
        return "accepted an event the ledger cannot store or render (must be 422)"
    return None


def _mix(target: Target, rng: random.Random) -> Request:
    """One request of the mix: valid events of the pool (most of them duplicates), the source's own
    forgeries, corpus bodies with hostile headers, unknown accounts, other methods."""
    roll = rng.random()
    if roll < 0.10:
        return target.valid(rng.randrange(VALID_POOL))
    if roll < 0.15:
        good = target.valid(rng.randrange(VALID_POOL))
        return Request(good.body, good.headers, good.content_type, url=target.unknown_url(rng), label="unknown account")
    if roll < 0.17:
        good = target.valid(0)
        return Request(good.body, good.headers, good.content_type, method=rng.choice(["GET", "PUT", "DELETE", "PATCH"]),
                       label="method")
    if roll < 0.25:
        good = target.valid(rng.randrange(VALID_POOL))
        # Spoofed addresses and odd user agents beside a good signature: still the valid event,
        # unless a hostile header replaced one the signature covers.
        hostile = corpus.hostile_headers(rng)
        still_signed = good.signed and not ({k.lower() for k in hostile} & {k.lower() for k in good.headers})
        return Request(good.body, {**good.headers, **hostile}, good.content_type, signed=still_signed,
                       verdict=good.verdict if still_signed else "refuse", label="hostile headers")
    if roll < 0.45:
        return Request(rng.choice(corpus.BODIES), corpus.hostile_headers(rng) if rng.random() < 0.3 else {},
                       rng.choice(corpus.CONTENT_TYPES), label="corpus body")
    return rng.choice(target.forged)(rng)


def _storage() -> dict[str, tuple[int, int]]:
    """Rows and bytes of each webhook table, and the job count."""
    found = {}
    with staff_scope(), transaction.atomic(), connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t")  # noqa: S608
            found[table] = cursor.fetchone()
        found["jobs"] = (Job.objects.count(), 0)
    return found


def _storage_bound(accepted: int) -> tuple[int, int]:
    """What the intake may keep whatever the number of requests. Per source, account and hour: a
    counter per answer and REJECTED_KEPT_PER_HOUR samples of it (headers and an excerpt of the
    body), for our account and for every unknown one together; this hour and the next (a run may
    cross the hour). Plus the requests it accepted (signed, each event id once)."""
    answers = 12  # more than the intake's distinct answers (400, 401, 404, 405, 413, 415, 422, ignored, ...)
    excerpt = getattr(webhooks, "REJECTED_EXCERPT_BYTES", 64 * 1024)
    samples = 2 * 2 * answers * (webhooks.REJECTED_KEPT_PER_HOUR + 1)
    # A sample: the excerpt and headers of up to 1,000 characters each, encrypted (base64, a nonce:
    # about 4/3 of it); an accepted event of the fuzz is a few kilobytes.
    return samples + accepted, samples * (2 * excerpt + 8 * 1024) + accepted * 16 * 1024


@pytest.fixture(autouse=True)
def _quiet_4xx():
    # Django logs every 4xx as a warning: 30,000 expected ones would only slow the run. 5xx still log.
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture
def limits_out_of_reach(settings):
    # Off ("" turns a limit off): with a high rate every request still costs two Redis counters,
    # a third of the fuzz's time on a busy machine; the flood test below checks the limits.
    settings.WEBHOOK_RATE_PER_IP = ""
    settings.WEBHOOK_RATE_PER_ACCOUNT = ""


def _fuzz(target: Target, seed: int, count: int) -> Outcome:
    rng = random.Random(seed)
    http = Browser()
    outcome = Outcome()
    started = time.monotonic()
    for n in range(count):
        request = _mix(target, rng)
        url = request.url or target.url
        try:
            response = _send(http, url, request, rng.choice(corpus.ADDRESSES))
        except Exception as exc:  # noqa: BLE001 - the test client re-raises a view's exception: a 500
            outcome.answers["exception"] += 1
            outcome.problem(n, request, url, f"{type(exc).__name__}: {str(exc)[:300]}")
            continue
        outcome.answers[response.status_code] += 1
        problem = _judge(response, request)
        if problem:
            outcome.problem(n, request, url, problem)
        elif response.status_code == 200 and response.json()["status"] == "accepted":
            outcome.accepted[request.label] += 1
    outcome.seconds = time.monotonic() - started
    return outcome


# --- The tests ----------------------------------------------------------------------------------

WEBHOOKS = ["accounting", "mollie", "stripe"]


@pytest.mark.parametrize("name", WEBHOOKS)
def test_ten_thousand_nasty_requests_get_no_server_error_and_grow_nothing_without_bound(
        name, targets, open_db, limits_out_of_reach, bells):
    before, bells_before = _storage(), len(bells)
    outcome = _fuzz(targets[name], SEED + WEBHOOKS.index(name), REQUESTS_PER_WEBHOOK)
    after = _storage()
    growth = {table: (after[table][0] - before[table][0], after[table][1] - before[table][1]) for table in after}
    print(f"\n{name}: {REQUESTS_PER_WEBHOOK} requests in {outcome.seconds:.1f} s; answers "
          f"{dict(outcome.answers)}; accepted {dict(outcome.accepted)}; growth (rows, bytes) {growth}")

    assert not outcome.problems, f"{name}: answers {dict(outcome.answers)}:\n" + "\n".join(outcome.problems)
    assert sum(outcome.answers.values()) == REQUESTS_PER_WEBHOOK
    # Signed requests reuse a few event ids, so even accepting them keeps a handful of rows.
    accepted = sum(outcome.accepted.values())
    assert accepted <= VALID_POOL + ID_POOL + len(corpus.EVENT_IDS), (
        f"{name}: {accepted} requests accepted ({dict(outcome.accepted)}): a repeated request is kept again each time")
    rows_bound, bytes_bound = _storage_bound(accepted)
    for table in TABLES:
        rows, size = growth[table]
        assert rows <= rows_bound and size <= bytes_bound, (
            f"{name}: {table} grew by {rows} rows and {size} bytes over {REQUESTS_PER_WEBHOOK} requests "
            f"(bound: {rows_bound} rows, {bytes_bound} bytes)")
    # A job only for what was accepted: nothing unsigned or made up leaves one, nor rings a worker.
    assert growth["jobs"][0] <= accepted
    assert len(bells) - bells_before <= accepted


@pytest.mark.parametrize("name", WEBHOOKS)
def test_after_the_fuzz_a_new_valid_event_is_still_accepted_with_its_job(name, targets, open_db, limits_out_of_reach):
    response = _send(Browser(), targets[name].url, targets[name].fresh(), "192.0.2.10")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    with staff_scope():
        job = Job.objects.get(key=f"webhook:{response.json()['webhook']}")
    assert job.state == Job.State.PENDING


@pytest.mark.parametrize("name", WEBHOOKS)
def test_a_flood_from_one_address_gets_429_with_retry_after(name, targets, open_db, settings):
    settings.WEBHOOK_RATE_PER_IP = "30/m"
    settings.WEBHOOK_RATE_PER_ACCOUNT = HIGH_RATE
    flood = Request(b"id=tr_flood", {"webhook-signature": "v1,forged"}, "application/x-www-form-urlencoded")
    http = Browser()
    answers = [_send(http, targets[name].url, flood, "198.51.100.77") for _ in range(100)]
    limited = [a for a in answers if a.status_code == 429]
    # Fixed one-minute windows: the first 30 pass; of 100, at most 60 pass even if a window ends mid-flood.
    assert all(a.status_code != 429 for a in answers[:30])
    assert len(limited) >= 40, [a.status_code for a in answers]
    assert all(1 <= int(a["Retry-After"]) <= 60 for a in limited)
    assert limited[0].json()["error"]
    # Another address is not held back by this one's flood.
    assert _send(http, targets[name].url, flood, "198.51.100.78").status_code != 429
