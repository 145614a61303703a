"""The gateways' webhooks through the one intake (portal.webhooks): how Mollie, Stripe and the
sandbox gateway are recognised and verified, and the subject that keeps one payment's news in
order. Each accepted request leaves a `gateway.event` job (payments.tasks).

Mollie signs nothing: its webhook only names a payment (`id=tr_...`), and the job asks Mollie
what is true, so a forged call changes nothing. Mollie retries until it gets 200 OK and asks
that an id we do not know is answered 200 too (docs.mollie.com, webhooks: "How to handle
unknown IDs?"). An id is ours when a checkout attempt of this gateway carries it, or while an
attempt of the last day still waits for Mollie's answer to its create (the answer may have been
lost; the job then finds the attempt by the key in the payment's metadata). Any other id is
answered 200 `ignored` and kept like a rejected request, within the same bound, with no job and
no call to Mollie: a flood of made-up ids neither grows the database nor reaches Mollie. An id
the job has once found not to be ours (Mollie does not know it, or it is another shop's) is
remembered for LOST_ANSWER_WINDOW and ignored from then on, and while a job for a payment still
waits to ask Mollie, another call about it is answered as a duplicate: however often the same
id is posted, Mollie is asked about it once per change at most. Stripe signs its events
(Stripe-Signature, checked on the raw bytes by the SDK) and names each one, so a redelivery is
a duplicate; its job never calls Stripe (the signed event says what happened)."""

from __future__ import annotations

import datetime
import logging
import re
from urllib.parse import parse_qs

from django.core.cache import cache
from django.utils import timezone

from payments.gateways.stripe import StripeGateway
from payments.models import CheckoutAttempt, GatewayAccount
from portal.models import Job
from portal.webhooks import NATURAL_KEY_MAX, Accepted, Duplicate, Ignored, Rejected, Source, parse_json

log = logging.getLogger(__name__)

GATEWAY_EVENT = "gateway.event"
PAYMENT_IDS = {GatewayAccount.Provider.MOLLIE: re.compile(r"tr_[A-Za-z0-9]{1,64}"),
               GatewayAccount.Provider.SANDBOX: re.compile(r"sb_[A-Za-z0-9_-]{1,64}")}
# Mollie's webhook body is "id=tr_..." and nothing more.
ID_ONLY_BODY_BYTES = 4 * 1024
STRIPE_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
STRIPE_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,100}")
STRIPE_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


LOST_ANSWER_WINDOW = datetime.timedelta(days=1)


# One statement, written out: the account, and whether the payment the body names is one of
# ours, whether an attempt of the last day still waits for its create's answer, and whether a job
# about this payment still waits to ask the gateway. As SQL it costs the intake one round trip
# and no query compilation (the ORM's annotated Exists took ~6 ms a request, most of a webhook).
FIND_SQL = f"""
SELECT g.*,
    EXISTS (SELECT 1 FROM {CheckoutAttempt._meta.db_table} a
            WHERE a.gateway_id = g.id AND a.provider_payment_id = %(payment)s) AS names_our_payment,
    EXISTS (SELECT 1 FROM {CheckoutAttempt._meta.db_table} a
            WHERE a.gateway_id = g.id AND a.provider_payment_id = '' AND a.status = %(created)s
              AND a.created_at >= %(since)s) AS awaits_lost_answer,
    EXISTS (SELECT 1 FROM {Job._meta.db_table} j
            WHERE j.kind = %(kind)s AND j.subject = %(subject)s AND j.state = ANY(%(waiting)s)) AS news_waiting
FROM {GatewayAccount._meta.db_table} g
WHERE g.id = %(id)s AND g.provider = %(provider)s AND g.enabled
"""


def _finder(provider: str):
    def find(account_key: str, body: bytes):
        if not account_key.isdigit() or len(account_key) > 18:
            return None
        if provider not in PAYMENT_IDS:  # Stripe: the signed event says it all; the account alone
            found = list(GatewayAccount.objects.raw(
                f"SELECT g.* FROM {GatewayAccount._meta.db_table} g WHERE g.id = %s AND g.provider = %s AND g.enabled",
                [int(account_key), provider]))
            return found[0] if found else None
        payment_id = _named_payment_or_none(provider, body) or ""
        found = list(GatewayAccount.objects.raw(FIND_SQL, {
            "id": int(account_key), "provider": provider, "payment": payment_id,
            "created": CheckoutAttempt.Status.CREATED, "since": timezone.now() - LOST_ANSWER_WINDOW,
            "kind": GATEWAY_EVENT, "subject": f"{provider}:{payment_id}",
            "waiting": [Job.State.PENDING, Job.State.RETRYING]}))
        return found[0] if found else None

    return find


def _named_payment_or_none(provider: str, body: bytes | str) -> str | None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        ids = parse_qs(text, max_num_fields=10).get("id", []) if len(text) <= ID_ONLY_BODY_BYTES else []
    except ValueError:  # more fields than any webhook of Mollie's has
        return None
    if len(ids) != 1 or not PAYMENT_IDS[provider].fullmatch(ids[0]):
        return None
    return ids[0]


