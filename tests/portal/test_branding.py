"""Brand colours stay readable, the brand names the page, and the chosen language sticks."""
from portal.branding import contrast_ratio, readable_on_white
from portal.models import User
from portal.rls import staff_scope
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


def test_a_colour_that_fails_aa_contrast_gets_a_darker_readable_fallback():
    assert readable_on_white("#1f4e79") == "#1f4e79"  # already fine
    light = "#f2a900"
    assert contrast_ratio(light, "#ffffff") < 4.5
    fallback = readable_on_white(light)
    assert fallback != light and contrast_ratio(fallback, "#ffffff") >= 4.5


def test_pages_carry_the_brand_name_colours_favicon_and_footer(db, client):
    brand = BrandFactory(name="Sunny Side B.V.", is_default=True, primary_colour="#ffd700",
                         legal_footer="Sunny Side B.V. · KvK 99999999")
    user = MembershipFactory(client=ClientFactory(brand=brand)).user
    client.force_login(user)
    page = client.get("/")
    assert "· Sunny Side B.V.</title>" in page.text and "Sunny Side B.V. · KvK 99999999" in page.text
    assert "--brand-primary: #ffd700" not in page.text  # too light for white text: replaced
    assert f"--brand-primary: {readable_on_white('#ffd700')}" in page.text
    assert '<link rel="icon" href="data:image/svg+xml,' in page.text


def test_the_language_switch_is_remembered_for_the_contact(db, client):
    user = MembershipFactory(user__language="en").user
    client.force_login(user)
    client.post("/language/", {"language": "nl", "next": "/"})
    with staff_scope():
        user = User.objects.get(pk=user.pk)
    assert user.language == "nl"
    # A new browser (no language cookie) speaks the contact's language straight away.
    client.cookies.clear()
    client.force_login(user)
    assert '<html lang="nl">' in client.get("/").text


def test_a_dutch_contact_is_welcomed_in_dutch_straight_after_logging_in(db, client):
    from tests.portal.factories import PASSWORD

    MembershipFactory(user__email="anna@alpha.test", user__language="nl")
    response = client.post("/accounts/login/", {"login": "anna@alpha.test", "password": PASSWORD}, follow=True)
    assert "Welkom" in response.text
    assert "Successfully signed in" not in response.text
