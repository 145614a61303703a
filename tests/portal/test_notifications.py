"""Notifications: in-app for every contact, email (HTML and text, brand, language) unless turned off,
each email a job written with its notification and sent once however often it is retried,
deep links that survive a login, and nothing of another client."""
import datetime
import threading
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import timezone, translation

from invoices import services
from portal import jobs
from portal.models import Brand, Job, Notification, NotificationKind, NotificationPreference
from portal.notifications import notification_email_deliver
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import PASSWORD, BrandFactory, ClientFactory, MembershipFactory

SEND = "django.core.mail.backends.locmem.EmailBackend.send_messages"


def _contacts():
    brand = BrandFactory(name="Acme Accounting B.V.", is_default=True, primary_colour="#0b6e4f",
                         support_email="support@acme.test", legal_footer="Acme · KvK 12345678")
    alpha = ClientFactory(brand=brand, name="Alpha B.V.")
    bravo = ClientFactory(brand=brand, name="Bravo B.V.")
    anna = MembershipFactory(client=alpha, user__email="anna@alpha.test", user__language="nl",
                             user__first_name="Anna").user
    erik = MembershipFactory(client=alpha, user__email="erik@alpha.test", user__language="en",
                             user__first_name="Erik").user
    outsider = MembershipFactory(client=bravo, user__email="bob@bravo.test").user
    return {"alpha": alpha, "bravo": bravo, "anna": anna, "erik": erik, "outsider": outsider}


@pytest.fixture
def contacts(db):
    return _contacts()


def _notifications(user=None):
    with staff_scope():
        rows = Notification.objects.order_by("id")
        return list(rows.filter(user=user) if user else rows)


def _send_all():
    """What the email jobs do (tests with `db` cannot run jobs: they refuse an open transaction)."""
    with staff_scope():
        for notification in _notifications():
            notification_email_deliver(notification_id=notification.pk)


def _email_job(notification) -> Job:
    with staff_scope():
        return Job.objects.get(kind="notification.email", key=f"notification:{notification.pk}")


def _make_due(job):
    with staff_scope():
        Job.objects.filter(pk=job.pk).update(run_after=timezone.now())


def test_each_email_is_a_job_written_with_its_notification(contacts):
    with staff_scope():
        NotificationPreference.objects.create(user=contacts["anna"], kind=NotificationKind.INVOICE_ISSUED,
                                              email=False)
    make_invoice(contacts["alpha"], number="INV-76")
    anna, erik = _notifications(contacts["anna"])[0], _notifications(contacts["erik"])[0]
    assert _email_job(erik).payload == {"notification": erik.pk}
    assert anna.email_status == Notification.EmailStatus.OFF
    with staff_scope():  # email turned off: no job
        assert not Job.objects.filter(key=f"notification:{anna.pk}").exists()


def test_new_invoice_notifies_each_contact_in_its_language_with_a_deep_link(contacts):
    invoice = make_invoice(contacts["alpha"], number="INV-77", lines=[line(unit_price="100.00")])
    anna, erik = _notifications(contacts["anna"]), _notifications(contacts["erik"])
    assert [n.kind for n in anna + erik] == [NotificationKind.INVOICE_ISSUED] * 2
    with translation.override("nl"):
        assert anna[0].text.startswith("Nieuwe factuur INV-77")
    with translation.override("en"):
        assert erik[0].text.startswith("New invoice INV-77")
    assert anna[0].url == reverse("invoices:detail", args=[invoice.pk])
    assert _notifications(contacts["outsider"]) == []
    _send_all()
    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert set(by_recipient) == {"anna@alpha.test", "erik@alpha.test"}
    dutch, english = by_recipient["anna@alpha.test"], by_recipient["erik@alpha.test"]
    assert "Hallo Anna" in dutch.body and "Hello Erik" in english.body
    html, mime = english.alternatives[0]
    assert mime == "text/html" and "#0b6e4f" in html and "Acme · KvK 12345678" in html
    link = f"{settings.SITE_URL}/invoices/{invoice.pk}/"
    assert link in english.body and link in html
    assert english.subject == "New invoice INV-77: €121.00, due 25 Dec 2026 · Acme Accounting B.V."
    assert dutch.subject == "Nieuwe factuur INV-77: €\u00a0121,00, te betalen vóór 25 dec 2026 · Acme Accounting B.V."
    assert english.reply_to == ["support@acme.test"]
    assert {n.email_status for n in _notifications()} == {Notification.EmailStatus.SENT}


