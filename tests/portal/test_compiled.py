"""The reads compiled once (portal.compiled) answer as the querysets they were made from:
the same rows, the same fields, the same related objects and annotations, each call with its
own values, under row-level security as any other query; and the database prepares them."""
import datetime
import re

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from invoices.documents.render import document_pdf
from invoices.models import Invoice
from invoices.selectors import client_invoice_get, with_stored_pdf_of
from invoices.services import credit_note_create
from portal.backends import ModelBackend
from portal.compiled import CompiledQuery
from portal.models import Membership, Notification, NotificationKind, User
from portal.rls import client_scope, staff_scope, user_scope
from portal.selectors import memberships_for
from portal.sessions import SessionStore
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import ClientFactory, MembershipFactory


def _fields(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


@pytest.fixture
def two_clients(db):
    alpha, beta = ClientFactory(name="Alpha B.V."), ClientFactory(name="Beta B.V.")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test").user
    MembershipFactory(client=beta, user=owner)
    stranger = MembershipFactory(client=beta, user__email="someone@beta.test").user
    with staff_scope():
        for n in range(3):
            Notification.objects.create(client=alpha, user=owner, kind=NotificationKind.INVOICE_ISSUED,
                                        title=f"Invoice {n}", message="New invoice", url="/", read_at=None)
    return {"alpha": alpha, "beta": beta, "owner": owner, "stranger": stranger,
            "alpha_invoice": make_invoice(alpha, number="A-1", lines=[line(), line(unit_price="12.50")]),
            "beta_invoice": make_invoice(beta, number="B-1")}


def test_memberships_answer_as_the_queryset_with_clients_brands_and_unread_counts(two_clients):
    owner, alpha = two_clients["owner"], two_clients["alpha"]
    unread = (Notification.objects.filter(client=OuterRef("client"), user=OuterRef("user"), read_at__isnull=True)
              .order_by().values("client").annotate(n=Count("pk")).values("n"))
    with client_scope(alpha.pk, user_id=owner.pk):
        compiled = memberships_for(user=owner)
        plain = list(Membership.objects.filter(user=owner).select_related("client", "client__brand")
                     .annotate(unread=Coalesce(Subquery(unread), 0)))
        without_count = memberships_for(user=owner, with_unread=False)
    assert sorted(m.client.name for m in compiled) == ["Alpha B.V.", "Beta B.V."]
    by_pk = {m.pk: m for m in plain}
    for membership in compiled:
        expected = by_pk[membership.pk]
        assert _fields(membership) == _fields(expected)
        assert _fields(membership.client) == _fields(expected.client)
        assert _fields(membership.client.brand) == _fields(expected.client.brand)
        assert membership.unread == expected.unread
    # Each client's notifications are visible in its own scope only: Alpha's all counted, Beta's
    # (the owner has some) none.
    with staff_scope():
        unread_of = {client.name: Notification.objects.filter(user=owner, client=client, read_at=None).count()
                     for client in (alpha, two_clients["beta"])}
    assert unread_of["Alpha B.V."] >= 3 and unread_of["Beta B.V."] >= 1
    assert {m.client.name: m.unread for m in compiled} == {"Alpha B.V.": unread_of["Alpha B.V."], "Beta B.V.": 0}
    assert [m.unread_scope for m in compiled if m.client == alpha] == [alpha.pk]
    assert all(not hasattr(m, "unread") for m in without_count)


def test_each_call_binds_its_own_values(two_clients):
    owner, stranger = two_clients["owner"], two_clients["stranger"]
    with staff_scope():
        assert len(memberships_for(user=owner)) == 2
        assert [m.user_id for m in memberships_for(user=stranger)] == [stranger.pk]
        assert ModelBackend().get_user(stranger.pk).email == "someone@beta.test"
        assert ModelBackend().get_user(owner.pk).email == "owner@alpha.test"


def test_the_user_is_read_with_whether_it_has_a_second_factor(two_clients):
    owner = two_clients["owner"]
    user = ModelBackend().get_user(owner.pk)
    with user_scope(owner.pk):
        plain = User.objects.get(pk=owner.pk)
    assert _fields(user) == _fields(plain)
    assert user.has_second_factor is False
    assert ModelBackend().get_user(10 ** 12) is None


def test_an_invoice_is_read_with_its_stored_pdf_and_only_in_its_clients_scope(two_clients):
    alpha, beta, invoice = two_clients["alpha"], two_clients["beta"], two_clients["alpha_invoice"]
    with client_scope(alpha.pk):
        before = client_invoice_get(client=alpha, pk=invoice.pk, with_stored_pdf=True)
        assert before.stored_pdf_fingerprint is None and before.stored_pdf_file is None
        document_pdf(before)  # rendered and stored
        compiled = client_invoice_get(client=alpha, pk=invoice.pk, with_stored_pdf=True)
        plain = with_stored_pdf_of(Invoice.objects.select_related("client", "brand"), "invoice").get(pk=invoice.pk)
        assert _fields(compiled) == _fields(plain)
        assert _fields(compiled.client) == _fields(plain.client)
        assert _fields(compiled.brand) == _fields(plain.brand)
        assert compiled.stored_pdf_fingerprint == plain.stored_pdf_fingerprint is not None
        assert compiled.stored_pdf_file == plain.stored_pdf_file is not None
    # Another client's invoice, asked for by id: row-level security hides it, as the code does.
    with client_scope(alpha.pk):
        with pytest.raises(Invoice.DoesNotExist):
            client_invoice_get(client=beta, pk=two_clients["beta_invoice"].pk)
        with pytest.raises(Invoice.DoesNotExist):
            client_invoice_get(client=alpha, pk=two_clients["beta_invoice"].pk)
    with client_scope(beta.pk):
        assert client_invoice_get(client=beta, pk=two_clients["beta_invoice"].pk).number == "B-1"


def test_a_session_is_read_by_its_key_until_it_expires(two_clients):
    store = SessionStore()
    store["portal_client_id"] = two_clients["alpha"].pk
    store.create()
    again = SessionStore(store.session_key)
    assert again["portal_client_id"] == two_clients["alpha"].pk
    with staff_scope():
        Session.objects.filter(session_key=store.session_key).update(
            expire_date=timezone.now() - datetime.timedelta(seconds=1))
    expired = SessionStore(store.session_key)
    assert expired.get("portal_client_id") is None
    assert expired.session_key is None  # as Django's: an unknown or expired key is dropped


def test_a_single_row_query_refuses_two_rows_and_names_a_missing_one(two_clients):
    by_user = CompiledQuery(lambda user_id: Membership.objects.filter(user_id=user_id), single=True, user_id=int)
    with staff_scope():
        assert by_user.get(user_id=two_clients["stranger"].pk).client == two_clients["beta"]
        with pytest.raises(Membership.MultipleObjectsReturned):
            by_user.get(user_id=two_clients["owner"].pk)
        with pytest.raises(Membership.DoesNotExist):
            by_user.get(user_id=10 ** 12)
        assert by_user.get_or_none(user_id=10 ** 12) is None


def test_a_value_that_does_not_reach_the_sql_as_a_parameter_is_refused():
    # A model instance where an id belongs, or a name the queryset ignores: refused when it is
    # first compiled, not bound to nothing.
    ignored = CompiledQuery(lambda user_id, pk: Membership.objects.filter(pk=pk), user_id=int, pk=int)
    with pytest.raises(ValueError, match="user_id"):
        ignored.list(user_id=1, pk=1)
    with pytest.raises(TypeError, match="takes"):
        CompiledQuery(lambda pk: Membership.objects.filter(pk=pk), pk=int).list(id=1)


def test_compiled_reads_are_counted_and_prepared_by_the_connection(two_clients, django_assert_num_queries):
    owner = two_clients["owner"]
    with staff_scope():
        memberships_for(user=owner)
        with django_assert_num_queries(1) as counted:  # the scope is applied already: the read alone
            memberships_for(user=owner)
        # Logged as written, values where the %s are: a prepared statement keeps no SQL to log.
        assert counted.captured_queries[0]["sql"].startswith('SELECT "portal_membership"."id"')
        for _ in range(6):
            memberships_for(user=owner)
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [statement for (statement,) in cursor.fetchall()]
    assert any('FROM "portal_membership"' in statement and "$1" in statement for statement in prepared), prepared


def test_the_overviews_totals_read_only_columns_an_index_holds(two_clients):
    # A client with 50,000 invoices, 19,000 open: read from the table, the totals took 20 ms; from
    # the index alone (an index-only scan), 7 ms (bench/README.md, "50,000 invoices"). PostgreSQL
    # can read them from invoice_client_status_due alone only while every invoice column they name
    # is in it: a column outside it (the id, as a count by id named) sends it to the table.
    from invoices.selectors import _dashboard_totals
    from tests.invoices.factories import TODAY

    [index] = [index for index in Invoice._meta.indexes if index.name == "invoice_client_status_due"]
    held = {Invoice._meta.get_field(name).column for name in [*index.fields, *index.include]}
    sql, _params = _dashboard_totals(two_clients["alpha"].pk, TODAY).query.sql_with_params()
    named = set(re.findall(r'"invoices_invoice"\."(\w+)"', sql))
    assert named and named <= held, f"outside the index: {sorted(named - held)}"


def test_the_overviews_union_and_values_queries_answer_as_the_querysets(two_clients):
    from invoices import services
    from invoices.selectors import (_DASHBOARD_ACTIVITY, _DASHBOARD_INVOICES, _DASHBOARD_TOTALS, _dashboard_activity,
                                    _dashboard_invoices, _dashboard_totals)
    from tests.invoices.factories import TODAY, pay

    alpha = two_clients["alpha"]
    overdue = make_invoice(alpha, number="A-2", issue_date=TODAY - datetime.timedelta(days=60), due_days=30)
    make_invoice(alpha, number="A-3", currency="USD")
    pay(alpha, [(two_clients["alpha_invoice"], "20.00")])
    with staff_scope():
        services.credit_note_create(invoice=overdue, number="A-CN-1", issue_date=TODAY, lines=[line(unit_price="5.00")])
    with client_scope(alpha.pk):
        for day in (TODAY, TODAY + datetime.timedelta(days=45)):  # today bound at each call, not compiled in
            totals = sorted(_DASHBOARD_TOTALS.list(client_id=alpha.pk, today=day), key=lambda r: (r["source"], r["currency"]))
            plain = sorted(_dashboard_totals(alpha.pk, day), key=lambda r: (r["source"], r["currency"]))
            assert totals == plain and {r["currency"] for r in totals} == {"EUR", "USD"}
            named = _DASHBOARD_INVOICES.list(client_id=alpha.pk, today=day)
            assert [(i.pk, i.dashboard_role, _fields(i)) for i in named] == [
                (i.pk, i.dashboard_role, _fields(i)) for i in _dashboard_invoices(alpha.pk, day)]

        def overdue_count(day):
            return sum(r["overdue_count"] for r in _DASHBOARD_TOTALS.list(client_id=alpha.pk, today=day)
                       if r["source"] == "invoices")

        # A-2 is overdue today; 45 days on, everything open is.
        assert overdue_count(TODAY) == 1 and overdue_count(TODAY + datetime.timedelta(days=45)) == 3
        activity = _DASHBOARD_ACTIVITY.list(client_id=alpha.pk)
        assert activity == list(_dashboard_activity(alpha.pk))
        assert {row["kind"] for row in activity} == {"payment", "credit_note"}


def test_a_query_that_reads_the_clock_itself_is_refused():
    # The time taken inside the builder would be compiled in as it was at the first call.
    reads_the_clock = CompiledQuery(
        lambda user_id: Membership.objects.filter(user_id=user_id, created_at__lte=timezone.now()), user_id=int)
    with pytest.raises(ValueError, match="changes between builds"):
        reads_the_clock.list(user_id=1)


def test_an_invoices_page_and_a_credit_notes_page_read_as_the_querysets(two_clients):
    from invoices import services
    from invoices.models import CreditNote
    from invoices.selectors import _client_invoice_detail, client_credit_note_get, client_invoice_detail, detail_annotations
    from tests.invoices.factories import TODAY, pay

    alpha, invoice = two_clients["alpha"], two_clients["alpha_invoice"]
    pay(alpha, [(invoice, "20.00")])
    with staff_scope():
        credit_note = services.credit_note_create(invoice=invoice, number="A-CN-2", issue_date=TODAY,
                                                  lines=[line(unit_price="5.00")])
    with client_scope(alpha.pk):
        detail = client_invoice_detail(client=alpha, pk=invoice.pk)
        plain = _client_invoice_detail(alpha.pk, invoice.pk).get()
        assert _fields(detail.invoice) == _fields(plain)
        assert detail.invoice.peppol_state == plain.peppol_state  # another app's annotation
        assert [_fields(line) for line in detail.lines] == [_fields(line) for line in
                                                            invoice.lines.order_by("position")] != []
        assert [c.number for c in detail.credit_notes] == ["A-CN-2"]
        assert [str(a.amount) for a in detail.allocations] == ["20.00"]
        page = client_credit_note_get(client=alpha, pk=credit_note.pk, for_page=True)
        plain_page = (CreditNote.objects.select_related("client", "brand", "invoice")
                      .annotate(**detail_annotations(CreditNote)).get(pk=credit_note.pk))
        assert _fields(page) == _fields(plain_page) and _fields(page.invoice) == _fields(plain_page.invoice)
        assert page.number == "A-CN-2" and (page.peppol_state, page.peppol_skip) == (
            plain_page.peppol_state, plain_page.peppol_skip)
    with client_scope(two_clients["beta"].pk):
        with pytest.raises(Invoice.DoesNotExist):
            client_invoice_detail(client=alpha, pk=invoice.pk)


def test_every_column_the_list_sorts_by_has_its_index():
    # InvoiceOrdering: a page is the next 20 entries of (client, column, id), either way, not a
    # sort of all the client's invoices. Sorting by status had none: at 50,000 invoices for one
    # client it read them all for each page, 10 ms a statement (migration invoices/0018).
    from invoices.filters import COLUMNS

    ordered = {tuple(index.fields) for index in Invoice._meta.indexes if not index.condition}
    missing = [column.field for column in COLUMNS if ("client", column.field, "id") not in ordered]
    assert not missing, f"sortable without an index (client, column, id): {missing}"


def test_the_invoice_list_pages_read_as_the_paginator_reads_them_under_every_filter_and_sort(two_clients):
    from django.http import QueryDict

    from invoices.filters import SORT_CHOICES, InvoicePaginator, PAGE_SIZE, compiled_list_page, invoice_filter
    from invoices.selectors import client_invoices
    from tests.invoices.factories import TODAY, pay

    alpha = two_clients["alpha"]
    invoices = [make_invoice(alpha, number=f"L-{n:02d}", issue_date=TODAY - datetime.timedelta(days=7 * n),
                             due_days=14, lines=[line(unit_price=f"{40 + 13 * n}.00")]) for n in range(44)]
    for n in range(0, 44, 5):
        pay(alpha, [(invoices[n], f"{10 + n}.00")])
    for n in range(3, 44, 7):
        pay(alpha, [(invoices[n], str(invoices[n].open_balance))])
    make_invoice(alpha, number="L_50%", purchase_order="PO-Bouw\\7")  # the LIKE wildcards and escape, as text
    make_invoice(alpha, number="L-51", purchase_order="po-ref-L-05")
    with staff_scope():
        credit_note_create(invoice=invoices[9], number="CN-ZZ-1", issue_date=TODAY, lines=[line()])
    make_invoice(two_clients["beta"], number="L-06-BETA")  # another client's: never found
    month_ago, in_a_month = TODAY - datetime.timedelta(days=30), TODAY + datetime.timedelta(days=30)
    queries = [f"sort={sort}" for sort in sorted(SORT_CHOICES)] + [
        f"status={status}" for status in ("open", "partially_paid", "partly_credited", "overdue", "paid", "void")] + [
        f"issued_from={month_ago}", f"issued_from={month_ago}&issued_to={TODAY}", f"due_from={TODAY}&due_to={in_a_month}",
        "amount_min=100&amount_max=400.50", "status=overdue&sort=-total&amount_min=60", "page=2", "page=3&sort=number",
        "page=99", "page=abc", "page=-1", "issued_from=not-a-date&sort=due", "status=bogus", "amount_min=1e400",
        "status=paid&page=2", "",
        # Searches: numbers, purchase orders and credit notes, any case; % _ and \\ as the text they are.
        "q=L-0", "q=l-0&page=2", "q=L-05", "q=l-06", "q=cn-zz", "q=PO-REF", "q=%", "q=_", "q=L_5", "q=50%25",
        "q=bouw%5C7", "q=%5C", "q=nothing-like-it", "q=L-1&status=paid&sort=-total", "q=L-&issued_from=not-a-date",
        "q=%00", "q=L-0&page=1", "q=L-0&page=abc", "q=L-0&page=-1", "q=L-0&page=99", "q=nothing-like-it&page=2",
        "q=L-0&sort=number&page=1.0"]
    with client_scope(alpha.pk):
        for query in queries:
            params = QueryDict(query)
            plain = InvoicePaginator(invoice_filter(params, client_invoices(client=alpha), client=alpha).qs,
                                     PAGE_SIZE).get_page(params.get("page"))
            page = compiled_list_page(invoice_filter(params, client_invoices(client=alpha), client=alpha),
                                      client=alpha, number=params.get("page"))
            assert page is not None, query
            assert (page.number, page.paginator.count, page.paginator.num_pages) == (
                plain.number, plain.paginator.count, plain.paginator.num_pages), query
            assert [_fields(i) for i in page.object_list] == [_fields(i) for i in plain.object_list], query
            if query in ("q=L-05", "q=cn-zz", "q=50%25", "q=bouw%5C7"):
                assert page.paginator.count >= 1, query  # the searches above do find what they should
    # A search's first page is one statement (its rows with the count of all matches); a later page two.
    # L-00 to L-09, and L-51 by its purchase order.
    for query, statements in (("q=L-0", 1), ("q=L-0&page=2", 2)):
        params = QueryDict(query)
        with client_scope(alpha.pk), CaptureQueriesContext(connection) as captured:
            page = compiled_list_page(invoice_filter(params, client_invoices(client=alpha), client=alpha),
                                      client=alpha, number=params.get("page"))
        assert page.paginator.count == 11 and len(captured) == statements, (query, captured.captured_queries)
    # Every filter of the list is bound by the compiled shapes: a new one must be added there.
    from invoices.filters import _BOUND_FILTERS, InvoiceFilter
    assert set(InvoiceFilter.base_filters) == set(_BOUND_FILTERS) | {"status", "sort"}
    # No list statement is prepared however often it runs: each is planned for its own client (a
    # generic plan, made for a client of average size, sorted a client's 50,000 invoices slowly) and
    # a search for its own pattern.
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert prepared and not any('FROM "invoices_invoice"' in statement for statement in prepared), prepared


def test_an_id_past_any_integer_column_is_not_found_not_an_error(two_clients, client):
    # Bound on the server, an id too large for bigint is compared as numeric: no row, so 404 as
    # the ORM's own check gave.
    client.force_login(two_clients["stranger"])  # one membership: no company to choose first
    huge = "9" * 30
    for url in (f"/invoices/{huge}/", f"/invoices/{huge}/pdf/", f"/credit-notes/{huge}/", f"/credit-notes/{huge}/pdf/",
                "/invoices/9223372036854775808/"):
        assert client.get(url).status_code == 404, url
    assert client.get("/invoices/", {"amount_min": huge, "page": huge}).status_code == 200
