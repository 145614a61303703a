"""Exact Online in: customers, sales invoices, credit notes, payments and deletions read from the Sync
API of the local Exact (tests/fakes/exact.py) become the portal's clients, invoices and payments,
through the generic webhook's own path (stored events, "accounting.event" jobs), once each."""
from __future__ import annotations

from decimal import Decimal

from integrations.exact.models import ExactCursor
from integrations.models import ClientLink
from invoices.models import Invoice, Payment
from portal.models import Job, WebhookRequest
from portal.rls import staff_scope
from tests.integrations.exact.world import (  # noqa: F401 - fixtures
    DIVISION, cursor, exact, fake_exact, invoice, run, sync)

D = Decimal
E = ExactCursor.Entity
ALL = (E.ACCOUNTS, E.SALES_INVOICES, E.TRANSACTION_LINES, E.DELETED)


def _customer(fake, name="Northwind Traders B.V.", **fields):
    return fake.add_account(name, email=f"finance@{name.split()[0].lower()}.test", address_line="Keizersgracht 1",
                            postcode="1015 CJ", city="Amsterdam", **fields)


def test_the_first_sync_loads_every_page_of_customers_and_invoices(fake_exact, exact, run):
    fake_exact.sync_page_size = 5  # Exact's pages are 1,000 rows; five make several pages of a few invoices
    customers = [_customer(fake_exact, f"Klant{n} B.V.") for n in range(3)]
    numbers = []
    for n in range(6):
        made = fake_exact.add_invoice(customers[n % 3], [("Advies", 2, "100.00", "2"), ("Boeken", 3, "10.00", "5")])
        numbers.append(made["InvoiceNumber"])

    counts = sync(exact, E.ACCOUNTS, E.SALES_INVOICES)
    run()

    assert counts[0]["stored"] == 3 and counts[1]["stored"] == 6
    assert counts[1]["rows"] == 6 * 3  # a header row and two lines each, over several pages
    requests = [r for r in fake_exact.requests if r["endpoint"] == "sync/SalesInvoice/SalesInvoices"]
    assert len(requests) == 4  # 18 rows at 5 a page
    with staff_scope():
        assert ClientLink.objects.filter(connection=exact.connection_id).count() == 3
        loaded = {i.number: i for i in Invoice.objects.select_related("client")}
    assert sorted(loaded) == sorted(str(n) for n in numbers)
    assert {i.total for i in loaded.values()} == {D("274.70")}  # also those whose lines ran over a page
    first = loaded[str(numbers[0])]
    # 2 × 100.00 at the division's 21% code, 3 × 10.00 at its 9% code (read from vat/VATCodes).
    assert (first.subtotal, first.tax_total, first.total) == (D("230.00"), D("44.70"), D("274.70"))
    assert first.status == Invoice.Status.OPEN and first.client.name == "Klant0 B.V."
    assert (first.client.address_line, first.client.postal_code, first.client.city) == (
        "Keizersgracht 1", "1015 CJ", "Amsterdam")  # the invoice's address, as Exact has it
    assert cursor(exact, E.SALES_INVOICES) == max(r["Timestamp"] for r in _sync_rows(fake_exact))


def _sync_rows(fake):
    with fake.lock:
        return fake.books(DIVISION).sync_invoice_rows()