def test_payment_and_credit_note_notify_too(contacts):
    invoice = make_invoice(contacts["alpha"], number="INV-78")
    pay(contacts["alpha"], [(invoice, "21.00")])
    with staff_scope():
        services.credit_note_create(invoice=invoice, number="CN-78", issue_date=TODAY, lines=[line(unit_price="10.00")])
    kinds = [n.kind for n in _notifications(contacts["erik"])]
    assert kinds == [NotificationKind.INVOICE_ISSUED, NotificationKind.PAYMENT_RECEIVED,
                     NotificationKind.CREDIT_NOTE_ISSUED]


def test_email_can_be_turned_off_per_kind_but_in_app_stays(contacts, client):
    client.force_login(contacts["erik"])
    response = client.post(reverse("portal:notification_preferences"),
                           {"email": [NotificationKind.PAYMENT_RECEIVED, NotificationKind.CREDIT_NOTE_ISSUED]})
    assert response.status_code == 302
    with staff_scope():
        assert NotificationPreference.objects.get(user=contacts["erik"], kind=NotificationKind.INVOICE_ISSUED).email is False
    make_invoice(contacts["alpha"], number="INV-79")
    [erik] = _notifications(contacts["erik"])
    assert erik.email_status == Notification.EmailStatus.OFF
    _send_all()
    assert [m.to for m in mail.outbox] == [["anna@alpha.test"]]


@pytest.fixture
def bells(monkeypatch):
    """The test runs the jobs itself: no bell reaches a worker (one may be running already)."""
    monkeypatch.setattr(jobs.current_app, "send_task", lambda name, args=None, kwargs=None, **options: None)


def test_an_email_retried_after_a_failure_is_sent_once(committed, bells):
    people = committed.create(_contacts)
    committed.create(lambda: make_invoice(people["alpha"], number="INV-80"))
    [erik] = _notifications(people["erik"])
    job = _email_job(erik)
    with mock.patch(SEND, side_effect=ConnectionRefusedError("SMTP down")):
        assert jobs.job_run(job.pk) == Job.State.RETRYING
    with staff_scope():
        erik.refresh_from_db()
    assert (erik.email_status, erik.email_attempts) == (Notification.EmailStatus.PENDING, 1)
    assert erik.email_error == "ConnectionRefusedError: SMTP down"
    _make_due(job)
    assert jobs.job_run(job.pk) == Job.State.DONE
    assert jobs.job_run(job.pk) is None  # a late bell changes nothing
    with staff_scope():  # nor does the work of the job run again
        assert notification_email_deliver(notification_id=erik.pk) == "skipped"
    assert [m.to for m in mail.outbox] == [["erik@alpha.test"]]
    with staff_scope():
        erik.refresh_from_db()
    assert (erik.email_status, erik.email_attempts, erik.email_error) == (Notification.EmailStatus.SENT, 2, "")
    assert erik.emailed_at is not None


def test_an_email_that_keeps_failing_shows_failed_after_the_last_attempt(committed, bells):
    people = committed.create(_contacts)
    committed.create(lambda: make_invoice(people["alpha"], number="INV-81"))
    [anna] = _notifications(people["anna"])
    job = _email_job(anna)
    outcomes = []
    with mock.patch(SEND, side_effect=ConnectionRefusedError("SMTP down")):
        for _ in range(job.max_attempts):
            _make_due(job)
            outcomes.append(jobs.job_run(job.pk))
    assert outcomes == [Job.State.RETRYING] * (job.max_attempts - 1) + [Job.State.DEAD]
    with staff_scope():
        anna.refresh_from_db()
        assert "SMTP down" in Job.objects.get(pk=job.pk).last_error
    assert (anna.email_status, anna.email_attempts) == (Notification.EmailStatus.FAILED, job.max_attempts)
    assert anna.email_error == "ConnectionRefusedError: SMTP down"
    assert mail.outbox == []


