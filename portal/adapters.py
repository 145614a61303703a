"""How django-allauth behaves here: no self sign-up; staff land in admin, clients in the portal."""
from allauth.account.adapter import DefaultAccountAdapter
from django.urls import reverse


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        # Client contacts are invited by the back office; nobody signs up alone.
        return False

    def get_login_redirect_url(self, request):
        if request.user.is_staff:
            return reverse("admin:index")
        return reverse("portal:home")