def test_a_later_sync_reads_only_what_changed_and_an_unchanged_record_is_not_applied_again(fake_exact, exact, run):
    customer = _customer(fake_exact)
    first = fake_exact.add_invoice(customer, [("Advies", 1, "500.00", "2")], status=20)
    sync(exact, *ALL)
    run()
    assert invoice(first["InvoiceNumber"]).total == D("605.00")
    before = cursor(exact, E.SALES_INVOICES)

    second = fake_exact.add_invoice(customer, [("Training", 2, "250.00", "2")])
    counts = sync(exact, E.SALES_INVOICES)[0]
    run()

    assert counts["rows"] == 2 and counts["stored"] == 1  # the new invoice's header and line, nothing older
    assert invoice(second["InvoiceNumber"]).total == D("605.00")
    assert cursor(exact, E.SALES_INVOICES) > before
    # The same records read again (a crash before the cursor moved) are duplicates: nothing applied twice.
    with staff_scope():
        ExactCursor.objects.filter(exact=exact, entity=E.SALES_INVOICES).update(timestamp=1)
        jobs_before = Job.objects.filter(kind="accounting.event").count()
    again = sync(exact, E.SALES_INVOICES)[0]
    assert again["stored"] == 0 and again["duplicates"] == 2
    with staff_scope():
        assert Job.objects.filter(kind="accounting.event").count() == jobs_before
        assert Invoice.objects.count() == 2


def test_an_invoice_processed_in_exact_stays_open_in_the_portal_with_its_new_version(fake_exact, exact, run):
    made = fake_exact.add_invoice(_customer(fake_exact), [("Advies", 1, "100.00", "2")], status=20)
    sync(exact, *ALL)
    run()
    fake_exact.process_invoice(made)  # Status 20 -> 50: printed, a sales entry
    counts = sync(exact, E.SALES_INVOICES)[0]
    run()
    assert counts["stored"] == 1
    assert invoice(made["InvoiceNumber"]).status == Invoice.Status.OPEN


def test_an_invoice_deleted_in_exact_is_voided_in_the_portal(fake_exact, exact, run):
    customer = _customer(fake_exact)
    kept = fake_exact.add_invoice(customer, [("Advies", 1, "100.00", "2")], status=20)
    gone = fake_exact.add_invoice(customer, [("Vergissing", 1, "80.00", "2")], status=20)
    sync(exact, *ALL)
    run()
    fake_exact.delete_invoice(gone)
    sync(exact, E.DELETED)
    run()
    assert invoice(gone["InvoiceNumber"]).status == Invoice.Status.VOID
    assert invoice(kept["InvoiceNumber"]).status == Invoice.Status.OPEN


def test_a_bank_transfer_matched_in_exact_makes_the_invoice_partially_paid_then_paid_once(fake_exact, exact, run):
    made = fake_exact.add_invoice(_customer(fake_exact), [("Advies", 10, "95.00", "2")])  # 1149.50
    sync(exact, *ALL)
    run()
    fake_exact.pay(made, "400.00")
    sync(exact, E.TRANSACTION_LINES)
    run()
    partly = invoice(made["InvoiceNumber"])
    assert partly.status == Invoice.Status.PARTIALLY_PAID and partly.open_balance == D("749.50")

    fake_exact.pay(made, "749.50")
    sync(exact, E.TRANSACTION_LINES)
    run()
    with staff_scope():
        ExactCursor.objects.filter(exact=exact, entity=E.TRANSACTION_LINES).update(timestamp=1)
    sync(exact, E.TRANSACTION_LINES)  # everything read again
    run()
    paid = invoice(made["InvoiceNumber"])
    assert paid.status == Invoice.Status.PAID and paid.open_balance == D("0.00")
    with staff_scope():
        payments = Payment.objects.filter(client=paid.client)
        assert sorted(p.amount for p in payments) == [D("400.00"), D("749.50")]
        assert {p.source for p in payments} == {Payment.Source.ACCOUNTING}


def test_a_payment_for_an_invoice_not_yet_in_the_portal_holds_the_sync_until_it_is(fake_exact, exact, run):
    made = fake_exact.add_invoice(_customer(fake_exact), [("Advies", 1, "100.00", "2")])
    fake_exact.pay(made, "121.00")
    sync(exact, E.ACCOUNTS, E.SALES_INVOICES)  # stored, not applied yet
    try:
        sync(exact, E.TRANSACTION_LINES)
    except Exception as exc:  # noqa: BLE001 - the job retries it (tasks.py: Retry)
        assert "not hold yet" in str(exc)
    else:
        raise AssertionError("the payment's sync went on without its invoice")
    run()
    sync(exact, E.TRANSACTION_LINES)
    run()
    assert invoice(made["InvoiceNumber"]).status == Invoice.Status.PAID