def test_notification_centre_counts_unread_and_marks_read(contacts, client):
    invoice = make_invoice(contacts["alpha"], number="INV-81")
    make_invoice(contacts["alpha"], number="INV-82")
    client.force_login(contacts["erik"])
    home = client.get("/")
    assert '<span class="count" aria-label="2 unread">2</span>' in home.text
    [newest, oldest] = _notifications(contacts["erik"])[::-1]
    listed = client.get(reverse("portal:notifications")).text
    # Each notification is a button in a POST form: opening one from the list marks it read.
    assert f'action="{reverse("portal:notification_open", args=[oldest.pk])}"' in listed
    opened = client.post(reverse("portal:notification_open", args=[oldest.pk]))
    assert opened.status_code == 302 and opened.url == reverse("invoices:detail", args=[invoice.pk])
    assert '<span class="count" aria-label="1 unread">1</span>' in client.get("/").text
    client.post(reverse("portal:notifications_read_all"))
    assert 'class="count"' not in client.get("/").text
    assert newest.pk


def test_nobody_sees_another_contacts_or_clients_notifications(contacts, client):
    make_invoice(contacts["alpha"], number="INV-83")
    [anna] = _notifications(contacts["anna"])
    client.force_login(contacts["outsider"])
    assert "INV-83" not in client.get(reverse("portal:notifications")).text
    assert client.get(reverse("portal:notification_open", args=[anna.pk])).status_code == 404
    assert client.post(reverse("portal:notification_open", args=[anna.pk])).status_code == 404
    client.force_login(contacts["erik"])
    assert client.get(reverse("portal:notification_open", args=[anna.pk])).status_code == 404
    assert client.post(reverse("portal:notification_open", args=[anna.pk])).status_code == 404
    assert _notifications(contacts["anna"])[0].read_at is None


def test_following_a_notification_link_with_get_leads_there_but_leaves_it_unread(contacts, client):
    # A GET may come from a link prefetcher, a mail scanner or an old bookmark: it changes nothing.
    invoice = make_invoice(contacts["alpha"], number="INV-85")
    [notification] = _notifications(contacts["erik"])
    client.force_login(contacts["erik"])
    followed = client.get(reverse("portal:notification_open", args=[notification.pk]))
    assert followed.status_code == 302 and followed.url == reverse("invoices:detail", args=[invoice.pk])
    assert _notifications(contacts["erik"])[0].read_at is None
    assert '<span class="count" aria-label="1 unread">1</span>' in client.get("/").text
    assert client.put(reverse("portal:notification_open", args=[notification.pk])).status_code == 405
    assert _notifications(contacts["erik"])[0].read_at is None


def test_the_deep_link_goes_through_login_and_lands_on_the_invoice(contacts, client):
    invoice = make_invoice(contacts["alpha"], number="INV-84")
    target = reverse("invoices:detail", args=[invoice.pk])
    response = client.get(target)
    assert response.status_code == 302 and response.url == f"{reverse('account_login')}?next={target}"
    landed = client.post(response.url, {"login": "erik@alpha.test", "password": PASSWORD, "next": target})
    assert landed.url == target
    assert "INV-84" in client.get(target).text


def _reader_sees(client, user, language: str) -> str:
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client.get(reverse("portal:notifications")).text


def test_a_notification_is_written_in_the_readers_language_when_shown(contacts, client):
    make_invoice(contacts["alpha"], number="INV-90", due_days=22, lines=[line(unit_price="1080.00")])
    [notification] = _notifications(contacts["erik"])
    # Stored raw: the message untranslated, money and the date as values, not as text.
    assert notification.message == "New invoice %(number)s: %(amount)s, due %(due)s"
    assert notification.message_args == {"number": "INV-90", "amount": {"money": "1306.80", "currency": "EUR"},
                                         "due": {"date": "2026-12-17"}}
    with translation.override("nl"):
        assert notification.text == "Nieuwe factuur INV-90: €\u00a01.306,80, te betalen vóór 17 dec 2026"
    with translation.override("en"):
        assert notification.text == "New invoice INV-90: €1,306.80, due 17 Dec 2026"
    # The same notification, read by the same contact in one language and then the other.
    assert "Nieuwe factuur INV-90: €\u00a01.306,80, te betalen vóór 17 dec 2026" in _reader_sees(
        client, contacts["erik"], "nl")
    assert "New invoice INV-90: €1,306.80, due 17 Dec 2026" in _reader_sees(client, contacts["erik"], "en")


