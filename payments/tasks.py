"""Gateway webhooks are processed here, retried when the gateway cannot be reached."""
from celery import shared_task

from payments import services
from payments.mandates import collections_run
from payments.models import GatewayEvent
from portal.rls import staff_scope


@shared_task(bind=True, max_retries=6, acks_late=True)
def process_gateway_event(self, event_id: int) -> str:
    try:
        with staff_scope():
            return services.gateway_event_process(event_id=event_id)
    except Exception as exc:
        with staff_scope():
            GatewayEvent.objects.filter(pk=event_id).update(error=f"{type(exc).__name__}: {exc}"[:2000])
        raise self.retry(exc=exc, countdown=15 * 2 ** self.request.retries)


@shared_task
def run_mandate_collections() -> dict:
    with staff_scope():
        return collections_run()
