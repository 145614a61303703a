"""`{% live_version as v %}` and `{% live_poll_seconds %}`: what an open page needs to ask for changes (portal.live)."""
from django import template
from django.conf import settings

from portal.live import live_version as current_version

register = template.Library()


@register.simple_tag(takes_context=True)
def live_version(context) -> int | str:
    client = getattr(context.get("request"), "client", None)
    return current_version(client_id=client.pk) if client is not None else ""


@register.simple_tag
def live_poll_seconds() -> str:
    return f"{float(getattr(settings, 'LIVE_POLL_SECONDS', 15)):g}"
