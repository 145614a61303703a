"""The books behind the local Twinfield (tests/fakes/twinfield.py): one office's customers, VAT codes,
daybooks, general ledger accounts, transactions with their lines, and the match sets that settle them.

Shapes and words are Twinfield's, from php-twinfield/twinfield@0e96318's fixtures of real answers
(tests/IntegrationTests/resources/*.xml, tests/UnitTests/ApiConnectors/resources/*.xml) and
developers.twinfield.com (transaction-data/sales-transactions, bank-transactions, miscellaneous/matching):
- A transaction has lines of type `total`, `detail` and `vat`, each with `value` (positive) and
  `debitcredit`; "a minimum of two transaction lines must be provided per day book"; a transaction that
  does not balance is refused with "De boeking is niet in balans. Er ontbreekt 0.01 debet."
  (2-failed-and-1-successful-banktransactions.xml).
- Numbers are the year and a five-digit sequence per daybook (201300095, 201700334 in the fixtures).
- A line on the debtors account (1300) with a customer in dim2 is matchable: `matchstatus` `available`,
  `matchlevel` 2, `openvalue`; other lines are `notmatchable` (salesTransactionGetResponse.xml,
  cashTransactionGetResponse.xml). The browse field `fin.trs.line.openvaluesigned` carries the sign.
- Matching (matchcode 170 for customers) takes lines by (transcode, transnumber, transline) with an
  optional `matchvalue`, credit lines negative; a set must add up to zero, and then the customer gets the
  set's match number (single-matchset.xml: `<value>0.00</value>`, `<dimension level="2" matchnumber="1">`;
  a missing line is "De regel bestaat niet."). After matching "both sides carry status Matched and the
  same match number", numbered per customer (WK knowledge base, "How does matching work in Twinfield").
- VAT code VH "BTW Hoog", 19 % from 2000 and 21 % from 1 October 2012 (vatCodeGetResponse.xml).

Choices where Twinfield publishes nothing (UNCONFIRMED, each marked where it is made): the default chart
of accounts and daybooks, the Dutch wording of refusals other than the two quoted above, match numbers
per office and customer starting at 1, a partly matched line keeping no match number until it is
fully matched, and times in Europe/Amsterdam.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
DEBTORS = "1300"
MATCHCODE_CUSTOMERS = "170"

# UNCONFIRMED: what a new Dutch office holds. Account names 1300, 8020, 1530 and 1100 are the fixtures'.
DEFAULT_GL_ACCOUNTS = {
    "1100": ("Standaard bank", "BAS"), "1300": ("Debiteuren", "BAS"), "1520": ("Te betalen OB 9%", "BAS"),
    "1530": ("Te betalen OB 21%", "BAS"), "1800": ("Tussenrekening", "BAS"), "8000": ("Omzet (0%)", "PNL"),
    "8010": ("Omzet (9%)", "PNL"), "8020": ("Omzet (21%)", "PNL"),
}
# code -> name, shortname, category; a bank daybook also has its ledger account.
DEFAULT_DAYBOOKS = {
    "VRK": {"name": "Verkoopfactuur", "shortname": "Verkoop", "category": "sales", "account": None},
    "BNK": {"name": "Standaard bank", "shortname": "Standaard bank", "category": "bank", "account": "1100"},
    "MEMO": {"name": "Memoriaal", "shortname": "Memoriaal", "category": "journal", "account": None},
}
# code -> name, type, revenue account, VAT account, [(valid from, percentage)]
DEFAULT_VAT_CODES = {
    "VH": ("BTW Hoog", "sales", "8020", "1530", [(date(2000, 1, 1), "19"), (date(2012, 10, 1), "21")]),
    "VL": ("BTW Laag", "sales", "8010", "1520", [(date(2000, 1, 1), "6"), (date(2019, 1, 1), "9")]),
    "VN": ("BTW 0%", "sales", "8000", None, [(date(2000, 1, 1), "0")]),
}
CURRENCIES = {"EUR": "Euro", "USD": "US Dollar", "GBP": "Pond sterling"}


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def signed(line: dict) -> Decimal:
    return line["value"] if line["debitcredit"] == "debit" else -line["value"]


@dataclass
class Problem:
    """A refusal and where Twinfield puts its `msg`: on the transaction (line None, field None), on a
    line, or on one field of the header (line "header") or of a line."""
    msg: str
    line: int | str | None = None
    field: str | None = None


@dataclass
class Office:
    code: str
    name: str
    moment: object  # the fake's clock as an aware datetime in Europe/Amsterdam
    user: str = "FENNA"
    customers: dict[str, dict] = field(default_factory=dict)
    gl_accounts: dict[str, dict] = field(default_factory=dict)
    daybooks: dict[str, dict] = field(default_factory=dict)
    vat_codes: dict[str, dict] = field(default_factory=dict)
    transactions: dict[tuple[str, int], dict] = field(default_factory=dict)
    match_sets: list[dict] = field(default_factory=list)
    next_number: dict[tuple[str, int], int] = field(default_factory=dict)
    next_invoice_number: int = 1
    next_customer_code: int = 1000
    next_match_number: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        for code, (name, kind) in DEFAULT_GL_ACCOUNTS.items():
            self.gl_accounts[code] = {"code": code, "name": name, "type": kind}
        for code, daybook in DEFAULT_DAYBOOKS.items():
            self.daybooks[code] = {"code": code, **daybook}
        for code, (name, kind, revenue, account, percentages) in DEFAULT_VAT_CODES.items():
            self.vat_codes[code] = {"code": code, "name": name, "shortname": code, "type": kind,
                                    "revenue_account": revenue, "account": account, "uid": str(uuid.uuid4()),
                                    "percentages": [(since, Decimal(p)) for since, p in percentages]}

    # Master data.
    def add_customer(self, name: str, *, code=None, email=None, street=None, postcode=None, city=None,
                     country="NL", due_days=30, iban=None) -> dict:
        if code is None:
            code, self.next_customer_code = str(self.next_customer_code), self.next_customer_code + 1
        customer = {"code": str(code), "name": name, "shortname": "", "email": email or "", "street": street or "",
                    "postcode": postcode or "", "city": city or "", "country": country, "due_days": due_days,
                    "iban": iban, "uid": str(uuid.uuid4()), "modified": self.moment()}
        self.customers[customer["code"]] = customer
        return customer

    def vat_percentage(self, code: str, on: date) -> Decimal:
        valid = [p for since, p in self.vat_codes[code]["percentages"] if since <= on]
        return valid[-1] if valid else Decimal("0")

    # Posting.
    def book(self, spec: dict) -> tuple[dict | None, list[Problem]]:
        """A transaction as a client (or the bookkeeper) sends it: `spec` holds the header's fields and
        `lines`, each a dict of the line's fields as strings. Either the booked transaction and no
        problems, or None and what Twinfield would refuse. Nothing is booked when anything is refused."""
        problems: list[Problem] = []
        daybook = self.daybooks.get(spec.get("code") or "")
        if daybook is None:
            problems.append(Problem(f"Dagboek {spec.get('code')!r} bestaat niet.", "header", "code"))  # UNCONFIRMED
        currency = spec.get("currency") or "EUR"
        if currency not in CURRENCIES:
            problems.append(Problem(f"Valuta {currency} bestaat niet.", "header", "currency"))  # UNCONFIRMED
        on = _parse_date(spec.get("date"))
        if on is None:
            problems.append(Problem("Boekdatum ontbreekt of is ongeldig (JJJJMMDD).", "header", "date"))
        period = spec.get("period") or (f"{on:%Y/%m}" if on else "")
        if period and not _valid_period(period):
            problems.append(Problem(f"Periode {period} is ongeldig (JJJJ/MM).", "header", "period"))
        destiny = spec.get("destiny") or "temporary"  # the default when destiny is left out: UNCONFIRMED
        if destiny not in ("temporary", "final"):
            problems.append(Problem(f"Ongeldige bestemming {destiny!r}.", None, None))
        lines = self._lines(spec.get("lines") or [], daybook, problems)
        if len(lines) < 2:
            problems.append(Problem("Er moeten minimaal twee boekingsregels zijn per dagboek."))
        if not problems:
            missing = sum((signed(line) for line in lines), ZERO)
            if missing:
                side = "debet" if missing < 0 else "credit"
                problems.append(Problem(f"De boeking is niet in balans. Er ontbreekt {abs(missing):.2f} {side}."))
        if problems:
            return None, problems
        year = int(period[:4])
        key = (daybook["code"], year)
        sequence = self.next_number.get(key, 1)
        self.next_number[key] = sequence + 1
        now = self.moment()
        transaction = {
            "office": self.code, "code": daybook["code"], "number": year * 100000 + sequence,
            "location": destiny, "date": on, "period": _normal_period(period), "currency": currency,
            "invoicenumber": spec.get("invoicenumber") or "", "duedate": _parse_date(spec.get("duedate")),
            "paymentreference": spec.get("paymentreference") or "",
            "statementnumber": spec.get("statementnumber") or "", "origin": spec.get("origin", "import"),
            "user": self.user, "inputdate": now, "modified": now, "lines": lines,
        }
        for line in lines:
            line["modified"] = now
            if line["matchstatus"] == "available" and not line["duedate"]:
                line["duedate"] = transaction["duedate"]
        self.transactions[(transaction["code"], transaction["number"])] = transaction
        return transaction, []

    def _lines(self, given: list[dict], daybook: dict | None, problems: list[Problem]) -> list[dict]:
        lines = []
        for index, raw in enumerate(given, start=1):
            kind = raw.get("type") or ""
            if kind not in ("total", "detail", "vat"):
                problems.append(Problem(f"Ongeldig regeltype {kind!r}.", index, "type"))
            try:
                value = money(raw.get("value") or "")
            except InvalidOperation:
                problems.append(Problem("Bedrag ontbreekt of is ongeldig.", index, "value"))
                value = ZERO
            if value < 0:  # UNCONFIRMED: a sign belongs in debitcredit, not in the value
                problems.append(Problem("Bedrag mag niet negatief zijn; gebruik debet/credit.", index, "value"))
            side = raw.get("debitcredit") or ""
            if side not in ("debit", "credit"):
                problems.append(Problem("Debet/credit ontbreekt of is ongeldig.", index, "debitcredit"))
            dim1 = raw.get("dim1") or ""
            if kind == "total" and daybook and daybook["account"] and not dim1:
                dim1 = daybook["account"]  # UNCONFIRMED: the bank daybook's account fills an empty total line
            if dim1 not in self.gl_accounts:
                problems.append(Problem(f"Grootboekrekening {dim1!r} bestaat niet.", index, "dim1"))
            dim2 = raw.get("dim2") or ""
            if dim1 == DEBTORS and not dim2:
                problems.append(Problem("Debiteur ontbreekt bij de debiteurenrekening.", index, "dim2"))
            elif dim2 and dim2 not in self.customers:
                problems.append(Problem(f"Debiteur {dim2} bestaat niet.", index, "dim2"))
            vatcode = raw.get("vatcode") or ""
            if vatcode and vatcode not in self.vat_codes:
                problems.append(Problem(f"Btw-code {vatcode} bestaat niet.", index, "vatcode"))
            matchable = dim1 == DEBTORS and bool(dim2)
            lines.append({
                "id": int(raw["id"]) if str(raw.get("id") or "").isdigit() else index, "type": kind,
                "dim1": dim1, "dim2": dim2, "debitcredit": side, "value": value,
                "description": raw.get("description") or "", "invoicenumber": raw.get("invoicenumber") or "",
                "vatcode": vatcode, "vatvalue": _money_or_none(raw.get("vatvalue")),
                "vatturnover": _money_or_none(raw.get("vatturnover")), "baseline": raw.get("baseline") or "",
                "duedate": _parse_date(raw.get("duedate")),
                "matchstatus": "available" if matchable else "notmatchable", "matchlevel": 2 if matchable else None,
                "open": None, "matchnumber": None, "matchdate": None, "matches": [],
            })
            if matchable:
                lines[-1]["open"] = signed(lines[-1])
        return lines

    # Matching.
    def match(self, matchcode: str, matchdate, wanted: list[tuple]) -> tuple[dict | None, list[Problem]]:
        """A match set: `wanted` holds (transcode, transnumber, transline, matchvalue or None). Problems
        carry the index (1-based) of the line they are about, or none for the set."""
        problems: list[Problem] = []
        on = _parse_date(matchdate) if not isinstance(matchdate, date) else matchdate
        if matchcode != MATCHCODE_CUSTOMERS:  # only customers are kept in these books
            problems.append(Problem(f"Afletter-code {matchcode} wordt niet ondersteund.", None, "matchcode"))
        if on is None:
            problems.append(Problem("Afletterdatum ontbreekt of is ongeldig (JJJJMMDD).", None, "matchdate"))
        picked = []
        for index, (code, number, line_id, value) in enumerate(wanted, start=1):
            line = self._line(code, number, line_id)
            if line is None:
                problems.append(Problem("De regel bestaat niet.", index))  # single-matchset.xml
                continue
            if line["matchstatus"] not in ("available", "proposed") or not line["open"]:
                problems.append(Problem("De regel is niet (meer) af te letteren.", index))  # UNCONFIRMED
                continue
            amount = line["open"] if value in (None, "") else money(value)
            if amount == 0 or (amount > 0) != (line["open"] > 0) or abs(amount) > abs(line["open"]):
                problems.append(Problem(f"Afletterbedrag {amount:.2f} past niet bij het openstaande bedrag "
                                        f"{line['open']:.2f}.", index, "matchvalue"))
                continue
            picked.append((code, int(number), int(line_id), line, amount))
        customers = {p[3]["dim2"] for p in picked}
        if len(customers) > 1:
            problems.append(Problem("De regels horen bij verschillende debiteuren.", None))  # UNCONFIRMED
        if len(wanted) < 2:
            problems.append(Problem("Een afletterset heeft minimaal twee regels.", None))
        total = sum((p[4] for p in picked), ZERO)
        if not problems and total:
            problems.append(Problem(f"De afletterset is niet in balans ({total:.2f}).", None))  # UNCONFIRMED
        if problems:
            return None, problems
        customer = customers.pop()
        number = self.next_match_number.get(customer, 1)
        self.next_match_number[customer] = number + 1
        now = self.moment()
        record = {"office": self.code, "matchcode": matchcode, "matchdate": on, "matchnumber": number,
                  "dimension": customer, "value": total,
                  "lines": [{"transcode": c, "transnumber": n, "transline": i, "matchvalue": amount,
                             "openbefore": line["open"]} for c, n, i, line, amount in picked]}
        for code, number_, line_id, line, amount in picked:
            line["open"] -= amount
            line["matches"].append(record)
            line["modified"] = now
            if line["open"] == 0:
                line["matchstatus"], line["matchnumber"], line["matchdate"] = "matched", number, on
            self.transactions[(code, number_)]["modified"] = now
        self.match_sets.append(record)
        return record, []

    def _line(self, code, number, line_id) -> dict | None:
        try:
            transaction = self.transactions.get((str(code), int(number)))
            line_id = int(line_id)
        except (TypeError, ValueError):
            return None
        if transaction is None:
            return None
        return next((line for line in transaction["lines"] if line["id"] == line_id), None)

    def transaction_by_invoice(self, invoice_number: str, daybook: str | None = None) -> dict | None:
        return next((t for t in self.transactions.values()
                     if t["invoicenumber"] == str(invoice_number) and (daybook is None or t["code"] == daybook)),
                    None)

    # What the bookkeeper does, for tests.
    def add_sales_invoice(self, customer_code: str, lines, *, invoice_number=None, date_=None, due_date=None,
                          destiny="final", currency="EUR", daybook="VRK") -> dict:
        """A sales transaction: the customer's total line incl. VAT, a detail line per given line on the
        VAT code's revenue account, one VAT line per VAT code. Negative values make a credit note."""
        customer = self.customers[str(customer_code)]
        on = date_ or self.moment().date()
        if invoice_number is None:
            invoice_number, self.next_invoice_number = self.next_invoice_number, self.next_invoice_number + 1
        details, vat_per_code = [], {}
        for description, value, vatcode in lines:
            net = money(value)
            vat = money(net * self.vat_percentage(vatcode, on) / 100)
            turnover, vat_total = vat_per_code.get(vatcode, (ZERO, ZERO))
            vat_per_code[vatcode] = (turnover + net, vat_total + vat)
            details.append({"type": "detail", "dim1": self.vat_codes[vatcode]["revenue_account"],
                            "debitcredit": "credit" if net >= 0 else "debit", "value": f"{abs(net):.2f}",
                            "description": description, "vatcode": vatcode, "vatvalue": f"{abs(vat):.2f}"})
        vat_lines = [{"type": "vat", "dim1": self.vat_codes[code]["account"], "vatcode": code,
                      "debitcredit": "credit" if vat >= 0 else "debit", "value": f"{abs(vat):.2f}",
                      "vatturnover": f"{abs(turnover):.2f}"}
                     for code, (turnover, vat) in vat_per_code.items() if vat]  # UNCONFIRMED: no line for 0 %
        total = sum((money(v) for _, v, _ in lines), ZERO) + sum((v for _, v in vat_per_code.values()), ZERO)
        head = {"type": "total", "dim1": DEBTORS, "dim2": customer["code"],
                "debitcredit": "debit" if total >= 0 else "credit", "value": f"{abs(total):.2f}",
                "invoicenumber": str(invoice_number)}
        due = due_date or on + timedelta(days=customer["due_days"])
        transaction, problems = self.book({
            "code": daybook, "currency": currency, "date": f"{on:%Y%m%d}", "destiny": destiny,
            "invoicenumber": str(invoice_number), "duedate": f"{due:%Y%m%d}", "origin": "import",
            "lines": [head, *details, *vat_lines]})
        if problems:
            raise ValueError("; ".join(p.msg for p in problems))
        return transaction

    def pay(self, invoice_number, amount, *, date_=None, daybook="BNK", description="") -> dict:
        """A bank transaction from the customer, matched (170) to the invoice's total line: partly when
        the amount is below what is open."""
        invoice = self.transaction_by_invoice(str(invoice_number), "VRK") or \
            self.transaction_by_invoice(str(invoice_number))
        if invoice is None:
            raise KeyError(f"office {self.code} has no invoice {invoice_number}")
        total = next(line for line in invoice["lines"] if line["type"] == "total")
        amount, on = money(amount), date_ or self.moment().date()
        bank, problems = self.book({
            "code": daybook, "currency": invoice["currency"], "date": f"{on:%Y%m%d}", "destiny": "final",
            "lines": [{"type": "total", "dim1": self.daybooks[daybook]["account"], "debitcredit": "debit",
                       "value": f"{amount:.2f}"},
                      {"type": "detail", "dim1": DEBTORS, "dim2": total["dim2"], "debitcredit": "credit",
                       "value": f"{amount:.2f}", "invoicenumber": str(invoice_number),
                       "description": description or f"Betaling factuur {invoice_number}"}]})
        if problems:
            raise ValueError("; ".join(p.msg for p in problems))
        settled = min(amount, total["open"]) if total["open"] else ZERO
        if settled > 0:
            _, problems = self.match(MATCHCODE_CUSTOMERS, on,
                                     [(invoice["code"], invoice["number"], total["id"], settled),
                                      (bank["code"], bank["number"], 2, -settled)])
            if problems:
                raise ValueError("; ".join(p.msg for p in problems))
        return bank

    def delete_provisional(self, code: str, number: int) -> None:
        transaction = self.transactions[(code, int(number))]
        if transaction["location"] != "temporary":
            raise ValueError("Only a provisional (temporary) transaction can be deleted; reverse a final one")
        if any(line["matches"] for line in transaction["lines"]):
            raise ValueError("A matched transaction cannot be deleted; undo the match first")
        del self.transactions[(code, int(number))]

    def reverse(self, code: str, number: int) -> dict:
        """A final transaction undone the Twinfield way: a mirrored transaction in the same daybook, its
        customer lines matched with the original's."""
        original = self.transactions[(code, int(number))]
        mirrored = [{"type": line["type"], "dim1": line["dim1"], "dim2": line["dim2"],
                     "debitcredit": "credit" if line["debitcredit"] == "debit" else "debit",
                     "value": f"{line['value']:.2f}", "description": f"Tegenboeking {code} {number}",
                     "invoicenumber": line["invoicenumber"], "vatcode": line["vatcode"]}
                    for line in original["lines"]]
        reversal, problems = self.book({"code": code, "currency": original["currency"],
                                        "date": f"{self.moment().date():%Y%m%d}", "destiny": "final",
                                        "invoicenumber": original["invoicenumber"], "lines": mirrored})
        if problems:
            raise ValueError("; ".join(p.msg for p in problems))
        for before, after in zip(original["lines"], reversal["lines"]):
            if before["matchstatus"] == "available" and before["open"]:
                self.match(MATCHCODE_CUSTOMERS, self.moment().date(),
                           [(code, original["number"], before["id"], before["open"]),
                            (code, reversal["number"], after["id"], -before["open"])])
        return reversal


def _parse_date(value) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return datetime.strptime(str(value or ""), "%Y%m%d").date()
    except ValueError:
        return None


def _valid_period(period: str) -> bool:
    year, _, month = period.partition("/")
    return year.isdigit() and len(year) == 4 and month.isdigit() and 0 <= int(month) <= 55


def _normal_period(period: str) -> str:
    year, _, month = period.partition("/")
    return f"{year}/{int(month):02d}"


def _money_or_none(value) -> Decimal | None:
    try:
        return money(value) if value not in (None, "") else None
    except InvalidOperation:
        return None
