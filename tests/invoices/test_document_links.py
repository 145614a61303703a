"""One-invoice links: open one invoice and its PDF without a password, and nothing else."""
import datetime
import re

import pytest
from django.core import mail
from django.urls import reverse

from invoices.links import link_token
from invoices.models import DocumentLink
from portal.models import AuditEvent, Notification
from portal.rls import staff_scope
from portal.notifications import notification_email_deliver
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory


@pytest.fixture
def linked(db):
    brand = BrandFactory(is_default=True, allow_document_links=True, document_link_days=7)
    alpha = ClientFactory(brand=brand, name="Alpha B.V.")
    carol = MembershipFactory(client=alpha, user__email="carol@alpha.test", user__language="en").user
    invoice = make_invoice(alpha, number="INV-LINK-1", lines=[line("Consulting", unit_price="95.00")])
    other = make_invoice(alpha, number="INV-LINK-2")
    with staff_scope():
        notification = Notification.objects.filter(user=carol, url__contains=f"/{invoice.pk}/").get()
        link = notification.document_link
    return {"invoice": invoice, "other": other, "carol": carol, "link": link, "notification": notification}


def test_the_email_carries_a_personal_link_that_opens_the_invoice_without_a_password(linked, client):
    with staff_scope():
        notification_email_deliver(notification_id=linked["notification"].pk)
    [message] = [m for m in mail.outbox if "INV-LINK-1" in m.subject]
    path = re.search(r"https?://[^/\s]+(/d/[^/\s]+/)", message.body).group(1)
    page = client.get(path)
    assert page.status_code == 200 and "INV-LINK-1" in page.text and "Consulting" in page.text
    pdf = client.get(path + "pdf/")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    with staff_scope():
        uses = AuditEvent.objects.filter(action=AuditEvent.Action.RECORD_VIEWED, details__via="document_link")
        assert uses.count() == 2 and {e.actor_email for e in uses} == {"carol@alpha.test"}
        assert DocumentLink.objects.get(pk=linked["link"].pk).use_count == 2
    # Nothing else opens: no login was made, the other invoice and the list ask for one.
    for url in (reverse("invoices:detail", args=[linked["other"].pk]), reverse("invoices:list"), "/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("account_login")), url


def test_tampered_expired_revoked_and_reissued_links_are_refused(linked, client, time_machine):
    token = link_token(linked["link"])
    assert client.get(reverse("invoices:document_link", args=[token[:-2] + "xx"])).status_code == 404
    time_machine.move_to(datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(days=8))
    assert client.get(reverse("invoices:document_link", args=[token])).status_code == 410


def test_staff_revoke_and_a_new_link_replaces_the_old(linked, client, staff):
    from invoices.links import document_link_issue

    token = link_token(linked["link"])
    assert client.get(reverse("invoices:document_link", args=[token])).status_code == 200
    with staff_scope():
        fresh = document_link_issue(invoice=linked["invoice"], user=linked["carol"])
    assert client.get(reverse("invoices:document_link", args=[token])).status_code == 410
    assert client.get(reverse("invoices:document_link", args=[link_token(fresh)])).status_code == 200
    client.force_login(staff)
    client.post(reverse("admin:invoices_documentlink_changelist"),
                {"action": "revoke", "_selected_action": [fresh.pk]})
    client.logout()
    refused = client.get(reverse("invoices:document_link", args=[link_token(fresh)]))
    assert refused.status_code == 410 and "Log in" in refused.text


def test_no_link_when_the_brand_does_not_allow_it(db):
    brand = BrandFactory(is_default=True, allow_document_links=False)
    alpha = ClientFactory(brand=brand)
    MembershipFactory(client=alpha)
    make_invoice(alpha)
    with staff_scope():
        assert not DocumentLink.objects.exists()
        assert Notification.objects.get().document_link is None
