"""Locust scenario: clients of the portal, each a contact of a company of their own, signing in
through the login form and then reading their invoices as a person does: the overview, the list
under a filter or a sort, an invoice, its PDF, and the open page asking whether anything changed.

Run by bench/clients.py (which makes the data and the server, and writes the sign-ins to the file
named by BENCH_CLIENTS_LOGINS), or by hand against a server of your own:

    BENCH_CLIENTS_LOGINS=var/bench/clients/logins.json .venv/bin/locust -f bench/locustfile.py \
        --headless -u 200 -r 20 -t 60s --host http://127.0.0.1:8000

The server is reached as the TLS proxy of docker-compose.yml reaches it: every request says
X-Forwarded-Proto: https (the production settings redirect anything else to https) and
X-Forwarded-For with an address of the simulated client's own (10.x.y.z), so the per-address
limits see 200 people, as they would behind the proxy, not one address (the server must trust
127.0.0.1 as its proxy: TRUSTED_PROXIES). The session and CSRF cookies are Secure; a browser
sends them back over its TLS connection, so the client here sends them back over plain HTTP.
A request fails unless it answers as the page should (200 and the client's name on a page, a
PDF, 204 or 200 from the poll); a sign-in that does not reach the overview fails, is tried twice more, then the user stops.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import re
from http.cookiejar import DefaultCookiePolicy

from urllib.parse import urlencode

from locust import FastHttpUser, between, task
from locust.exception import StopUser

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
INVOICE_LINK = re.compile(r'href="/invoices/(\d+)/"')
STATIC = re.compile(r'(?:href|src)="(/static/[^"]+)"')
LIVE_VERSION = re.compile(r'data-live-version="(\d+)"')
FILTERS = ("?status=open", "?status=overdue", "?status=paid", "?sort=-total", "?sort=due",
           "?status=open&sort=due", "?q=B", "?amount_min=100&sort=-date")

_logins = json.loads(open(os.environ["BENCH_CLIENTS_LOGINS"]).read()) if os.environ.get("BENCH_CLIENTS_LOGINS") else []
_next = itertools.count()


class Client(FastHttpUser):
    # Between one page and the next a person reads: a few seconds, not a tight loop.
    wait_time = between(float(os.environ.get("BENCH_THINK_MIN", "5")), float(os.environ.get("BENCH_THINK_MAX", "15")))

    def on_start(self):
        number = next(_next)
        if not _logins:
            raise RuntimeError("no sign-ins: set BENCH_CLIENTS_LOGINS (bench/clients.py writes it)")
        login = _logins[number % len(_logins)]
        self.email, self.password, self.client_name = login["email"], login["password"], login["client"]
        self.proxy = {  # what the TLS proxy adds to each request of this client
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}",
        }
        # The Secure cookies go back over this plain HTTP, as a browser sends them over its TLS.
        self.client.cookiejar.set_policy(DefaultCookiePolicy(secure_protocols=("https", "wss", "http")))
        self.origin = "https://" + self.host.split("://", 1)[1].rstrip("/")
        self.invoices: list[str] = []
        self._static: list[str] = []
        self.version = "0"
        if login.get("session"):  # bench/clients.py --signed-in: a session made before the clock started
            self.proxy["Cookie"] = f"sessionid={login['session']}"
            self.overview()
            self.static_files()
            return
        for attempt in range(3):
            if self.sign_in():
                return
            self.wait()
        raise StopUser()

    def sign_in(self) -> bool:
        with self.client.get("/accounts/login/", name="sign-in form", catch_response=True, headers=self.proxy) as page:
            token = CSRF.search(page.text or "")
            if page.status_code != 200 or token is None:
                page.failure(f"sign-in form: {page.status_code}")
                return False
        with self.client.post("/accounts/login/", name="sign in", catch_response=True, allow_redirects=False,
                              data=urlencode({"login": self.email, "password": self.password,
                                              "csrfmiddlewaretoken": token.group(1)}),
                              headers={**self.proxy, "Content-Type": "application/x-www-form-urlencoded",
                                       "Referer": f"{self.origin}/accounts/login/", "Origin": self.origin}) as answer:
            if answer.status_code != 302 or answer.headers.get("Location") not in ("/", f"{self.origin}/"):
                answer.failure(f"sign in: {answer.status_code} to {answer.headers.get('Location')}")
                return False
        self.overview()
        self.static_files()
        return True

    def _page(self, path: str, name: str):
        with self.client.get(path, name=name, catch_response=True, headers=self.proxy) as page:
            if page.status_code != 200 or self.client_name not in page.text:
                page.failure(f"{name}: {page.status_code}, {'with' if self.client_name in page.text else 'without'} "
                             "the client's name")
                return None
            return page.text

    def static_files(self):
        """What the browser fetches once and then keeps: cached forever by its hashed name, the
        styles and scripts compressed."""
        for path in self._static:
            with self.client.get(path, name="static file", catch_response=True, headers=self.proxy) as answer:
                compressed = not path.endswith((".css", ".js")) or answer.headers.get("Content-Encoding") in ("br", "gzip")
                if answer.status_code != 200 or "immutable" not in answer.headers.get("Cache-Control", "") \
                        or not compressed:
                    answer.failure(f"static {path}: {answer.status_code} {answer.headers.get('Cache-Control')} "
                                   f"{answer.headers.get('Content-Encoding')}")

    @task(3)
    def overview(self):
        text = self._page("/", "overview")
        if text:
            self._static = sorted(set(STATIC.findall(text)))
            self.invoices = INVOICE_LINK.findall(text) or self.invoices
            version = LIVE_VERSION.search(text)
            self.version = version.group(1) if version else self.version

    @task(4)
    def invoice_list(self):
        text = self._page(f"/invoices/{random.choice(FILTERS)}", "invoice list, filtered or sorted")
        if text:
            self.invoices = INVOICE_LINK.findall(text) or self.invoices

    @task(4)
    def invoice(self):
        if self.invoices:
            self._page(f"/invoices/{random.choice(self.invoices)}/", "invoice")

    @task(2)
    def pdf(self):
        if not self.invoices:
            return
        with self.client.get(f"/invoices/{random.choice(self.invoices)}/pdf/", name="invoice PDF",
                             catch_response=True, headers=self.proxy) as answer:
            if answer.status_code != 200 or not answer.content.startswith(b"%PDF"):
                answer.failure(f"PDF: {answer.status_code} {answer.headers.get('Content-Type')}")

    @task(3)
    def live_poll(self):
        with self.client.get(f"/live/?v={self.version}", name="open page asks for changes", catch_response=True,
                             headers={**self.proxy, "Accept": "application/json"}) as answer:
            if answer.status_code not in (200, 204):
                answer.failure(f"poll: {answer.status_code}")
