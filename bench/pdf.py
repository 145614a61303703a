"""Benchmark: invoice PDFs (invoices/documents/render.py) beside headless Chromium printing the same HTML.

    .venv/bin/python bench/pdf.py [--downloads 300] [--renders 20] [--pages 10] [--profile]

Uses its own database (portal_bench_pdf, bootstrapped and migrated as the owner) and Redis
databases 12 and 13 (BENCH_REDIS_DB); makes one brand with a logo, one client with a signed-in
contact, a 1-page invoice and an invoice long enough for --pages pages. In one run it measures:
1. a cached download through the portal view (`/invoices/<pk>/pdf/`, Django's test client in this
   process, so server time: middleware, session, scope, lookup, decrypt, audit event), after one
   download has stored the PDF;
2. warm renders (after one render in this process) of the 1-page and the long invoice: the whole
   `render_document` (HTML, Factur-X XML, WeasyPrint, PDF/A-3 with the XML embedded), median;
3. memory per render: the peak of Python allocations during one render (tracemalloc), and how
   far the process's peak resident size rose over all renders;
4. headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) printing the same HTML
   (with pdf.css inline) to PDF: warm (launched once), and cold (launched for one PDF), medians.
--profile prints cProfile's top functions of warm 1-page renders (cumulative), for what to fix.
Prints a table row for bench/README.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_NAME", "portal_bench_pdf")  # make test runs it tiny, on a database of its own
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")  # no debug pages; Redis db below
os.environ["TEST_REDIS_DB"] = os.environ.get("BENCH_REDIS_DB", "12")
if os.environ.get("DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + os.environ["DATABASE_NAME"]

import django  # noqa: E402

django.setup()

from django.core.files.base import ContentFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.urls import reverse  # noqa: E402
from PIL import Image  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from invoices.documents import render  # noqa: E402
from invoices.models import Invoice  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.invoices.factories import line, make_invoice  # noqa: E402
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LINES_PER_PAGE = 30  # about what one A4 page of the invoice table holds; the long invoice is checked below


def prepare(pages: int) -> tuple[HttpClient, Invoice, Invoice]:
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, verbosity=0)
    stamp = time.time_ns()
    brand = BrandFactory(name="Acme Accounting B.V.", slug=f"bench-pdf-{stamp}", iban="NL91ABNA0417164300",
                         bic="ABNANL2A", kvk_number="12345678", vat_number="NL001234567B01",
                         address_line="Keizersgracht 1", postal_code="1015 CC", city="Amsterdam",
                         legal_footer="Acme Accounting B.V. · KvK 12345678 · BTW NL001234567B01")
    logo = io.BytesIO()
    Image.new("RGB", (480, 160), (31, 78, 121)).save(logo, format="PNG")
    with staff_scope():
        brand.logo.save("bench-logo.png", ContentFile(logo.getvalue()))
    client = ClientFactory(brand=brand, name="Northwind Traders B.V.", locale="nl", address_line="Damrak 50",
                           postal_code="1012 LM", city="Amsterdam", vat_number="NL003456789B01")
    contact = MembershipFactory(client=client, user__email=f"pdf-{stamp}@bench.test").user
    short = make_invoice(client, number=f"S-{stamp}", lines=[line("Advieswerk", quantity="10", unit_price="95.00"),
                                                             line("Naslagwerk", quantity="3", unit_price="19.99",
                                                                  discount="10", tax_rate="9")])
    long = make_invoice(client, number=f"L-{stamp}", lines=[
        line(f"Werkzaamheden week {n}", quantity="8", unit_price="95.00") for n in range(LINES_PER_PAGE * pages)])
    browser = HttpClient()
    browser.force_login(contact)
    with staff_scope():
        return browser, *[Invoice.objects.select_related("client", "brand").get(pk=pk) for pk in (short.pk, long.pk)]


def _median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000


def _p95_ms(timings: list[float]) -> float:
    return sorted(timings)[max(0, int(len(timings) * 0.95) - 1)] * 1000


def cached_downloads(browser: HttpClient, invoice: Invoice, count: int) -> list[float]:
    url = reverse("invoices:invoice_pdf", args=[invoice.pk])
    first = browser.get(url)
    assert first.status_code == 200 and first.content.startswith(b"%PDF"), first.status_code
    timings = []
    for n in range(count):
        started = time.perf_counter()
        response = browser.get(url)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.content == first.content
        if n % 100 == 99:
            print(f"  {n + 1}/{count} downloads", flush=True)
    return timings


def cache_hits(invoice: Invoice, count: int) -> list[float]:
    """The PDF's own part of a cached download: fingerprint, one lookup, one decrypt."""
    timings = []
    with staff_scope():
        assert not render.document_pdf(invoice).rendered_now
        for _ in range(count):
            started = time.perf_counter()
            render.document_pdf(invoice)
            timings.append(time.perf_counter() - started)
    return timings


def renders(invoice: Invoice, count: int) -> tuple[list[float], list[float], bytes]:
    """Wall time and this process's CPU time of each render (CPU time is what other work on a
    shared machine does not inflate; a render waits on nothing but two small queries)."""
    with staff_scope():
        pdf = render.render_document(invoice)  # warm: fonts, stylesheets, schemas loaded once per process
        timings, cpu = [], []
        for _ in range(count):
            started, started_cpu = time.perf_counter(), time.process_time()
            render.render_document(invoice)
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    return timings, cpu, pdf


