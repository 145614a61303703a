"""Mollie through mollie-api-python. The webhook only names a payment id; we fetch the payment
and map its status. `authorized` is not paid; only `paid` is money. Every create carries an
idempotency key we derive (never one made at call time), and a collection whose answer was lost
is found again among the customer's payments by the key in its metadata."""
from __future__ import annotations

import datetime
import uuid
from contextlib import contextmanager
from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.translation import get_language
from mollie.api.client import Client
from mollie.api.error import Error, IdentifierError, NotFoundError, ResponseError
from mollie.api.objects.customer import Customer

from payments.gateways import GatewayError, GatewayPayment, GatewayRefused, MandatesNotAllowed, PaymentNotFound
from payments.models import CheckoutAttempt

METHODS = {"ideal": "ideal", "card": "creditcard", "sepa_direct_debit": "directdebit"}
STATUSES = {"open": CheckoutAttempt.Status.OPEN, "pending": CheckoutAttempt.Status.PENDING,
            "authorized": CheckoutAttempt.Status.PENDING, "paid": CheckoutAttempt.Status.PAID,
            "canceled": CheckoutAttempt.Status.CANCELED, "expired": CheckoutAttempt.Status.EXPIRED,
            "failed": CheckoutAttempt.Status.FAILED}
LOCALES = {"nl": "nl_NL", "en": "en_US"}  # Mollie's locales for its pages, by the portal's language
LIST_PAGE = 250  # the most Mollie lists at once
TRY_AGAIN = {409, 429}  # 4xx that are not a refusal: the same key still in progress, too many requests


@contextmanager
def _answers():
    """Mollie's errors as ours: a 4xx is a refusal (GatewayRefused), anything else (5xx, no
    answer, a timeout) leaves the outcome open (GatewayError)."""
    try:
        yield
    except ResponseError as exc:
        if 400 <= (exc.status or 0) < 500 and exc.status not in TRY_AGAIN:
            raise GatewayRefused(f"Mollie refused: {exc}", field=exc.field or "", status=exc.status) from exc
        raise GatewayError(f"Mollie: {exc}") from exc
    except Error as exc:
        raise GatewayError(f"Mollie: {exc}") from exc


