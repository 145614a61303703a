"""The counting remote end the harness judges by: it acts once per idempotency key, so a client
that resends its key is counted once and one that forgets it is caught as duplicated."""
import pytest
import requests

from tests.faults.kinds import CountingRemote


def test_a_repeated_idempotency_key_is_acted_on_once_and_answered_the_same():
    with CountingRemote() as remote:
        first = requests.post(remote.url, json={"ref": "a"}, headers={"Idempotency-Key": "a"}, timeout=5)
        again = requests.post(remote.url, json={"ref": "a"}, headers={"Idempotency-Key": "a"}, timeout=5)
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert (remote.heard["a"], remote.acted["a"]) == (2, 1)


def test_a_call_without_a_key_is_acted_on_every_time():
    with CountingRemote() as remote:
        for _ in range(2):
            requests.post(remote.url, json={"ref": "b"}, timeout=5)
    assert remote.acted["b"] == 2


def test_a_failure_does_not_act_and_a_delay_acts_then_answers_too_late():
    with CountingRemote() as remote:
        remote.fail_next(1, 503)
        assert requests.post(remote.url, json={"ref": "c"}, headers={"Idempotency-Key": "c"}, timeout=5).status_code == 503
        assert remote.acted["c"] == 0
        remote.delay_next(1, seconds=0.5)
        with pytest.raises(requests.Timeout):
            requests.post(remote.url, json={"ref": "c"}, headers={"Idempotency-Key": "c"}, timeout=0.1)
        assert remote.acted["c"] == 1
