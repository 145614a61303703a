"""Every word and number in the contact's language, as a client sees it (Chromium, the four
screens): the notifications page and the overview's recent activity with the locale's money and
dates, and the email a real worker sent about the new invoice, its links on the live server's
address (SITE_URL), with the amount, the due date, a Pay button and the email settings link."""
import email
import email.header
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.support import check_page, log_in
from tests.invoices.factories import line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

pytestmark = pytest.mark.e2e
NBSP = "\u00a0"
WORDS = {  # an invoice of € 1.306,80 issued 25 Nov 2026, due 17 Dec 2026, with € 306,80 paid
    "en": {"title": "New invoice LANG-{n}: €1,306.80, due 17 Dec 2026", "paid": "€306.80", "issued": "25 Nov 2026",
           "amount": "Amount: €1,306.80", "due": "Due date: 17 Dec 2026", "pay": "Pay now",
           "settings": "Email settings: choose which emails you receive"},
    "nl": {"title": f"Nieuwe factuur LANG-{{n}}: €{NBSP}1.306,80, te betalen vóór 17 dec 2026",
           "paid": f"€{NBSP}306,80", "issued": "25 nov 2026", "amount": f"Bedrag: €{NBSP}1.306,80",
           "due": "Vervaldatum: 17 dec 2026", "pay": "Nu betalen",
           "settings": "E-mailinstellingen: kies welke e-mails u ontvangt"},
}


def _email_to(directory, address: str, subject: str, seconds: float = 30.0) -> email.message.Message:
    """The email the worker wrote for `address` whose subject starts with `subject` (the file
    backend: one .log file per batch of messages)."""
    deadline = time.monotonic() + seconds
    while True:
        for path in Path(directory).glob("*.log"):
            for raw in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
                if raw.strip():
                    message = email.message_from_bytes(raw.strip())
                    said = str(email.header.make_header(email.header.decode_header(message["Subject"] or "")))
                    if message["To"] == address and said.startswith(subject):
                        return message
        assert time.monotonic() < deadline, f"no email to {address}"
        time.sleep(0.2)


def _part(message, mime: str) -> str:
    return next(p for p in message.walk() if p.get_content_type() == mime).get_payload(decode=True).decode()


def test_notifications_activity_and_email_in_the_contacts_language(
        screen, committed, live_url, celery_worker_process, test_email_dir):
    language, number = screen.language, f"{screen.language}{screen.screen_width}"
    words = WORDS[language]
    address = f"lang-{number}@lang.test"

    def ledger():
        brand = BrandFactory(name="Acme Accounting B.V.", primary_colour="#0b6e4f")
        client = ClientFactory(brand=brand, name="Taal B.V.", locale=language)
        MembershipFactory(client=client, user__email=address, user__language=language, user__first_name="Sam")
        invoice = make_invoice(client, number=f"LANG-{number}", due_days=22, lines=[line(unit_price="1080.00")])
        pay(client, [(invoice, "306.80")])
        return invoice

    invoice = committed.create(ledger)
    log_in(screen, f"{live_url}/", address)

    activity = screen.locator("section", has=screen.locator("#activity-heading"))
    expect(activity).to_contain_text(words["paid"])
    expect(activity).to_contain_text(words["issued"])
    check_page(screen, "overview-activity")

    screen.goto(f"{live_url}/notifications/")
    expect(screen.locator(".notification-list")).to_contain_text(words["title"].format(n=number))
    check_page(screen, "notifications")

    message = _email_to(test_email_dir, address, subject=words["title"].format(n=number))
    text, html = _part(message, "text/plain"), _part(message, "text/html")
    pay_link = f"{live_url}/invoices/{invoice.pk}/pay/"
    assert words["amount"] in text and words["due"] in text
    assert f"{words['pay']}:\n{pay_link}" in text.replace(f"{words['pay']}:\r\n", f"{words['pay']}:\n")
    assert f"{live_url}/invoices/{invoice.pk}/" in text
    assert f'<a href="{pay_link}"' in html and f">{words['pay']}</a>" in html
    assert f'<a href="{live_url}/notifications/settings/"' in html and words["settings"] in html
    links = set(re.findall(r'href="(https?://[^"]+)"', html))
    assert links and all(link.startswith(f"{live_url}/") for link in links), links
    assert any(part.get_filename() == f"LANG-{number}.pdf" for part in message.walk())