def test_a_notification_from_before_messages_shows_its_stored_title(contacts, client):
    make_invoice(contacts["alpha"], number="INV-91")
    [notification] = _notifications(contacts["erik"])
    with staff_scope():
        Notification.objects.filter(pk=notification.pk).update(message="", message_args={},
                                                                title="New invoice INV-91: EUR 121.00")
    assert "New invoice INV-91: EUR 121.00" in _reader_sees(client, contacts["erik"], "nl")


def test_the_invoice_email_has_amount_due_date_pay_button_pdf_and_settings_link(contacts):
    invoice = make_invoice(contacts["alpha"], number="INV-92", due_days=22, lines=[line(unit_price="1080.00")])
    _send_all()
    dutch = next(m for m in mail.outbox if m.to == ["anna@alpha.test"])
    html, _ = dutch.alternatives[0]
    pay_link = f"{settings.SITE_URL}/invoices/{invoice.pk}/pay/"
    settings_link = f"{settings.SITE_URL}{reverse('portal:notification_preferences')}"
    for body in (dutch.body, html):
        assert "€\u00a01.306,80" in body and "17 dec 2026" in body
        assert pay_link in body and settings_link in body
    assert ">Nu betalen</a>" in html and "Vervaldatum" in dutch.body
    [(name, content, mime)] = dutch.attachments
    assert (name, mime) == ("INV-92.pdf", "application/pdf") and content.startswith(b"%PDF")
    assert "De PDF zit als bijlage bij deze e-mail." in dutch.body


def test_a_brand_can_keep_pdfs_out_of_emails(contacts):
    with staff_scope():
        Brand.objects.filter(pk=contacts["alpha"].brand_id).update(email_attach_pdf=False)
    make_invoice(contacts["alpha"], number="INV-93")
    _send_all()
    assert [m.attachments for m in mail.outbox] == [[], []]


def test_a_payment_email_has_the_amount_the_receipt_and_no_pay_button(contacts):
    invoice = make_invoice(contacts["alpha"], number="INV-94")
    payment = pay(contacts["alpha"], [(invoice, "21.00")])
    with staff_scope():
        for notification in Notification.objects.filter(kind=NotificationKind.PAYMENT_RECEIVED):
            notification_email_deliver(notification_id=notification.pk)
    receipt_link = f"{settings.SITE_URL}{reverse('payments:receipt', args=[payment.pk])}"
    said = {"erik@alpha.test": ("Payment of €21.00 received for invoice INV-94", "Amount: €21.00",
                                ">View your receipt</a>", "View your receipt:"),
            "anna@alpha.test": ("Betaling van €\u00a021,00 ontvangen voor factuur INV-94", "Bedrag: €\u00a021,00",
                                ">Bekijk uw betalingsbewijs</a>", "Bekijk uw betalingsbewijs:")}
    assert sorted(m.to[0] for m in mail.outbox) == sorted(said)
    for email in mail.outbox:
        subject, amount, button, text_link = said[email.to[0]]
        html, _ = email.alternatives[0]
        assert email.subject.startswith(subject) and amount in email.body and "/pay/" not in email.body
        assert f"{text_link}\n{receipt_link}" in email.body and f'href="{receipt_link}"' in html and button in html
        # The receipt itself, the PDF the client can also download from the portal.
        [(name, content, mime)] = email.attachments
        assert (name, mime) == (f"receipt-{payment.number}.pdf", "application/pdf") and content.startswith(b"%PDF")


def test_a_brand_that_keeps_pdfs_out_of_emails_sends_no_receipt_pdf(contacts):
    with staff_scope():
        Brand.objects.filter(pk=contacts["alpha"].brand_id).update(email_attach_pdf=False)
    pay(contacts["alpha"], [(make_invoice(contacts["alpha"], number="INV-95"), "21.00")])
    with staff_scope():
        for notification in Notification.objects.filter(kind=NotificationKind.PAYMENT_RECEIVED):
            notification_email_deliver(notification_id=notification.pk)
    assert [m.attachments for m in mail.outbox] == [[], []]


# --- A burst: one email for many -----------------------------------------------------------------

HELD, PENDING, SENT = (Notification.EmailStatus.HELD, Notification.EmailStatus.PENDING,
                       Notification.EmailStatus.SENT)


def _burst(client, count: int, prefix: str = "INV-B") -> list:
    return [make_invoice(client, number=f"{prefix}{n:02d}", lines=[line(unit_price="100.00")])
            for n in range(1, count + 1)]


