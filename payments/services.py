"""Paying: start a checkout (once per click), receive gateway webhooks, and apply what the
gateway says exactly once (row lock on the attempt, a unique gateway payment id on Payment)."""
from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from invoices.errors import DomainError
from invoices.models import Invoice, Payment, PaymentAllocation
from invoices.money import round_money
from invoices.services import payment_record, payment_reverse
from payments.gateways import GatewayPayment, adapter_for
from payments.gateways.stripe import StripeGateway
from payments.mandates import mandate_customer_for, mandates_sync
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount, GatewayEvent
from portal.models import AuditEvent
from portal.services import audit_record

log = logging.getLogger(__name__)
Status = CheckoutAttempt.Status
METHODS = {"ideal": Payment.Method.IDEAL, "card": Payment.Method.CARD,
           "sepa_direct_debit": Payment.Method.SEPA_DIRECT_DEBIT}


def gateway_for_brand(brand) -> GatewayAccount | None:
    """The brand's enabled gateway; in development a sandbox one is made when there is none."""
    account = GatewayAccount.objects.filter(brand=brand, enabled=True).order_by("provider").first()
    if account is None and not settings.PRODUCTION:
        account, _ = GatewayAccount.objects.get_or_create(
            brand=brand, provider=GatewayAccount.Provider.SANDBOX,
            defaults={"ideal": True, "card": True, "sepa_direct_debit": True, "allow_partial": True})
    return account


def _checked_items(*, client, gateway, requested: list[tuple[Invoice, Decimal]]) -> tuple[list, str]:
    if not requested:
        raise DomainError("choose at least one invoice to pay")
    currencies = {invoice.currency for invoice, _ in requested}
    if len(currencies) != 1:
        raise DomainError("invoices in different currencies are paid separately")
    items = []
    for invoice, amount in requested:
        amount = round_money(amount)
        if invoice.client_id != client.pk or invoice.status not in Invoice.PAYABLE or invoice.open_balance <= 0:
            raise DomainError(f"invoice {invoice} cannot be paid")
        if amount > invoice.open_balance:
            raise DomainError(f"invoice {invoice}: {amount} is more than the open balance {invoice.open_balance}")
        if amount < invoice.open_balance:
            if not gateway.allow_partial:
                raise DomainError(f"invoice {invoice}: only the full open balance can be paid")
            if amount < gateway.partial_minimum:
                raise DomainError(f"invoice {invoice}: a part payment is at least {gateway.partial_minimum}")
        items.append((invoice, amount))
    return items, currencies.pop()


def checkout_start(*, client, user, requested: list[tuple[Invoice, Decimal]], method: str,
                   idempotency_key: uuid.UUID, wants_mandate: bool = False) -> CheckoutAttempt:
    """Start paying (or, for a key already used, return that same attempt: a second click
    never creates a second charge). The gateway is called after the attempt is committed."""
    existing = CheckoutAttempt.objects.filter(idempotency_key=idempotency_key, client=client).first()
    if existing is not None:
        return existing
    gateway = gateway_for_brand(client.brand)
    if gateway is None:
        raise DomainError("online payment is not available")
    if method not in gateway.methods():
        raise DomainError(f"{method} is not offered")
    customer = ""
    if wants_mandate:
        if gateway.provider != GatewayAccount.Provider.MOLLIE or not gateway.sepa_direct_debit:
            raise DomainError("automatic direct debit is not offered")
        customer = mandate_customer_for(client=client, gateway=gateway, user=user)
    with transaction.atomic():
        invoices = {i.pk: i for i in Invoice.objects.select_for_update().filter(pk__in=[i.pk for i, _ in requested])}
        items, currency = _checked_items(client=client, gateway=gateway,
                                         requested=[(invoices[i.pk], amount) for i, amount in requested])
        try:
            with transaction.atomic():
                attempt = CheckoutAttempt.objects.create(
                    client=client, gateway=gateway, user=user, idempotency_key=idempotency_key, method=method,
                    amount=sum(amount for _, amount in items), currency=currency, wants_mandate=wants_mandate,
                    provider_customer_id=customer)
        except IntegrityError:
            return CheckoutAttempt.objects.get(idempotency_key=idempotency_key)
        CheckoutItem.objects.bulk_create(CheckoutItem(client=client, attempt=attempt, invoice=invoice, amount=amount)
                                         for invoice, amount in items)
    numbers = ", ".join(invoice.number for invoice, _ in items)
    created = adapter_for(gateway).create(
        attempt, description=f"{client.brand.name}: {numbers}"[:250],
        redirect_url=reverse("payments:return", args=[attempt.idempotency_key]))
    with transaction.atomic():
        CheckoutAttempt.objects.filter(pk=attempt.pk).update(
            provider_payment_id=created.provider_payment_id, checkout_url=created.checkout_url,
            status=created.status)
        audit_record(action=AuditEvent.Action.CHECKOUT_STARTED, actor=user, client=client, obj=attempt,
                     details={"amount": str(attempt.amount), "currency": currency, "invoices": numbers,
                              "gateway": gateway.provider, "method": method})
    attempt.refresh_from_db()
    return attempt


