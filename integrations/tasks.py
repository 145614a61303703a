"""Inbound events: processing, and the sweep that makes the database the outbox."""
from celery import shared_task

from integrations import services
from integrations.outbox import outbox_deliver, outbox_sweep
from portal.rls import staff_scope


@shared_task(acks_late=True)
def process_inbound_event(event_id: int):
    with staff_scope():
        return services.inbound_event_process(event_id=event_id)


@shared_task
def sweep_inbound_events() -> int:
    with staff_scope():
        return services.inbound_events_sweep()


@shared_task(acks_late=True)
def deliver_outbox_message(message_id: int):
    with staff_scope():
        return outbox_deliver(message_id=message_id)


@shared_task
def sweep_outbox() -> int:
    with staff_scope():
        return outbox_sweep()