def _mail_to(address: str) -> list:
    return [message for message in mail.outbox if message.to == [address]]


def test_a_burst_of_invoices_reaches_a_contact_as_one_email_after_the_first_three(contacts, settings):
    settings.NOTIFICATION_DIGEST_AFTER, settings.NOTIFICATION_DIGEST_MINUTES = 3, 10
    invoices = _burst(contacts["alpha"], 10)
    erik = _notifications(contacts["erik"])
    # In the portal, each invoice has its notification at once; by email the first three go one
    # by one, the next seven wait ten minutes to go together.
    assert len(erik) == 10 and [n.email_status for n in erik] == [PENDING] * 3 + [HELD] * 7
    assert _email_job(erik[0]).run_after <= timezone.now()
    assert _email_job(erik[3]).run_after >= timezone.now() + datetime.timedelta(minutes=9)

    _send_all()
    mails = _mail_to("erik@alpha.test")
    assert len(mails) == 4  # three of their own, then one of seven
    together = mails[-1]
    assert together.subject == "New invoice (7) · Acme Accounting B.V."
    assert "There are 7 new messages for Alpha B.V., in one email instead of one each:" in together.body
    html, _ = together.alternatives[0]
    for invoice in invoices[3:]:
        link = f"{settings.SITE_URL}/invoices/{invoice.pk}/"
        assert link in together.body and link in html
        assert f"New invoice {invoice.number}: €121.00, due 25 Dec 2026" in together.body
    for invoice in invoices[:3]:
        assert f"/invoices/{invoice.pk}/" not in together.body
    assert together.attachments == []  # each PDF is in the portal; seven would not fit in an email
    assert f"{settings.SITE_URL}{reverse('portal:notifications')}" in together.body
    [dutch] = _mail_to("anna@alpha.test")[3:]
    assert dutch.subject == "Nieuwe factuur (7) · Acme Accounting B.V."
    assert "Hallo Anna" in dutch.body and "Er zijn 7 nieuwe berichten voor Alpha B.V." in dutch.body

    erik = _notifications(contacts["erik"])
    assert {n.email_status for n in erik} == {SENT}
    assert [n.email_sent_with_id for n in erik[4:]] == [erik[3].pk] * 6
    _send_all()  # the other held notifications' jobs, and any repeat, send nothing more
    assert len(_mail_to("erik@alpha.test")) == 4


def test_a_long_burst_lists_some_and_counts_the_rest(contacts, settings, monkeypatch):
    from portal import notifications

    monkeypatch.setattr(notifications, "DIGEST_LISTED", 4)
    settings.NOTIFICATION_DIGEST_AFTER = 1
    invoices = _burst(contacts["bravo"], 9)
    _send_all()
    first, together = _mail_to("bob@bravo.test")
    assert together.subject.startswith("New invoice (8) · ")
    listed = [invoice for invoice in invoices[1:] if f"/invoices/{invoice.pk}/" in together.body]
    assert listed == invoices[1:5]
    assert "And 4 more." in together.body and "And 4 more." in together.alternatives[0][0]


def test_a_burst_is_judged_per_contact_kind_and_window(contacts, settings):
    settings.NOTIFICATION_DIGEST_AFTER, settings.NOTIFICATION_DIGEST_MINUTES = 2, 10
    _burst(contacts["alpha"], 2)
    pay(contacts["alpha"], [(make_invoice(contacts["alpha"], number="INV-P"), "10.00")])
    kinds = [(n.kind, n.email_status) for n in _notifications(contacts["erik"])]
    assert kinds == [(NotificationKind.INVOICE_ISSUED, PENDING)] * 2 + [
        (NotificationKind.INVOICE_ISSUED, HELD), (NotificationKind.PAYMENT_RECEIVED, PENDING)]
    assert [n.email_status for n in _notifications(contacts["outsider"])] == []
    make_invoice(contacts["bravo"], number="INV-O")
    assert [n.email_status for n in _notifications(contacts["outsider"])] == [PENDING]
    with staff_scope():  # ten minutes later, the burst is over: the next goes out on its own
        Notification.objects.update(created_at=timezone.now() - datetime.timedelta(minutes=11))
    make_invoice(contacts["alpha"], number="INV-L")
    assert _notifications(contacts["erik"])[-1].email_status == PENDING
    settings.NOTIFICATION_DIGEST_AFTER = 0  # off: each its own email, however many
    _burst(contacts["alpha"], 3, prefix="INV-C")
    assert [n.email_status for n in _notifications(contacts["erik"])[-3:]] == [PENDING] * 3


