"""The one webhook intake: store raw, verify, answer the same way for every source, leave a
job; duplicates change nothing; rejected requests are counted and sampled, never kept whole;
bodies, rates and JSON are bounded before anything is stored, and no input answers 5xx."""
import hashlib
import hmac
import io
import json
import time
import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client, RequestFactory
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
    return "account" if account_key.startswith("known") else None


def _verify(account, headers, body):
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers.get("X-Signature", "")):
        raise webhooks.Rejected(401, "signature does not match")
    payload = webhooks.parse_json(body)
    return webhooks.Accepted(natural_key=str(payload.get("id", "")), subject=f"thing:{payload.get('thing', '')}")


SOURCE = webhooks.Source(name="test", job_kind="test.webhook", find=_find, verify=_verify,
                         kept_headers=("content-type", "x-signature"))


@csrf_exempt
def receive(request, account):
    return webhooks.webhook_receive(request, source=SOURCE, account_key=account)


urlpatterns = [path("hooks/<str:account>/", receive), *portal_urls.urlpatterns]
pytestmark = pytest.mark.urls("tests.portal.test_webhooks")


def _post(client, body: bytes, account="known", signature=None, **extra):
    signature = signature if signature is not None else hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return client.post(f"/hooks/{account}/", data=body, content_type="application/json",
                       HTTP_X_SIGNATURE=signature, **extra)


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
    (b'{"id": "x"}', "nobody", None, 404, "no enabled test account of that name"),
])
def test_a_rejected_webhook_gets_the_reason_and_is_kept(client, db, body, account, signature, status, reason):
    response = _post(client, body, account=account, signature=signature)
    assert response.status_code == status
    assert response.json()["status"] == "rejected" and reason in response.json()["error"]
    with staff_scope():
        kept = WebhookRequest.objects.get(status="rejected")
        assert reason in kept.error and kept.account == ("" if status == 404 else account)
        assert not Job.objects.exists()


def test_a_forged_request_cannot_block_the_real_event(client, db):
    assert _post(client, b'{"id": "evt_real"}', signature="forged").status_code == 401
    assert _post(client, b'{"id": "evt_real"}').json()["status"] == "accepted"


def _counts(**filters) -> dict[int, int]:
    with staff_scope():
        return dict(WebhookRejections.objects.filter(source="test", **filters).values_list("answer", "count"))


def test_an_oversized_body_gets_413_is_counted_and_not_stored(client, db, settings):
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    body = json.dumps({"id": "big", "pad": "x" * limit}).encode()
    response = _post(client, body)
    assert (response.status_code, response.json()) == (
        413, {"status": "rejected", "error": f"the body is larger than {limit} bytes"})
    assert _counts() == {413: 1}
    with staff_scope():
        kept = WebhookRequest.objects.get()
        assert (kept.body, kept.status, kept.account) == ("", "rejected", "known")
        assert not Job.objects.exists()
    # One byte less than the limit is read and taken.
    fits = json.dumps({"id": "fits", "pad": ""}).encode()
    fits = fits.replace(b'""', b'"' + b"x" * (limit - len(fits)) + b'"')
    assert len(fits) == limit and _post(client, fits).json()["status"] == "accepted"


