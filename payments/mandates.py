"""Auto-pay by mandate (Mollie): a first payment that signs a SEPA direct-debit mandate; then
recurring invoices, and invoices the client opts in, are collected on their due date, with a
notification a few days before. The client sees its mandates in the portal and can revoke them."""
from __future__ import annotations

import datetime
import uuid

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop

from invoices.errors import DomainError
from invoices.models import Invoice
from payments.gateways import adapter_for
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount, Mandate, MandateCollection
from portal.models import AuditEvent, NotificationKind
from portal.notifications import notify_client
from portal.services import audit_record

PRENOTIFY_DAYS = 3


def mandate_customer_for(*, client, gateway: GatewayAccount, user) -> str:
    """The client's Mollie customer (one per client and gateway), made when first needed."""
    known = Mandate.objects.filter(client=client, gateway=gateway).values_list("provider_customer_id", flat=True).first()
    known = known or CheckoutAttempt.objects.filter(client=client, gateway=gateway).exclude(
        provider_customer_id="").values_list("provider_customer_id", flat=True).first()
    return known or adapter_for(gateway).customer(name=client.name, email=client.billing_email, client_id=client.pk)


def mandates_sync(*, attempt: CheckoutAttempt) -> list[Mandate]:
    """After a paid first payment: record the mandates Mollie now holds for the customer."""
    found = []
    for data in adapter_for(attempt.gateway).mandates(attempt.provider_customer_id):
        details = data.get("details") or {}
        mandate, created = Mandate.objects.update_or_create(
            gateway=attempt.gateway, provider_mandate_id=data["id"],
            defaults={"client": attempt.client, "provider_customer_id": attempt.provider_customer_id,
                      "status": data["status"], "consumer_name": details.get("consumerName") or "",
                      "consumer_account": details.get("consumerAccount") or "",
                      "signed_on": (data.get("signatureDate") or None)})
        if created:
            audit_record(action=AuditEvent.Action.MANDATE_CHANGED, client=attempt.client, obj=mandate,
                         details={"status": mandate.status, "account": mandate.masked_account})
        found.append(mandate)
    return found


def valid_mandate(client) -> Mandate | None:
    return Mandate.objects.filter(client=client, status=Mandate.Status.VALID).select_related("gateway").first()


@transaction.atomic
def mandate_revoke(*, mandate: Mandate, user, request=None) -> None:
    adapter_for(mandate.gateway).revoke_mandate(mandate.provider_customer_id, mandate.provider_mandate_id)
    Mandate.objects.filter(pk=mandate.pk).update(status=Mandate.Status.REVOKED, revoked_at=timezone.now())
    MandateCollection.objects.filter(mandate=mandate, attempt__isnull=True).delete()
    audit_record(action=AuditEvent.Action.MANDATE_CHANGED, actor=user, request=request, client=mandate.client,
                 obj=mandate, details={"status": "revoked"})


def collection_opt_in(*, invoice: Invoice, user, request=None) -> MandateCollection:
    mandate = valid_mandate(invoice.client)
    if mandate is None:
        raise DomainError("there is no valid direct-debit mandate")
    if invoice.status not in Invoice.PAYABLE:
        raise DomainError(f"invoice {invoice} has nothing open")
    collection, _ = MandateCollection.objects.get_or_create(
        invoice=invoice, defaults={"client": invoice.client, "mandate": mandate, "opted_in": True})
    audit_record(action=AuditEvent.Action.MANDATE_CHANGED, actor=user, request=request, client=invoice.client,
                 obj=invoice, details={"collect_on_due_date": True})
    return collection


def _eligible(today: datetime.date, until: datetime.date):
    return (Invoice.objects.payable().filter(due_date__lte=until, client__mandates__status=Mandate.Status.VALID)
            .filter(recurring_schedule__isnull=False) | Invoice.objects.payable().filter(
                due_date__lte=until, mandate_collection__opted_in=True, mandate_collection__attempt__isnull=True,
                client__mandates__status=Mandate.Status.VALID)).distinct()


def collections_run(*, today: datetime.date | None = None) -> dict:
    """Daily: tell clients a few days ahead, then collect what is due, each invoice once."""
    today = today or timezone.localdate()
    told = collected = 0
    for invoice in _eligible(today, today + datetime.timedelta(days=PRENOTIFY_DAYS)).select_related("client"):
        with transaction.atomic():
            mandate = valid_mandate(invoice.client)
            collection, _ = MandateCollection.objects.select_for_update().get_or_create(
                invoice=invoice, defaults={"client": invoice.client, "mandate": mandate})
            if collection.attempt_id:
                continue
            if collection.prenotified_at is None:
                notify_client(client=invoice.client, kind=NotificationKind.COLLECTION_UPCOMING,
                              url=reverse("invoices:detail", args=[invoice.pk]),
                              title=gettext_noop("Invoice %(number)s (%(amount)s) will be collected by direct "
                                                 "debit from %(account)s on %(date)s"),
                              title_args={"number": invoice.number, "amount": f"{invoice.currency} "
                                                                             f"{invoice.open_balance}",
                                          "account": mandate.masked_account, "date": invoice.due_date.isoformat()})
                collection.prenotified_at = timezone.now()
                collection.save(update_fields=["prenotified_at"])
                told += 1
            if invoice.due_date <= today:
                _collect(collection, invoice, mandate)
                collected += 1
    return {"prenotified": told, "collected": collected}


def _collect(collection: MandateCollection, invoice: Invoice, mandate: Mandate) -> None:
    attempt = CheckoutAttempt.objects.create(
        client=invoice.client, gateway=mandate.gateway, idempotency_key=uuid.uuid4(), method="sepa_direct_debit",
        amount=invoice.open_balance, currency=invoice.currency, provider_customer_id=mandate.provider_customer_id)
    CheckoutItem.objects.create(client=invoice.client, attempt=attempt, invoice=invoice, amount=invoice.open_balance)
    collection.attempt = attempt
    collection.save(update_fields=["attempt"])
    reported = adapter_for(mandate.gateway).collect(attempt, mandate_id=mandate.provider_mandate_id,
                                                    description=f"{invoice.brand.name}: {invoice.number}")
    CheckoutAttempt.objects.filter(pk=attempt.pk).update(provider_payment_id=reported.provider_payment_id,
                                                         status=reported.status)
