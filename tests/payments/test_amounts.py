"""The checkout's amounts: typed the way the client's language writes money, checked per invoice
with the error at the field, the summary and the Pay button showing the exact total, the gateway
asked for exactly that; a selection posted from the list or "Pay what is overdue" opens it."""
import datetime
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from invoices.models import Invoice
from payments.forms import CheckoutForm
from payments.models import CheckoutAttempt, GatewayAccount, SandboxPayment
from payments.services import amount_problem, gateway_for_brand
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory

D = Decimal


@pytest.fixture
def shop(db):
    brand = BrandFactory(is_default=True)
    alpha = ClientFactory(brand=brand, name="Alpha B.V.", locale="nl")
    owner = MembershipFactory(client=alpha, user__email="owner@alpha.test", user__language="en").user
    dutch = MembershipFactory(client=alpha, user__email="eigenaar@alpha.test", user__language="nl").user
    with staff_scope():
        gateway = gateway_for_brand(brand)
        GatewayAccount.objects.filter(pk=gateway.pk).update(allow_partial=True, partial_minimum=D("10.00"))
        gateway.refresh_from_db()
    big = make_invoice(alpha, number="A-BIG", lines=[line(unit_price="1000.00")])  # 1210.00
    small = make_invoice(alpha, number="A-SMALL", lines=[line(unit_price="5.00")])  # 6.05
    late = make_invoice(alpha, number="A-LATE", issue_date=TODAY - datetime.timedelta(days=90),
                        lines=[line(unit_price="100.00")])  # 121.00, overdue
    return {"alpha": alpha, "owner": owner, "dutch": dutch, "gateway": gateway, "big": big, "small": small,
            "late": late}


def _form(shop, data, invoices):
    with staff_scope():
        invoices = [Invoice.objects.get(pk=i.pk) for i in invoices]
    base = {"idempotency_key": str(uuid.uuid4()), "method": "ideal"}
    return CheckoutForm({**base, **data}, invoices=invoices, gateway=shop["gateway"])


@pytest.mark.parametrize("language, typed, amount", [
    ("nl", "10,50", D("10.50")), ("nl", "1.050,00", D("1050.00")), ("nl", "1.050", D("1050.00")),
    ("nl", "10.50", D("10.50")), ("en", "10.50", D("10.50")), ("en", "1,050.00", D("1050.00")),
    ("nl", "€ 600", D("600.00")),
])
def test_an_amount_is_read_the_way_the_clients_language_writes_it(shop, language, typed, amount):
    with translation.override(language):
        form = _form(shop, {f"amount_{shop['big'].pk}": typed}, [shop["big"]])
        assert form.is_valid(), form.errors
        assert form.requested()[0][1] == amount


@pytest.mark.parametrize("typed, message", [
    ("5,00", "Een deelbetaling is minimaal €\u00a010,00 (of betaal het hele bedrag van €\u00a01.210,00)."),
    ("1.210,01", "U kunt hooguit €\u00a01.210,00 betalen op factuur A-BIG."),
    ("0", "Vul een bedrag boven nul in."),
    ("tien", "Vul een bedrag in cijfers in, bijvoorbeeld 10,50."),
])
def test_a_wrong_amount_is_refused_at_its_field_in_the_clients_language(shop, typed, message):
    with translation.override("nl"):
        form = _form(shop, {f"amount_{shop['big'].pk}": typed}, [shop["big"]])
        assert not form.is_valid()
        assert form.errors == {f"amount_{shop['big'].pk}": [message]}


def test_less_than_the_minimum_is_fine_when_it_is_the_whole_balance(shop):
    with translation.override("en"):
        form = _form(shop, {f"amount_{shop['small'].pk}": "6.05"}, [shop["small"]])
        assert form.is_valid(), form.errors
        assert amount_problem(invoice=shop["small"], gateway=shop["gateway"], amount=D("6.04")) == \
            "A part payment is at least €10.00 (or pay the whole €6.05)."


def test_without_part_payments_the_amount_is_the_balance_whatever_is_posted(shop):
    with staff_scope():
        GatewayAccount.objects.filter(pk=shop["gateway"].pk).update(allow_partial=False)
        shop["gateway"].refresh_from_db()
    with translation.override("nl"):
        form = _form(shop, {f"amount_{shop['big'].pk}": "1,00"}, [shop["big"]])
        assert form.is_valid(), form.errors
        assert form.requested()[0][1] == D("1210.00")


def test_the_summary_adds_up_what_is_typed_and_marks_what_is_not_an_amount(shop):
    with translation.override("nl"):
        form = _form(shop, {f"amount_{shop['big'].pk}": "10,50", f"amount_{shop['small'].pk}": "6,05"},
                     [shop["big"], shop["small"]])
        summary = form.summary()
        assert (summary["total"], summary["complete"], summary["method"]) == (D("16.55"), True, "iDEAL")
        broken = _form(shop, {f"amount_{shop['big'].pk}": "10,50", f"amount_{shop['small'].pk}": "zes"},
                       [shop["big"], shop["small"]]).summary()
        assert (broken["total"], broken["complete"]) == (D("10.50"), False)
        assert [row["amount"] for row in broken["rows"]] == [D("10.50"), None]


