"""A GET changes nothing: every page a client can open with GET writes no row except the audit
log's record that it was viewed or downloaded (which the product requires). Counted by
PostgreSQL itself (pg_stat_xact_user_tables: rows inserted, updated or deleted in this
transaction, per table), so a write is caught wherever in the code it happens."""
import datetime

import pytest
from django.db import connection
from django.urls import reverse

from invoices import services
from payments.models import GatewayAccount
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

# What a GET may write: the audit trail of views and downloads, the session row that remembers
# which company the contact acts for, and the stored copy of a PDF rendered on the fly (a cache
# of what the invoice already says, keyed by a hash of it: nothing the client asked to change).
MAY_WRITE = {"portal_auditevent", "django_session", "invoices_rendereddocument"}


def _writes() -> dict[str, int]:
    with connection.cursor() as cursor:
        # A partition's rows count as its table's (the audit log is partitioned by month).
        cursor.execute("""
            SELECT coalesce(parent.relname, s.relname), sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del)
            FROM pg_stat_xact_user_tables s
            LEFT JOIN pg_inherits i ON i.inhrelid = s.relid LEFT JOIN pg_class parent ON parent.oid = i.inhparent
            GROUP BY 1""")
        return {name: count for name, count in cursor.fetchall() if count}


@pytest.fixture
def alpha(db):
    brand = BrandFactory(is_default=True, allow_document_links=True)
    client = ClientFactory(brand=brand, name="Alpha B.V.")
    owner = MembershipFactory(client=client, user__email="owner@alpha.test", user__language="en").user
    invoice = make_invoice(client, number="A-1", lines=[line("Audit", unit_price="100.00")])
    with staff_scope():
        credit_note = services.credit_note_create(invoice=invoice, number="A-CN-1", issue_date=TODAY,
                                                  lines=[line(unit_price="10.00")])
        # In development the checkout makes a sandbox gateway on first use; here it exists already.
        GatewayAccount.objects.create(brand=brand, provider=GatewayAccount.Provider.SANDBOX, ideal=True)
    return {"client": client, "owner": owner, "invoice": invoice, "credit_note": credit_note}


def _pages(alpha):
    invoice, credit_note = alpha["invoice"], alpha["credit_note"]
    year = TODAY.replace(month=1, day=1).isoformat()
    return [
        reverse("portal:home"), reverse("invoices:list"), reverse("invoices:list") + "?status=open&q=A",
        reverse("invoices:detail", args=[invoice.pk]), reverse("invoices:credit_note_detail", args=[credit_note.pk]),
        reverse("invoices:invoice_pdf", args=[invoice.pk]), reverse("invoices:invoice_ubl", args=[invoice.pk]),
        reverse("invoices:credit_note_pdf", args=[credit_note.pk]), reverse("invoices:export_csv"),
        reverse("invoices:statement"), reverse("invoices:statement") + f"?start={year}&end={TODAY.isoformat()}",
        reverse("invoices:pay", args=[invoice.pk]), reverse("payments:checkout") + f"?invoice={invoice.pk}",
        reverse("payments:mandates"), reverse("portal:notifications"), reverse("portal:notification_preferences"),
        reverse("portal:client_detail", args=[alpha["client"].pk]), reverse("portal:choose_client"),
        reverse("mfa_index"),
    ]


def test_no_page_a_client_opens_with_get_changes_anything_but_the_audit_log(alpha, client):
    client.force_login(alpha["owner"])
    client.get(reverse("portal:home"))  # the first request remembers the company in the session
    with staff_scope():
        notification = alpha["owner"].notifications.order_by("pk").first()
    pages = _pages(alpha) + [reverse("portal:notification_open", args=[notification.pk])]
    for url in pages:
        before = _writes()
        response = client.get(url)
        assert response.status_code in (200, 302), (url, response.status_code)
        written = {table for table, count in _writes().items() if count != before.get(table, 0)}
        assert written <= MAY_WRITE, (url, written - MAY_WRITE)


def test_the_counter_sees_a_write(alpha, client):
    # The measurement itself: a POST that marks notifications read shows up as a write.
    client.force_login(alpha["owner"])
    before = _writes().get("portal_notification", 0)
    client.post(reverse("portal:notifications_read_all"))
    assert _writes().get("portal_notification", 0) > before


def test_a_date_range_in_the_future_is_still_only_a_read(alpha, client):
    client.force_login(alpha["owner"])
    later = (TODAY + datetime.timedelta(days=400)).isoformat()
    before = _writes()
    client.get(reverse("invoices:statement"), {"start": TODAY.isoformat(), "end": later})
    assert {t for t, c in _writes().items() if c != before.get(t, 0)} <= MAY_WRITE