class MollieGateway:
    def __init__(self, account):
        self.account = account
        self.client = Client(api_endpoint=settings.MOLLIE_API_ENDPOINT)
        self.client.set_api_key(account.api_key)

    def _customer(self, customer_id: str):
        """The customer as the SDK's parent object, without asking Mollie for it first."""
        return Customer({"id": customer_id}, self.client)

    def _webhook_url(self) -> str:
        return settings.SITE_URL.rstrip("/") + reverse("payments:webhook", args=["mollie", self.account.pk])

    @staticmethod
    def _metadata(attempt: CheckoutAttempt) -> dict:
        return {"checkout": str(attempt.idempotency_key), "client": attempt.client_id}

    def create(self, attempt: CheckoutAttempt, *, description: str, redirect_url: str,
               card_token: str = "") -> GatewayPayment:
        """A payment the client completes at `_links.checkout` (the hosted checkout, the bank for
        iDEAL, or the issuer's 3-D Secure step). With a card token from Mollie Components the
        card is charged at once: Mollie answers paid or failed, or a 3-D Secure checkout link."""
        data = {
            "amount": {"currency": attempt.currency, "value": f"{attempt.amount:.2f}"},
            "description": description,
            "redirectUrl": settings.SITE_URL.rstrip("/") + redirect_url,
            "webhookUrl": self._webhook_url(),
            "method": METHODS[attempt.method],
            "metadata": self._metadata(attempt),
            "locale": LOCALES.get(get_language() or "", "en_US"),
        }
        if card_token:
            data["cardToken"] = card_token
        if attempt.wants_mandate:
            # Mollie's first payment: paid by iDEAL (or card), it also signs a SEPA mandate.
            data.update(sequenceType="first", customerId=attempt.provider_customer_id)
        with _answers():
            payment = self.client.payments.create(data, idempotency_key=str(attempt.idempotency_key))
        return self._normalise(payment, checkout_url=payment.checkout_url or "")

    def mandate_create(self, customer_id: str, *, holder: str, iban: str, signed_on: datetime.date,
                       reference: str, idempotency_key: uuid.UUID) -> dict:
        """A SEPA direct-debit mandate the client signed in the portal (Mollie's Mandates API).
        MandatesNotAllowed where the account may not create them; GatewayRefused (with the
        field) for what Mollie will not take, such as an IBAN it rejects."""
        with _answers():
            try:
                mandate = self._customer(customer_id).mandates.create({
                    "method": "directdebit", "consumerName": holder, "consumerAccount": iban,
                    "signatureDate": signed_on.isoformat(), "mandateReference": reference,
                }, idempotency_key=str(idempotency_key))
            except ResponseError as exc:
                if exc.status in (401, 403):
                    raise MandatesNotAllowed(f"Mollie refused: {exc}", status=exc.status) from exc
                raise
        return dict(mandate)

    def customer(self, *, name: str, email: str, client_id: int, idempotency_key: uuid.UUID) -> str:
        with _answers():
            return self.client.customers.create({"name": name, "email": email, "metadata": {"client": client_id}},
                                                idempotency_key=str(idempotency_key)).id

    def mandates(self, customer_id: str) -> list[dict]:
        with _answers():
            return [dict(m) for m in self._customer(customer_id).mandates.list()]

    def revoke_mandate(self, customer_id: str, mandate_id: str, *, idempotency_key: uuid.UUID) -> None:
        with _answers():
            try:
                self._customer(customer_id).mandates.delete(mandate_id, idempotency_key=str(idempotency_key))
            except NotFoundError:
                pass  # gone at Mollie already: revoked is what we wanted

    def collect(self, attempt: CheckoutAttempt, *, mandate_id: str, description: str) -> GatewayPayment:
        """A recurring payment on a mandate: a SEPA direct debit, pending until the bank settles."""
        with _answers():
            payment = self.client.payments.create({
                "amount": {"currency": attempt.currency, "value": f"{attempt.amount:.2f}"},
                "description": description, "sequenceType": "recurring", "customerId": attempt.provider_customer_id,
                "mandateId": mandate_id, "webhookUrl": self._webhook_url(), "metadata": self._metadata(attempt),
            }, idempotency_key=str(attempt.idempotency_key))
        return self._normalise(payment)

    def find_made_for(self, attempt: CheckoutAttempt) -> GatewayPayment | None:
        """The payment Mollie made for this attempt, if any: its customer's payments, newest
        first, searched for the attempt's key in the metadata, back to a day before the attempt
        (for a create whose answer was lost, after Mollie forgot the idempotency key)."""
        since = attempt.created_at - datetime.timedelta(days=1)
        with _answers():
            page = self._customer(attempt.provider_customer_id).payments.list(limit=LIST_PAGE)
            while page is not None:
                for payment in page:
                    metadata = payment.metadata if isinstance(payment.metadata, dict) else {}
                    if metadata.get("checkout") == str(attempt.idempotency_key):
                        return self._normalise(payment)
                    created = parse_datetime(payment.created_at or "")
                    if created is not None and created < since:
                        return None
                page = page.get_next() if page.has_next() else None
        return None

    def fetch(self, provider_payment_id: str) -> GatewayPayment:
        with _answers():  # a refusal (say, a revoked API key) is GatewayRefused, an outage GatewayError
            try:
                return self._normalise(self.client.payments.get(provider_payment_id))
            except (NotFoundError, IdentifierError) as exc:
                raise PaymentNotFound(provider_payment_id) from exc

    @staticmethod
    def _normalise(payment, checkout_url: str = "") -> GatewayPayment:
        def amount(name):
            value = payment.get(name) if hasattr(payment, "get") else None
            return Decimal(value["value"]) if value else Decimal("0.00")

        metadata = payment.metadata if isinstance(payment.metadata, dict) else {}
        details = payment.get("details") if hasattr(payment, "get") else None
        details = details if isinstance(details, dict) else {}
        return GatewayPayment(provider_payment_id=payment.id, status=STATUSES[payment.status],
                              amount=Decimal(payment.amount["value"]), currency=payment.amount["currency"],
                              checkout_url=checkout_url, refunded=amount("amountRefunded"),
                              charged_back=amount("amountChargedBack"),
                              checkout_key=str(metadata.get("checkout") or ""),
                              failure=str(details.get("failureReason") or "")[:200])
