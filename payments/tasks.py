"""Payments' background work, as jobs of the one mechanism (portal.jobs), and the beat task that
writes the day's direct-debit collections. Every handler runs with no transaction open, calls
the gateway outside any, and records in short transactions of its own."""
from celery import shared_task

from payments import services
from payments.gateways import GatewayRefused
from payments.mandates import MANDATE_COLLECT, collection_collect, collections_run, mandates_sync
from payments.models import CheckoutAttempt, GatewayAccount
from payments.webhooks import GATEWAY_EVENT
from portal.jobs import Permanent, Retry, handler
from portal.rls import staff_scope
from portal.webhooks import webhook_for


# A gateway that cannot be reached is asked again for about fourteen hours (30 s, doubling, at
# most 6 hours apart); then the job is dead with its reason until staff replay it.
@handler(GATEWAY_EVENT, max_attempts=12, backoff_seconds=30)
def gateway_event(job) -> str:
    webhook = webhook_for(job)
    gateway = GatewayAccount.objects.filter(pk=int(webhook.account)).first()
    if gateway is None:
        raise Permanent(f"gateway account {webhook.account} no longer exists")
    try:
        return services.gateway_event_process(gateway=gateway, webhook=webhook)
    except GatewayRefused as exc:  # e.g. a revoked API key: asking again cannot help until staff act
        raise Permanent(str(exc)) from exc


@handler(services.MANDATE_SYNC, max_attempts=8, backoff_seconds=60)
def mandate_sync(job) -> str:
    attempt = CheckoutAttempt.objects.select_related("gateway", "client").get(pk=job.payload["attempt"])
    try:
        found = mandates_sync(attempt=attempt)
    except GatewayRefused as exc:
        raise Permanent(str(exc)) from exc
    if not found:
        raise Retry(f"Mollie lists no mandate for {attempt.provider_customer_id} yet")
    return ", ".join(f"{mandate.provider_mandate_id}: {mandate.status}" for mandate in found)


@handler(MANDATE_COLLECT, max_attempts=8, lease_seconds=120, backoff_seconds=60)
def mandate_collect(job) -> str:
    try:
        return collection_collect(job_key=job.key, invoice_id=job.payload["invoice"])
    except GatewayRefused as exc:
        raise Permanent(str(exc)) from exc


@shared_task
def run_mandate_collections() -> dict:
    with staff_scope():
        return collections_run()