def render_memory(invoice: Invoice) -> float:
    """Peak Python allocations (MiB) while rendering the invoice once, warm."""
    with staff_scope():
        tracemalloc.start()
        render.render_document(invoice)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def chromium_prints(htmls: dict[str, str], count: int) -> dict[str, tuple[list[float], int]]:
    """Headless Chromium printing each HTML to PDF (A4, CSS page size), warm: (timings, pages)."""
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        for name, html in htmls.items():
            page.set_content(html)
            pdf = page.pdf(prefer_css_page_size=True, print_background=True)  # warm
            timings = []
            for _ in range(count):
                started = time.perf_counter()
                page.set_content(html)
                page.pdf(prefer_css_page_size=True, print_background=True)
                timings.append(time.perf_counter() - started)
            results[name] = (timings, len(PdfReader(io.BytesIO(pdf)).pages))
            print(f"  chromium, {name}: median {_median_ms(timings):.0f} ms", flush=True)
        browser.close()
    return results


def chromium_cold(html: str, count: int) -> list[float]:
    """Chromium as a render service that starts a browser for each PDF: launch, print, close."""
    from playwright.sync_api import sync_playwright

    timings = []
    with sync_playwright() as playwright:
        for _ in range(count):
            started = time.perf_counter()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.set_content(html)
            page.pdf(prefer_css_page_size=True, print_background=True)
            browser.close()
            timings.append(time.perf_counter() - started)
    return timings


def profile(invoice: Invoice, count: int) -> None:
    with staff_scope():
        render.render_document(invoice)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            render.render_document(invoice)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--downloads", type=int, default=300)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"preparing the bench database ({os.environ['DATABASE_NAME']})", flush=True)
    browser, short, long = prepare(args.pages)

    if args.profile:
        profile(short, args.renders)
        return 0

    print(f"1. cached downloads through the view, {args.downloads} one after the other", flush=True)
    downloads = cached_downloads(browser, short, args.downloads)
    print(f"   median {_median_ms(downloads):.2f} ms, p95 {_p95_ms(downloads):.2f} ms", flush=True)
    hits = cache_hits(short, args.downloads)
    print(f"   of which the PDF's part (fingerprint, lookup, decrypt): median {_median_ms(hits):.2f} ms; the rest is "
          "what every portal request pays (session, user, memberships, scope, the audit event)", flush=True)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"2. warm renders, {args.renders} of each", flush=True)
    short_ms, short_cpu, short_pdf = renders(short, args.renders)
    print(f"   1 page: median {_median_ms(short_ms):.0f} ms, p95 {_p95_ms(short_ms):.0f} ms "
          f"(CPU median {_median_ms(short_cpu):.0f} ms)", flush=True)
    long_ms, long_cpu, long_pdf = renders(long, args.renders)
    long_pages = len(PdfReader(io.BytesIO(long_pdf)).pages)
    print(f"   {long_pages} pages: median {_median_ms(long_ms):.0f} ms, p95 {_p95_ms(long_ms):.0f} ms "
          f"(CPU median {_median_ms(long_cpu):.0f} ms)", flush=True)
    rss_rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before

    print("3. memory per render (peak Python allocations)", flush=True)
    short_mib, long_mib = render_memory(short), render_memory(long)
    print(f"   1 page {short_mib:.1f} MiB, {long_pages} pages {long_mib:.1f} MiB; peak RSS rose {rss_rise:.0f} MiB "
          f"over all renders", flush=True)

    print(f"4. headless Chromium ({CHROMIUM}) printing the same HTML, {args.renders} of each", flush=True)
    with staff_scope():  # WeasyPrint gets pdf.css as a parsed stylesheet; Chromium reads it inline
        htmls = {name: render._sources(invoice)[0].replace("<style>", f"<style>\n{render._css()}", 1)
                 for name, invoice in (("1 page", short), (f"{long_pages} pages", long))}
    chromium = chromium_prints(htmls, args.renders)
    chromium_short, chromium_long = (_median_ms(timings) for timings, _ in chromium.values())
    chromium_pages = [pages for _, pages in chromium.values()]
    cold = _median_ms(chromium_cold(htmls["1 page"], max(3, args.renders // 4)))
    print(f"  chromium, 1 page, launched for it: median {cold:.0f} ms", flush=True)

    download_ms = _median_ms(downloads)
    print("| cached download (view) | PDF part | x Chromium warm / cold | 1 page | "
          f"{long_pages} pages | memory per render | Chromium warm 1 / {chromium_pages[1]} pages, cold 1 page |")
    print(f"| {download_ms:.2f} ms (p95 {_p95_ms(downloads):.2f}) | {_median_ms(hits):.2f} ms | "
          f"{chromium_short / download_ms:.0f}x / {cold / download_ms:.0f}x | {_median_ms(short_ms):.0f} ms "
          f"(CPU {_median_ms(short_cpu):.0f}) | {_median_ms(long_ms):.0f} ms (CPU {_median_ms(long_cpu):.0f}) | {short_mib:.1f} / {long_mib:.1f} MiB (RSS +{rss_rise:.0f} MiB) | "
          f"{chromium_short:.0f} / {chromium_long:.0f} ms, {cold:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
