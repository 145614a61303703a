"""The brand, client and notification count every template shows."""
from portal.branding import favicon_svg, readable_on_white
from portal.permissions import can
from portal.selectors import UNREAD_COUNTED, default_brand, unread_notification_count


def tenancy(request):
    client = getattr(request, "client", None)
    membership = getattr(request, "membership", None)
    match = getattr(request, "resolver_match", None)
    if client is None and match is not None and match.namespace == "admin":
        # The back office's pages show no brand (templates/admin/base_site.html): not read.
        brand = None
    else:
        brand = client.brand if client is not None else default_brand()
    context = {
        "current_client": client,
        "current_membership": membership,
        "user_memberships": getattr(request, "memberships", []),
        "brand": brand,
        "can_pay": can(membership, "pay"),
    }
    # Counted up to UNREAD_COUNTED: beyond it the header says "99+".
    unread = unread_notification_count(request=request) if client is not None else 0
    context.update(unread_notifications=min(unread, UNREAD_COUNTED - 1), unread_more=unread >= UNREAD_COUNTED)
    if brand is not None:
        primary = readable_on_white(brand.primary_colour)
        context.update(brand_primary=primary, brand_accent=brand.accent_colour,
                       favicon=brand.logo_url if brand.logo else favicon_svg(initial=brand.name[:1], colour=primary))
    return context
