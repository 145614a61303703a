"""The one Exact Online client, against the local Exact (tests/fakes/exact.py): paging, $select,
Exact's values, the budgets it reports and the error limit, as a job calling it would see them.
Committed for real: the client calls out only with no transaction open."""
import datetime
from decimal import Decimal

import pytest
import requests
import time_machine
from django.utils import timezone

from integrations.exact.client import EndpointBlocked, ExactClient, ExactRefused, RateLimited
from integrations.exact.models import ExactConnection, ExactEndpointErrors
from integrations.exact.values import parse_date, parse_moment
from portal.rls import staff_scope
from tests.integrations.exact.world import (  # noqa: F401 - fixtures
    CLIENT_ID, CLIENT_SECRET, DIVISION, exact, fake_exact)


@pytest.fixture
def clock():
    """Our clock and the fake's together (the fake reads time.time()): `clock.shift(seconds)`."""
    with time_machine.travel(datetime.datetime.now(datetime.timezone.utc), tick=True) as traveller:
        yield traveller


@pytest.fixture
def fake(clock, fake_exact):
    """The local Exact (world.py's), its clock moving with ours."""
    return fake_exact


def stored(exact) -> ExactConnection:
    with staff_scope():
        return ExactConnection.objects.get(pk=exact.pk)


def api_requests(fake, endpoint=None) -> list[dict]:
    return [r for r in fake.requests if endpoint is None or r["endpoint"] == endpoint]


def test_pages_follow_next_until_every_row_is_read(fake, exact):
    names = {fake.add_account(f"Klant {n:03}")["Name"] for n in range(130)}

    pages = list(ExactClient(exact).pages("crm/Accounts", select=["ID", "Code", "Name"], filter="IsSales eq true"))

    assert [len(page) for page in pages] == [60, 60, 10]
    assert {row["Name"] for page in pages for row in page} == names
    assert set(pages[0][0]) == {"ID", "Code", "Name"}
    sent = api_requests(fake, "crm/Accounts")
    assert len(sent) == 3 and all("$select=ID,Code,Name" in r["path"] for r in sent)
    assert "$skiptoken=" in sent[1]["path"]


def test_get_all_reads_a_sync_endpoint_after_a_timestamp(fake, exact):
    first = fake.add_account("Eerste")
    fake.add_account("Tweede")
    fake.add_account("Derde")
    fake.sync_page_size = 1

    rows = ExactClient(exact).get_all("sync/CRM/Accounts", select=["Timestamp", "ID", "Name"],
                                      filter=f"Timestamp gt {first['Timestamp']}L")

    assert [r["Name"] for r in rows] == ["Tweede", "Derde"]
    assert all(isinstance(r["Timestamp"], int) and r["Timestamp"] > first["Timestamp"] for r in rows)
    assert len(api_requests(fake, "sync/CRM/Accounts")) == 2


def test_select_is_required_before_anything_is_sent(fake, exact):
    with pytest.raises(ValueError, match=r"\$select"):
        ExactClient(exact).get_all("crm/Accounts", select=[], filter="IsSales eq true")
    assert api_requests(fake) == []


def test_amounts_are_decimals_and_dates_come_from_exact_milliseconds(fake, exact):
    account = fake.add_account("Bakkerij Jansen")
    invoice = fake.add_invoice(account, [("Brood", 3, "2.35", "2"), ("Koffie", 1, "10.10", "5")],
                               invoice_date=datetime.date(2026, 11, 2))

    row = ExactClient(exact).get_one(f"salesinvoice/SalesInvoices(guid'{invoice['InvoiceID']}')",
                                     select=["InvoiceID", "AmountFC", "VATAmountFC", "InvoiceDate", "Modified"])

    # 3 x 2.35 = 7.05 + 21 % (1.48) and 10.10 + 9 % (0.91): 19.54, exactly, as Decimals.
    assert row["AmountFC"] == Decimal("19.54") and isinstance(row["AmountFC"], Decimal)
    assert isinstance(row["VATAmountFC"], Decimal)
    assert row["InvoiceDate"].startswith("/Date(")
    assert parse_date(row["InvoiceDate"]) == datetime.date(2026, 11, 2)
    assert abs(parse_moment(row["Modified"]) - timezone.now()) < datetime.timedelta(minutes=1)


