"""The built-in sandbox gateway: a local checkout page where you choose what happens (paid,
failed, cancelled, pending), so development and demos pay without keys or network."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from payments.gateways import GatewayPayment, PaymentNotFound
from payments.models import CheckoutAttempt, SandboxPayment
from portal.rls import staff_scope

STATUSES = {"open": CheckoutAttempt.Status.OPEN, "pending": CheckoutAttempt.Status.PENDING,
            "paid": CheckoutAttempt.Status.PAID, "failed": CheckoutAttempt.Status.FAILED,
            "canceled": CheckoutAttempt.Status.CANCELED, "expired": CheckoutAttempt.Status.EXPIRED}


class SandboxGateway:
    def __init__(self, account):
        if settings.PRODUCTION:
            raise ImproperlyConfigured("the sandbox gateway is for development only")
        self.account = account

    def create(self, attempt: CheckoutAttempt, *, description: str, redirect_url: str) -> GatewayPayment:
        # Idempotent on the attempt's key, as a real gateway is: the same key, the same payment.
        # The sandbox's rows are the gateway's side, in no client's scope (row-level security).
        with staff_scope():
            payment, _ = SandboxPayment.objects.get_or_create(
                provider_payment_id=f"sb_{uuid.uuid5(attempt.idempotency_key, 'sandbox').hex}",
                defaults={"amount": attempt.amount, "currency": attempt.currency, "description": description,
                          "redirect_url": redirect_url})
        return self._normalise(payment, checkout_url=reverse("payments:sandbox_checkout",
                                                             args=[payment.provider_payment_id]))

    def fetch(self, provider_payment_id: str) -> GatewayPayment:
        with staff_scope():
            payment = SandboxPayment.objects.filter(provider_payment_id=provider_payment_id).first()
        if payment is None:
            raise PaymentNotFound(provider_payment_id)
        return self._normalise(payment)

    @staticmethod
    def _normalise(payment: SandboxPayment, checkout_url: str = "") -> GatewayPayment:
        return GatewayPayment(provider_payment_id=payment.provider_payment_id, status=STATUSES[payment.status],
                              amount=payment.amount, currency=payment.currency, checkout_url=checkout_url)
