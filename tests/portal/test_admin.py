"""The back office: staff see every client; their changes land in the audit log."""
from django.urls import reverse

from portal.models import AuditEvent, Client
from portal.rls import staff_scope


def test_staff_see_every_client_in_admin(tenants, client, staff):
    client.force_login(staff)
    page = client.get(reverse("admin:portal_client_changelist"))
    assert page.status_code == 200
    assert "Alpha B.V." in page.text and "Bravo B.V." in page.text


def test_client_user_cannot_enter_admin(tenants, client):
    client.force_login(tenants.owner_a)
    response = client.get(reverse("admin:portal_client_changelist"))
    assert response.status_code == 302 and "login" in response.url


def test_staff_change_in_admin_is_audited(tenants, client, staff):
    client.force_login(staff)
    url = reverse("admin:portal_client_change", args=[tenants.client_a.pk])
    form = {
        "brand": tenants.client_a.brand_id, "name": "Alpha Renamed B.V.", "kvk_number": "12345678",
        "vat_number": "NL123456789B01", "billing_email": "billing@alpha.test", "country": "NL",
        "default_currency": "EUR", "locale": "nl", "time_zone": "Europe/Amsterdam",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content
    with staff_scope():
        assert Client.objects.get(pk=tenants.client_a.pk).name == "Alpha Renamed B.V."
        [event] = AuditEvent.objects.filter(action=AuditEvent.Action.ADMIN_CHANGED)
    assert event.actor_id == staff.pk and event.client_id == tenants.client_a.pk
    assert event.object_repr == "Alpha Renamed B.V."


def test_audit_log_is_filterable_and_read_only_in_admin(tenants, client, staff):
    client.force_login(staff)
    client.post(reverse("account_logout"))
    client.force_login(staff)
    listing = client.get(reverse("admin:portal_auditevent_changelist"), {"action": "auth.logout"})
    assert listing.status_code == 200 and "staff@portal.test" in listing.text
    with staff_scope():
        event = AuditEvent.objects.first()
    assert client.post(reverse("admin:portal_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403


def test_every_back_office_list_and_detail_page_opens(client, committed):
    from django.contrib import admin
    from django.core.management import call_command
    import io

    from tests.portal.factories import UserFactory

    # Committed for real: the demo's events are applied by jobs, which run with no transaction open.
    call_command("load_demo", stdout=io.StringIO())
    staff = committed.create(lambda: UserFactory(is_staff=True, is_superuser=True, email="staff@portal.test"))
    client.force_login(staff)
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        listing = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert listing.status_code == 200, meta.label
        with staff_scope():
            first = model._default_manager.first()
        if first is not None:
            detail = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk]))
            assert detail.status_code == 200, meta.label
            # Every row (inline rows too) is named, never "InvoiceLine object (5)".
            assert " object (" not in detail.text, meta.label
