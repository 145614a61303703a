"""A client contact and a staff member log in from a phone and from a desktop."""
import pytest
from playwright.sync_api import expect

from tests.e2e.support import open_menu
from tests.portal.factories import PASSWORD, BrandFactory, ClientFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e


def _log_in(page, live_url, email, path="/"):
    page.goto(f"{live_url}{path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()


def _fits_the_screen(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_client_logs_in_and_lands_on_its_overview(committed, live_url, page):
    def build():
        brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, primary_colour="#0b6e4f")
        client = ClientFactory(brand=brand, name="Northwind Traders B.V.")
        MembershipFactory(client=client, user__email="alice@northwind.test")
        return client

    client = committed.create(build)
    _log_in(page, live_url, "alice@northwind.test", path=f"/clients/{client.pk}/")
    # The deep link survives the login.
    page.wait_for_url(f"{live_url}/clients/{client.pk}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Northwind Traders B.V."
    assert "Acme Accounting B.V." in page.title()
    header_colour = page.eval_on_selector(".site-header", "e => getComputedStyle(e).backgroundColor")
    assert header_colour == "rgb(11, 110, 79)"  # the brand's primary colour
    assert _fits_the_screen(page)
    open_menu(page, account=True)
    for link in page.locator(".site-nav a, .account-menu__panel a, .account-menu__panel button").all():
        assert link.bounding_box()["height"] >= 44  # tap targets


def test_wrong_password_is_refused_with_a_clear_message(committed, live_url, page):
    committed.create(lambda: UserFactory(email="carol@client.test"))
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Email").fill("carol@client.test")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign In").click()
    # The answer is a new page: wait for it rather than look at the one the click is leaving.
    expect(page.get_by_text("The email address and/or password you specified are not correct.")).to_be_visible()
    assert _fits_the_screen(page)


def test_staff_member_lands_in_the_back_office(committed, live_url, page):
    from tests.staff_mfa import enrol_totp, totp_code

    staff = committed.create(lambda: UserFactory(email="sam@acme.test", is_staff=True, is_superuser=True))
    secret = enrol_totp(staff)
    _log_in(page, live_url, "sam@acme.test")
    # The back office needs a second factor (portal/staff_mfa.py).
    page.wait_for_url(f"{live_url}/accounts/2fa/authenticate/")
    page.get_by_placeholder("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_url}/admin/")
    expect(page.get_by_role("link", name="Audit events")).to_be_visible()


def test_contact_of_two_companies_picks_one_and_switches(committed, live_url, page):
    def build():
        brand = BrandFactory(is_default=True)
        globex = ClientFactory(brand=brand, name="Globex Nederland B.V.")
        initech = ClientFactory(brand=brand, name="Initech Logistics B.V.")
        bob = MembershipFactory(client=globex, user__email="bob@globex.test").user
        MembershipFactory(client=initech, user=bob)
        return globex, initech

    globex, initech = committed.create(build)
    _log_in(page, live_url, "bob@globex.test", path=f"/clients/{initech.pk}/")
    page.get_by_role("heading", name="Which company do you want to work for?").wait_for()
    assert _fits_the_screen(page)
    choice = page.get_by_role("button", name="Initech Logistics B.V.")
    assert choice.bounding_box()["height"] >= 44
    choice.click()
    # Back on the page the deep link asked for, now scoped to Initech.
    page.wait_for_url(f"{live_url}/clients/{initech.pk}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Initech Logistics B.V."

    open_menu(page, account=True)
    page.get_by_role("link", name="Switch company").click()
    page.get_by_role("button", name="Globex Nederland B.V.").click()
    page.wait_for_url(f"{live_url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Welcome, Globex Nederland B.V."
    page.goto(f"{live_url}/clients/{initech.pk}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Not found"
