"""The inbound accounting webhook: thin; the one intake (portal.webhooks) does the work."""
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.services import SOURCE
from portal.webhooks import webhook_receive


@csrf_exempt
@require_POST
def accounting_webhook(request, connection: str):
    return webhook_receive(request, source=SOURCE, account_key=connection)