def test_a_credit_note_that_names_its_invoice_lowers_the_invoices_balance(fake_exact, exact, run):
    customer = _customer(fake_exact)
    made = fake_exact.add_invoice(customer, [("Advies", 10, "100.00", "2")])  # 1210.00
    fake_exact.add_invoice(customer, [("Advies", 2, "100.00", "2")], credits=made,
                           your_ref=str(made["InvoiceNumber"]))
    sync(exact, *ALL)
    run()
    credited = invoice(made["InvoiceNumber"])
    assert credited.open_balance == D("968.00")  # 1210.00 less 242.00


def test_a_record_the_ledger_cannot_take_is_kept_for_staff_and_does_not_stop_the_sync(fake_exact, exact, run):
    _customer(fake_exact)
    fake_exact.add_account("Zonder E-mail B.V.")  # a customer without an address to send invoices to
    counts = sync(exact, E.ACCOUNTS)[0]
    run()
    assert counts["stored"] == 1 and counts["refused"] == 1
    with staff_scope():
        refused = WebhookRequest.objects.get(source="exact-sync", status=WebhookRequest.Status.REJECTED)
        assert "billing_email" in refused.error
        assert ClientLink.objects.count() == 1
    assert cursor(exact, E.ACCOUNTS) > 1  # past it: a change in Exact brings it back


# --- As jobs ------------------------------------------------------------------------------------

def _sync_jobs():
    with staff_scope():
        return list(Job.objects.filter(kind="exact.sync").order_by("pk"))


def test_the_safety_sync_writes_a_sync_per_entity_that_loads_what_changed(fake_exact, exact, run):
    from integrations.exact.tasks import sync_exact_connections

    made = fake_exact.add_invoice(_customer(fake_exact), [("Advies", 1, "100.00", "2")])
    assert sync_exact_connections() == 4
    assert sync_exact_connections() == 0  # they wait to start: nothing written twice
    run()
    assert [j.state for j in _sync_jobs()] == [Job.State.DONE] * 4
    assert {j.subject for j in _sync_jobs()} == {f"exact:{exact.pk}:{e}" for e in ALL}
    assert invoice(made["InvoiceNumber"]).status == Invoice.Status.OPEN


def test_a_sync_over_exacts_rate_limit_waits_for_the_reset(fake_exact, exact, run):
    from django.utils import timezone

    from integrations.exact.tasks import sync_all_enqueue

    fake_exact.minute_limit = 0  # every call answered 429 until the next minute
    with staff_scope():
        sync_all_enqueue(exact=exact)
    run()
    job = _sync_jobs()[0]
    assert job.state == Job.State.RETRYING and "429" in job.last_error
    # Retried around the minute's reset Exact announced, not at once (jitter ±25%).
    assert job.run_after > timezone.now()
    assert cursor(exact, E.ACCOUNTS) == 1


def test_a_sync_stops_while_exact_needs_a_new_consent_and_resumes_after_reconnecting(fake_exact, exact, run):
    from integrations.exact.models import ExactConnection
    from integrations.exact.tasks import exact_resume, sync_all_enqueue

    _customer(fake_exact)
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(state=ExactConnection.State.REAUTHORISE,
                                                           state_reason="Old refresh token used.")
        sync_all_enqueue(exact=exact)
    run()
    assert all(j.state == Job.State.DEAD and "re-authorisation" in j.last_error for j in _sync_jobs())
    with staff_scope():
        ExactConnection.objects.filter(pk=exact.pk).update(state=ExactConnection.State.CONNECTED)
        exact.refresh_from_db()
        assert exact_resume(exact=exact) >= 4
    run()
    with staff_scope():
        assert ClientLink.objects.filter(connection=exact.connection_id).count() == 1
