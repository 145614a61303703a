"""Who may see a portal page (a member acting for a client) and what each membership role may
do there. Viewing is for every member."""
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext

from portal.models import Membership

Role = Membership.Role
ALLOWED = {
    "pay": {Role.OWNER, Role.FINANCE},
    "manage_documents_links": {Role.OWNER, Role.FINANCE},
}


def can(membership, action: str) -> bool:
    return membership is not None and membership.role in ALLOWED[action]


def role_required(action: str):
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not can(request.membership, action):
                raise PermissionDenied(gettext("Your role in this company may not do this."))
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def client_required(view):
    """A portal page: a logged-in user acting for one of its clients."""

    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        if request.client is None:
            if request.memberships:
                return redirect(f"{reverse('portal:choose_client')}?{urlencode({'next': request.get_full_path()})}")
            if request.user.is_staff:
                return redirect("admin:index")
            return render(request, "portal/no_access.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper
