"""Reads of the portal app that views and middleware share."""
from __future__ import annotations

from django.db.models import Count, IntegerField, Min, OuterRef, Subquery

from portal import jobs
from portal.compiled import CompiledQuery
from portal.models import Brand, Client, Job, Membership, Notification
from portal.rls import current_scope


# The page header counts a contact's unread notifications up to this many; more show as "99+".
# After a storm of invoices (or a year imported at once) a contact may have 50,000 unread, and
# counting them all on every page cost 15-24 ms a page; counting to 100 costs under 1 (bench/burst.py).
UNREAD_COUNTED = 100


class BoundedCount(Subquery):
    """How many rows a subquery finds, which the subquery itself limits (`[:n]`): counting stops there."""

    template = "(SELECT count(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


def _memberships_query(*, with_unread: bool) -> CompiledQuery:
    def build(user_id):
        memberships = Membership.objects.filter(user_id=user_id).select_related("client", "client__brand")
        if with_unread:
            unread = (Notification.objects.filter(client=OuterRef("client"), user=OuterRef("user"), read_at__isnull=True)
                      .order_by().values("pk")[:UNREAD_COUNTED])
            memberships = memberships.annotate(unread=BoundedCount(unread))
        return memberships
    return CompiledQuery(build, user_id=int)


# Every request reads them (portal.middleware): compiled once (portal.compiled).
_MEMBERSHIPS = {unread: _memberships_query(with_unread=unread) for unread in (False, True)}


def memberships_for(*, user, with_unread: bool = True) -> list[Membership]:
    """The user's memberships, with their clients and brands (RLS lets a user see its own), in
    one query. Each also counts the user's unread notifications of its client, as far as the
    scope it is read in shows them: `unread_scope` says which client's count is whole (the
    scope's client; notifications are visible for that client only), None for none.
    `with_unread=False` (a request answered with a file, no page header): not counted, and
    unread_notification_count counts on its own should a page be shown after all."""
    scoped = current_scope()[0]
    memberships = _MEMBERSHIPS[with_unread].list(user_id=user.pk)
    for membership in memberships:
        membership.unread_scope = membership.client_id if with_unread and str(membership.client_id) == scoped else None
    return memberships


def client_get(*, client_id: int, current_client: Client | None) -> Client:
    """A client record as a portal user may see it: only the current client.
    Raises Client.DoesNotExist otherwise (the view answers 404)."""
    if current_client is None or current_client.pk != client_id:
        raise Client.DoesNotExist
    return Client.objects.select_related("brand").get(pk=client_id)


def default_brand() -> Brand | None:
    return Brand.objects.filter(is_default=True).first()


def unread_notification_count(*, request) -> int:
    """The unread count the page header shows, up to UNREAD_COUNTED; from the memberships the
    request read already when they were read in this client's scope (portal.middleware), else
    one count."""
    if not request.user.is_authenticated or request.client is None:
        return 0
    membership = getattr(request, "membership", None)
    if membership is not None and getattr(membership, "unread_scope", None) == request.client.pk:
        return membership.unread
    return Notification.objects.filter(user=request.user, client=request.client, read_at__isnull=True).order_by()[
        :UNREAD_COUNTED].count()


def notifications_for(*, user, client, limit: int = 50):
    return list(Notification.objects.filter(user=user, client=client)[:limit])


def queue_backlog(*, now) -> dict[str, dict]:
    """Per Celery queue (portal.jobs.QUEUES): how many jobs are due and not taken, and since
    when the oldest has waited ({"queue", "waiting", "oldest"}); one query, over the due jobs."""
    backlog = {queue: {"queue": queue, "waiting": 0, "oldest": None} for queue in jobs.QUEUES}
    due = (Job.objects.filter(state__in=[Job.State.PENDING, Job.State.RETRYING], run_after__lte=now)
           .order_by().values("kind").annotate(waiting=Count("id"), oldest=Min("run_after")))
    for row in due:
        entry = backlog[jobs.queue_of(row["kind"])]
        entry["waiting"] += row["waiting"]
        if entry["oldest"] is None or row["oldest"] < entry["oldest"]:
            entry["oldest"] = row["oldest"]
    return backlog
