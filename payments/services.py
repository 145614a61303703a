"""Paying: start a checkout (once per click), process what a gateway's webhook announces, and
apply what the gateway says exactly once (row lock on the attempt, a unique gateway payment id
on Payment). A gateway is only ever called with no transaction open: what the call needs is read
in one short transaction, and what it answered is recorded in another."""
from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from invoices.errors import DomainError
from invoices.models import Invoice, Payment, PaymentAllocation
from invoices.money import round_money
from invoices.services import invoice_pending_set, payment_record, payment_reverse
from payments.gateways import (GatewayError, GatewayPayment, GatewayRefused, PaymentNotFound, adapter_for,
                               idempotency_key_for)
from payments.gateways.stripe import StripeGateway
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount, Mandate
from payments.webhooks import named_payment, remember_not_ours
from portal.jobs import job_enqueue
from portal.formatting import format_money
from portal.models import AuditEvent, WebhookRequest
from portal.rls import staff_scope
from portal.services import audit_record

log = logging.getLogger(__name__)
Status = CheckoutAttempt.Status
METHODS = {"ideal": Payment.Method.IDEAL, "card": Payment.Method.CARD,
           "sepa_direct_debit": Payment.Method.SEPA_DIRECT_DEBIT}
MANDATE_SYNC = "mandate.sync"


def gateway_for_brand(brand) -> GatewayAccount | None:
    """The brand's enabled gateway; in development a sandbox one is made when there is none."""
    account = GatewayAccount.objects.filter(brand=brand, enabled=True).order_by("provider").first()
    if account is None and not settings.PRODUCTION:
        with staff_scope():  # setting up a gateway is back office's work, even the sandbox's
            account, _ = GatewayAccount.objects.get_or_create(
                brand=brand, provider=GatewayAccount.Provider.SANDBOX,
                defaults={"ideal": True, "card": True, "sepa_direct_debit": True, "allow_partial": True})
    return account


class AmountRefused(DomainError):
    """An amount the checkout cannot take for one invoice (the message is for the client)."""

    def __init__(self, invoice: Invoice, message: str):
        self.invoice = invoice
        super().__init__(message)


def amount_problem(*, invoice: Invoice, gateway: GatewayAccount, amount: Decimal) -> str | None:
    """Why this amount cannot be paid on this invoice now, in the client's words (None: it can).
    The one rule the checkout form and checkout_start both apply: above zero, never above what
    is payable now (the open balance less what is pending), and a part payment at least the
    gateway's minimum, where part payments are allowed at all."""
    currency, number = invoice.currency, invoice.number
    payable = invoice.payable_balance
    if payable <= 0:
        if invoice.amount_pending > 0 and invoice.status in Invoice.PAYABLE:
            return gettext("A payment of %(amount)s for invoice %(number)s is pending. You can pay again if it "
                           "fails.") % {"amount": format_money(invoice.amount_pending, currency), "number": number}
        return gettext("Invoice %(number)s has nothing left to pay.") % {"number": number}
    if amount <= 0:
        return gettext("Enter an amount above zero.")
    if amount > payable:
        if invoice.amount_pending > 0:
            return gettext("At most %(amount)s can be paid now: %(pending)s is already pending.") % {
                "amount": format_money(payable, currency), "pending": format_money(invoice.amount_pending, currency)}
        return gettext("At most %(amount)s is open on invoice %(number)s.") % {
            "amount": format_money(payable, currency), "number": number}
    if amount < payable:
        if not gateway.allow_partial:
            return gettext("Invoice %(number)s can only be paid in full (%(amount)s).") % {
                "number": number, "amount": format_money(payable, currency)}
        if amount < gateway.partial_minimum:
            return gettext("A part payment is at least %(minimum)s (or pay the whole %(amount)s).") % {
                "minimum": format_money(gateway.partial_minimum, currency), "amount": format_money(payable, currency)}
    return None


def _checked_items(*, client, gateway, requested: list[tuple[Invoice, Decimal]]) -> tuple[list, str]:
    if not requested:
        raise DomainError(gettext("Choose at least one invoice to pay."))
    currencies = {invoice.currency for invoice, _ in requested}
    if len(currencies) != 1:
        raise DomainError(gettext("Invoices in different currencies are paid separately."))
    items = []
    for invoice, amount in requested:
        amount = round_money(amount)
        if invoice.client_id != client.pk or invoice.status not in Invoice.PAYABLE:
            raise AmountRefused(invoice, gettext("Invoice %(number)s cannot be paid.") % {"number": invoice.number})
        problem = amount_problem(invoice=invoice, gateway=gateway, amount=amount)
        if problem:
            raise AmountRefused(invoice, problem)
        items.append((invoice, amount))
    return items, currencies.pop()


