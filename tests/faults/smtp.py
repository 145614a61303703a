"""A mail server for the fault drills: aiosmtpd on 127.0.0.1, taking every message (delivering it
nowhere) and counting, per recipient and subject, the messages it took.

It behaves like a real mail server where that decides what a drill sees: a message is taken the
moment its data has arrived, whatever then becomes of the answer (an MTA queues it before it says
250), so a client that never hears the 250 (it gave up, or its process was killed) and sends
again makes a second copy. SMTP has no idempotency key; the stable Message-ID the app sends lets
a mail client hide a repeat, but servers deliver both.

Faults, as the fakes in tests/fakes offer them, and one of its own:
- `fail_next(n, status)`: the next n messages are refused at the end of their data with a 451
  (a local error at the server, SMTP's 500; the status is accepted for the drills' sake) and
  not taken;
- `delay_next(n, seconds)`: the next n messages are taken, and answered only that much later;
- `stall_next(n, seconds)`: the next n connections get no answer to EHLO for that long: a server
  that hangs before any message is handed over (the client times out; nothing is taken)."""
from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import threading
from collections import Counter

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd tells every command at INFO

from tests.fakes.base import Faults
from tests.faults.harness import free_port


class FakeSmtp(Faults):
    def __init__(self):
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"  # as EMAIL_URL (portal/settings.py) takes it
        self.taken: Counter[tuple[str, str]] = Counter()  # (recipient, subject) -> messages taken
        self.heard: Counter[str] = Counter()  # recipient -> messages whose data arrived, whatever answered
        self.stalls: list[float] = []
        super().__init__()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     server_hostname="faults.smtp.test")

    def __enter__(self) -> "FakeSmtp":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def reset(self) -> None:
        """No message taken yet, no fault armed."""
        with self.lock:
            for held in (self.taken, self.heard, self.failures, self.delays, self.stalls):
                held.clear()

    def stall_next(self, n: int = 1, seconds: float = 1.0) -> None:
        with self.lock:
            self.stalls.extend([seconds] * n)

    def taken_for(self, recipient: str) -> Counter[str]:
        """Subject -> messages taken for one recipient."""
        recipient = recipient.lower()
        with self.lock:
            return Counter({subject: n for (to, subject), n in self.taken.items() if to == recipient})

    def heard_total(self) -> int:
        with self.lock:
            return sum(self.heard.values())


class _Handler:
    """aiosmtpd's hooks: EHLO (where a stall hangs) and DATA (where messages are counted)."""

    def __init__(self, fake: FakeSmtp):
        self.fake = fake

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.fake.lock:
            stall = self.fake.stalls.pop(0) if self.fake.stalls else 0.0
        if stall:
            await asyncio.sleep(stall)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        subject = str(message.get("Subject", ""))
        recipients = [address.lower() for address in envelope.rcpt_tos]
        fake = self.fake
        with fake.lock:
            fake.heard.update(recipients)
            failure, delay = fake.pop_fault()
            if failure is None:
                fake.taken.update((address, subject) for address in recipients)
        if delay:
            await asyncio.sleep(delay)  # taken already: a client that stops waiting has sent it all the same
        if failure is not None:
            return "451 4.3.0 Local error in processing (a fault the test injected); try again later"
        return "250 2.0.0 Message accepted for delivery"
