"""Every client page costs a fixed number of SQL queries, however many invoices, lines, payments
and notifications the client has: the session, the user and its memberships, the scope's
set_config statements (portal/rls.py logs them where Django counts queries) and the page's own
reads and writes, never one query per row."""
import datetime
from urllib.parse import urlencode
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse

from invoices import services
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount
from portal.models import Notification, NotificationKind
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

INVOICES, LINES, NOTIFICATIONS = 60, 5, 40


@pytest.fixture(scope="module")
def busy_data(module_committed):
    """Built once for the module and committed (about 2 s of rows); each test runs in its own
    transaction on top of them (`db`), so what a test writes is rolled back."""
    return module_committed.create(_build)


@pytest.fixture
def busy_client(busy_data, db):
    return busy_data


def _build():
    brand = BrandFactory(is_default=True, iban="NL91ABNA0417164300")
    alpha = ClientFactory(brand=brand, name="Alpha B.V.", locale="en")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test", user__language="en").user
    for n in range(3):
        MembershipFactory(client=alpha)
    invoices = [make_invoice(alpha, number=f"A-{n:03d}", issue_date=TODAY - datetime.timedelta(days=n * 3),
                             lines=[line(f"Work {k}", unit_price=f"{10 * (k + 1)}.00", tax_rate="21" if k % 2 else "9")
                                    for k in range(LINES)])
                for n in range(INVOICES)]
    payments = [pay(alpha, [(invoices[n], "20.00"), (invoices[n + 1], "5.00")]) for n in range(0, 40, 2)]
    payments += [pay(alpha, [(invoices[41], "10.00")]), pay(alpha, [(invoices[41], "7.50")])]
    with staff_scope():
        credit_notes = [services.credit_note_create(invoice=invoices[n], number=f"A-CN-{n}", issue_date=TODAY,
                                                    lines=[line(unit_price="3.00"), line(unit_price="2.00")])
                        for n in range(40, 55)]
        gateway = GatewayAccount.objects.create(brand=brand, provider=GatewayAccount.Provider.SANDBOX,
                                                ideal=True, card=True, allow_partial=True)
        attempt = CheckoutAttempt.objects.create(client=alpha, gateway=gateway, user=owner, method="ideal",
                                                 amount=Decimal("500.00"), currency="EUR")
        for invoice in invoices[:20]:
            CheckoutItem.objects.create(client=alpha, attempt=attempt, invoice=invoice, amount=Decimal("25.00"))
        for n in range(NOTIFICATIONS):
            Notification.objects.create(client=alpha, user=owner, kind=NotificationKind.INVOICE_ISSUED,
                                        title=f"Invoice A-{n:03d}", message="New invoice %(number)s",
                                        message_args={"number": f"A-{n:03d}"}, url=f"/invoices/{invoices[n].pk}/",
                                        read_at=None)
    return {"client": alpha, "owner": owner, "invoices": invoices, "payments": payments,
            "credit_notes": credit_notes, "attempt": attempt}


BUDGET = 8


def _get(client, url, budget, django_assert_max_num_queries):
    client.get(url)  # per-process caches (content types, translations, templates) filled once
    # A real request starts a transaction, so its first statement applies the scope; inside the
    # test's transaction the last request's scope may still be applied, which would hide one.
    connection.rls_applied = None
    with django_assert_max_num_queries(budget):
        response = client.get(url)
    assert response.status_code == 200, url
    return response


@pytest.fixture
def owner(busy_client, client):
    client.force_login(busy_client["owner"])
    return client


def test_dashboard(busy_client, owner, django_assert_max_num_queries):
    page = _get(owner, "/", BUDGET, django_assert_max_num_queries)
    assert ">A-000<" in page.text and "Payment received" in page.text
    assert 'data-testid="open-balance"' in page.text


LIST_QUERIES = [{}, {"status": "open"}, {"status": "partially_paid"}, {"status": "partly_credited"},
                {"status": "overdue"}, {"status": "paid"}, {"status": "void"}, {"q": "A-0"}, {"q": "A-CN-4"},
                {"issued_from": "2026-01-01", "issued_to": "2026-11-30"}, {"due_from": "2026-01-01", "due_to": "2027-01-31"},
                {"amount_min": "50", "amount_max": "5000"}, {"page": "2"}, {"status": "open", "q": "A", "page": "2"}]
SORTS = ["number", "-number", "date", "-date", "due", "-due", "total", "-total", "open", "-open", "status", "-status"]


@pytest.mark.parametrize("params", LIST_QUERIES + [{"sort": sort} for sort in SORTS], ids=str)
def test_invoice_list(busy_client, owner, params, django_assert_max_num_queries):
    _get(owner, reverse("invoices:list") + "?" + urlencode(params), BUDGET, django_assert_max_num_queries)


def test_invoice_list_htmx_results(busy_client, owner, django_assert_max_num_queries):
    owner.get(reverse("invoices:list"), HTTP_HX_REQUEST="true")
    connection.rls_applied = None
    with django_assert_max_num_queries(BUDGET):
        assert owner.get(reverse("invoices:list") + "?status=open", HTTP_HX_REQUEST="true").status_code == 200