def _pending_refresh(invoice_ids) -> None:
    """Write each invoice's pending amount again from the attempts now in PENDING, under the
    invoice's row lock (taken in id order, after the attempt changed, in its transaction): two
    attempts that change at once are counted one after the other, never one over the other."""
    for invoice in Invoice.objects.select_for_update().filter(pk__in=set(invoice_ids)).order_by("pk"):
        pending = CheckoutItem.objects.filter(invoice=invoice, attempt__status=Status.PENDING)
        total = pending.aggregate(total=Sum("amount"))["total"] or Decimal("0.00")
        latest = pending.select_related("attempt").order_by("-attempt__created_at", "-id").first()
        invoice_pending_set(invoice=invoice, amount=total, method=latest.attempt.method if latest else "",
                            since=latest.attempt.created_at if latest else None)


def _attempt_status_set(attempt: CheckoutAttempt, to: str) -> None:
    """Move a locked attempt to a new status; entering or leaving PENDING moves its invoices'
    pending amounts with it, in this same transaction."""
    previous = attempt.status
    attempt.status = to
    attempt.save(update_fields=["status", "updated_at"])
    if Status.PENDING in (previous, to) and previous != to:
        _pending_refresh(attempt.items.values_list("invoice_id", flat=True))


def mandate_customer_for(*, client, gateway: GatewayAccount) -> str:
    """The client's Mollie customer (one per client and gateway), made when first needed. Its
    key is the client's, so two first payments at once make one customer."""
    known = (Mandate.objects.filter(client=client, gateway=gateway)
             .values_list("provider_customer_id", flat=True).first())
    known = known or CheckoutAttempt.objects.filter(client=client, gateway=gateway).exclude(
        provider_customer_id="").values_list("provider_customer_id", flat=True).first()
    return known or adapter_for(gateway).customer(
        name=client.name, email=client.billing_email, client_id=client.pk,
        idempotency_key=idempotency_key_for(f"customer:{gateway.pk}:{client.pk}"))


def checkout_start(*, client, user, requested: list[tuple[Invoice, Decimal]], method: str,
                   idempotency_key: uuid.UUID, wants_mandate: bool = False, embedded: bool = False,
                   card_token: str = "", mandate: Mandate | None = None) -> CheckoutAttempt:
    """Start paying (or, for a key already used, return that same attempt: a second click
    never creates a second charge). The attempt is committed before the gateway is called.
    `embedded`: the gateway's form in the portal's page (Stripe: an embedded_page session);
    `card_token`: Mollie Components' token for the card typed in the page; `mandate`: a SEPA
    direct debit on a mandate the client just signed in the portal."""
    attempt = _attempt_for_key(client=client, idempotency_key=idempotency_key)
    if attempt is None:
        attempt = _checkout_attempt_create(client=client, user=user, requested=requested, method=method,
                                           idempotency_key=idempotency_key, wants_mandate=wants_mandate,
                                           embedded=embedded, mandate=mandate)
    return _checkout_open(attempt, user=user, card_token=card_token)


def _attempt_for_key(*, client, idempotency_key) -> CheckoutAttempt | None:
    return CheckoutAttempt.objects.filter(idempotency_key=idempotency_key, client=client).first()


def _checkout_attempt_create(*, client, user, requested, method, idempotency_key, wants_mandate, embedded,
                             mandate) -> CheckoutAttempt:
    gateway = gateway_for_brand(client.brand)
    if gateway is None:
        raise DomainError(gettext("Online payment is not available."))
    if method not in gateway.methods():
        raise DomainError(gettext("This payment method is not offered."))
    customer = ""
    if mandate is not None:
        if mandate.client_id != client.pk or mandate.gateway_id != gateway.pk or mandate.status != Mandate.Status.VALID:
            raise DomainError(gettext("There is no valid direct-debit mandate to collect with."))
        customer = mandate.provider_customer_id
    elif wants_mandate:
        if gateway.provider != GatewayAccount.Provider.MOLLIE or not gateway.sepa_direct_debit:
            raise DomainError(gettext("Automatic direct debit is not offered."))
        customer = mandate_customer_for(client=client, gateway=gateway)
    with transaction.atomic():
        invoices = {i.pk: i for i in Invoice.objects.select_for_update().filter(pk__in=[i.pk for i, _ in requested])}
        items, currency = _checked_items(client=client, gateway=gateway,
                                         requested=[(invoices[i.pk], amount) for i, amount in requested])
        try:
            with transaction.atomic():
                attempt = CheckoutAttempt.objects.create(
                    client=client, gateway=gateway, user=user, idempotency_key=idempotency_key, method=method,
                    amount=sum(amount for _, amount in items), currency=currency, wants_mandate=wants_mandate,
                    provider_customer_id=customer, embedded=embedded and gateway.embeds, mandate=mandate)
        except IntegrityError:  # the same click, twice at once: the other one made it
            attempt = _attempt_for_key(client=client, idempotency_key=idempotency_key)
            if attempt is None:  # a key another client's attempt holds (and this scope cannot see)
                raise DomainError(gettext("This payment form has expired. Please reload the page and try again."))
            return attempt
        CheckoutItem.objects.bulk_create(CheckoutItem(client=client, attempt=attempt, invoice=invoice, amount=amount)
                                         for invoice, amount in items)
    return attempt


