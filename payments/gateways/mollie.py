"""Mollie through mollie-api-python. The webhook only names a payment id; we fetch the payment
and map its status. `authorized` is not paid; only `paid` is money."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.urls import reverse

from payments.gateways import GatewayPayment
from payments.models import CheckoutAttempt

METHODS = {"ideal": "ideal", "card": "creditcard", "sepa_direct_debit": "directdebit"}
STATUSES = {"open": CheckoutAttempt.Status.OPEN, "pending": CheckoutAttempt.Status.PENDING,
            "authorized": CheckoutAttempt.Status.PENDING, "paid": CheckoutAttempt.Status.PAID,
            "canceled": CheckoutAttempt.Status.CANCELED, "expired": CheckoutAttempt.Status.EXPIRED,
            "failed": CheckoutAttempt.Status.FAILED}


class MollieGateway:
    def __init__(self, account):
        from mollie.api.client import Client  # lazy: only Mollie accounts need the SDK

        self.account = account
        self.client = Client(api_endpoint=settings.MOLLIE_API_ENDPOINT)
        self.client.set_api_key(account.api_key)

    def create(self, attempt: CheckoutAttempt, *, description: str, redirect_url: str) -> GatewayPayment:
        site = settings.SITE_URL.rstrip("/")
        data = {
            "amount": {"currency": attempt.currency, "value": f"{attempt.amount:.2f}"},
            "description": description,
            "redirectUrl": site + redirect_url,
            "webhookUrl": site + reverse("payments:webhook", args=[self.account.pk]),
            "method": METHODS[attempt.method],
            "metadata": {"checkout": str(attempt.idempotency_key), "client": attempt.client_id},
        }
        if attempt.wants_mandate:
            # Mollie's first payment: paid by iDEAL (or card), it also signs a SEPA mandate.
            data.update(sequenceType="first", customerId=attempt.provider_customer_id)
        payment = self.client.payments.create(data, idempotency_key=str(attempt.idempotency_key))
        return self._normalise(payment, checkout_url=payment.checkout_url or "")

    def customer(self, *, name: str, email: str, client_id: int) -> str:
        return self.client.customers.create({"name": name, "email": email, "metadata": {"client": client_id}}).id

    def mandates(self, customer_id: str) -> list[dict]:
        customer = self.client.customers.get(customer_id)
        return [dict(m) for m in customer.mandates.list()]

    def revoke_mandate(self, customer_id: str, mandate_id: str) -> None:
        self.client.customers.get(customer_id).mandates.delete(mandate_id)

    def collect(self, attempt: CheckoutAttempt, *, mandate_id: str, description: str) -> GatewayPayment:
        """A recurring payment on a mandate: a SEPA direct debit, pending until the bank settles."""
        site = settings.SITE_URL.rstrip("/")
        payment = self.client.payments.create({
            "amount": {"currency": attempt.currency, "value": f"{attempt.amount:.2f}"},
            "description": description, "sequenceType": "recurring", "customerId": attempt.provider_customer_id,
            "mandateId": mandate_id, "webhookUrl": site + reverse("payments:webhook", args=[self.account.pk]),
            "metadata": {"checkout": str(attempt.idempotency_key), "client": attempt.client_id},
        }, idempotency_key=str(attempt.idempotency_key))
        return self._normalise(payment)

    def fetch(self, provider_payment_id: str) -> GatewayPayment:
        return self._normalise(self.client.payments.get(provider_payment_id))

    @staticmethod
    def _normalise(payment, checkout_url: str = "") -> GatewayPayment:
        def amount(name):
            value = payment.get(name) if hasattr(payment, "get") else None
            return Decimal(value["value"]) if value else Decimal("0.00")

        return GatewayPayment(provider_payment_id=payment.id, status=STATUSES[payment.status],
                              amount=Decimal(payment.amount["value"]), currency=payment.amount["currency"],
                              checkout_url=checkout_url, refunded=amount("amountRefunded"),
                              charged_back=amount("amountChargedBack"))
