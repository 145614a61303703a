"""The one webhook intake: store raw, verify, answer the same way for every source, leave a
job; duplicates change nothing; rejected requests are kept, but a flood only counts."""
import hashlib
import hmac
import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from portal import jobs, webhooks
from portal import urls as portal_urls
from portal.models import Job, WebhookRejections, WebhookRequest
from portal.rls import staff_scope

SECRET = b"test-secret"


@jobs.handler("test.webhook", transactional=True)
def _process(job):
    return webhooks.webhook_for(job).natural_key


def _find(account_key, body):
    # Stands for a connection lookup: one statement, as a real source makes.
    WebhookRejections.objects.filter(account=account_key, count__lt=0).exists()
    return "account" if account_key == "known" else None


def _verify(account, headers, body):
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers.get("X-Signature", "")):
        raise webhooks.Rejected(401, "signature does not match")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise webhooks.Rejected(400, f"malformed JSON: {exc}") from None
    return webhooks.Accepted(natural_key=str(payload.get("id", "")), subject=f"thing:{payload.get('thing', '')}")


SOURCE = webhooks.Source(name="test", job_kind="test.webhook", find=_find, verify=_verify,
                         kept_headers=("content-type", "x-signature"))


@csrf_exempt
def receive(request, account):
    return webhooks.webhook_receive(request, source=SOURCE, account_key=account)


urlpatterns = [path("hooks/<str:account>/", receive), *portal_urls.urlpatterns]
pytestmark = pytest.mark.urls("tests.portal.test_webhooks")


def _post(client, body: bytes, account="known", signature=None):
    signature = signature if signature is not None else hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return client.post(f"/hooks/{account}/", data=body, content_type="application/json",
                       HTTP_X_SIGNATURE=signature)


def test_an_accepted_webhook_is_stored_answered_and_leaves_a_job(client, db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        response = _post(client, b'{"id": "evt_1", "thing": "inv-7"}')
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "webhook": response.json()["webhook"]}
    with staff_scope():
        stored = WebhookRequest.objects.get(pk=response.json()["webhook"])
        job = Job.objects.get(key=f"webhook:{stored.pk}")
    assert (stored.source, stored.account, stored.natural_key, stored.status) == ("test", "known", "evt_1", "accepted")
    assert json.loads(stored.body) == {"id": "evt_1", "thing": "inv-7"}
    assert stored.headers["x-signature"]
    assert (job.kind, job.subject, job.state, job.payload["webhook"]) == ("test.webhook", "thing:inv-7", "pending",
                                                                         stored.pk)


def statements(captured) -> list[str]:
    """The SQL statements sent, less the transaction's own BEGIN and COMMIT."""
    return [q["sql"] for q in captured if q["sql"] not in ("BEGIN", "COMMIT")]


def test_accepting_a_webhook_takes_at_most_four_sql_statements(committed):
    # Committed for real, as in production: the intake's transaction is the outermost one.
    body = b'{"id": "evt_budget", "thing": "x"}'
    client = Client()
    with CaptureQueriesContext(connection) as accepted:
        assert _post(client, body).json()["status"] == "accepted"
    with CaptureQueriesContext(connection) as duplicate:
        assert _post(client, body).json()["status"] == "duplicate"
    # The scope, the account, the stored request, its job: one transaction.
    assert len(statements(accepted)) <= 4, statements(accepted)
    assert len(accepted) <= 6 and len(statements(duplicate)) <= 3


def test_a_duplicate_changes_nothing(client, db):
    body = b'{"id": "evt_dup"}'
    assert _post(client, body).json()["status"] == "accepted"
    response = _post(client, body)
    assert (response.status_code, response.json()) == (200, {"status": "duplicate"})
    with staff_scope():
        assert WebhookRequest.objects.filter(natural_key="evt_dup").count() == 1
        assert Job.objects.filter(kind="test.webhook").count() == 1


@pytest.mark.parametrize("body, account, signature, status, reason", [
    (b'{"id": "x"}', "known", "forged", 401, "signature does not match"),
    (b"{not json", "known", None, 400, "malformed JSON"),
    (b'{"id": "x"}', "nobody", None, 404, "no enabled test account 'nobody'"),
])
def test_a_rejected_webhook_gets_the_reason_and_is_kept(client, db, body, account, signature, status, reason):
    response = _post(client, body, account=account, signature=signature)
    assert response.status_code == status
    assert response.json()["status"] == "rejected" and reason in response.json()["error"]
    with staff_scope():
        kept = WebhookRequest.objects.get(status="rejected")
        assert reason in kept.error and kept.account == account
        assert not Job.objects.exists()


def test_a_forged_request_cannot_block_the_real_event(client, db):
    assert _post(client, b'{"id": "evt_real"}', signature="forged").status_code == 401
    assert _post(client, b'{"id": "evt_real"}').json()["status"] == "accepted"


def test_an_oversized_body_is_refused_without_storing_it(client, db):
    body = json.dumps({"id": "big", "pad": "x" * (webhooks.MAX_BODY_BYTES + 1)}).encode()
    response = _post(client, body)
    assert response.status_code == 413 and response.json()["status"] == "rejected"
    with staff_scope():
        assert WebhookRequest.objects.get().body == ""


def test_an_unauthenticated_flood_is_counted_not_stored(client, db, settings):
    for _ in range(webhooks.REJECTED_KEPT_PER_HOUR + 30):
        assert _post(client, b'{"id": "spam"}', signature="forged").status_code == 401
    with staff_scope():
        assert WebhookRequest.objects.filter(status="rejected").count() == webhooks.REJECTED_KEPT_PER_HOUR
        assert WebhookRejections.objects.get(source="test").count == webhooks.REJECTED_KEPT_PER_HOUR + 30