def _checkout_open(attempt: CheckoutAttempt, *, user, card_token: str = "") -> CheckoutAttempt:
    """Ask the gateway for the payment (no transaction open) and record its answer. An attempt
    the gateway has answered for already is returned as it is; one whose call failed is asked
    for again with the same key, so the gateway makes one payment however often this runs.
    A refusal (a card token Mollie will not take, say) closes the attempt as failed."""
    if attempt.provider_payment_id or attempt.status != Status.CREATED:
        return attempt
    gateway = attempt.gateway
    numbers = ", ".join(attempt.items.order_by("id").values_list("invoice__number", flat=True))
    description = f"{attempt.client.brand.name}: {numbers}"[:250]
    adapter = adapter_for(gateway)
    try:
        if attempt.mandate_id:
            created = adapter.collect(attempt, mandate_id=attempt.mandate.provider_mandate_id, description=description)
        else:
            created = adapter.create(attempt, description=description,
                                     redirect_url=reverse("payments:return", args=[attempt.idempotency_key]),
                                     **({"card_token": card_token} if card_token else {}))
    except GatewayRefused as exc:
        log.warning("checkout %s refused: %s", attempt.pk, exc)
        _attempt_refused(attempt, str(exc))
        if card_token:
            raise CardRefused(gettext("Your card details could not be used. Please enter them again.")) from exc
        raise DomainError(gettext("The payment provider did not accept this payment. Please try again or "
                                  "choose another way to pay.")) from exc
    except GatewayError as exc:
        log.warning("checkout %s: %s", attempt.pk, exc)
        raise DomainError(gettext("The payment provider could not be reached. Please try again in a moment.")) \
            from exc
    with transaction.atomic():
        # Lock the attempt alone: locking the joined gateway account would need back office's
        # right to change it (row-level security), and nothing here changes it.
        attempt = CheckoutAttempt.objects.select_for_update(of=("self",)).select_related(
            "client", "gateway").get(pk=attempt.pk)
        first_answer = not attempt.provider_payment_id
        if first_answer:
            attempt.provider_payment_id = created.provider_payment_id
        attempt.checkout_url = created.checkout_url
        attempt.client_secret = created.client_secret or attempt.client_secret
        attempt.failure = created.failure or attempt.failure
        attempt.save(update_fields=["provider_payment_id", "checkout_url", "client_secret", "failure", "updated_at"])
        if first_answer:
            audit_record(action=AuditEvent.Action.CHECKOUT_STARTED, actor=user, client=attempt.client, obj=attempt,
                         details={"amount": str(attempt.amount), "currency": attempt.currency, "invoices": numbers,
                                  "gateway": gateway.provider, "method": attempt.method,
                                  "embedded": attempt.embedded, "mandate": attempt.mandate_id})
        # Charged at once (a card token without 3-D Secure) is still only OPEN here: the payment
        # is recorded when the gateway's webhook says so, the one way every payment is.
        answered = Status.OPEN if created.status == Status.PAID else created.status
        if attempt.status == Status.CREATED and answered in CheckoutAttempt.TRANSITIONS[Status.CREATED]:
            _attempt_status_set(attempt, answered)  # not when a webhook got here first: that news is newer
    return attempt


class CardRefused(DomainError):
    """The card in the page could not be used (the token was refused): the client types it again."""


def _attempt_refused(attempt: CheckoutAttempt, reason: str) -> None:
    """A create the gateway refused as such made no payment: the attempt is closed as failed."""
    with transaction.atomic():
        locked = CheckoutAttempt.objects.select_for_update(of=("self",)).get(pk=attempt.pk)
        if locked.status == Status.CREATED and not locked.provider_payment_id:
            locked.failure = reason[:200]
            locked.save(update_fields=["failure", "updated_at"])
            _attempt_status_set(locked, Status.FAILED)


