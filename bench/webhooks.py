"""Benchmark: webhook intake over HTTP. Signed accounting webhooks (Standard Webhooks
signatures, integrations/signing.py; canonical invoice.created events, each with its own
webhook-id and invoice) are sent to a real gunicorn on loopback, beside a bare Django view that
answers 202 without work, in the same run and the same server.

    .venv/bin/python bench/webhooks.py [--shapes 2x1,2x4,4x1,4x2] [--connections 16]
                                       [--requests 20000] [--seconds 15] [--warmup 400] [--profile 200]

Uses its own database (portal_bench_webhooks, emptied first) and Redis databases 12 and 13 (BENCH_REDIS_DB),
with the test settings (the webhook rate limits out of the way) plus the bare view's URL
(tests/support/bench_webhooks.py). For each gunicorn shape WORKERSxTHREADS (each process's
database pool as large as its threads) it sends, from C keep-alive connections at once (asyncio,
in this process), W requests that are not counted (each process's first requests import and
compile what it keeps: the intake's code, its compiled schema, its pool's connections, the
connection it remembers), then at most R requests or for at most S seconds, first to the bare
view and then to the intake, and prints accepted per second, p50 and p99 latency and the errors
(any answer other than 202 from the bare view and 200 "accepted" from the intake, and any failed
connection), the intake's rate as a share of the bare view's (the figure that holds on a
machine shared with other work), and the CPU time of a request: gunicorn's (all its
processes), the PostgreSQL backends' serving it (found by their application_name) and the load
generator's (this process). The load generator, PostgreSQL and Redis run on the same machine
and take their share of the cores. Then, in this process, the SQL statements of one accepted webhook, and (--profile N) where the
time of N webhooks goes (cProfile, Django's test client). Prints a table row per shape for
bench/README.md. Exits 1 on any error.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from first_load import use_bench_database  # noqa: E402

# The web server's settings here too, so the in-process part rings bells as the server does.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.bench_webhooks")
use_bench_database("portal_bench_webhooks")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from integrations.models import Connection  # noqa: E402
from integrations.signing import generate_secret, signed_headers  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.integrations.helpers import event, invoice_data  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402
from tests.support.servers import cpu_seconds, wait_until_answering  # noqa: E402

SLUG = "bench-webhooks"
PATH = f"/webhooks/accounting/{SLUG}/"
BARE = "/bench/bare/"


def prepare() -> str:
    """The bench database bootstrapped and migrated, with one enabled connection; its secret."""
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']})", flush=True)
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, interactive=False, verbosity=0)
        call_command("flush", database=owner, interactive=False, verbosity=0)  # the last run's webhooks and jobs
    secret = generate_secret()
    with staff_scope():
        from portal.models import Brand
        from tests.portal.factories import BrandFactory

        brand = Brand.objects.filter(slug=SLUG).first() or BrandFactory(name="Bench B.V.", slug=SLUG)
        Connection.objects.update_or_create(slug=SLUG, defaults={
            "name": "Bench ERP", "brand": brand, "enabled": True, "signing_secrets": secret})
    return secret


def requests_for(secret: str, count: int, run: str) -> list[bytes]:
    """`count` signed HTTP/1.1 requests, each a distinct invoice.created event with its own webhook-id."""
    out = []
    for n in range(count):
        external = f"{run}-{n}"
        body = json.dumps(event("invoice.created", invoice_data(
            external_id=f"INV-{external}", number=f"B-{external}"))).encode()
        headers = signed_headers(secret, f"msg_{external}", body)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        out.append((f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"User-Agent: bench/webhooks.py\r\n{head}Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


def bare_requests(count: int) -> list[bytes]:
    body = b'{"type":"ping"}'
    request = (f"POST {BARE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return [request] * count


async def _one(reader, writer, request: bytes) -> tuple[int, bytes, bool]:
    """(status, body, whether the server keeps the connection open): gunicorn's sync worker
    (1 thread) closes it after every answer."""
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, keep = 0, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    return status, await reader.readexactly(length) if length else b"", keep


async def _load(port: int, requests: list[bytes], connections: int, seconds: float, expect) -> dict:
    """Send `requests` from `connections` keep-alive connections, each one request at a time,
    until they are all sent or `seconds` have passed."""
    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(requests)
    stop_at = time.monotonic() + seconds

    async def client():
        reader = writer = None
        for request in queue:
            if time.monotonic() > stop_at:
                break
            try:
                started = time.perf_counter()  # a new connection's set-up counts too
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                status, body, keep = await _one(reader, writer, request)
                latencies.append((time.perf_counter() - started) * 1000)
                if not keep:
                    writer.close()
                    reader = writer = None
                problem = expect(status, body)
                if problem:
                    errors.append(problem)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                errors.append(repr(exc)[:200])
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {"sent": len(latencies), "seconds": elapsed, "rate": (len(latencies) - len(errors)) / elapsed,
            "p50": statistics.median(ordered) if ordered else 0.0,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0,
            "errors": errors}


def _bare_answer(status: int, body: bytes) -> str:
    return "" if status == 202 else f"bare view answered {status}"


def _intake_answer(status: int, body: bytes) -> str:
    if status != 200:
        return f"intake answered {status}: {body[:200]!r}"
    if json.loads(body).get("status") != "accepted":
        return f"intake answered {body[:200]!r}"
    return ""


def serve(workers: int, threads: int):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_OWNER_PASSWORD"}
    env.update(DJANGO_SETTINGS_MODULE="tests.support.bench_webhooks", DATABASE_POOL_MAX_SIZE=str(threads),
               DATABASE_POOL_MIN_SIZE=str(threads), DATABASE_APPLICATION_NAME=_application_name(port))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--log-level", "warning"], cwd=ROOT, env=env)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{BARE}", data=b"{}", method="POST")
    if not wait_until_answering(request, running=lambda: server.poll() is None):
        server.kill()
        raise RuntimeError("gunicorn did not start")
    return server, port


def _application_name(port: int) -> str:
    return f"bench-webhooks-{port}"


def backends_cpu_seconds(port: int) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected for the server on `port` (its
    pool's connections, found by their application_name in pg_stat_activity, which only the
    server's superuser may read for every role)."""
    import psycopg
    from django.conf import settings

    with psycopg.connect(settings.DATABASE_ADMIN_URL, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                               [_application_name(port)])]
    return sum(cpu_seconds(pid) for pid in pids)


