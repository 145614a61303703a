"""`make run`'s demo data: every client has every state, all of it sent through the webhook pipeline."""
import io

from django.core.management import call_command

from invoices.models import CreditNote, Invoice, RecurringSchedule
from portal.models import Client, Job, WebhookRequest
from portal.rls import staff_scope


def test_demo_data_covers_every_state_for_every_client_and_is_idempotent(committed):
    # Committed for real: the demo's events are applied by jobs, which run with no transaction open.
    call_command("load_demo", stdout=io.StringIO())
    with staff_scope():
        assert WebhookRequest.objects.filter(source="accounting", status="accepted").exists()
        assert set(Job.objects.filter(kind="accounting.event").values_list("state", flat=True)) == {"done"}
        for client in Client.objects.all():
            invoices = list(Invoice.objects.filter(client=client))
            states = {i.status for i in invoices} | {"overdue" for i in invoices if i.is_overdue()}
            assert states >= {"open", "partially_paid", "paid", "void", "overdue"}, client
            assert CreditNote.objects.filter(client=client, status="applied").exists()
            assert RecurringSchedule.objects.filter(client=client, status="active").exists()
            assert all(i.connection_id or i.recurring_schedule_id for i in invoices)
        before = Invoice.objects.count()
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    assert "0 new ledger events, 0 recurring invoices" in out.getvalue()
    with staff_scope():
        assert Invoice.objects.count() == before
