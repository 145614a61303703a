"""Stripe through the `stripe` SDK: a Checkout Session per attempt; state arrives in signed
webhook events (Stripe-Signature), which are verified before anything is kept as accepted."""
from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

from django.conf import settings
from django.utils.translation import get_language

from payments.gateways import GatewayError, GatewayPayment, GatewayRefused
from payments.models import CheckoutAttempt

S = CheckoutAttempt.Status
METHODS = {"ideal": "ideal", "card": "card", "sepa_direct_debit": "sepa_debit"}
HANDLED = {"checkout.session.completed", "checkout.session.async_payment_succeeded",
           "checkout.session.async_payment_failed", "checkout.session.expired", "charge.refunded",
           "charge.dispute.created"}


def _money(cents: int | None) -> Decimal:
    return (Decimal(cents or 0) / 100).quantize(Decimal("0.01"))


class StripeGateway:
    def __init__(self, account):
        import stripe  # lazy: the SDK is large and only Stripe accounts need it

        self.account = account
        # The API version is pinned on every request (Stripe-Version), not taken from the account.
        self.client = stripe.StripeClient(account.api_key, base_addresses={"api": settings.STRIPE_API_BASE},
                                          stripe_version=settings.STRIPE_API_VERSION)

    @contextmanager
    def _answers(self):
        """Stripe's errors as ours: a 4xx (but 409, 429) is a refusal, anything else is open."""
        import stripe  # lazy: see __init__

        try:
            yield
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if 400 <= status < 500 and status not in (409, 429):
                raise GatewayRefused(f"Stripe refused: {exc.user_message or exc}", status=status) from exc
            raise GatewayError(f"Stripe: {exc}") from exc

    def create(self, attempt: CheckoutAttempt, *, description: str, redirect_url: str,
               card_token: str = "") -> GatewayPayment:
        back = settings.SITE_URL.rstrip("/") + redirect_url
        with self._answers():
            session = self._create_session(attempt, description=description, back=back)
        return GatewayPayment(provider_payment_id=session.id, status=S.OPEN, amount=_money(session.amount_total),
                              currency=session.currency.upper(), checkout_url=session.url or "",
                              checkout_key=str(attempt.idempotency_key),
                              client_secret=session.client_secret or "")

    def _create_session(self, attempt: CheckoutAttempt, *, description: str, back: str):
        params = {
            "mode": "payment",
            "line_items": [{"price_data": {"currency": attempt.currency.lower(),
                                           "unit_amount": int(attempt.amount * 100),
                                           "product_data": {"name": description}}, "quantity": 1}],
            "payment_method_types": [METHODS[attempt.method]],
            "client_reference_id": str(attempt.idempotency_key),
            "metadata": {"checkout": str(attempt.idempotency_key), "client": str(attempt.client_id)},
            "locale": get_language() or "auto",  # the client's language, as the portal speaks it now
        }
        if attempt.embedded:
            # Stripe replaces {CHECKOUT_SESSION_ID} when it sends the client back.
            params.update(ui_mode="embedded_page", return_url=f"{back}?session_id={{CHECKOUT_SESSION_ID}}")
        else:
            params.update(ui_mode="hosted_page", success_url=back, cancel_url=back)
        return self.client.v1.checkout.sessions.create(params=params,
                                                       options={"idempotency_key": str(attempt.idempotency_key)})

    def session_state(self, session_id: str) -> str:
        """What Stripe says of a session now: "open" (not paid: the client came back without
        finishing, say from a failed iDEAL), "complete" or "expired". For the return page only:
        whether it is paid is the signed webhook's to say."""
        with self._answers():
            return self.client.v1.checkout.sessions.retrieve(session_id).status or ""

    def expire(self, session_id: str) -> None:
        """Close an open session (the client went back to change the amounts): Stripe answers
        with a checkout.session.expired event, which closes the attempt."""
        with self._answers():
            self.client.v1.checkout.sessions.expire(session_id)

    @staticmethod
    def verify_signature(payload: bytes, signature: str | None, secret: str) -> None:
        """Raises SignatureVerificationError unless Stripe signed this body (5 minutes'
        tolerance). The body is parsed by the intake (portal.webhooks.parse_json), not here."""
        import stripe  # lazy: see __init__

        stripe.WebhookSignature.verify_header(payload.decode("utf-8", "replace"), signature or "", secret, 300)

    @staticmethod
    def payment_of(event: dict) -> str:
        """The payment an event is about, so that one payment's events are applied in order:
        the PaymentIntent that sessions (once paid), charges and disputes all name, else the session."""
        item = (event.get("data") or {}).get("object") or {}
        return str(item.get("payment_intent") or item.get("id") or "")

    @staticmethod
    def report(event: dict) -> GatewayPayment | None:
        """What a (verified) event says about a payment, normalised; None for other events."""
        kind, item = event["type"], event["data"]["object"]
        if kind not in HANDLED:
            return None
        if kind.startswith("checkout.session."):
            status = {"checkout.session.completed": S.PAID if item.get("payment_status") == "paid" else S.PENDING,
                      "checkout.session.async_payment_succeeded": S.PAID,
                      "checkout.session.async_payment_failed": S.FAILED,
                      "checkout.session.expired": S.EXPIRED}[kind]
            return GatewayPayment(provider_payment_id=item["id"], status=status, amount=_money(item["amount_total"]),
                                  currency=item["currency"].upper(),
                                  provider_reference=item.get("payment_intent") or "",
                                  checkout_key=item.get("client_reference_id") or "")
        if kind == "charge.refunded":
            return GatewayPayment(provider_payment_id="", status=S.PAID, amount=_money(item["amount"]),
                                  currency=item["currency"].upper(), refunded=_money(item["amount_refunded"]),
                                  provider_reference=item["payment_intent"])
        return GatewayPayment(provider_payment_id="", status=S.PAID, amount=_money(item["amount"]),  # a dispute
                              currency=item["currency"].upper(), charged_back=_money(item["amount"]),
                              provider_reference=item["payment_intent"])
