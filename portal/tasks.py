"""Portal tasks: a heartbeat that shows the beat scheduler and a worker are alive."""
from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "beat:last-heartbeat"


@shared_task
def beat_heartbeat() -> str:
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    return now
