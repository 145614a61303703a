"""allauth's emails (sign-in code, password reset, unknown address) in the brand's look and the
contact's language, never its default "Hello from <site>!"."""
import re

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse

from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


@pytest.fixture
def anna(db):
    brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, primary_colour="#0b6e4f",
                         support_email="support@acme.test", legal_footer="Acme · KvK 12345678")
    client = ClientFactory(brand=brand, name="Alpha B.V.")
    return MembershipFactory(client=client, user__email="anna@alpha.test", user__language="nl",
                             user__first_name="Anna").user


def _the_email():
    [message] = mail.outbox
    html, mime = message.alternatives[0]
    assert mime == "text/html"
    return message, html


def _branded(message, html):
    assert message.subject.endswith(" · Acme Accounting B.V.")
    assert message.from_email == f"Acme Accounting B.V. <{settings.DEFAULT_FROM_EMAIL}>"
    assert message.reply_to == ["support@acme.test"]
    assert "#0b6e4f" in html and "Acme · KvK 12345678" in html and "Acme · KvK 12345678" in message.body
    for body in (message.body, html, message.subject):
        assert "Hello from" not in body and "Thank you for using" not in body


def test_the_sign_in_code_email_is_branded_and_in_the_contacts_language(anna, client):
    # An English page, a Dutch contact: the email speaks the contact's language.
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    client.post(reverse("account_request_login_code"), {"email": "anna@alpha.test"})
    message, html = _the_email()
    _branded(message, html)
    assert message.subject == "Uw inlogcode · Acme Accounting B.V."
    assert message.body.startswith("Hallo Anna,") and "Uw inlogcode:" in message.body
    code = re.search(r"^([A-Z0-9]{4}-[A-Z0-9]{4})$", message.body, re.M).group(1)
    assert code in html and 'lang="nl"' in html and "Uw inlogcode:" in html


def test_the_password_reset_email_is_branded_and_in_the_contacts_language(anna, client):
    client.post(reverse("account_reset_password"), {"email": "anna@alpha.test"})
    message, html = _the_email()
    _branded(message, html)
    assert message.subject == "Kies een nieuw wachtwoord · Acme Accounting B.V."
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+", message.body).group(0)
    assert f'href="{link}"' in html and ">Kies een nieuw wachtwoord</a>" in html


def test_an_unknown_address_is_answered_in_the_language_of_the_request(anna, client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    client.post(reverse("account_reset_password"), {"email": "nobody@alpha.test"})
    message, html = _the_email()
    _branded(message, html)
    assert message.subject == "No account with this email address · Acme Accounting B.V."
    assert "ask the company that sends you invoices to invite this address" in message.body
    assert "sign up" not in message.body.lower() and "nobody@alpha.test" in html