def named_payment(provider: str, body: bytes | str) -> str:
    """The payment id a Mollie-style webhook names (`id=...`); Rejected(400) if it names none."""
    payment_id = _named_payment_or_none(provider, body)
    if payment_id is None:
        raise Rejected(400, "the body does not name a payment (id=...)")
    return payment_id


def _not_ours_key(gateway_id: int, payment_id: str) -> str:
    return f"payments:not-ours:{gateway_id}:{payment_id}"


def remember_not_ours(*, gateway: GatewayAccount, payment_id: str) -> None:
    """The job found that this id is not a payment of ours: later calls about it are ignored
    without asking the gateway again. Kept in the cache; if it is down, the next call asks again."""
    try:
        cache.set(_not_ours_key(gateway.pk, payment_id), 1, timeout=int(LOST_ANSWER_WINDOW.total_seconds()) * 2)
    except Exception:  # noqa: BLE001 - a cache that is down costs one more question to the gateway, no more
        log.warning("could not remember that %s is not ours", payment_id, exc_info=True)


def _known_not_ours(gateway_id: int, payment_id: str) -> bool:
    try:
        return bool(cache.get(_not_ours_key(gateway_id, payment_id)))
    except Exception:  # noqa: BLE001 - see remember_not_ours
        return False


def _verify_by_id(provider: str):
    def verify(account, headers, body: bytes) -> Accepted:
        payment_id = named_payment(provider, body)
        if not account.names_our_payment and (not account.awaits_lost_answer
                                              or _known_not_ours(account.pk, payment_id)):
            raise Ignored("the payment it names is not one of ours")
        if account.news_waiting:
            raise Duplicate()  # the waiting job asks the gateway after this call anyway
        # No event id: the job's fetch makes a repeat harmless.
        return Accepted(subject=f"{provider}:{payment_id}")

    return verify


def _verify_stripe(account, headers, body: bytes) -> Accepted:
    from stripe import SignatureVerificationError  # lazy like the Stripe adapter: the SDK is large

    try:
        StripeGateway.verify_signature(body, headers.get("Stripe-Signature"), account.webhook_secret)
    except SignatureVerificationError as exc:
        # The SDK's messages may quote the header; ours do not.
        problem = ("the timestamp is outside the tolerance (5 minutes)" if "tolerance" in str(exc)
                   else "signature does not match")
        raise Rejected(401, f"signature: {problem}") from None
    event = parse_json(body)
    problems = _stripe_event_problems(event)
    if problems:
        raise Rejected(422, "not a Stripe event: " + "; ".join(f"{p['field']}: {p['reason']}" for p in problems),
                       errors=problems)
    return Accepted(natural_key=event["id"], subject=f"stripe:{StripeGateway.payment_of(event)}")


def _stripe_event_problems(event) -> list[dict]:
    """What the job relies on: an id (the event id, up to NATURAL_KEY_MAX characters), a type and
    data.object."""
    if not isinstance(event, dict):
        return [{"field": "/", "reason": "must be an object"}]
    problems = []
    if not isinstance(event.get("id"), str) or not STRIPE_EVENT_ID.fullmatch(event["id"]):
        problems.append({"field": "/id", "reason": f"must be an event id of 1 to {NATURAL_KEY_MAX} letters, "
                                                   "digits, _ or -"})
    if not isinstance(event.get("type"), str) or not STRIPE_EVENT_TYPE.fullmatch(event["type"]):
        problems.append({"field": "/type", "reason": "must be an event type"})
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        problems.append({"field": "/data/object", "reason": "must be an object"})
        return problems
    for name in ("id", "payment_intent"):  # the subject that orders one payment's events
        value = data["object"].get(name)
        if value is not None and not (isinstance(value, str) and STRIPE_OBJECT_ID.fullmatch(value)):
            problems.append({"field": f"/data/object/{name}", "reason": "must be an id of 1 to 100 letters, "
                                                                      "digits, _ or -"})
    return problems


SOURCES = {
    GatewayAccount.Provider.MOLLIE: Source(name="mollie", job_kind=GATEWAY_EVENT, find=_finder("mollie"),
                                           verify=_verify_by_id("mollie"), max_body_bytes=ID_ONLY_BODY_BYTES),
    GatewayAccount.Provider.STRIPE: Source(name="stripe", job_kind=GATEWAY_EVENT, find=_finder("stripe"),
                                           verify=_verify_stripe,
                                           kept_headers=("content-type", "user-agent", "stripe-signature")),
    GatewayAccount.Provider.SANDBOX: Source(name="sandbox", job_kind=GATEWAY_EVENT, find=_finder("sandbox"),
                                            verify=_verify_by_id("sandbox"), max_body_bytes=ID_ONLY_BODY_BYTES),
}
