"""The access-point provider's status webhooks, taken in by the one intake (portal.webhooks) as the
source "peppol" at /webhooks/peppol/<connection URL name>/: the signature is checked on the raw
body with the connection's webhook secret (integrations.peppol.client.verify_status_webhook), and
an accepted event leaves a "peppol.status" job. The provider's event id is the natural key, so a
replayed event is a duplicate and changes nothing; the job, too, changes nothing for a state the
delivery has reached already."""
from __future__ import annotations

from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.peppol.client import UnsupportedWebhookEvent, verify_status_webhook
from integrations.peppol.models import PeppolConnection
from integrations.peppol.services import STATUS_JOB
from portal.webhooks import Accepted, Ignored, Rejected, Source, webhook_receive

# What the signature check reads besides the body: kept with the stored request, so the job
# reads the event exactly as the intake verified it.
SIGNATURE_HEADERS = ("content-type", "user-agent", "x-signature")


def _find(slug: str, body: bytes) -> PeppolConnection | None:
    return PeppolConnection.objects.filter(slug=slug, enabled=True).first()


def status_event(connection: PeppolConnection, headers, body: bytes):
    """The provider's StatusEvent in a signed request, or Rejected(401)."""
    if not connection.webhook_secret:
        raise Rejected(401, "signature: the connection has no webhook secret")
    try:
        return verify_status_webhook(secret=connection.webhook_secret, headers=headers, body=body)
    except UnsupportedWebhookEvent:
        raise Ignored("a signed event that is not about a document the portal sent") from None
    except ValueError:  # a forged, altered or malformed request: the reason never quotes it
        raise Rejected(401, "signature does not match, or not a status event") from None


def _verify(connection: PeppolConnection, headers, body: bytes) -> Accepted:
    event = status_event(connection, headers, body)
    return Accepted(natural_key=f"peppol:{event.event_id}", subject=f"peppol-submission:{event.submission_id}")


SOURCE = Source(name="peppol", job_kind=STATUS_JOB, find=_find, verify=_verify, kept_headers=SIGNATURE_HEADERS)


@csrf_exempt
@require_POST
def peppol_webhook(request, connection: str):
    """POST /webhooks/peppol/<connection>/: thin; the one intake does the work."""
    return webhook_receive(request, source=SOURCE, account_key=connection)
