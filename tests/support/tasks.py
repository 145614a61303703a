"""Job kinds for tests only, registered where a real worker finds them: Celery autodiscovery and
`portal.jobs.handler_for` import every installed app's `tasks` module, and `tests.support` is
installed by the test settings.

`test.remote_call` is the fault harness's stand-in for a real kind (tests/faults/harness.py): one
call to a remote end that acts on a request once per idempotency key, the key being the job's
key, as every real kind sends it. The remote's address and the client's timeout are in the
payload, because each test starts its own remote on a port of its own."""
import time

import requests

from portal import jobs

REMOTE_CALL = "test.remote_call"


# Three attempts keep the "dead after the last attempt" scenario short; a backoff far longer
# than a test lasts means a retry runs only when the test makes it due (time passing).
@jobs.handler(REMOTE_CALL, max_attempts=3, lease_seconds=60, backoff_seconds=600)
def remote_call(job):
    response = requests.post(job.payload["url"], json={"ref": job.key},
                             headers={"Idempotency-Key": job.key}, timeout=job.payload.get("timeout", 2.0))
    if 400 <= response.status_code < 500:
        raise jobs.Permanent(f"the remote end refused the call: {response.status_code} {response.text[:200]}")
    response.raise_for_status()  # 5xx: an attempt that failed, retried
    return response.json().get("effect", "")


# The queues' drill (tests/faults/test_queues.py): a slow kind that only takes its time, and a
# fast kind that only says it ran.
SLEEP = "test.sleep"
QUICK = "test.quick"


@jobs.handler(SLEEP, max_attempts=1, lease_seconds=120, queue=jobs.SLOW)
def sleep(job):
    time.sleep(job.payload.get("seconds", 1.0))
    return "slept"


@jobs.handler(QUICK, max_attempts=1, lease_seconds=60, queue=jobs.FAST)
def quick(job):
    return "ran"