def test_values_read_exact_dates_and_webhook_moments():
    assert parse_date("/Date(1700000000000)/") == datetime.date(2023, 11, 14)
    assert parse_moment("/Date(1700000000000+0100)/") == datetime.datetime(2023, 11, 14, 22, 13, 20,
                                                                           tzinfo=datetime.timezone.utc)
    assert parse_moment("2020-01-06T16:26:08.587") == datetime.datetime(2020, 1, 6, 16, 26, 8, 587000,
                                                                        tzinfo=datetime.timezone.utc)
    assert parse_date(None) is None and parse_moment("") is None


def test_post_sends_amounts_as_json_numbers_and_answers_the_created_entry(fake, exact):
    account = fake.add_account("Bakkerij Jansen")

    entry = ExactClient(exact).post("financialtransaction/BankEntries", {
        "JournalCode": "20", "Currency": "EUR",
        "BankEntryLines": [{"Account": account["ID"], "AmountFC": Decimal("-19.54"), "Date": datetime.date(2026, 11, 3),
                            "Description": "Portal payment pay_123"}]})

    assert entry["EntryID"]
    [booked] = fake.bank_entries
    assert booked["BankEntryLines"][0]["AmountFC"] == Decimal("-19.54")
    assert booked["BankEntryLines"][0]["Date"] == datetime.date(2026, 11, 3)


def test_me_and_divisions(fake, exact):
    fake.add_division(7654321, "Bakkerij de Boer Holding")

    client = ExactClient(exact)

    assert client.me()["CurrentDivision"] == DIVISION
    assert {d["Code"]: d["Description"] for d in client.divisions()} == {
        DIVISION: "Boekhouding B.V.", 7654321: "Bakkerij de Boer Holding"}


def test_rate_limit_headers_are_stored_on_the_connection(fake, exact, clock):
    start_of_next_minute(clock)
    ExactClient(exact).get_all("vat/VATCodes", select=["ID", "Code", "Percentage"])

    row = stored(exact)
    assert (row.day_limit, row.day_remaining, row.minute_remaining) == (5000, 4999, 59)
    day_start = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    assert row.day_resets_at == day_start + datetime.timedelta(days=1)
    assert timezone.now() < row.minute_resets_at <= timezone.now() + datetime.timedelta(seconds=60)


def start_of_next_minute(clock) -> None:
    """So that a test's calls fall in one of Exact's minutes (it counts per clock minute)."""
    now = timezone.now()
    clock.shift(now.replace(second=1, microsecond=0) + datetime.timedelta(minutes=1) - now)


def test_a_spent_minute_budget_stops_calls_until_its_reset(fake, exact, clock):
    start_of_next_minute(clock)
    fake.minute_limit = 3
    client = ExactClient(exact)
    for _ in range(3):
        client.get_all("vat/VATCodes", select=["ID"])

    with pytest.raises(RateLimited) as limited:
        client.get_all("vat/VATCodes", select=["ID"])

    assert len(api_requests(fake)) == 3  # refused here, not by a 429 that Exact counts
    assert limited.value.until == stored(exact).minute_resets_at > timezone.now()
    clock.shift(limited.value.until - timezone.now() + datetime.timedelta(seconds=1))
    client.get_all("vat/VATCodes", select=["ID"])
    assert len(api_requests(fake)) == 4


