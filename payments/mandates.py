"""Auto-pay by mandate (Mollie): a first payment that signs a SEPA direct-debit mandate; then
recurring invoices, and invoices the client opts in, are collected on their due date, with a
notification a few days before. The client sees its mandates in the portal and can revoke them.

Each collection is one job per invoice and due date (`mandate.collect`), exactly once at Mollie:
the attempt, with an idempotency key derived from the job, is committed before Mollie is called;
Mollie gets that key and the attempt's key in the metadata; a run that died between Mollie's
answer and recording it is recovered by the next, which finds the payment Mollie made among the
customer's payments instead of making another."""
from __future__ import annotations

import datetime
import uuid

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from invoices.errors import DomainError
from invoices.models import Invoice
from payments.gateways import GatewayRefused, adapter_for, idempotency_key_for
from payments.models import CheckoutAttempt, CheckoutItem, Mandate, MandateCollection
from payments.services import checkout_apply, mandate_customer_for
from portal.jobs import job_enqueue
from portal.models import AuditEvent, NotificationKind
from portal.notifications import money_arg, notify_client
from portal.services import audit_record

PRENOTIFY_DAYS = 3
MANDATE_COLLECT = "mandate.collect"


def mandates_sync(*, attempt: CheckoutAttempt) -> list[Mandate]:
    """After a paid first payment: record the mandates Mollie now holds for the customer. Mollie
    is asked with no transaction open; a mandate revoked here stays revoked."""
    listed = adapter_for(attempt.gateway).mandates(attempt.provider_customer_id)
    found = []
    with transaction.atomic():
        for data in listed:
            details = data.get("details") or {}
            known = Mandate.objects.select_for_update().filter(gateway=attempt.gateway,
                                                                provider_mandate_id=data["id"]).first()
            if known is not None and known.status == Mandate.Status.REVOKED:
                found.append(known)
                continue
            mandate, created = Mandate.objects.update_or_create(
                gateway=attempt.gateway, provider_mandate_id=data["id"],
                defaults={"client": attempt.client, "provider_customer_id": attempt.provider_customer_id,
                          "status": data["status"], "consumer_name": details.get("consumerName") or "",
                          "consumer_account": details.get("consumerAccount") or "",
                          "signed_on": (data.get("signatureDate") or None),
                          # The first payment's box said "collect my future invoices too".
                          "collects_all": attempt.wants_mandate})
            if created:
                audit_record(action=AuditEvent.Action.MANDATE_CHANGED, client=attempt.client, obj=mandate,
                             details={"status": mandate.status, "account": mandate.masked_account})
            found.append(mandate)
    return found


def mandate_sign(*, client, user, gateway, holder: str, iban: str, collects_all: bool, key: uuid.UUID,
                 request=None) -> Mandate:
    """A SEPA direct-debit mandate the client signs in the portal's IBAN form, made at Mollie
    through its Mandates API (no transaction open), then recorded. The same form key gives the
    same mandate however often it is posted. MandatesNotAllowed where the account may not make
    mandates that way (a first payment signs one instead); GatewayRefused for an IBAN Mollie
    will not take."""
    customer = mandate_customer_for(client=client, gateway=gateway)
    signed_on = timezone.localdate()
    data = adapter_for(gateway).mandate_create(
        customer, holder=holder, iban=iban, signed_on=signed_on,
        reference=f"{client.brand.slug[:12].upper()}-{client.pk}-{key.hex[:8].upper()}",
        idempotency_key=idempotency_key_for(f"mandate:{key}"))
    details = data.get("details") or {}
    with transaction.atomic():
        mandate, created = Mandate.objects.update_or_create(
            gateway=gateway, provider_mandate_id=data["id"],
            defaults={"client": client, "provider_customer_id": customer, "status": data.get("status") or "pending",
                      "consumer_name": details.get("consumerName") or holder,
                      "consumer_account": details.get("consumerAccount") or iban,
                      "signed_on": data.get("signatureDate") or signed_on, "collects_all": collects_all})
        if created:
            audit_record(action=AuditEvent.Action.MANDATE_CHANGED, actor=user, request=request, client=client,
                         obj=mandate, details={"status": mandate.status, "account": mandate.masked_account,
                                               "signed": "in the portal", "collects_all": collects_all})
    return mandate