def test_invoice_detail(busy_client, owner, django_assert_max_num_queries):
    invoice = busy_client["invoices"][41]  # paid in part, credited, five lines
    # set_config + session, set_config + user + memberships; the invoice with its lines, credit
    # notes and payments (one query), the audit event, the direct-debit mandate with its collection.
    page = _get(owner, reverse("invoices:detail", args=[invoice.pk]), BUDGET, django_assert_max_num_queries)
    assert "A-CN-41" in page.text
    assert "Work 4" in page.text
    assert busy_client["payments"][-1].number in page.text and busy_client["payments"][-2].number in page.text


def test_credit_note(busy_client, owner, django_assert_max_num_queries):
    credit_note = busy_client["credit_notes"][0]
    _get(owner, reverse("invoices:credit_note_detail", args=[credit_note.pk]), BUDGET, django_assert_max_num_queries)


def test_statement_form(busy_client, owner, django_assert_max_num_queries):
    _get(owner, reverse("invoices:statement"), BUDGET, django_assert_max_num_queries)


def _header_count(unread: int) -> str:
    """The unread count as the page header says it (counted up to portal.selectors.UNREAD_COUNTED)."""
    from portal.selectors import UNREAD_COUNTED

    return f'aria-label="{unread} unread"' if unread < UNREAD_COUNTED else 'aria-label="more than 99 unread">99+<'


def test_notifications(busy_client, owner, django_assert_max_num_queries):
    with staff_scope():
        unread = Notification.objects.filter(user=busy_client["owner"], read_at__isnull=True).count()
    assert unread >= NOTIFICATIONS
    page = _get(owner, reverse("portal:notifications"), BUDGET, django_assert_max_num_queries)
    assert _header_count(unread) in page.text


def test_payments(busy_client, owner, django_assert_max_num_queries):
    page = _get(owner, reverse("payments:list"), BUDGET, django_assert_max_num_queries)
    assert busy_client["payments"][0].number in page.text


def test_receipt(busy_client, owner, django_assert_max_num_queries):
    payment = busy_client["payments"][0]
    _get(owner, reverse("payments:receipt", args=[payment.pk]), BUDGET, django_assert_max_num_queries)


def test_checkout(busy_client, owner, django_assert_max_num_queries):
    invoices = busy_client["invoices"][20:40]
    url = reverse("payments:checkout") + "?" + urlencode({"invoice": [i.pk for i in invoices]}, doseq=True)
    page = _get(owner, url, BUDGET, django_assert_max_num_queries)
    assert invoices[-1].number in page.text


def test_checkout_return(busy_client, owner, django_assert_max_num_queries):
    _get(owner, reverse("payments:return", args=[busy_client["attempt"].idempotency_key]), BUDGET,
         django_assert_max_num_queries)


def test_a_documents_peppol_delivery_costs_its_page_no_query(busy_client, owner, django_assert_max_num_queries):
    # What integrations shows on the invoice and credit note pages is read with the document.
    from django.utils import timezone

    from integrations.peppol.models import PeppolDelivery

    invoice, credit_note = busy_client["invoices"][0], busy_client["credit_notes"][0]
    with staff_scope():
        for field, document in (("invoice", invoice), ("credit_note", credit_note)):
            PeppolDelivery.objects.create(client=busy_client["client"], brand_id=document.brand_id, document=field,
                                          state=PeppolDelivery.State.DELIVERED, delivered_at=timezone.now(),
                                          **{field: document})
    for url in (reverse("invoices:detail", args=[invoice.pk]),
                reverse("invoices:credit_note_detail", args=[credit_note.pk])):
        page = _get(owner, url, BUDGET, django_assert_max_num_queries)
        assert "Delivered to your accounting system over Peppol on" in page.text, url


def test_a_file_download_reads_who_is_asking_without_the_page_headers_unread_count(busy_client, owner):
    # A PDF has no page header: its request reads the memberships without counting notifications
    # (portal.middleware.file_response); a page still counts them in the same query.
    from django.test.utils import CaptureQueriesContext

    def membership_query(url):
        connection.rls_applied = None
        with CaptureQueriesContext(connection) as captured:
            assert owner.get(url).status_code == 200
        return next(q["sql"] for q in captured.captured_queries if 'FROM "portal_membership"' in q["sql"])

    invoice = busy_client["invoices"][0]
    assert "portal_notification" not in membership_query(reverse("invoices:invoice_pdf", args=[invoice.pk]))
    assert "portal_notification" not in membership_query(reverse("invoices:invoice_ubl", args=[invoice.pk]))
    assert "portal_notification" in membership_query("/")
    with staff_scope():
        unread = Notification.objects.filter(user=busy_client["owner"], client=busy_client["client"],
                                             read_at__isnull=True).count()
    assert unread >= NOTIFICATIONS and _header_count(unread) in owner.get("/").text  # the header's count