def gateway_webhook_receive(*, gateway: GatewayAccount, body: str, headers: str = "") -> GatewayEvent:
    """Keep the webhook (encrypted) and hand it to a worker; the caller answers at once."""
    from payments.tasks import process_gateway_event  # here: payments.tasks imports this module

    provider_payment_id = ""
    for part in body.split("&"):
        key, _, value = part.partition("=")
        if key == "id":
            provider_payment_id = value[:100]
    event = GatewayEvent.objects.create(gateway=gateway, body=body, headers=headers,
                                        provider_payment_id=provider_payment_id)
    transaction.on_commit(lambda: process_gateway_event.delay(event.pk), robust=True)
    return event


def stripe_webhook_receive(*, gateway: GatewayAccount, payload: bytes, signature: str | None) -> tuple[int, dict]:
    """Verify Stripe's signature on the raw bytes, then keep the event once (by its id).
    A bad signature is kept too, as rejected, and answered 400 with the reason."""
    from stripe import SignatureVerificationError  # lazy like the Stripe adapter: the SDK is large

    from payments.tasks import process_gateway_event  # here: payments.tasks imports this module

    text = payload.decode("utf-8", "replace")
    try:
        event = StripeGateway.verify(payload, signature, gateway.webhook_secret)
    except (SignatureVerificationError, ValueError) as exc:
        GatewayEvent.objects.create(gateway=gateway, body=text, headers=signature or "",
                                    status=GatewayEvent.Status.REJECTED, error=str(exc)[:2000])
        return 400, {"error": f"signature: {exc}"}
    try:
        with transaction.atomic():
            stored = GatewayEvent.objects.create(gateway=gateway, body=text, headers=signature or "",
                                                 event_key=str(event.get("id", ""))[:100])
    except IntegrityError:
        return 200, {"status": "duplicate"}
    transaction.on_commit(lambda: process_gateway_event.delay(stored.pk), robust=True)
    return 200, {"status": "accepted"}


def gateway_event_process(*, event_id: int) -> str:
    event = GatewayEvent.objects.select_related("gateway").get(pk=event_id)
    if event.status == GatewayEvent.Status.PROCESSED:
        return event.status
    if event.gateway.provider == GatewayAccount.Provider.STRIPE:
        reported = StripeGateway.report(json.loads(event.body))  # verified when it arrived
    else:
        # Ask the gateway what is true now (the webhook only says "look at payment X").
        reported = adapter_for(event.gateway).fetch(event.provider_payment_id)
    if reported is not None:
        checkout_apply(gateway=event.gateway, reported=reported)
    GatewayEvent.objects.filter(pk=event.pk).update(status=GatewayEvent.Status.PROCESSED, processed_at=timezone.now(),
                                                    attempts=event.attempts + 1)
    return GatewayEvent.Status.PROCESSED


