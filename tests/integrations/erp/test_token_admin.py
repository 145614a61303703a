"""API tokens as staff make them in admin: shown once, kept only as a fingerprint, working at once,
revoked by an action, never deleted; each step audited."""
import re

from integrations.erp.models import ApiToken, token_digest
from portal.models import AuditEvent
from portal.rls import staff_scope
from tests.integrations.erp.api_support import gql

QUERY = "{ clients(first: 1) { edges { cursor } } }"


def test_staff_make_a_token_see_it_once_use_it_and_revoke_it(client, connection, staff):
    client.force_login(staff)
    form = client.get("/admin/integrations/apitoken/add/")
    assert form.status_code == 200
    made = client.post("/admin/integrations/apitoken/add/", {
        "connection": connection.pk, "name": "ERP production", "can_read": "on",
        "expires_at_0": "2030-01-01", "expires_at_1": "00:00:00", "rate_per_minute": "60"})
    assert made.status_code == 200 and "no-store" in made["Cache-Control"]
    secret = re.search(r'value="(ptk_[A-Za-z0-9_-]{43})"', made.content.decode()).group(1)
    with staff_scope():
        token = ApiToken.objects.get()
    assert (token.prefix, token.digest, token.scopes) == (secret[:12], token_digest(secret), ["read"])
    assert secret not in "".join(str(v) for v in vars(token).values())  # only its fingerprint is kept
    listed = client.get("/admin/integrations/apitoken/").content.decode()
    assert token.prefix in listed and secret not in listed
    assert client.get(f"/admin/integrations/apitoken/{token.pk}/change/").content.decode().count(secret) == 0

    logged_out = client.__class__()
    assert gql(logged_out, secret, QUERY).status_code == 200
    assert gql(logged_out, secret, "mutation { upsertClient(input: {externalId: \"x\", name: \"x\", "
                                   "billingEmail: \"a@b.nl\"}) { status } }").status_code == 403

    revoked = client.post("/admin/integrations/apitoken/", {"action": "revoke", "_selected_action": [token.pk]},
                          follow=True)
    assert "1 token revoked" in revoked.content.decode()
    answer = gql(logged_out, secret, QUERY)
    assert (answer.status_code, answer.json()["errors"][0]["extensions"]["code"]) == (401, "TOKEN_REVOKED")
    assert client.get(f"/admin/integrations/apitoken/{token.pk}/delete/").status_code == 403
    with staff_scope():
        actions = list(AuditEvent.objects.filter(object_type="integrations.apitoken").order_by("id")
                       .values_list("action", flat=True))
    assert actions[0] == AuditEvent.Action.API_TOKEN_CREATED
    assert AuditEvent.Action.API_TOKEN_REVOKED in actions and AuditEvent.Action.API_CALL in actions


def test_a_token_needs_a_scope_and_a_future_expiry(client, connection, staff):
    client.force_login(staff)
    answer = client.post("/admin/integrations/apitoken/add/", {
        "connection": connection.pk, "name": "nothing", "expires_at_0": "2020-01-01", "expires_at_1": "00:00:00",
        "rate_per_minute": "60"}).content.decode()
    assert "Give the token at least one scope: read or write." in answer
    assert "Choose a moment in the future." in answer
    with staff_scope():
        assert not ApiToken.objects.exists()
