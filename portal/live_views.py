"""The live check an open page makes every few seconds (static/portal/live.js): 204 when nothing
changed for the client since the page's version, else the new version and what changed, in
the reader's language, for the page's polite status region. The page then fetches itself again
and swaps its `data-live` regions; this answer carries no invoice data of its own.

Polling, not server-sent events: gunicorn's threads are few (portal/stack.py), and an open
stream per idle page would hold one each; an idle poll is one cache read (bench/live.py)."""
from __future__ import annotations

from decimal import Decimal

from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET

from invoices.models import Invoice
from payments.models import CheckoutAttempt
from portal.formatting import format_money
from portal.live import live_changes, live_version
from portal.permissions import client_required

# At most this many sentences are read out; the rest are counted.
SPOKEN = 3


def _describe(events: list[dict]) -> list[str]:
    """One sentence per invoice or payment, the latest state of each (an invoice created and
    opened in one go is one new invoice)."""
    invoices: dict[int, dict] = {}
    sentences: list[tuple[str, object]] = []
    for event in events:
        kind = event.get("kind")
        if kind == "invoice":
            seen = invoices.get(event["id"])
            if seen is None:
                invoices[event["id"]] = seen = {"new": False, "status_changed": False}
                sentences.append(("invoice", seen))
            seen.update(number=event["number"], status=event["status"], new=seen["new"] or event["created"],
                        status_changed=seen["status_changed"] or event["status_changed"])
        elif kind == "payment":
            sentences.append(("text", _("Payment received: %(amount)s") % {
                "amount": format_money(Decimal(event["amount"]), event["currency"])}))
        elif kind == "checkout" and event.get("status") == CheckoutAttempt.Status.PENDING:
            sentences.append(("text", _("Payment pending: %(amount)s") % {
                "amount": format_money(Decimal(event["amount"]), event["currency"])}))
        elif kind == "credit_note" and event.get("created"):
            sentences.append(("text", _("New credit note %(number)s") % {"number": event["number"]}))
    spoken = []
    for kind, value in sentences:
        if kind == "text":
            spoken.append(value)
        elif value["status"] == Invoice.Status.DRAFT:
            continue  # not shown to clients yet
        elif value["new"]:
            spoken.append(_("New invoice %(number)s") % {"number": value["number"]})
        elif value["status_changed"]:
            spoken.append(_("Invoice %(number)s: %(status)s") % {
                "number": value["number"], "status": Invoice.Status(value["status"]).label})
        else:
            spoken.append(_("Invoice %(number)s updated") % {"number": value["number"]})
    return spoken


def live_messages(events: list[dict] | None) -> list[str]:
    if events is None:
        return [_("Your invoices were updated.")]
    spoken = _describe(events)
    if len(spoken) > SPOKEN:
        rest = len(spoken) - (SPOKEN - 1)
        spoken = spoken[:SPOKEN - 1] + [ngettext("and %(count)s more change", "and %(count)s more changes",
                                                 rest) % {"count": rest}]
    return spoken


@require_GET
@client_required
def live_poll(request):
    """`?v=<version the page has>`: 204 when that is still the client's version, else
    {"version": new, "messages": [...]} (messages may be empty: the page refreshes quietly)."""
    version = live_version(client_id=request.client.pk)
    try:
        since = int(request.GET.get("v", ""))
    except ValueError:
        since = None
    if since == version:
        return HttpResponse(status=204)
    events = live_changes(client_id=request.client.pk, since=since, version=version) if since else None
    return JsonResponse({"version": version, "messages": live_messages(events) if since else []})
