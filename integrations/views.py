"""The inbound webhook: thin; integrations.services does the work."""
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.models import Connection
from integrations.services import inbound_event_receive
from portal.rls import staff_scope


@csrf_exempt
@require_POST
def accounting_webhook(request, connection: str):
    # Accounting systems act for the back office, not for one client.
    with staff_scope():
        found = Connection.objects.filter(slug=connection, enabled=True).first()
        if found is None:
            return JsonResponse({"status": "rejected", "error": f"no enabled connection {connection!r}"}, status=404)
        answer = inbound_event_receive(connection=found, headers=request.headers, body=request.body,
                                       ip=request.META.get("HTTP_X_REAL_IP") or request.META.get("REMOTE_ADDR"))
    return JsonResponse(answer.body, status=answer.status)
