"""The harness's own kind, `test.remote_call` (tests/support/tasks.py), and the counting remote end
it calls: the worked example of a KindScenario."""
from __future__ import annotations

import json
import time
from collections import Counter

from django.db import transaction

from portal.jobs import job_enqueue
from portal.rls import staff_scope
from tests.fakes.base import Faults, JsonHandler, LocalServer
from tests.faults.drills import KindScenario
from tests.faults.kinds.common import CLIENT_TIMEOUT
from tests.support.tasks import REMOTE_CALL


class CountingRemote(Faults, LocalServer):
    """A remote end that acts once per Idempotency-Key and answers a repeat with what it answered
    the first time, like Mollie and Stripe do; it counts, per job reference (`ref` in the body),
    the requests it heard and the times it acted. A request without a key acts every time, so a
    client that forgets the key shows up as duplicated.

    Faults, as the fakes in tests/fakes offer them: `fail_next(n, status)` answers the next n
    requests with that status without acting; `delay_next(n, seconds)` acts on the next n and
    answers only after that long, so a client that gave up has nonetheless been heard."""

    def __init__(self):
        self.heard: Counter[str] = Counter()  # ref -> requests received
        self.acted: Counter[str] = Counter()  # ref -> times acted on
        self.answers: dict[str, dict] = {}  # Idempotency-Key -> the first answer
        super().__init__()

    def _handler(self):
        remote = self

        class Handler(JsonHandler):
            def send_json(self, status: int, body: dict) -> None:
                try:
                    super().send_json(status, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped waiting (or its worker was killed); what was done stays done

            def do_POST(self):
                ref = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}").get("ref", "")
                key = self.headers.get("Idempotency-Key")
                with remote.lock:
                    remote.heard[ref] += 1
                    failure, delay = remote.pop_fault()
                    if failure is None:
                        if key and key in remote.answers:
                            answer, replayed = remote.answers[key], True
                        else:
                            remote.acted[ref] += 1
                            answer, replayed = {"effect": f"{ref}#{remote.acted[ref]}"}, False
                            if key:
                                remote.answers[key] = answer
                time.sleep(delay)
                if failure is not None:
                    return self.send_json(failure, {"error": "server error"})
                self.extra_headers = {"Idempotent-Replayed": "true"} if replayed else {}
                self.send_json(200, answer)

        return Handler


class RemoteCallScenario(KindScenario):
    """The harness's own kind (tests/support/tasks.py): one idempotent call per job."""

    kind = REMOTE_CALL
    # As every real kind's client waits in the fault workers. It was 0.5 s: on a loaded 2-core
    # machine (load average 7) a call the remote answered at once still timed out, and the job's
    # retry (600 s away) could not finish the Redis drill within its minute.
    client_timeout = CLIENT_TIMEOUT

    def start_remote(self):
        return CountingRemote()

    def write(self, remote, count: int, *, tag: str) -> list[int]:
        ids = []
        for number in range(count):
            with staff_scope(), transaction.atomic():
                ids.append(job_enqueue(kind=self.kind, key=f"faults:{tag}:{number}",
                                       payload={"url": remote.url, "timeout": self.client_timeout}))
        return ids

    def effects(self, remote, job) -> int:
        return remote.acted[job.key]

    def requests(self, remote, job) -> int:
        return remote.heard[job.key]

    def requests_total(self, remote) -> int:
        return sum(remote.heard.values())
