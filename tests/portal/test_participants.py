"""Peppol participant identifiers of brands and clients: checked on input, stored compact."""
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from portal.models import Client
from portal.participants import Scheme, normalise, participant
from portal.rls import staff_scope


@pytest.mark.parametrize("scheme, typed, stored", [
    (Scheme.BE_ENTERPRISE, "0403.170.701", "0403170701"),
    (Scheme.BE_ENTERPRISE, "BE 0403 170 701", "0403170701"),
    (Scheme.BE_VAT, "be0403170701", "BE0403170701"),
    (Scheme.NL_VAT, "NL 0044.95.445.B01", "NL004495445B01"),
    (Scheme.NL_KVK, "3456 7890", "34567890"),
])
def test_an_identifier_is_stored_as_the_network_writes_it(scheme, typed, stored):
    assert normalise(scheme, typed) == stored


@pytest.mark.parametrize("scheme, typed, message", [
    (Scheme.BE_ENTERPRISE, "0403.170.702", "valid check"),  # mod 97 fails (PEPPOL-COMMON-R043)
    (Scheme.BE_ENTERPRISE, "12345", "10 digits"),
    (Scheme.NL_VAT, "NL004495446B01", "Dutch VAT number"),
    (Scheme.NL_KVK, "1234567", "8 digits"),
])
def test_a_wrong_identifier_is_refused_saying_what_is_expected(scheme, typed, message):
    with pytest.raises(ValidationError) as refused:
        normalise(scheme, typed)
    assert message in refused.value.messages[0]


def _form(client_row, **changes):
    return {"brand": client_row.brand_id, "name": client_row.name, "billing_email": "billing@alpha.test",
            "country": "BE", "default_currency": "EUR", "locale": "nl", "time_zone": "Europe/Brussels",
            "peppol_scheme": "", "peppol_id": "", "buyer_reference": "",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0", **changes}


def test_staff_give_a_belgian_client_its_enterprise_number_in_admin(tenants, client, staff):
    client.force_login(staff)
    url = reverse("admin:portal_client_change", args=[tenants.client_a.pk])
    refused = client.post(url, _form(tenants.client_a, peppol_scheme="0208", peppol_id="0403.170.702"))
    assert refused.status_code == 200 and "valid check" in refused.text
    missing = client.post(url, _form(tenants.client_a, peppol_id="0403.170.701"))
    assert missing.status_code == 200 and "Choose the scheme of this Peppol identifier." in missing.text
    saved = client.post(url, _form(tenants.client_a, peppol_scheme="0208", peppol_id="0403.170.701",
                                   buyer_reference="CC-4711"))
    assert saved.status_code == 302, saved.text
    with staff_scope():
        row = Client.objects.get(pk=tenants.client_a.pk)
    assert participant(row) == "0208:0403170701" and row.buyer_reference == "CC-4711"


def test_the_brand_page_has_its_peppol_identifier(tenants, client, staff):
    client.force_login(staff)
    page = client.get(reverse("admin:portal_brand_change", args=[tenants.client_a.brand_id]))
    assert 'name="peppol_scheme"' in page.text and 'name="peppol_id"' in page.text
