"""Gateway adapters: each turns one provider's API into the same few calls and normalised
answers, so the rest of the code never branches on the provider."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

# Keys we send to a gateway for work of our own (a collection, a customer, a revocation) are
# uuid5(this, what the work is), so a retry, a rerun or a second worker sends the same key.
IDEMPOTENCY_NAMESPACE = uuid.UUID("402ed689-b1d5-52ed-9492-635d1ac30a2e")


def idempotency_key_for(purpose: str) -> uuid.UUID:
    """The idempotency key for one piece of work, e.g. `collect:<invoice>:<due date>`."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, purpose)


@dataclass(frozen=True)
class GatewayPayment:
    """A payment as the gateway reports it, normalised (status is a CheckoutAttempt.Status)."""

    provider_payment_id: str
    status: str
    amount: Decimal
    currency: str
    checkout_url: str = ""
    refunded: Decimal = Decimal("0.00")
    charged_back: Decimal = Decimal("0.00")
    provider_reference: str = ""  # Stripe: the PaymentIntent, which refunds and disputes name
    checkout_key: str = ""  # the attempt's idempotency key, as we sent it along (metadata, reference)
    client_secret: str = ""  # Stripe's embedded checkout: what its script opens the session with
    failure: str = ""  # why the gateway failed it at once (a declined card), in the gateway's words


class PaymentNotFound(Exception):
    """The gateway knows no payment by that id (a webhook naming one that is not ours)."""


class GatewayError(Exception):
    """The gateway could not be reached, or did not say whether it did the work: try again
    (with the same idempotency key)."""


class GatewayRefused(GatewayError):
    """The gateway refused the call as such (say, no valid mandate): trying again cannot help.
    `field` names the parameter the gateway objected to, where it said."""

    def __init__(self, message: str, *, field: str = "", status: int = 0):
        super().__init__(message)
        self.field, self.status = field, status


class MandatesNotAllowed(GatewayRefused):
    """The merchant's account may not create mandates through the API (a first payment signs one)."""


def adapter_for(account):
    # Here, not at the top: each adapter module imports GatewayPayment from this package.
    from payments.gateways.mollie import MollieGateway
    from payments.gateways.sandbox import SandboxGateway
    from payments.gateways.stripe import StripeGateway

    adapters = {"sandbox": SandboxGateway, "mollie": MollieGateway, "stripe": StripeGateway}
    if account.provider not in adapters:
        raise NotImplementedError(f"{account.get_provider_display()} is not connected yet")
    return adapters[account.provider](account)
