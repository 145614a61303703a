"""The brand and client every template shows."""
from portal.selectors import default_brand


def tenancy(request):
    client = getattr(request, "client", None)
    return {
        "current_client": client,
        "current_membership": getattr(request, "membership", None),
        "user_memberships": getattr(request, "memberships", []),
        "brand": client.brand if client is not None else default_brand(),
    }