def checkout_client_secret(attempt: CheckoutAttempt) -> str:
    """What Stripe's script opens an embedded session with; only for the attempt's own client,
    only while it is open. Never logged."""
    if not attempt.embedded or attempt.status not in (Status.CREATED, Status.OPEN):
        return ""
    return attempt.client_secret


def checkout_abandon(attempt: CheckoutAttempt) -> None:
    """The client went back to change the amounts: an open embedded session is expired at the
    gateway (its event then closes the attempt), so it cannot be paid any more."""
    if attempt.embedded and attempt.status == Status.OPEN and attempt.provider_payment_id \
            and attempt.gateway.provider == GatewayAccount.Provider.STRIPE:
        try:
            adapter_for(attempt.gateway).expire(attempt.provider_payment_id)
        except GatewayError as exc:  # it expires by itself within a day; nothing was paid with it
            log.warning("checkout %s: could not expire: %s", attempt.pk, exc)


def gateway_event_process(*, gateway: GatewayAccount, webhook: WebhookRequest) -> str:
    """Apply what one stored gateway webhook announces; returns what happened (the job's result).
    Stripe's event says it all (its signature was checked when it arrived). Mollie's and the
    sandbox's only name a payment: the gateway is asked what is true now, with no transaction
    open. A payment the gateway does not know, or that is not ours, changes nothing."""
    if gateway.provider == GatewayAccount.Provider.STRIPE:
        event = json.loads(webhook.body)
        reported = StripeGateway.report(event)
        if reported is None:
            return f"{event.get('type')}: not handled"
    else:
        payment_id = named_payment(gateway.provider, webhook.body)
        try:
            reported = adapter_for(gateway).fetch(payment_id)
        except PaymentNotFound:
            remember_not_ours(gateway=gateway, payment_id=payment_id)  # not asked about again
            return f"{payment_id}: unknown to the gateway"
    attempt = checkout_apply(gateway=gateway, reported=reported)
    if attempt is None:
        if gateway.provider != GatewayAccount.Provider.STRIPE:
            remember_not_ours(gateway=gateway, payment_id=payment_id)
        return f"{reported.provider_payment_id or reported.provider_reference}: no checkout of ours"
    return f"{attempt.provider_payment_id}: {attempt.status}" + (" (flagged)" if attempt.flagged else "")


def _attempt_reported(attempts, *, gateway: GatewayAccount, reported: GatewayPayment) -> CheckoutAttempt | None:
    """The attempt a report is about: by the gateway's payment id; else by the key we sent
    along, for an attempt whose create answer was never recorded (then the id is linked now);
    for Stripe's refunds and disputes, by the PaymentIntent."""
    if reported.provider_payment_id:
        attempt = attempts.filter(gateway=gateway, provider_payment_id=reported.provider_payment_id).first()
        if attempt is None and reported.checkout_key:
            try:
                key = uuid.UUID(reported.checkout_key)
            except ValueError:
                return None
            attempt = attempts.filter(gateway=gateway, idempotency_key=key, provider_payment_id="").first()
            if attempt is not None:
                attempt.provider_payment_id = reported.provider_payment_id
                attempt.save(update_fields=["provider_payment_id", "updated_at"])
        return attempt
    if reported.provider_reference:
        return attempts.filter(gateway=gateway, provider_reference=reported.provider_reference).first()
    return None


@transaction.atomic
def checkout_apply(*, gateway: GatewayAccount, reported: GatewayPayment) -> CheckoutAttempt | None:
    """Move the attempt to what the gateway reports and, once paid, record the payment once.
    Out-of-order news (pending after paid) changes nothing; a paid amount or currency that
    differs from the attempt is flagged for staff and not applied. A paid first payment leaves
    a job that records the mandate it signed. None: the payment is not one of our attempts."""
    attempts = CheckoutAttempt.objects.select_for_update(of=("self",)).select_related("client", "gateway")
    attempt = _attempt_reported(attempts, gateway=gateway, reported=reported)
    if attempt is None:
        return None
    if reported.provider_reference and not attempt.provider_reference:
        attempt.provider_reference = reported.provider_reference
        attempt.save(update_fields=["provider_reference", "updated_at"])
    if reported.status != attempt.status and reported.status in CheckoutAttempt.TRANSITIONS[attempt.status]:
        previous = attempt.status
        _attempt_status_set(attempt, reported.status)
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
        # Mollie is asked for the mandate by a job of its own, after this commits.
        job_enqueue(kind=MANDATE_SYNC, key=f"mandate.sync:{attempt.pk}", payload={"attempt": attempt.pk},
                    subject=f"mollie-customer:{attempt.provider_customer_id}")
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