@transaction.atomic
def checkout_apply(*, gateway: GatewayAccount, reported: GatewayPayment) -> CheckoutAttempt:
    """Move the attempt to what the gateway reports and, once paid, record the payment once.
    Out-of-order news (pending after paid) changes nothing; a paid amount or currency that
    differs from the attempt is flagged for staff and not applied."""
    attempts = CheckoutAttempt.objects.select_for_update().select_related("client", "gateway")
    attempt = (attempts.get(gateway=gateway, provider_payment_id=reported.provider_payment_id)
               if reported.provider_payment_id else
               attempts.get(gateway=gateway, provider_reference=reported.provider_reference))
    if reported.provider_reference and not attempt.provider_reference:
        attempt.provider_reference = reported.provider_reference
        attempt.save(update_fields=["provider_reference", "updated_at"])
    if reported.status != attempt.status and reported.status in CheckoutAttempt.TRANSITIONS[attempt.status]:
        previous = attempt.status
        attempt.status = reported.status
        attempt.save(update_fields=["status", "updated_at"])
        audit_record(action=AuditEvent.Action.CHECKOUT_STATUS, client=attempt.client, obj=attempt,
                     details={"from": previous, "to": reported.status, "gateway": gateway.provider})
    if attempt.payment_id:
        _reverse_what_the_gateway_took_back(attempt, reported)
    if attempt.status != Status.PAID or attempt.payment_id or attempt.flagged:
        return attempt
    if (reported.amount, reported.currency) != (attempt.amount, attempt.currency):
        attempt.flagged = (f"the gateway reports {reported.currency} {reported.amount}, the checkout was for "
                           f"{attempt.currency} {attempt.amount}")
        attempt.save(update_fields=["flagged", "updated_at"])
        audit_record(action=AuditEvent.Action.CHECKOUT_FLAGGED, client=attempt.client, obj=attempt,
                     details={"reason": attempt.flagged})
        return attempt
    payment, _ = payment_record(
        client=attempt.client, amount=reported.amount, currency=reported.currency, source=Payment.Source.GATEWAY,
        method=METHODS.get(attempt.method, Payment.Method.OTHER), received_at=timezone.now(),
        reference=attempt.provider_payment_id,
        allocations=[(item.invoice, item.amount) for item in attempt.items.select_related("invoice")],
        gateway_payment_id=f"{gateway.provider}:{gateway.pk}:{attempt.provider_payment_id}")
    attempt.payment = payment
    attempt.save(update_fields=["payment", "updated_at"])
    _reverse_what_the_gateway_took_back(attempt, reported)
    if attempt.wants_mandate:
        mandates_sync(attempt=attempt)
    return attempt


def _reverse_what_the_gateway_took_back(attempt: CheckoutAttempt, reported: GatewayPayment) -> None:
    """Refunds and chargebacks found on the payment reopen the balance, once each: only the
    part not reversed before is reversed now, invoice by invoice."""
    for kind, total in ((PaymentAllocation.Kind.REFUND, reported.refunded),
                        (PaymentAllocation.Kind.CHARGEBACK, reported.charged_back)):
        done = -sum(attempt.payment.allocations.filter(kind=kind).values_list("amount", flat=True), Decimal("0"))
        todo = round_money(total) - done
        for item in attempt.items.select_related("invoice").order_by("-id"):
            if todo <= 0:
                break
            on_invoice = sum(attempt.payment.allocations.filter(invoice=item.invoice)
                             .values_list("amount", flat=True), Decimal("0"))
            share = min(todo, on_invoice)
            if share > 0:
                payment_reverse(payment=attempt.payment, invoice=item.invoice, amount=share, kind=kind)
                todo -= share
