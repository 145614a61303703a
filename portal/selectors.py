"""Reads of the portal app that views and middleware share."""
from __future__ import annotations

from portal.models import Brand, Client, Membership, Notification


def memberships_for(*, user) -> list[Membership]:
    """The user's memberships, with their clients and brands (RLS lets a user see its own)."""
    return list(Membership.objects.filter(user=user).select_related("client", "client__brand"))


def client_get(*, client_id: int, current_client: Client | None) -> Client:
    """A client record as a portal user may see it: only the current client.
    Raises Client.DoesNotExist otherwise (the view answers 404)."""
    if current_client is None or current_client.pk != client_id:
        raise Client.DoesNotExist
    return Client.objects.select_related("brand").get(pk=client_id)


def default_brand() -> Brand | None:
    return Brand.objects.filter(is_default=True).first()


def unread_notification_count(*, request) -> int:
    if not request.user.is_authenticated or request.client is None:
        return 0
    return Notification.objects.filter(user=request.user, client=request.client, read_at__isnull=True).count()


def notifications_for(*, user, client, limit: int = 50):
    return list(Notification.objects.filter(user=user, client=client)[:limit])
