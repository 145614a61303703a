"""`make run`'s demo data: clients that differ as real ones do (Dutch and English, euro and pound,
a long history and a new client, one paying by direct debit), all sent through the webhook pipeline."""
import io

from django.core.management import call_command

from invoices.models import CreditNote, Invoice, InvoiceLine, RecurringSchedule
from integrations.peppol.models import PeppolDelivery
from payments.models import Mandate
from portal.models import Client, Job, Membership, User, WebhookRequest
from portal.rls import staff_scope

ENGLISH_LINES = {"Monthly bookkeeping", "Payroll administration", "Annual accounts", "Tax advice", "Reference book",
                 "Bookkeeping subscription"}


def test_demo_clients_differ_and_every_state_is_there_and_it_is_idempotent(committed):
    # Committed for real: the demo's events are applied by jobs, which run with no transaction open.
    call_command("load_demo", stdout=io.StringIO())
    with staff_scope():
        assert WebhookRequest.objects.filter(source="accounting", status="accepted").exists()
        assert set(Job.objects.filter(kind="accounting.event").values_list("state", flat=True)) == {"done"}
        clients = {client.name: client for client in Client.objects.all()}
        sizes = {}
        for client in clients.values():
            invoices = list(Invoice.objects.filter(client=client))
            sizes[client.name] = len(invoices)
            states = {i.status for i in invoices} | {"overdue" for i in invoices if i.is_overdue()}
            assert states >= {"open", "paid", "overdue"}, client
            assert {i.currency for i in invoices} == {client.default_currency}, client
            assert RecurringSchedule.objects.filter(client=client, status="active").exists()
            assert all(i.connection_id or i.recurring_schedule_id for i in invoices)
            lines = set(InvoiceLine.objects.filter(invoice__client=client).values_list("description", flat=True))
            if client.locale == "nl":
                assert not lines & ENGLISH_LINES and "Maandelijkse boekhouding" in lines, (client, lines)
            else:
                assert lines <= ENGLISH_LINES | {""}, (client, lines)
        assert {c.locale for c in clients.values()} == {"nl", "en"}
        assert {c.default_currency for c in clients.values()} >= {"EUR", "GBP"}
        assert sizes["Northwind Traders B.V."] >= 20 and sizes["Initech Logistics B.V."] <= 4, sizes
        for name in ("Northwind Traders B.V.", "Globex Nederland B.V.", "Umbrella Trading Ltd"):
            statuses = set(Invoice.objects.filter(client=clients[name]).values_list("status", flat=True))
            assert statuses >= {"partially_paid", "void"}, name
            assert CreditNote.objects.filter(client=clients[name], status="applied").exists(), name
        mandate = Mandate.objects.get()
        assert mandate.client == clients["Initech Logistics B.V."] and mandate.status == "valid"
        # The logins make run prints, and Dutch and English contacts.
        memberships = {email: set(Membership.objects.filter(user__email=email).values_list("client__name", flat=True))
                       for email in ("alice@northwind.test", "bob@globex.test")}
        assert memberships == {"alice@northwind.test": {"Northwind Traders B.V."},
                               "bob@globex.test": {"Globex Nederland B.V.", "Initech Logistics B.V."}}
        assert User.objects.get(email="admin@example.com").is_staff
        assert set(User.objects.filter(is_staff=False).values_list("language", flat=True)) == {"nl", "en"}
        # The Belgian client's invoices show as delivered over Peppol, to its Dutch-speaking contact.
        brugge = clients["Brugse Bouwwerken NV"]
        delivered = PeppolDelivery.objects.filter(client=brugge, state=PeppolDelivery.State.DELIVERED)
        assert delivered.count() == Invoice.objects.filter(client=brugge).exclude(status="draft").count() > 0
        shown = delivered.first().invoice
        contact = User.objects.get(email="lotte@brugse-bouw.test")
        before = Invoice.objects.count()
    from django.test import Client as Browser

    lotte = Browser()
    lotte.force_login(contact)
    page = lotte.get(f"/invoices/{shown.pk}/")
    assert page.status_code == 200 and "Via Peppol afgeleverd in uw boekhoudsysteem op" in page.text, page.status_code
    # The API token make run prints works for Acme's demo ERP, which sees its clients' invoices.
    from django.test import Client as Http

    from portal.management.commands.load_demo import DEMO_API_TOKEN
    from portal.stack import DEMO_LOGINS
    assert DEMO_API_TOKEN in DEMO_LOGINS
    answer = Http().post("/api/graphql/", {"query": "{ invoices(first: 5) { edges { node { number } } } }"},
                         content_type="application/json", headers={"Authorization": f"Bearer {DEMO_API_TOKEN}"})
    assert answer.status_code == 200 and len(answer.json()["data"]["invoices"]["edges"]) == 5, answer.content
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    assert "0 new ledger events, 0 recurring invoices" in out.getvalue()
    with staff_scope():
        assert Invoice.objects.count() == before