def _run_together(held: list) -> list:
    """The jobs run by as many workers, released at the same moment."""
    from django.db import connection

    start = threading.Barrier(len(held))

    def run(job):
        try:
            connection.ensure_connection()  # connected first: connecting would space them out
            start.wait(timeout=30)
            return jobs.job_run(job.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(held)) as pool:
        return list(pool.map(run, held))


def test_held_emails_sent_by_workers_at_once_go_out_once_and_a_failed_one_again_whole(committed, bells, settings):
    settings.NOTIFICATION_DIGEST_AFTER = 1
    people = committed.create(_contacts)
    committed.create(lambda: _burst(people["alpha"], 8))
    erik = _notifications(people["erik"])
    held = [_email_job(n) for n in _notifications() if n.email_status == HELD]
    assert len(held) == 14  # seven for each of the two contacts
    for job in held:
        _make_due(job)
    with mock.patch(SEND, side_effect=ConnectionRefusedError("SMTP down")):
        assert jobs.job_run(_email_job(erik[1]).pk) == Job.State.RETRYING
    erik = _notifications(people["erik"])
    assert [n.email_sent_with_id for n in erik[2:]] == [erik[1].pk] * 6  # taken along, kept for the retry
    assert {n.email_status for n in erik[1:]} == {PENDING}
    _make_due(_email_job(erik[1]))
    states = _run_together(held)  # fourteen workers take the held jobs at once
    assert set(states) == {Job.State.DONE}
    erik_mails, anna_mails = _mail_to("erik@alpha.test"), _mail_to("anna@alpha.test")
    assert [m.subject.split(" · ")[0] for m in erik_mails] == ["New invoice (7)"]
    assert [m.subject.split(" · ")[0] for m in anna_mails] == ["Nieuwe factuur (7)"]
    for person in ("erik", "anna"):  # the first went on its own (its job not run here), the rest together
        assert [n.email_status for n in _notifications(people[person])] == [PENDING] + [SENT] * 7
    with staff_scope():
        assert set(Job.objects.filter(pk__in=[job.pk for job in held]).values_list("state", flat=True)) == {
            Job.State.DONE}


def test_a_held_email_that_keeps_failing_shows_each_of_its_notifications_failed(committed, bells, settings):
    settings.NOTIFICATION_DIGEST_AFTER = 1
    people = committed.create(_contacts)
    committed.create(lambda: _burst(people["bravo"], 4))
    first, *held = _notifications(people["outsider"])
    job = _email_job(held[0])
    with mock.patch(SEND, side_effect=ConnectionRefusedError("SMTP down")):
        for _ in range(job.max_attempts):
            _make_due(job)
            jobs.job_run(job.pk)
    with staff_scope():
        job.refresh_from_db()
    assert job.state == Job.State.DEAD
    assert [n.email_status for n in _notifications(people["outsider"])[1:]] == [Notification.EmailStatus.FAILED] * 3
    assert all("SMTP down" in n.email_error for n in _notifications(people["outsider"])[1:])


def test_the_header_counts_unread_notifications_up_to_ninety_nine_then_says_more(contacts, client):
    def unread(n):
        with staff_scope():
            Notification.objects.bulk_create(
                Notification(client=contacts["alpha"], user=contacts["erik"], kind=NotificationKind.INVOICE_ISSUED,
                             title=f"New invoice {k}", url="/", email_status=Notification.EmailStatus.OFF)
                for k in range(n))

    client.force_login(contacts["erik"])
    unread(7)
    page = client.get("/").content.decode()
    assert 'aria-label="7 unread">7</span>' in page and 'aria-hidden="true">7</span>' in page
    unread(143)  # after a storm: 150 unread, counted no further than 100 on every page
    page = client.get("/").content.decode()
    assert 'aria-label="more than 99 unread">99+</span>' in page and 'aria-hidden="true">99+</span>' in page
    client.post(reverse("portal:notifications_read_all"))
    assert 'class="count"' not in client.get("/").content.decode()
