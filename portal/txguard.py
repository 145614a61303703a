"""A test-time guard: an external call (HTTP, email) that starts while a database transaction is
open is recorded and refused with `ExternalCallInTransaction`.

Why: a call made inside a transaction holds row locks for as long as the other side takes, and
it cannot be taken back when the transaction rolls back (an email sent for a payment that never
committed). The rule (../shared/STYLE.md): send on commit, from a task.

`install()` patches the transport level once, so every client is covered:
- `urllib3.connection.HTTP(S)Connection.connect`: requests, hence mollie-api-python and stripe
  (stripe 16 picks its RequestsClient whenever requests is importable; httpx is only its async
  fallback, and is patched too if it is installed);
- `http.client.HTTPConnection.connect` (and HTTPSConnection, through super()): urllib;
- `http.client.HTTPConnection.putrequest`: every request, also on a kept-alive connection that
  a pooled session opened earlier outside a transaction (urllib3 sends through it as well);
- `django.core.mail.message.EmailMessage.send`: every email backend, locmem included.

The transactions of pytest-django's `db` fixture (Django TestCase atomics, marked
`_from_testcase`) do not count: only the code's own. Records go to `violations`; with
TXGUARD_LOG naming a directory they are also appended there (for the web server and worker
that end-to-end tests start, which install the guard from PortalConfig.ready()).
"""
from __future__ import annotations

import functools
import json
import os
import threading
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
STACK_FRAMES = 8

violations: list[dict] = []

_install_lock = threading.Lock()
_installed = False
_local = threading.local()  # one check per call: HTTPS connect runs inside a patched parent


class ExternalCallInTransaction(RuntimeError):
    """An external call was started while a database transaction of our own was open."""


def open_transactions() -> list[str]:
    """The aliases of this thread's database connections that are inside a transaction of the
    code's own (not one of Django TestCase's)."""
    # Django is imported here, not at the top: pytest loads this module before Django is set up.
    from django.conf import settings

    if not settings.configured:
        return []
    from django.db import connections  # only once settings are configured (above)

    found = []
    for conn in connections.all(initialized_only=True):
        if any(not getattr(block, "_from_testcase", False) for block in conn.atomic_blocks):
            found.append(conn.alias)
        elif conn.connection is not None and not conn.in_atomic_block and not conn.autocommit:
            # transaction.set_autocommit(False) outside atomic(): psycopg knows if a transaction began.
            status = getattr(getattr(conn.connection, "info", None), "transaction_status", None)
            if getattr(status, "name", None) in ("INTRANS", "INERROR"):
                found.append(conn.alias)
    return found


def check(call: str) -> None:
    """Raise (and record) if a transaction is open; `call` says what was about to happen."""
    aliases = open_transactions()
    if not aliases:
        return
    record = {"id": uuid.uuid4().hex, "call": call, "databases": aliases, "stack": _project_stack(),
              "pid": os.getpid()}
    if os.environ.get("PYTEST_CURRENT_TEST"):
        record["test"] = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]
    violations.append(record)
    _log(record)
    raise ExternalCallInTransaction(
        f"{call} was called while a database transaction is open on {', '.join(aliases)}: "
        f"make the call after commit (transaction.on_commit, a task). At:\n  " + "\n  ".join(record["stack"]))


def take_violations() -> list[dict]:
    """The records so far, and an empty list from now on."""
    taken = list(violations)
    del violations[: len(taken)]
    return taken


def describe(records: list[dict]) -> str:
    lines = []
    for record in records:
        lines.append(f"- {record['call']} inside a transaction on {', '.join(record['databases'])}"
                     + (f" (pid {record['pid']}, during {record['test']})" if record.get("test") else
                        f" (pid {record['pid']})"))
        lines.extend(f"    {frame}" for frame in record["stack"])
    return "\n".join(lines)


def read_log(directory: str | os.PathLike) -> list[dict]:
    records = []
    for path in sorted(Path(directory).glob("txguard-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def install() -> None:
    """Patch the transports, once per process; safe to call from anywhere, any number of times."""
    global _installed
    with _install_lock:
        if _installed:
            return
        # The transports are imported when the guard is installed, not when this module is:
        # importing it must stay cheap and safe before Django is set up.
        import http.client

        import urllib3.connection
        from django.core.mail import message

        _wrap(http.client.HTTPConnection, "connect", _http_target)
        _wrap(http.client.HTTPConnection, "putrequest", _http_target)
        _wrap(urllib3.connection.HTTPConnection, "connect", _http_target)
        _wrap(urllib3.connection.HTTPSConnection, "connect", _http_target)  # overrides, no super()
        _wrap(message.EmailMessage, "send", lambda *args, **kwargs: "email")
        try:
            import httpx  # optional: only patched where it is installed
        except ImportError:
            pass
        else:
            _wrap(httpx.HTTPTransport, "handle_request", _httpx_target)
        _installed = True


def _wrap(cls, name: str, describe_call) -> None:
    original = cls.__dict__[name]
    if getattr(original, "__txguard__", False):
        return

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        if getattr(_local, "active", False):
            return original(*args, **kwargs)
        _local.active = True
        try:
            check(describe_call(*args, **kwargs))
            return original(*args, **kwargs)
        finally:
            _local.active = False

    guarded.__txguard__ = True
    setattr(cls, name, guarded)


def _http_target(conn, *args, **kwargs) -> str:
    return f"{conn.host}:{conn.port}"


def _httpx_target(transport, request, *args, **kwargs) -> str:
    return f"{request.url.host}:{request.url.port or (443 if request.url.scheme == 'https' else 80)}"


def _project_stack() -> list[str]:
    frames = []
    for frame in traceback.extract_stack():
        if not os.path.isabs(frame.filename):  # <frozen runpy> and the like
            continue
        path = Path(frame.filename).resolve()
        if not path.is_relative_to(ROOT) or ".venv" in path.parts or path == HERE:
            continue
        frames.append(f"{path.relative_to(ROOT)}:{frame.lineno} in {frame.name}")
    return frames[-STACK_FRAMES:]


def _log(record: dict) -> None:
    directory = os.environ.get("TXGUARD_LOG")
    if not directory:
        return
    try:
        with open(Path(directory) / f"txguard-{os.getpid()}.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
    except OSError:
        pass  # the exception still reaches the caller