def test_the_body_limit_is_a_setting_and_a_source_may_have_its_own(client, db, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 2048
    assert _post(client, json.dumps({"id": "a", "pad": "x" * 2100}).encode()).status_code == 413
    small = webhooks.Source(name="test", job_kind="test.webhook", find=_find, verify=_verify, max_body_bytes=1024)
    request = RequestFactory().post("/hooks/known/", data=json.dumps({"id": "b", "pad": "x" * 1100}),
                                    content_type="application/json")
    assert webhooks.webhook_receive(request, source=small, account_key="known").status_code == 413


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def _raw_request(body: bytes, content_length: int):
    stream = CountingStream(body)
    request = RequestFactory().generic("POST", "/hooks/known/", content_type="application/json")
    request.META.update({"CONTENT_LENGTH": str(content_length), "wsgi.input": stream})
    request._stream = type(request._stream)(stream, content_length)
    return request, stream


def test_a_body_declared_larger_than_the_limit_is_not_read_and_the_rest_never_past_the_limit(db, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 4096
    huge = b"x" * (3 * 1024 * 1024)  # past DATA_UPLOAD_MAX_MEMORY_SIZE, which would answer 400 itself
    request, stream = _raw_request(huge, len(huge))
    response = webhooks.webhook_receive(request, source=SOURCE, account_key="known")
    assert response.status_code == 413 and stream.bytes_read == 0
    # A length that understates the body: what is read stops at the declared length.
    request, stream = _raw_request(huge, 10)
    response = webhooks.webhook_receive(request, source=SOURCE, account_key="known")
    assert response.status_code == 401 and stream.bytes_read == 10  # its signature was not over these 10
    assert _counts() == {413: 1, 401: 1}


def test_a_form_body_over_djangos_upload_limit_gets_our_413_not_djangos_400(client, db, settings):
    body = b"id=" + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    response = client.post("/hooks/known/", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and response.json()["status"] == "rejected"
    assert _counts() == {413: 1}


def test_an_unauthenticated_flood_is_counted_not_stored(client, db, settings):
    for _ in range(webhooks.REJECTED_KEPT_PER_HOUR + 30):
        assert _post(client, b'{"id": "spam"}', signature="forged").status_code == 401
    with staff_scope():
        assert WebhookRequest.objects.filter(status="rejected").count() == webhooks.REJECTED_KEPT_PER_HOUR
        assert WebhookRejections.objects.get(source="test").count == webhooks.REJECTED_KEPT_PER_HOUR + 30


def test_only_a_sample_of_a_rejected_request_is_kept_encrypted_and_its_reason_quotes_nothing(client, db):
    secret_looking = "tr_SECRETVALUE" * 500  # 6,500 bytes
    body = json.dumps({"id": secret_looking}).encode()
    assert _post(client, body, signature="forged-" + secret_looking[:50]).status_code == 401
    with staff_scope():
        kept = WebhookRequest.objects.get()
        assert len(kept.body.encode()) == webhooks.REJECTED_EXCERPT_BYTES and body.startswith(kept.body.encode())
        assert kept.headers["x-signature"].startswith("forged-")
        with connection.cursor() as cursor:
            cursor.execute("SELECT headers, body, error FROM portal_webhookrequest")
            stored = " ".join(cursor.fetchone())
    assert "SECRETVALUE" not in stored and "forged" not in stored  # encrypted, and the reason says only why


def test_requests_for_accounts_that_do_not_exist_share_one_count_whatever_their_name(client, db):
    for n in range(webhooks.REJECTED_KEPT_PER_HOUR + 10):
        assert _post(client, b'{"id": "x"}', account=f"made-up-{n}").status_code == 404
    with staff_scope():
        assert WebhookRejections.objects.count() == 1
        assert WebhookRejections.objects.get().account == ""
        kept = WebhookRequest.objects.all()
        assert kept.count() == webhooks.REJECTED_KEPT_PER_HOUR and {k.account for k in kept} == {""}
        assert kept.filter(headers__isnull=False).first().headers[":account"].startswith("made-up-")


def test_each_answer_has_its_own_count_and_sample_so_a_flood_cannot_hide_the_rest(client, db):
    for _ in range(webhooks.REJECTED_KEPT_PER_HOUR + 5):
        _post(client, b'{"id": "spam"}', signature="forged")
    assert _post(client, b"{not json").status_code == 400
    assert _counts() == {401: webhooks.REJECTED_KEPT_PER_HOUR + 5, 400: 1}
    with staff_scope():
        assert WebhookRequest.objects.filter(error__startswith="malformed JSON").count() == 1


# --- Rate limits -----------------------------------------------------------------------------

def _address() -> str:
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"  # one of its own: counts start at 0


def test_more_requests_than_the_rate_per_address_get_429_with_retry_after_and_nothing_is_stored(
        client, db, settings):
    settings.WEBHOOK_RATE_PER_IP = "3/h"
    mine, other = _address(), _address()
    answers = [_post(client, json.dumps({"id": f"evt_{n}"}).encode(), REMOTE_ADDR=mine) for n in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    limited = answers[-1]
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited.json() == {"status": "rejected", "error": "too many requests for this address; try again in "
                                                             f"{limited['Retry-After']} seconds"}
    assert _post(client, b'{"id": "evt_other"}', REMOTE_ADDR=other).status_code == 200  # others are not held up
    with staff_scope():
        assert WebhookRequest.objects.count() == 4 and not WebhookRejections.objects.exists()


def test_more_requests_than_the_rate_per_account_get_429_from_any_address(client, db, settings):
    settings.WEBHOOK_RATE_PER_ACCOUNT = "2/m"
    account, other = f"known-{uuid.uuid4().hex}", f"known-{uuid.uuid4().hex}"
    statuses = [_post(client, json.dumps({"id": f"evt_{n}"}).encode(), account=account,
                      REMOTE_ADDR=_address()).status_code for n in range(3)]
    assert statuses == [200, 200, 429]
    assert _post(client, b'{"id": "evt_x"}', account=other, REMOTE_ADDR=_address()).status_code == 200


def test_a_flood_from_one_address_does_not_use_up_its_accounts_rate(client, db, settings):
    settings.WEBHOOK_RATE_PER_IP, settings.WEBHOOK_RATE_PER_ACCOUNT = "1/h", "2/m"
    account, flooding = f"known-{uuid.uuid4().hex}", _address()
    statuses = [_post(client, json.dumps({"id": f"evt_{n}"}).encode(), account=account,
                      REMOTE_ADDR=flooding).status_code for n in range(4)]
    assert statuses == [200, 429, 429, 429]
    # Turned away by the address's rate, those three were not counted against the account's.
    assert _post(client, b'{"id": "evt_x"}', account=account, REMOTE_ADDR=_address()).status_code == 200
    assert _post(client, b'{"id": "evt_y"}', account=account, REMOTE_ADDR=_address()).status_code == 429


def test_behind_a_trusted_proxy_each_client_address_has_its_own_rate(client, db, settings):
    settings.WEBHOOK_RATE_PER_IP = "1/h"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    first, second = _address(), _address()
    via_proxy = {"REMOTE_ADDR": "10.0.0.5"}
    assert _post(client, b'{"id": "a"}', HTTP_X_FORWARDED_FOR=first, **via_proxy).status_code == 200
    assert _post(client, b'{"id": "b"}', HTTP_X_FORWARDED_FOR=second, **via_proxy).status_code == 200
    assert _post(client, b'{"id": "c"}', HTTP_X_FORWARDED_FOR=first, **via_proxy).status_code == 429


def test_with_the_cache_down_webhooks_are_taken_without_limits_and_it_is_logged(client, db, settings, monkeypatch,
                                                                                  caplog):
    settings.WEBHOOK_RATE_PER_IP = "1/h"

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "add", down)
    monkeypatch.setattr(cache, "count_in_turn", down)  # the one round trip the intake counts with (portal.cache)
    monkeypatch.setattr(webhooks, "_cache_down_until", 0.0)
    address = _address()
    statuses = [_post(client, json.dumps({"id": f"evt_{n}"}).encode(), REMOTE_ADDR=address).status_code
                for n in range(3)]
    assert statuses == [200, 200, 200]
    assert "rate limits are off" in caplog.text


def test_a_window_is_counted_in_one_round_trip_and_per_process_while_redis_is_down(db, settings):
    # What rate_over counts with (portal.cache): Redis's counter, with its expiry, in one pipeline;
    # while Redis cannot be reached, the process's stand-in counts on.
    import portal.cache
    from django.core.cache import caches

    key = f"webhook-rate:test:{uuid.uuid4()}"
    assert [cache.count(key, 30) for _ in range(3)] == [1, 2, 3]
    made = cache.make_and_validate_key(key)
    assert cache.get(key) == 3 and 0 < cache._cache.get_client(made).ttl(made) <= 30
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    down = caches["default"]
    try:
        assert [down.count(key, 30) for _ in range(2)] == [1, 2]  # the stand-in's own count
    finally:
        portal.cache._outage_for(down._location).down_until = 0.0


def test_the_address_and_the_account_are_counted_in_turn_in_one_round_trip(db, settings):
    # What rates_over counts with (portal.cache): one Lua script, counting each key up to the
    # first over its limit; while Redis cannot be reached, the process's stand-in counts alike.
    import portal.cache
    from django.core.cache import caches

    first, second = f"webhook-rate:test:{uuid.uuid4()}", f"webhook-rate:test:{uuid.uuid4()}"
    counters = [(first, 30, 2), (second, 30, 10)]
    assert [cache.count_in_turn(counters) for _ in range(3)] == [[1, 1], [2, 2], [3]]
    made = cache.make_and_validate_key(first)
    assert (cache.get(first), cache.get(second)) == (3, 2) and 0 < cache._cache.get_client(made).ttl(made) <= 30
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    down = caches["default"]
    try:
        assert [down.count_in_turn(counters) for _ in range(3)] == [[1, 1], [2, 2], [3]]
    finally:
        portal.cache._outage_for(down._location).down_until = 0.0


def test_a_rate_is_read_as_documented():
    assert webhooks.parse_rate("600/m") == webhooks.Rate(600, 60)
    assert webhooks.parse_rate("100/10s") == webhooks.Rate(100, 10)
    assert webhooks.parse_rate("") is None
    with pytest.raises(ValueError):
        webhooks.parse_rate("lots")


# --- JSON and headers ------------------------------------------------------------------------

def _signed(client, body: bytes, **extra):
    return _post(client, body, **extra)


@pytest.mark.parametrize("body, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "nested more than 32 deep"),
    (b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested more than 32 deep"),
    (b"[" * 33 + b"]" * 33, "nested more than 32 deep"),
    (b'{"id": ' + b"9" * 5000 + b"}", "a number has more than 30 digits"),
    (b'{"id": 1' + b"0" * 30 + b"}", "a number has more than 30 digits"),
    (b'{"id": 1.5e999999999}', "a number is beyond"),
    (b'{"id": 0.' + b"1" * 40 + b"}", "a number has more than 30 digits"),
    (b'{"id": NaN}', "NaN and Infinity are not JSON numbers"),
    (b'{"id": -Infinity}', "NaN and Infinity are not JSON numbers"),
    (b'{"id": "a", "id": "b"}', "an object has the same name twice"),
    (b'{"id": "\\u0000"}', "a string holds NUL or a lone surrogate"),
    (b'{"id": "\\ud800"}', "a string holds NUL or a lone surrogate"),
    (b'{"id": "\xff\xfe"}', "the body is not UTF-8"),
    ('{"id": "x"}'.encode("utf-16"), "the body is not UTF-8"),
    (b"\xef\xbb\xbf{}", "malformed JSON: Unexpected UTF-8 BOM"),
    (b'{"id": "unterminated', "malformed JSON: Unterminated string"),
    (b"", "malformed JSON: Expecting value (line 1, column 1)"),
])
def test_json_beyond_the_bounds_is_400_with_a_reason_never_500(client, db, body, reason):
    started = time.process_time()  # this process's own work (the request is served in it), not a busy machine's
    response = _signed(client, body)
    assert (response.status_code, response.json()["status"]) == (400, "rejected")
    assert reason in response.json()["error"]
    assert time.process_time() - started < 2


def test_json_within_the_bounds_reads_decimals_as_decimal():
    nested = b"[" * 32 + b"]" * 32
    assert webhooks.parse_json(nested) is not None
    value = webhooks.parse_json(b'{"a": 0.1, "b": 123456789012345678901234567890, "c": -1.5E3, "d": "\\u00e9"}'
                                )
    assert value == {"a": Decimal("0.1"), "b": 123456789012345678901234567890, "c": Decimal("-1.5E3"), "d": "é"}
    assert isinstance(value["a"], Decimal)


@pytest.mark.parametrize("header", ["evt\x00nul", "line\nbreak", "bell\x07", "del\x7f", "c1\x85"])
def test_control_characters_in_a_header_we_keep_are_400_never_500(client, db, header):
    body = b'{"id": "evt_ctl"}'
    request = RequestFactory().post("/hooks/known/", data=body, content_type="application/json",
                                    HTTP_X_SIGNATURE=hmac.new(SECRET, body, hashlib.sha256).hexdigest())
    request.META["CONTENT_TYPE"] = "application/json; " + header
    response = webhooks.webhook_receive(request, source=SOURCE, account_key="known")
    assert (response.status_code, json.loads(response.content)) == (
        400, {"status": "rejected", "error": "the content-type header contains control characters"})


@pytest.mark.parametrize("event_id", ["x" * 201, "evt\u0001", "evt\u0085"])
def test_an_event_id_too_long_or_with_control_characters_is_refused_never_cut(client, db, event_id):
    response = _post(client, json.dumps({"id": event_id}).encode())
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "event id",
                                          "reason": "at most 200 characters, no control characters"}]
    assert event_id not in response.json()["error"]
    assert _post(client, json.dumps({"id": "x" * 200}).encode()).json()["status"] == "accepted"


@pytest.mark.parametrize("address", ["not an address", "1.2.3.4.5", "::ffff:999.1.1.1", "\x00", "fe80::1%eth0", ""])
def test_any_client_address_is_stored_or_left_out_never_500(client, db, address):
    response = _post(client, json.dumps({"id": f"evt_{uuid.uuid4().hex}"}).encode(), REMOTE_ADDR=address,
                     HTTP_X_REAL_IP="<script>", HTTP_X_FORWARDED_FOR="\x00, 1.1.1.1")
    assert response.status_code == 200


def test_samples_of_rejected_requests_are_pruned_after_the_kept_days_accepted_ones_stay(client, db, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.WEBHOOK_SAMPLES_KEPT_DAYS = 30
    assert _post(client, b'{"id": "evt_kept"}').json()["status"] == "accepted"
    assert _post(client, b'{"id": "evt_x"}', signature="forged").status_code == 401
    assert _post(client, b'{"id": "evt_y"}', signature="forged").status_code == 401
    with staff_scope():
        WebhookRequest.objects.update(received_at=timezone.now() - timedelta(days=31))
        WebhookRejections.objects.update(hour=timezone.now() - timedelta(days=401))
    assert webhooks.webhook_samples_prune() == 2
    with staff_scope():
        assert list(WebhookRequest.objects.values_list("natural_key", flat=True)) == ["evt_kept"]
        assert not WebhookRejections.objects.exists()