def measure(port: int, server, made: list[bytes], args, expect) -> dict:
    """One timed run (after an untimed warm-up) with the CPU time of each part per request."""
    if args.warmup:
        asyncio.run(_load(port, made[:args.warmup], args.connections, args.seconds, expect))
        made = made[args.warmup:]
    cpu_before, db_before, own_before = cpu_seconds(server.pid), backends_cpu_seconds(port), os.times()
    load_before = os.getloadavg()[0]
    result = asyncio.run(_load(port, made, args.connections, args.seconds, expect))
    own_after, sent = os.times(), max(1, result["sent"])
    result["cpu_ms"] = (cpu_seconds(server.pid) - cpu_before) * 1000 / sent
    result["db_ms"] = (backends_cpu_seconds(port) - db_before) * 1000 / sent
    result["sender_ms"] = ((own_after.user - own_before.user) + (own_after.system - own_before.system)) * 1000 / sent
    result["load"] = (load_before, os.getloadavg()[0])
    return result


def in_process(secret: str, profile: int) -> int:
    """The statements of one accepted webhook, and where the time of `profile` of them goes."""
    from django.db import connection
    from django.test import Client as HttpClient
    from django.test.utils import CaptureQueriesContext

    http = HttpClient()
    (warm, first), rest = requests_for(secret, 2, f"p{time.time_ns()}"), requests_for(secret, profile, f"q{time.time_ns()}")

    def send(raw: bytes):
        head, _, body = raw.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        headers.pop("Host"), headers.pop("Content-Length")
        return http.post(PATH, data=body, content_type=headers.pop("Content-Type"), headers=headers)

    assert send(warm).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        answer = send(first)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.content
    statements = [q["sql"] for q in queries.captured_queries]
    print(f"one accepted webhook, in this process: {len(statements)} SQL statements "
          f"({sum(s not in ('BEGIN', 'COMMIT') for s in statements)} besides BEGIN and COMMIT):", flush=True)
    for sql in statements:
        print(f"    {' '.join(sql.split())[:150]}")
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for raw in rest:
            send(raw)
        profiler.disable()
        elapsed = time.perf_counter() - started
        print(f"{profile} webhooks one after the other in this process: {elapsed / profile * 1000:.2f} ms each "
              f"(under the profiler); the most cumulative time:", flush=True)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
        print("the most time in the function itself:")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(20)
    return len(statements)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="2x1,2x4,4x1,4x2", help="gunicorn WORKERSxTHREADS, comma-separated")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20_000, help="at most this many per target and shape")
    parser.add_argument("--seconds", type=float, default=15, help="at most this long per target and shape")
    parser.add_argument("--warmup", type=int, default=400, help="requests per target and shape not counted")
    parser.add_argument("--profile", type=int, default=0, help="profile this many webhooks in this process")
    args = parser.parse_args()
    secret = prepare()
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    rows, failed = [], False
    for number, shape in enumerate(args.shapes.split(",")):
        workers, threads = (int(part) for part in shape.lower().split("x"))
        print(f"gunicorn {workers} workers x {threads} threads (a pool of {threads} per process): starting",
              flush=True)
        server, port = serve(workers, threads)
        try:
            results = {}
            for target, made, expect in (("bare view", bare_requests(args.warmup + args.requests), _bare_answer),
                                         ("intake", None, _intake_answer)):
                if made is None:
                    print(f"  signing {args.warmup + args.requests:,} distinct events", flush=True)
                    made = requests_for(secret, args.warmup + args.requests, f"{number}-{time.time_ns()}")
                print(f"  {target}: {args.warmup:,} requests not counted, then up to {args.requests:,} or "
                      f"{args.seconds:g} s from {args.connections} connections", flush=True)
                result = results[target] = measure(port, server, made, args, expect)
                print(f"  {target}: {result['sent']:,} in {result['seconds']:.1f} s: {result['rate']:,.0f}/s, "
                      f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, {len(result['errors'])} errors "
                      f"{result['errors'][:3]}; CPU a request: gunicorn {result['cpu_ms']:.2f} ms, PostgreSQL "
                      f"{result['db_ms']:.2f} ms, load generator {result['sender_ms']:.2f} ms; load average "
                      f"{result['load'][0]:.1f} -> {result['load'][1]:.1f}", flush=True)
                failed = failed or bool(result["errors"])
        finally:
            server.terminate()
            server.wait(timeout=30)
        bare, intake = results["bare view"], results["intake"]
        rows.append(f"| {workers}x{threads} | {args.connections} | {bare['rate']:,.0f}/s, {bare['p50']:.1f} / "
                    f"{bare['p99']:.1f} ms, {len(bare['errors'])} | {intake['rate']:,.0f}/s, {intake['p50']:.1f} / "
                    f"{intake['p99']:.1f} ms, {len(intake['errors'])} | "
                    f"{intake['rate'] / max(bare['rate'], 1) * 100:.0f}% | {intake['cpu_ms']:.2f} + "
                    f"{intake['db_ms']:.2f} + {intake['sender_ms']:.2f} ms | "
                    f"{bare['load'][0]:.1f} -> {intake['load'][1]:.1f} |")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    in_process(secret, args.profile)
    from portal.jobs import _bells, current_app

    # No worker runs here: the bells the intake rang would wait in the broker's queues for good.
    _bells.ring()  # this process's last batch, if it has not gone yet
    print(f"purged {current_app.control.purge():,} bells from the broker's queues", flush=True)
    print("| shape (workers x threads) | connections | bare view: /s, p50 / p99, errors | "
          "signed webhooks accepted: /s, p50 / p99, errors | intake / bare | CPU a webhook: gunicorn + "
          "PostgreSQL + load generator | load average |")
    for row in rows:
        print(row)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
