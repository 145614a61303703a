"""Gateway adapters: each turns one provider's API into the same few calls and normalised
answers, so the rest of the code never branches on the provider."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


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


def adapter_for(account):
    # Here, not at the top: each adapter module imports GatewayPayment from this package.
    from payments.gateways.mollie import MollieGateway
    from payments.gateways.sandbox import SandboxGateway
    from payments.gateways.stripe import StripeGateway

    adapters = {"sandbox": SandboxGateway, "mollie": MollieGateway, "stripe": StripeGateway}
    if account.provider not in adapters:
        raise NotImplementedError(f"{account.get_provider_display()} is not connected yet")
    return adapters[account.provider](account)
