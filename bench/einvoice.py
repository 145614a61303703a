"""Benchmark: checking the portal's e-invoices against the official rules (invoices/documents/rules).

    .venv/bin/python bench/einvoice.py [--runs 200] [--lines 300]

Uses its own database (portal_bench_einvoice, bootstrapped and migrated as the owner) and Redis
databases 12 and 13 (BENCH_REDIS_DB); makes a Dutch brand, a Belgian client (0208 enterprise number,
its own buyer reference), a 2-line invoice and one of --lines lines, and builds each as the portal
does: UBL 2.1 for Peppol (invoices.documents.einvoice.ubl_xml) and Factur-X CII (factur_x_xml).
In one run it measures:
1. cold: compiling the rules in a fresh process's first call (Saxon loading CEN's EN 16931 UBL
   XSLT and the Factur-X rules, our compiler turning Peppol's .sch into XSLT and Saxon compiling it);
2. warm: validate_ubl and validate_cii of each document, --runs times each, median and p95
   (the XSD and every rule; the document parsed from bytes each time, as a caller hands it over).
Prints a table row for bench/README.md, and each document's fatal failures (expected none).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_NAME", "portal_bench_einvoice")  # make test runs it tiny, on a database of its own
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")
os.environ["TEST_REDIS_DB"] = os.environ.get("BENCH_REDIS_DB", "12")
if os.environ.get("DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + os.environ["DATABASE_NAME"]

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from invoices.documents import einvoice, rules  # noqa: E402
from invoices.models import Invoice  # noqa: E402
from portal.rls import staff_scope  # noqa: E402
from tests.invoices.factories import line, make_invoice  # noqa: E402
from tests.portal.factories import BrandFactory, ClientFactory  # noqa: E402
from tests.support.owner import as_owner  # noqa: E402


def documents(lines: int) -> dict[str, bytes]:
    call_command("db_bootstrap", verbosity=0)
    with as_owner() as owner:
        call_command("migrate", database=owner, verbosity=0)
    stamp = time.time_ns()
    brand = BrandFactory(name="Acme Accounting B.V.", slug=f"bench-einvoice-{stamp}", iban="NL91ABNA0417164300",
                         bic="ABNANL2A", kvk_number="12345678", vat_number="NL001234567B01",
                         address_line="Keizersgracht 1", postal_code="1015 CC", city="Amsterdam")
    client = ClientFactory(brand=brand, name="Brouwerij Noord BV", locale="nl", address_line="Grote Markt 1",
                           postal_code="1000", city="Brussel", country="BE", vat_number="BE0403170701",
                           peppol_scheme="0208", peppol_id="0403170701", buyer_reference="PO-2026-118")
    short = make_invoice(client, number=f"S-{stamp}", lines=[
        line("Advieswerk", quantity="10", unit_price="95.00"),
        line("Naslagwerk", quantity="3", unit_price="19.99", discount="10")])
    long = make_invoice(client, number=f"L-{stamp}", lines=[
        line(f"Werkzaamheden week {n}", quantity="8", unit_price="95.00") for n in range(lines)])
    made = {}
    with staff_scope():
        for name, invoice in (("1-page", short), (f"{lines}-line", long)):
            invoice = Invoice.objects.select_related("client", "brand").get(pk=invoice.pk)
            made[f"UBL {name}"] = einvoice.ubl_xml(invoice)
            made[f"CII {name}"] = einvoice.factur_x_xml(invoice)
    return made


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--lines", type=int, default=300)
    args = parser.parse_args()

    made = documents(args.lines)
    started = time.perf_counter()
    rules.warm_up()
    cold = time.perf_counter() - started

    cells = []
    for name, xml in made.items():
        validate = rules.validate_ubl if name.startswith("UBL") else rules.validate_cii
        report = validate(xml)  # this document's first check (the XSD parsed in this thread)
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            validate(xml)
            timings.append(time.perf_counter() - started)
        timings.sort()
        median, p95 = statistics.median(timings), timings[max(0, int(len(timings) * 0.95) - 1)]
        cells.append(f"{name} ({len(xml) // 1024} KiB): {_ms(median)} / {_ms(p95)}")
        fatal = ", ".join(f"{f.rule} at {f.location}" for f in report.fatal) or "none"
        print(f"{name}: {len(report.failures)} failures, fatal: {fatal}", flush=True)
    print(f"rules: {rules.rules_versions()}")
    print("| cold compile (ms) | warm median / p95 (ms) per document | runs |")
    print(f"| {_ms(cold)} | {'; '.join(cells)} | {args.runs} |")


if __name__ == "__main__":
    main()
