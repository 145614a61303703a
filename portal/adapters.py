"""How django-allauth behaves here: no self sign-up; staff land in admin, clients in the portal;
the client address behind the proxy; failed-login limits that cannot lock out other people;
its emails (sign-in code, password reset, ...) in the brand's look and the reader's language;
two-factor secrets encrypted with the project's key ring."""
from __future__ import annotations

import base64
import html

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.internal import ratelimit
from allauth.mfa.adapter import DefaultMFAAdapter
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from portal.crypto import DecryptionError, keyring
from portal.http import client_ip
from portal.notifications import brand_email_context
from portal.selectors import default_brand

# Failed password logins are counted three ways (rates in settings.ACCOUNT_RATE_LIMITS):
#   login_failed_pair     per account *and* address: strict. Guessing one account's password
#                         from one place stops soon, and only for that place: the owner of the
#                         account, elsewhere, is not locked out by it.
#   login_failed_address  per address, over all accounts: generous. Stops one address spraying
#                         guesses over many accounts, yet a few mistyped or unknown emails from an
#                         office behind one NAT never lock the others there out.
#   login_failed_account  per account, over all addresses: high. Only many addresses guessing
#                         together reach it (the price of stopping a distributed guess).
# Each attempt takes one from every budget before the password is checked and gives it back when
# the password was right: only failures count, and a spent budget refuses before checking.
FAILED_LOGIN_BUDGETS = ("login_failed_pair", "login_failed_address", "login_failed_account")


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        # Client contacts are invited by the back office; nobody signs up alone.
        return False

    def get_login_redirect_url(self, request):
        if request.user.is_staff:
            return reverse("admin:index")
        return reverse("portal:home")

    def send_mail(self, template_prefix, email, context):
        """Every account email in the contact's language (the user's `language` when the address
        is theirs, else the language the request was made in) and the brand's look: the brand of
        the client in use, else the default brand the login page shows."""
        user = context.get("user") or self._user_for(email)
        request = context.get("request") or getattr(self, "request", None)
        client = getattr(request, "client", None)
        brand = client.brand if client is not None else default_brand()
        language = getattr(user, "language", "") or translation.get_language()
        with translation.override(language):
            # No settings link: these emails cannot be turned off.
            super().send_mail(template_prefix, email, {**brand_email_context(brand), "settings_link": "",
                                                       "user": user, "language": language, **context})

    def render_mail(self, template_prefix, email, context, headers=None):
        """allauth's message, sent by the brand (its name, its support address for replies), the
        brand's name in the subject, and HTML in its look for the emails without an HTML template."""
        message = super().render_mail(template_prefix, email, context, headers=headers)
        brand = context.get("brand")
        if brand is None:
            return message
        message.subject = f"{message.subject} · {brand.name}"
        message.from_email = f"{brand.name} <{message.from_email}>"
        if brand.support_email:
            message.reply_to = [brand.support_email]
        if hasattr(message, "attach_alternative") and not message.alternatives:
            message.attach_alternative(render_to_string("account/email/_generic_message.html",
                                                        {**context, "body": message.body.split("\n--\n")[0]}),
                                     "text/html")
        return message

    def add_message(self, request, level, message_template=None, message_context=None, extra_tags="",
                    message=None):
        """allauth's, with its message templates rendered from their own context only. allauth renders
        them with the request's, whose context processors read the brand and the memberships: a
        query on every sign-in for a sentence that names the user ("Successfully signed in as ...")."""
        if message_template and not message:
            message = html.unescape(render_to_string(message_template, message_context or {}).strip())
            if not message:
                return
        super().add_message(request, level, extra_tags=extra_tags, message=message)

    @staticmethod
    def _user_for(email):
        return get_user_model().objects.filter(email__iexact=email or "").first()

    def get_client_ip(self, request) -> str:
        # allauth's own reading trusts X-Forwarded-For by count; ours trusts only TRUSTED_PROXIES.
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    def authenticate(self, request, **credentials):
        usage = self._take_failed_login_budgets(request, credentials)
        user = super().authenticate(request, **credentials)
        if user is not None:
            usage.rollback()
        return user

    def pre_authenticate(self, request, **credentials):
        # allauth's single "login_failed" budget is replaced by the three taken in authenticate().
        return None

    def _delete_login_attempts_cached_email(self, request, **credentials):
        # A password reset proves the mailbox: the account's own budgets start afresh.
        super()._delete_login_attempts_cached_email(request, **credentials)
        account = self._get_login_attempts_cache_key(request, **credentials)
        ratelimit.clear(request, app="allauth.account", action="login_failed_account", key=account)
        ratelimit.clear(request, app="allauth.account", action="login_failed_pair",
                        key=f"{account}|{self.get_client_ip(request)}")

    def _take_failed_login_budgets(self, request, credentials) -> ratelimit.RateLimitUsage:
        account = self._get_login_attempts_cache_key(request, **credentials)  # "<site>:<email>"
        address = self.get_client_ip(request)
        keys = {"login_failed_pair": f"{account}|{address}", "login_failed_address": None,
                "login_failed_account": account}
        taken = ratelimit.RateLimitUsage(usage=[])
        for action in FAILED_LOGIN_BUDGETS:
            usage = ratelimit.consume(request, app="allauth.account", action=action, key=keys[action])
            if usage is None:
                taken.rollback()  # a refused attempt costs the other budgets nothing
                raise self.validation_error("too_many_login_attempts")
            taken.usage.extend(usage.usage)
        return taken