def valid_mandate(client) -> Mandate | None:
    return Mandate.objects.filter(client=client, status=Mandate.Status.VALID).select_related("gateway").first()


def mandate_revoke(*, mandate: Mandate, user, request=None) -> None:
    """Revoke at Mollie (no transaction open), then record it: the mandate, and the collections
    not yet started on it. If Mollie cannot be reached nothing changes here (GatewayError)."""
    adapter_for(mandate.gateway).revoke_mandate(mandate.provider_customer_id, mandate.provider_mandate_id,
                                                idempotency_key=idempotency_key_for(f"revoke:{mandate.pk}"))
    with transaction.atomic():
        revoked = Mandate.objects.filter(pk=mandate.pk).exclude(status=Mandate.Status.REVOKED).update(
            status=Mandate.Status.REVOKED, revoked_at=timezone.now())
        MandateCollection.objects.filter(mandate=mandate, attempt__isnull=True).delete()
        if revoked:
            audit_record(action=AuditEvent.Action.MANDATE_CHANGED, actor=user, request=request,
                         client=mandate.client, obj=mandate, details={"status": "revoked"})


def collection_opt_in(*, invoice: Invoice, user, request=None) -> MandateCollection:
    mandate = valid_mandate(invoice.client)
    if mandate is None:
        raise DomainError(gettext("There is no valid direct-debit mandate to collect with."))
    if invoice.status not in Invoice.PAYABLE:
        raise DomainError(gettext("Invoice %(number)s has nothing left to pay.") % {"number": invoice.number})
    with transaction.atomic():
        collection, _ = MandateCollection.objects.get_or_create(
            invoice=invoice, defaults={"client": invoice.client, "mandate": mandate, "opted_in": True})
        audit_record(action=AuditEvent.Action.MANDATE_CHANGED, actor=user, request=request, client=invoice.client,
                     obj=invoice, details={"collect_on_due_date": True})
    return collection


def _eligible(today: datetime.date, until: datetime.date):
    """Invoices to collect by `until`: recurring ones, the ones opted in one by one, and every
    one of a client whose mandate collects all (the client agreed when signing it)."""
    # payable_now: an invoice whose balance is already being collected (pending) is not announced again.
    valid = Invoice.objects.payable_now().filter(due_date__lte=until, client__mandates__status=Mandate.Status.VALID)
    collects_all = Invoice.objects.payable_now().filter(  # one filter(): the valid mandate is the one that collects all
        due_date__lte=until, client__mandates__status=Mandate.Status.VALID, client__mandates__collects_all=True)
    return (valid.filter(recurring_schedule__isnull=False)
            | valid.filter(mandate_collection__opted_in=True, mandate_collection__attempt__isnull=True)
            | collects_all).distinct()


def collection_job_key(invoice: Invoice) -> str:
    """One collection job per invoice and due date; also what its idempotency key derives from."""
    return f"collect:{invoice.pk}:{invoice.due_date.isoformat()}"


def collections_run(*, today: datetime.date | None = None) -> dict:
    """Daily: tell clients a few days ahead and, on the due date, write the invoice's collection
    job. Nothing here calls Mollie; running this twice, or ten times at once, writes each job once."""
    today = today or timezone.localdate()
    told = queued = 0
    for invoice in _eligible(today, today + datetime.timedelta(days=PRENOTIFY_DAYS)).select_related("client"):
        with transaction.atomic():
            mandate = valid_mandate(invoice.client)
            if mandate is None:
                continue
            MandateCollection.objects.bulk_create(
                [MandateCollection(invoice=invoice, client=invoice.client, mandate=mandate)], ignore_conflicts=True)
            collection = MandateCollection.objects.select_for_update().get(invoice=invoice)
            if collection.attempt_id:
                continue
            if collection.prenotified_at is None:
                _prenotify(invoice, mandate)
                collection.prenotified_at = timezone.now()
                collection.save(update_fields=["prenotified_at"])
                told += 1
            if invoice.due_date <= today and job_enqueue(kind=MANDATE_COLLECT, key=collection_job_key(invoice),
                                                         payload={"invoice": invoice.pk}):
                queued += 1
    return {"prenotified": told, "queued": queued}


