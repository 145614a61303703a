"""A reminder email as its reader gets it: in the brand's look, in the reader's language (a
contact's own, the client's for the billing address), with the open amount, the due date, a
Pay button and the way to the email settings; one email per reader, no second one from the
portal notification."""
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import translation

from portal.models import Notification, NotificationKind, NotificationPreference
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory
from tests.reminders.test_scanner import ISSUED, _day, _policy, _scan_and_send


def _world():
    brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, primary_colour="#0b6e4f",
                         legal_footer="Acme · KvK 12345678", iban="NL91ABNA0417164300")
    _policy(brand)
    client = ClientFactory(brand=brand, name="Alpha B.V.", locale="nl", billing_email="ap@alpha.test")
    MembershipFactory(client=client, user__email="anna@alpha.test", user__language="nl")
    MembershipFactory(client=client, user__email="erik@alpha.test", user__language="en")
    invoice = make_invoice(client, number="R-9", issue_date=ISSUED, due_days=14, lines=[line(unit_price="1080.00")])
    return client, invoice


def test_a_reminder_email_speaks_its_readers_language_with_amount_due_date_and_pay_button(db):
    client, invoice = _world()
    _scan_and_send(_day(invoice, 1))
    by_address = {m.to[0]: m for m in mail.outbox}
    assert sorted(by_address) == ["anna@alpha.test", "ap@alpha.test", "erik@alpha.test"]
    pay_link = f"{settings.SITE_URL}{reverse('invoices:pay', args=[invoice.pk])}"
    settings_link = f"{settings.SITE_URL}{reverse('portal:notification_preferences')}"
    english = by_address["erik@alpha.test"]
    assert english.subject == "[friendly] Invoice R-9: €1,306.80"
    for dutch in (by_address["anna@alpha.test"], by_address["ap@alpha.test"]):  # a contact, the billing address
        assert dutch.subject == "[friendly] Factuur R-9"
        assert "Openstaand saldo: €\u00a01.306,80" in dutch.body and "Vervaldatum: 16 nov 2026" in dutch.body
    assert "was due 16 Nov 2026" in english.body and "Due date: 16 Nov 2026" in english.body
    html, mime = english.alternatives[0]
    assert mime == "text/html" and "#0b6e4f" in html and "Acme · KvK 12345678" in html
    assert f'href="{pay_link}"' in html and ">Pay now</a>" in html and f'href="{settings_link}"' in html
    assert pay_link in english.body and settings_link in english.body
    assert english.from_email.startswith("Acme Accounting B.V. <")


def test_the_portal_shows_the_reminder_and_sends_no_second_email(db):
    client, invoice = _world()
    _scan_and_send(_day(invoice, 1))
    with staff_scope():
        notification = Notification.objects.get(kind=NotificationKind.REMINDER, user__email="erik@alpha.test")
    assert notification.email_status == Notification.EmailStatus.OFF  # the reminder email is the email
    assert notification.pay_url == reverse("invoices:pay", args=[invoice.pk])
    with translation.override("nl"):
        assert notification.text == ("Betalingsherinnering: factuur R-9, €\u00a01.306,80 openstaand, "
                                     "te betalen vóór 16 nov 2026")


def test_a_contact_who_turned_reminder_emails_off_gets_none_the_billing_address_still_does(db):
    client, invoice = _world()
    with staff_scope():
        NotificationPreference.objects.create(user=client.memberships.get(user__email="erik@alpha.test").user,
                                              kind=NotificationKind.REMINDER, email=False)
    _scan_and_send(_day(invoice, 1))
    assert sorted(m.to[0] for m in mail.outbox) == ["anna@alpha.test", "ap@alpha.test"]