# Authenticator.data holds "enc1$<base64 of a key-ring token>" for the TOTP secret and the
# recovery-code seed. The associated data ties a token to this use: an encrypted value copied
# here from another table does not decrypt.
MFA_TOKEN_PREFIX = "enc1$"
MFA_ASSOCIATED_DATA = b"allauth.mfa"


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        token = keyring().encrypt(text.encode(), associated_data=MFA_ASSOCIATED_DATA)
        return MFA_TOKEN_PREFIX + base64.b64encode(token).decode("ascii")

    def decrypt(self, encrypted_text: str) -> str:
        if not encrypted_text.startswith(MFA_TOKEN_PREFIX):
            # Written before this adapter existed (base32 or hex in clear): still usable, and
            # `manage.py reencrypt` encrypts it (see mfa_data_reencrypt).
            return encrypted_text
        token = base64.b64decode(encrypted_text[len(MFA_TOKEN_PREFIX):])
        return keyring().decrypt(token, associated_data=MFA_ASSOCIATED_DATA).decode()

    def is_current(self, value: str) -> bool:
        """True when `value` is encrypted with the newest key (nothing to re-encrypt)."""
        if not value.startswith(MFA_TOKEN_PREFIX):
            return False
        try:
            return keyring().is_current(base64.b64decode(value[len(MFA_TOKEN_PREFIX):]))
        except (DecryptionError, ValueError):
            return False


# The secret-bearing entries of Authenticator.data, per authenticator type.
MFA_SECRET_KEYS = {"totp": ("secret",), "recovery_codes": ("seed",)}


def mfa_data_reencrypt(data: dict, type_: str) -> dict | None:
    """`data` with its secrets encrypted under the newest key, or None when it already is."""
    adapter = MFAAdapter()
    changed = dict(data)
    for name in MFA_SECRET_KEYS.get(type_, ()):
        value = data.get(name)
        if isinstance(value, str) and not adapter.is_current(value):
            changed[name] = adapter.encrypt(adapter.decrypt(value))
    codes = data.get("migrated_codes")
    if type_ == "recovery_codes" and isinstance(codes, list):
        changed["migrated_codes"] = [c if adapter.is_current(c) else adapter.encrypt(adapter.decrypt(c))
                                     for c in codes]
    return changed if changed != data else None


def mfa_authenticators_reencrypt() -> int:
    """Encrypt every authenticator's secrets under the newest key (`manage.py reencrypt`), also
    those stored in clear before MFAAdapter existed. Returns how many rows changed."""
    from allauth.mfa.models import Authenticator
    from django.db import transaction

    from portal.rls import staff_scope

    changed = 0
    with transaction.atomic(), staff_scope():
        for authenticator in Authenticator.objects.select_for_update().order_by("pk"):
            data = mfa_data_reencrypt(authenticator.data, authenticator.type)
            if data is not None:
                authenticator.data = data
                authenticator.save(update_fields=["data"])
                changed += 1
    return changed