def test_a_spent_day_budget_stops_calls_until_midnight(fake, exact):
    fake.day_limit = 2
    client = ExactClient(exact)
    client.get_all("vat/VATCodes", select=["ID"])
    client.get_all("financial/Journals", select=["ID"])

    with pytest.raises(RateLimited) as limited:
        client.get_all("vat/VATCodes", select=["ID"])

    assert len(api_requests(fake)) == 2
    assert limited.value.until == stored(exact).day_resets_at
    assert limited.value.until.astimezone(datetime.timezone.utc).time() == datetime.time(0, 0)


def test_429_is_rate_limited_until_the_reset_and_not_called_again_before(fake, exact, clock):
    start_of_next_minute(clock)
    fake.minute_limit = 1
    # Another app of the same division spends the minute (Exact counts per app and division; here
    # our own token, outside the client, so the client's stored budget does not know).
    requests.get(f"{fake.url}/api/v1/{DIVISION}/vat/VATCodes?$select=ID",
                 headers={"Authorization": f"Bearer {exact.access_token}"}, timeout=5)
    client = ExactClient(exact)

    with pytest.raises(RateLimited) as limited:
        client.get_all("financial/Journals", select=["ID"])
    assert [r["status"] for r in api_requests(fake)] == [200]  # the 429 is not in the fake's log of executed calls
    row = stored(exact)
    assert row.rate_limited_until == limited.value.until == row.minute_resets_at > timezone.now()

    with pytest.raises(RateLimited):
        client.get_all("financial/Journals", select=["ID"])
    assert fake.calls["financial/Journals"] == 0


def test_odata_errors_become_exact_refused_with_exacts_words(fake, exact):
    with pytest.raises(ExactRefused) as refused:
        ExactClient(exact).get_all("crm/Accounts", select=["ID", "Nonsense"], filter="IsSales eq true")

    assert refused.value.status == 400
    assert refused.value.message == "'Nonsense' is not a property of this entity"


def test_an_endpoint_is_left_alone_before_its_errors_get_the_app_blocked(fake, exact, clock):
    client = ExactClient(exact)
    for n in range(10):
        with pytest.raises(ExactRefused) as refused:
            client.get_one(f"crm/Accounts(guid'00000000-0000-0000-0000-{n:012}')", select=["ID"])
        assert refused.value.status == 404

    with pytest.raises(EndpointBlocked) as blocked:
        client.get_one("crm/Accounts(guid'00000000-0000-0000-0000-000000000099')", select=["ID"])

    assert len(api_requests(fake, "crm/Accounts")) == 10
    assert fake.blocked_until == {}  # Exact never had to block the app
    with staff_scope():
        assert list(ExactEndpointErrors.objects.values_list("endpoint", "count")) == [
            (f"/api/v1/{DIVISION}/crm/Accounts", 10)]
    # Other endpoints go on.
    assert client.get_all("vat/VATCodes", select=["Code"])
    # Calls resume once those errors are out of every hour Exact might count.
    assert blocked.value.until > timezone.now()
    clock.shift(blocked.value.until - timezone.now() + datetime.timedelta(seconds=1))
    assert client.get_all("crm/Accounts", select=["ID"], filter="IsSales eq true") == []


def test_errors_of_the_previous_hour_still_count(fake, exact, clock):
    client = ExactClient(exact)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    clock.shift(hour + datetime.timedelta(hours=1, minutes=59) - timezone.now())
    for n in range(6):
        with pytest.raises(ExactRefused):
            client.get_one(f"crm/Accounts(guid'00000000-0000-0000-0000-{n:012}')", select=["ID"])
    clock.shift(datetime.timedelta(minutes=2))  # a new clock hour, but within Exact's hour of those errors
    for n in range(4):
        with pytest.raises(ExactRefused):
            client.get_one(f"crm/Accounts(guid'00000000-0000-0000-0000-{n:012}')", select=["ID"])

    with pytest.raises(EndpointBlocked):
        client.get_one("crm/Accounts(guid'00000000-0000-0000-0000-000000000099')", select=["ID"])
    assert fake.blocked_until == {}
