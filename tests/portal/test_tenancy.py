"""Who sees which client: owner, member of several, outsider (who always gets 404)."""
import pytest
from django.urls import reverse

from portal.models import AuditEvent
from portal.rls import staff_scope


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


def test_member_of_one_client_is_scoped_to_it_at_once(tenants, login):
    page = login(tenants.owner_a).get(reverse("portal:home"))
    assert page.status_code == 200
    assert "Welcome, Alpha B.V." in page.text
    assert "Bravo B.V." not in page.text


def test_outsider_gets_404_for_another_clients_record(tenants, login):
    http = login(tenants.outsider)
    assert http.get(reverse("portal:client_detail", args=[tenants.client_a.pk])).status_code == 404
    own = http.get(reverse("portal:client_detail", args=[tenants.client_b.pk]))
    assert own.status_code == 200 and "Bravo B.V." in own.text


def test_outsider_cannot_switch_into_a_client_it_does_not_belong_to(tenants, login):
    http = login(tenants.outsider)
    response = http.post(reverse("portal:switch_client"), {"client_id": tenants.client_a.pk})
    assert response.status_code == 404
    assert "Welcome, Bravo B.V." in http.get(reverse("portal:home")).text


def test_member_of_several_clients_picks_one_and_can_switch(tenants, login):
    http = login(tenants.member_of_both)
    first = http.get(reverse("portal:home"))
    assert first.status_code == 302 and first.url.startswith(reverse("portal:choose_client"))
    choices = http.get(first.url).text
    assert "Alpha B.V." in choices and "Bravo B.V." in choices

    response = http.post(reverse("portal:switch_client"), {"client_id": tenants.client_b.pk, "next": "/"})
    assert response.status_code == 302 and response.url == "/"
    assert "Welcome, Bravo B.V." in http.get("/").text
    # The choice scopes every request: the other client's record is out of reach until switched.
    assert http.get(reverse("portal:client_detail", args=[tenants.client_a.pk])).status_code == 404

    http.post(reverse("portal:switch_client"), {"client_id": tenants.client_a.pk})
    assert "Welcome, Alpha B.V." in http.get("/").text
    assert http.get(reverse("portal:client_detail", args=[tenants.client_a.pk])).status_code == 200

    with staff_scope():
        switches = AuditEvent.objects.filter(action=AuditEvent.Action.CLIENT_SWITCHED, actor=tenants.member_of_both)
        assert sorted(switches.values_list("client_id", flat=True)) == sorted(
            [tenants.client_a.pk, tenants.client_b.pk])


def test_switch_refuses_to_redirect_off_site(tenants, login):
    http = login(tenants.member_of_both)
    response = http.post(reverse("portal:switch_client"),
                         {"client_id": tenants.client_a.pk, "next": "https://evil.test/"})
    assert response.url == reverse("portal:home")


def test_user_without_any_client_is_told_so(db, login):
    from tests.portal.factories import UserFactory

    response = login(UserFactory()).get(reverse("portal:home"))
    assert response.status_code == 403
    assert "not linked to a company" in response.text


def test_anonymous_visitor_is_sent_to_login_with_the_page_to_return_to(db, client):
    response = client.get(reverse("portal:client_detail", args=[1]))
    assert response.status_code == 302
    assert response.url == f"{reverse('account_login')}?next=/clients/1/"


def test_portal_speaks_the_users_language(tenants, login):
    http = login(tenants.owner_a)
    http.post("/i18n/setlang/", {"language": "nl", "next": "/"})
    page = http.get("/")
    assert "Welkom, Alpha B.V." in page.text and '<html lang="nl">' in page.text
    http.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert "Welcome, Alpha B.V." in http.get("/").text


def test_overview_shows_only_the_clients_own_invoices(tenants, login):
    from tests.invoices.factories import make_invoice

    mine = make_invoice(tenants.client_a, number="A-100")
    make_invoice(tenants.client_b, number="B-200")
    page = login(tenants.owner_a).get("/")
    assert "A-100" in page.text and "B-200" not in page.text
    assert f"/invoices/{mine.pk}/" in page.text and "/statement/" in page.text