def _prenotify(invoice: Invoice, mandate: Mandate) -> None:
    notify_client(client=invoice.client, kind=NotificationKind.COLLECTION_UPCOMING,
                  url=reverse("invoices:detail", args=[invoice.pk]),
                  title=gettext_noop("Invoice %(number)s (%(amount)s) will be collected by direct "
                                     "debit from %(account)s on %(date)s"),
                  title_args={"number": invoice.number, "amount": money_arg(invoice.open_balance, invoice.currency),
                              "account": mandate.masked_account, "date": invoice.due_date})


def collection_collect(*, job_key: str, invoice_id: int) -> str:
    """Collect one invoice by direct debit, exactly once (the `mandate.collect` job). Returns
    what happened, for the job's result.

    1. (a transaction) find or create the attempt whose idempotency key derives from the job
       key, and commit it before Mollie hears of it;
    2. (none open) unless the attempt has Mollie's payment id already: if an earlier run may
       have reached Mollie, look for the payment it made (the customer's payments, by the
       attempt's key in the metadata); else create it, with the idempotency key;
    3. (a transaction) record Mollie's answer the way every gateway report is applied."""
    key = idempotency_key_for(job_key)
    attempt, ready = _collection_attempt(invoice_id=invoice_id, key=key)
    if attempt is None:
        return ready  # nothing to collect, and why
    if attempt.provider_payment_id:
        return f"{attempt.provider_payment_id}: recorded already"
    if attempt.status != CheckoutAttempt.Status.CREATED:
        return f"closed as {attempt.status} before Mollie made a payment"
    collection = MandateCollection.objects.select_related("mandate", "invoice__brand").get(attempt=attempt)
    gateway = adapter_for(attempt.gateway)
    reported = gateway.find_made_for(attempt) if ready == "resumed" else None
    if reported is None:
        if collection.mandate.status != Mandate.Status.VALID:
            _attempt_closed(attempt, CheckoutAttempt.Status.CANCELED)
            return "the mandate was revoked before the collection reached Mollie"
        try:
            reported = gateway.collect(attempt, mandate_id=collection.mandate.provider_mandate_id,
                                       description=f"{collection.invoice.brand.name}: {collection.invoice.number}")
        except GatewayRefused:
            _attempt_closed(attempt, CheckoutAttempt.Status.FAILED)
            raise
    checkout_apply(gateway=attempt.gateway, reported=reported)
    return f"{reported.provider_payment_id}: {reported.status}"


def _collection_attempt(*, invoice_id: int, key) -> tuple[CheckoutAttempt | None, str]:
    """(attempt, "resumed" or "new"), or (None, why there is nothing to collect). Committed."""
    with transaction.atomic():
        collection = (MandateCollection.objects.select_for_update(of=("self",))
                      .select_related("mandate__gateway", "attempt").filter(invoice_id=invoice_id).first())
        if collection is None:
            return None, "no collection planned (the mandate was revoked)"
        if collection.attempt is not None:
            if collection.attempt.idempotency_key != key:
                return None, "collected already, by an earlier collection"
            return collection.attempt, "resumed"
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.payable_balance <= 0:  # paid, void, or all of it pending at a gateway already
            return None, f"nothing open on {invoice.number}"
        mandate = collection.mandate
        if mandate.status != Mandate.Status.VALID:
            return None, f"the mandate is {mandate.status}"
        attempt = CheckoutAttempt.objects.create(
            client=invoice.client, gateway=mandate.gateway, idempotency_key=key, method="sepa_direct_debit",
            amount=invoice.payable_balance, currency=invoice.currency,
            provider_customer_id=mandate.provider_customer_id)
        CheckoutItem.objects.create(client=invoice.client, attempt=attempt, invoice=invoice,
                                    amount=invoice.payable_balance)
        collection.attempt = attempt
        collection.save(update_fields=["attempt"])
    return attempt, "new"


def _attempt_closed(attempt: CheckoutAttempt, status: str) -> None:
    with transaction.atomic():
        CheckoutAttempt.objects.filter(pk=attempt.pk, status=CheckoutAttempt.Status.CREATED,
                                       provider_payment_id="").update(status=status, updated_at=timezone.now())
