"""What each membership role may do in the portal. Viewing is for every member."""
from functools import wraps

from django.core.exceptions import PermissionDenied

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
                raise PermissionDenied(f"your role may not {action}")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
