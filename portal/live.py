"""Live pages: a version number per client that goes up after every committed change a client
can see (an invoice, a payment, a checkout), and the changes themselves for a short while, so
an open page can ask "anything new since version V?" for the price of one cache read.

The version lives in the cache (Redis), not in a table: it is a bell, not a record. Lost (an
eviction, a restart), it starts again from the clock, so a page that held an older number sees
a change and refreshes once; it never misses one. While Redis is unreachable each process
counts on its own (portal.cache) and pages stop hearing of changes made by other processes
until it is back; a reload always shows the truth.

The receivers are connected by model label, so this core module imports no app; the versions
go up on commit, so a poll never sees a version whose data it cannot read yet.
"""
from __future__ import annotations

import logging
import time

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_save

logger = logging.getLogger("portal.live")

# How long the details of a change are kept (a page polling less often gets a general notice).
EVENT_SECONDS = 600
# How many changes one answer describes at most; beyond that, a page is told "updated".
EVENTS_PER_ANSWER = 20


def _version_key(client_id: int) -> str:
    return f"live:v:{client_id}"


def _event_key(client_id: int, version: int | str) -> str:
    return f"live:e:{client_id}:{version}"


def _fresh_start() -> int:
    # Milliseconds since the epoch: above any number a lost counter handed out before.
    return int(time.time() * 1000)


def live_version(*, client_id: int) -> int:
    """The client's current version (started from the clock when there is none)."""
    version = cache.get(_version_key(client_id))
    if version is None:
        fresh = _fresh_start()
        cache.add(_version_key(client_id), fresh, timeout=None)
        # This start, or the one a request beside this one made first; the key can also be gone
        # again by now (evicted, flushed, Redis restarted: seen under load in bench/clients.py,
        # where it was a 500), and then this start serves as well as any.
        version = cache.get(_version_key(client_id), fresh)
    return int(version)


def live_changes(*, client_id: int, since: int, version: int) -> list[dict] | None:
    """What changed between `since` and `version` (oldest first), or None when that is not
    known any more (too many, too long ago, or the counter started again)."""
    if not since < version or version - since > EVENTS_PER_ANSWER:
        return None
    keys = [_event_key(client_id, n) for n in range(since + 1, version + 1)]
    found = cache.get_many(keys)
    if len(found) != len(keys):
        return None
    return [found[key] for key in keys]


def live_bump(*, client_id: int, event: dict) -> None:
    """Count one change for the client and keep what it was, in one step: a page that sees the
    new version finds its event. Call it after the commit."""
    try:
        cache.numbered(_version_key(client_id), _event_key(client_id, ""), event, timeout=EVENT_SECONDS,
                       start=_fresh_start())
    except Exception:  # the change itself is committed; a page shows it on its next load
        logger.exception("live: could not count a change for client %s", client_id)


def _on_commit(client_id: int | None, event: dict) -> None:
    if client_id is not None:
        transaction.on_commit(lambda: live_bump(client_id=client_id, event=event))


def _invoice_saved(sender, instance, created, update_fields=None, raw=False, **kwargs):
    if raw:
        return
    _on_commit(instance.client_id, {"kind": "invoice", "id": instance.pk, "number": instance.number,
                                    "status": instance.status, "created": created,
                                    "status_changed": created or update_fields is None or "status" in update_fields})


def _payment_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        _on_commit(instance.client_id, {"kind": "payment", "amount": str(instance.amount),
                                        "currency": instance.currency})


def _checkout_saved(sender, instance, created, raw=False, **kwargs):
    if not raw:
        _on_commit(instance.client_id, {"kind": "checkout", "status": instance.status,
                                        "amount": str(instance.amount), "currency": instance.currency})


def _credit_note_saved(sender, instance, created, raw=False, **kwargs):
    if not raw:
        _on_commit(instance.client_id, {"kind": "credit_note", "number": instance.number,
                                        "status": instance.status, "created": created})


# By label: the ledger and payments sit above this module (pyproject.toml's layers).
post_save.connect(_invoice_saved, sender="invoices.Invoice", dispatch_uid="live.invoice")
post_save.connect(_payment_saved, sender="invoices.Payment", dispatch_uid="live.payment")
post_save.connect(_checkout_saved, sender="payments.CheckoutAttempt", dispatch_uid="live.checkout")
post_save.connect(_credit_note_saved, sender="invoices.CreditNote", dispatch_uid="live.credit_note")
