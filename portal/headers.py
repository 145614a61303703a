"""Response headers that keep a browser from doing more than the portal needs: which browser
features a page may use (Permissions-Policy), and no copy of a private page in any cache.

The Content-Security-Policy itself comes from django-csp (settings: CONTENT_SECURITY_POLICY);
Referrer-Policy, X-Content-Type-Options, Cross-Origin-Opener-Policy and HSTS from Django's
SecurityMiddleware (settings: SECURE_*)."""
from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.utils.cache import add_never_cache_headers, has_vary_header


def permissions_policy_header(policy: dict[str, list[str]]) -> str:
    """{"camera": [], "payment": ["self"]} -> 'camera=(), payment=(self)' (the structured-field
    syntax browsers read: an empty list denies the feature to every origin, the page's own too)."""
    return ", ".join(f"{feature}=({' '.join(origins)})" for feature, origins in policy.items())


def is_private_response(request, response) -> bool:
    """A page someone's browser or a proxy must not keep: whatever a signed-in user sees, and
    any response that depends on the session (it varies on the cookie, or sets one: a shared
    cache would hand that cookie, or the page made for it, to the next visitor).
    Signed in means a session cookie (the portal has no other login), so the request's user is
    not looked up here: a response that never needed it (a CSRF refusal) costs no query."""
    if settings.SESSION_COOKIE_NAME in request.COOKIES:
        return True
    session = getattr(request, "session", None)
    if session is not None and (session.accessed or session.modified):
        return True
    return has_vary_header(response, "Cookie") or bool(response.cookies)


def form_action_to_payment_gateways(view):
    """For a view whose form's answer is a redirect to a gateway's hosted checkout (or its
    3-D Secure step, or the bank): browsers hold that redirect to the page's form-action too, so
    this one page also allows PAYMENT_CHECKOUT_ORIGINS. A response that embeds a gateway's own
    form (it sets `embeds_gateway` to the provider) also allows that gateway's script, frames and
    connections (PAYMENT_EMBED_SOURCES), and no other's. Read per response, so a test's settings
    count."""
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        update = {"form-action": list(settings.PAYMENT_CHECKOUT_ORIGINS)}
        embedded = getattr(response, "embeds_gateway", "")
        if embedded:
            sources = settings.PAYMENT_EMBED_SOURCES[embedded]
            update.update({name: list(origins) for name, origins in sources.items()})
            # The gateway's frame may offer the browser's wallets (Payment Request): on this page,
            # to its own frames only (Permissions-Policy; SecurityHeadersMiddleware keeps a header
            # a view set).
            policy = {**settings.PERMISSIONS_POLICY, "payment": ["self", *(f'"{o}"' for o in sources["frame-src"])]}
            response["Permissions-Policy"] = permissions_policy_header(policy)
        response._csp_update = update
        return response
    return wrapped


class SecurityHeadersMiddleware:
    """Sits outside the session and authentication middleware (so it sees the cookies they set
    and the Vary they add) and inside WhiteNoise (static files stay cacheable: they are public)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.permissions_policy = permissions_policy_header(settings.PERMISSIONS_POLICY)

    def __call__(self, request):
        response = self.get_response(request)
        if self.permissions_policy:
            response.headers.setdefault("Permissions-Policy", self.permissions_policy)
        if is_private_response(request, response) and "no-store" not in response.get("Cache-Control", ""):
            # no-store, not just private: the back button and a shared computer's disk cache
            # must not show an invoice after logout either.
            add_never_cache_headers(response)
        return response
