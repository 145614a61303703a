"""Login, logout and failed-login events into the audit log."""
from django.contrib.auth.models import update_last_login
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.conf import settings
from django.dispatch import receiver
from django.utils import translation

from portal.models import AuditEvent
from portal.rls import user_scope
from portal.services import audit_record

# Django's own receiver saves last_login in whatever scope the login happens in; a user's row
# is visible only in its own scope (row-level security), so save it there. Taking Django's
# dispatch_uid makes django.contrib.auth's later connect (its app comes after portal) a no-op.
@receiver(user_logged_in, dispatch_uid="update_last_login")
def scoped_update_last_login(sender, user, **kwargs):
    with user_scope(user.pk):
        update_last_login(sender, user, **kwargs)


@receiver(user_logged_in, dispatch_uid="audit_login")
def audit_login(sender, request, user, **kwargs):
    audit_record(action=AuditEvent.Action.LOGIN, actor=user, request=request)
    if request is not None and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        # Speak the contact's language from the first message on ("Signed in as ...").
        translation.activate(user.language)
        request.LANGUAGE_CODE = user.language


@receiver(user_logged_out, dispatch_uid="audit_logout")
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action=AuditEvent.Action.LOGOUT, actor=user, request=request)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # `credentials` has the password already masked by Django; keep only the login.
    login = credentials.get("email") or credentials.get("username") or ""
    audit_record(action=AuditEvent.Action.LOGIN_FAILED, request=request, actor_email=str(login),
                 details={"login": str(login)[:254]})