def test_the_checkout_shows_text_amounts_in_the_clients_language_and_the_exact_total(shop, client):
    client.force_login(shop["dutch"])
    page = client.get(reverse("payments:checkout"), {"invoice": shop["big"].pk})
    assert page.status_code == 200
    text = page.text
    assert 'type="number"' not in text and 'inputmode="decimal"' in text
    assert 'value="1.210,00"' in text
    assert "Betaal €\u00a01.210,00" in text
    assert 'hx-post="/pay/summary/"' in text and 'hx-trigger="input changed delay:300ms"' in text


def test_the_summary_endpoint_answers_the_total_as_typed(shop, client):
    client.force_login(shop["dutch"])
    partial = client.post(reverse("payments:summary"), {
        "invoice": [shop["big"].pk, shop["small"].pk], f"amount_{shop['big'].pk}": "10,50",
        f"amount_{shop['small'].pk}": "6,05", "method": "card"}, HTTP_HX_REQUEST="true")
    assert partial.status_code == 200
    assert "Betaal €\u00a016,55" in partial.text and "Kaart" in partial.text
    assert "<html" not in partial.text


def test_a_field_error_shows_at_the_field_and_nothing_is_started(shop, client):
    client.force_login(shop["owner"])
    page = client.post(reverse("payments:checkout"), {
        "invoice": shop["big"].pk, "idempotency_key": str(uuid.uuid4()), "method": "ideal",
        f"amount_{shop['big'].pk}": "5.00"})
    assert page.status_code == 200
    assert f'id="id_amount_{shop["big"].pk}-error">A part payment is at least €10.00' in page.text
    assert 'aria-invalid="true"' in page.text
    with staff_scope():
        assert not CheckoutAttempt.objects.exists()


def test_pay_selected_posts_ids_only_and_gets_the_checkout_for_them(shop, client):
    client.force_login(shop["owner"])
    page = client.post(reverse("payments:checkout"), {"invoice": [shop["big"].pk, shop["small"].pk]})
    assert page.status_code == 200
    assert "A-BIG" in page.text and "A-SMALL" in page.text and "A-LATE" not in page.text
    assert "field-error" not in page.text and "errorlist" not in page.text
    assert "Pay €1,216.05" in page.text
    with staff_scope():
        assert not CheckoutAttempt.objects.exists()


def test_nothing_payable_selected_leads_back_to_the_list_with_a_message(shop, client):
    client.force_login(shop["dutch"])
    page = client.post(reverse("payments:checkout"), {}, follow=True)
    assert page.redirect_chain == [(reverse("invoices:list"), 302)]
    assert "Kies ten minste één factuur met een openstaand bedrag." in page.text


def test_pay_what_is_overdue_opens_a_checkout_of_the_overdue_invoices(shop, client):
    client.force_login(shop["owner"])
    usd = make_invoice(shop["alpha"], number="A-LATE-USD", currency="USD",
                       issue_date=TODAY - datetime.timedelta(days=90), lines=[line(unit_price="10.00")])
    page = client.get(reverse("payments:checkout"), {"overdue": "1"})
    assert page.status_code == 200
    assert "A-LATE" in page.text and "A-BIG" not in page.text and "A-LATE-USD" not in page.text
    assert "Pay €121.00" in page.text
    assert "Pay the invoices in USD" in page.text
    in_dollars = client.get(reverse("payments:checkout"), {"overdue": "1", "currency": "USD"})
    assert usd.number in in_dollars.text and "Pay US$12.10" in in_dollars.text


@pytest.fixture
def paying(committed, worker):
    def build():
        brand = BrandFactory(is_default=True)
        alpha = ClientFactory(brand=brand, name="Alpha B.V.", locale="nl")
        dutch = MembershipFactory(client=alpha, user__email="eigenaar@alpha.test", user__language="nl").user
        gateway = gateway_for_brand(brand)
        GatewayAccount.objects.filter(pk=gateway.pk).update(allow_partial=True, partial_minimum=D("10.00"))
        return {"alpha": alpha, "dutch": dutch,
                "invoice": make_invoice(alpha, number="A-1", lines=[line(unit_price="1000.00")])}

    return committed.create(build)


def test_ten_fifty_typed_in_dutch_is_what_the_gateway_is_asked_for(paying, client, worker):
    client.force_login(paying["dutch"])
    invoice = paying["invoice"]
    response = client.post(reverse("payments:checkout"), {
        "invoice": invoice.pk, "idempotency_key": str(uuid.uuid4()), "method": "ideal",
        f"amount_{invoice.pk}": "10,50"})
    assert response.status_code == 302 and response.url.startswith("/sandbox-gateway/")
    with staff_scope():
        [sandbox] = SandboxPayment.objects.all()
        [attempt] = CheckoutAttempt.objects.all()
        assert (sandbox.amount, attempt.amount, attempt.items.get().amount) == (D("10.50"), D("10.50"), D("10.50"))
    client.post(response.url, {"outcome": "paid"})
    worker.run()
    with staff_scope():
        invoice = Invoice.objects.get(pk=invoice.pk)
    assert (invoice.amount_paid, invoice.open_balance) == (D("10.50"), D("1199.50"))
