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
no call to Mollie: a flood of made-up ids neither grows the database nor reaches Mollie. Stripe signs its events
(Stripe-Signature, checked on the raw bytes by the SDK) and names each one, so a redelivery is a
duplicate."""
from __future__ import annotations

import datetime
import re
from urllib.parse import parse_qs

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from payments.gateways.stripe import StripeGateway
from payments.models import CheckoutAttempt, GatewayAccount
from portal.webhooks import Accepted, Ignored, Rejected, Source

GATEWAY_EVENT = "gateway.event"
PAYMENT_IDS = {GatewayAccount.Provider.MOLLIE: re.compile(r"tr_[A-Za-z0-9]{1,64}"),
               GatewayAccount.Provider.SANDBOX: re.compile(r"sb_[A-Za-z0-9_-]{1,64}")}


LOST_ANSWER_WINDOW = datetime.timedelta(days=1)


def _finder(provider: str):
    def find(account_key: str, body: bytes):
        if not account_key.isdigit():
            return None
        accounts = GatewayAccount.objects.filter(pk=int(account_key), provider=provider, enabled=True)
        if provider in PAYMENT_IDS:
            # In the same statement: is the payment the body names one of ours?
            payment_id = named_payment(provider, body)
            ours = CheckoutAttempt.objects.filter(gateway=OuterRef("pk")).filter(
                Q(provider_payment_id=payment_id)
                | Q(provider_payment_id="", status=CheckoutAttempt.Status.CREATED,
                    created_at__gte=timezone.now() - LOST_ANSWER_WINDOW))
            accounts = accounts.annotate(names_our_payment=Exists(ours))
        return accounts.first()

    return find


def named_payment(provider: str, body: bytes | str) -> str:
    """The payment id a Mollie-style webhook names (`id=...`); Rejected(400) if it names none."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    ids = parse_qs(text).get("id", [])
    if len(ids) != 1 or not PAYMENT_IDS[provider].fullmatch(ids[0]):
        raise Rejected(400, "the body does not name a payment (id=...)")
    return ids[0]


def _verify_by_id(provider: str):
    def verify(account, headers, body: bytes) -> Accepted:
        payment_id = named_payment(provider, body)
        if not account.names_our_payment:
            raise Ignored(f"{payment_id} is not a payment of ours")
        # No event id: every call is kept, and the job's fetch makes a repeat harmless.
        return Accepted(subject=f"{provider}:{payment_id}")

    return verify


def _verify_stripe(account, headers, body: bytes) -> Accepted:
    from stripe import SignatureVerificationError  # lazy like the Stripe adapter: the SDK is large

    try:
        event = StripeGateway.verify(body, headers.get("Stripe-Signature"), account.webhook_secret)
    except SignatureVerificationError as exc:
        raise Rejected(401, f"signature: {exc}") from None
    except ValueError as exc:
        raise Rejected(400, f"malformed JSON: {exc}") from None
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise Rejected(422, "not a Stripe event (no id or type)")
    return Accepted(natural_key=str(event["id"]), subject=f"stripe:{StripeGateway.payment_of(event)}")


SOURCES = {
    GatewayAccount.Provider.MOLLIE: Source(name="mollie", job_kind=GATEWAY_EVENT, find=_finder("mollie"),
                                           verify=_verify_by_id("mollie")),
    GatewayAccount.Provider.STRIPE: Source(name="stripe", job_kind=GATEWAY_EVENT, find=_finder("stripe"),
                                           verify=_verify_stripe,
                                           kept_headers=("content-type", "user-agent", "stripe-signature")),
    GatewayAccount.Provider.SANDBOX: Source(name="sandbox", job_kind=GATEWAY_EVENT, find=_finder("sandbox"),
                                            verify=_verify_by_id("sandbox")),
}
