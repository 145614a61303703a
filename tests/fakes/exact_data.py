"""The books behind the local Exact Online (tests/fakes/exact.py): one division's customers, sales
invoices and credit notes with their lines, receivables, VAT codes, journals, bank entries, the
transaction lines they make, the deleted-records log, and the rows each REST and sync endpoint shows.

Field names, codes and meanings are Exact's, from its REST reference as generated into
picqer/exact-php-client and Pi-Systems/exact-online (start.exactonline.nl/docs/
HlpRestAPIResourcesDetails.aspx?name=…): SalesInvoices `Status` 10 draft / 20 open / 50 processed
("Processing is done via printing"), `Type` 8020 invoice / 8021 credit note, "In case of a credit
invoice the amount should have negative value"; header AmountFC is the sum of the lines including VAT,
a line's AmountFC excludes VAT; `crm/Accounts.Code` a fixed-length (18) numeric string with leading
spaces; Receivables `Status` 20 open / 50 matched, `IsFullyPaid`, `LastPaymentDate`; BankEntryLines
`OurRef` "Invoice number"; TransactionLines `Type` 20 sales entry / 21 sales credit note / 40 cash flow;
journals `Type` 12 bank / 16 payment service / 20 sales; sync/Deleted `EntityType` 1 TransactionLines /
2 Accounts / 13 SalesInvoices. The sync SalesInvoices endpoint returns a header row (LineNumber 0) and
one row per line with the header's fields repeated, and "any change in the header or the line … will
lead to a new timestamp value in both the header and the line" (Exact's text for
SyncSalesInvoiceSalesInvoices).

Choices where Exact publishes nothing (UNCONFIRMED, each marked where it is made):
- A sales invoice becomes a sales entry (a receivable and transaction lines) when it is processed
  (Status 50), not while it is open (20).
- A payment received is a bank entry line on the customer with a NEGATIVE AmountFC (a credit on the
  receivable), matched to the invoice whose InvoiceNumber is its OurRef; a positive one (a refund, a
  chargeback) adds to what is open again.
- The REST API has no field that links a credit note to the invoice it credits (picqer issue #464:
  the screen's link is "not available in the REST API"; neither SalesInvoices nor SalesEntries has
  one). What the API does show is the matching: the credit note's receivable matched with the
  invoice's (Receivables `Status` 50, "matched with one or more other outstanding items"). The fake
  matches them when a credit note is added with `credits=`; nothing else links the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from tests.fakes.exact_oauth import new_guid

CENT = Decimal("0.01")
TYPE_INVOICE, TYPE_CREDIT_NOTE = 8020, 8021
STATUS_DESCRIPTIONS = {10: "Draft", 20: "Open", 50: "Processed"}
TYPE_DESCRIPTIONS = {TYPE_INVOICE: "Sales invoice", TYPE_CREDIT_NOTE: "Sales credit note"}
DELETED_TRANSACTION_LINES, DELETED_ACCOUNTS, DELETED_SALES_INVOICES = 1, 2, 13

# What a new Dutch administration might hold. The codes differ per administration on purpose: a
# client must read vat/VATCodes and map by Percentage/Type (Percentage as a fraction: UNCONFIRMED).
DEFAULT_VAT_CODES = [("2  ", "BTW hoog 21% excl.", "0.21", "E"), ("5  ", "BTW laag 9% excl.", "0.09", "E"),
                     ("0  ", "Geen BTW", "0", "N")]
DEFAULT_JOURNALS = [("70", "Verkoopboek", 20, None), ("20", "Bank", 12, "NL91ABNA0417164300"),
                    ("25", "Mollie", 16, None)]


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class Books:
    """One division. `stamp()` hands out the next Timestamp (shared by the whole fake, as a database
    rowversion is); `now()` is the fake's clock."""
    code: int
    name: str
    stamp: object
    now: object
    accounts: dict[str, dict] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    receivables: dict[str, dict] = field(default_factory=dict)  # by InvoiceID
    vat_codes: list[dict] = field(default_factory=list)
    journals: list[dict] = field(default_factory=list)
    bank_entries: list[dict] = field(default_factory=list)
    transaction_lines: dict[str, dict] = field(default_factory=dict)
    deleted: list[dict] = field(default_factory=list)
    next_invoice_number: int = 0
    next_entry_number: int = 0

    def __post_init__(self):
        year = datetime.fromtimestamp(self.now(), timezone.utc).year
        self.next_invoice_number = (year % 100) * 1_000_000 + 700_001
        self.next_entry_number = (year % 100) * 1_000_000 + 200_001
        for code, description, percentage, kind in DEFAULT_VAT_CODES:
            self.add_vat_code(code, description, percentage, kind)
        for code, description, kind, iban in DEFAULT_JOURNALS:
            self.journals.append({"ID": new_guid(), "Code": code, "Description": description, "Type": kind,
                                  "BankAccountIBAN": iban, "Division": self.code})

    def _moment(self) -> datetime:
        return datetime.fromtimestamp(self.now(), timezone.utc).replace(microsecond=0)

    def add_vat_code(self, code: str, description: str, percentage, kind: str = "E") -> dict:
        row = {"ID": new_guid(), "Code": code, "Description": description, "Percentage": Decimal(str(percentage)),
               "Type": kind, "VATTransactionType": "S", "IsBlocked": False, "Division": self.code}
        self.vat_codes.append(row)
        return row

    def vat_code(self, code: str) -> dict:
        for row in self.vat_codes:
            if row["Code"].strip() == str(code).strip():
                return row
        raise KeyError(f"division {self.code} has no VAT code {code!r}")

    def journal(self, code: str) -> dict | None:
        return next((j for j in self.journals if j["Code"] == str(code)), None)

    # Customers.
    def add_account(self, name: str, code=None, **fields) -> dict:
        code = code if code is not None else len(self.accounts) + 1
        now = self._moment()
        row = {"ID": new_guid(), "Code": f"{str(code):>18}", "Name": name, "Email": fields.pop("email", None),
               "VATNumber": fields.pop("vat_number", None),
               "ChamberOfCommerce": fields.pop("chamber_of_commerce", None),
               "AddressLine1": fields.pop("address_line", None), "Postcode": fields.pop("postcode", None),
               "City": fields.pop("city", None), "Country": fields.pop("country", "NL"), "IsSales": True,
               "Status": "C", "Division": self.code, "Created": now, "Modified": now, "Timestamp": self.stamp()}
        row.update(fields)
        self.accounts[row["ID"]] = row
        return row

    def update_account(self, account_id: str, **fields) -> dict:
        row = self.accounts[account_id]
        row.update(fields, Modified=self._moment(), Timestamp=self.stamp())
        return row

    # Sales invoices and credit notes.
    def add_invoice(self, account_id: str, lines, *, credits: str | None = None, status: int = 50,
                    invoice_date: date | None = None, due_days: int = 30, number: int | None = None,
                    description: str = "", your_ref: str | None = None, currency: str = "EUR") -> dict:
        account = self.accounts[account_id]
        kind = TYPE_CREDIT_NOTE if credits else TYPE_INVOICE
        invoice_date = invoice_date or self._moment().date()
        if number is None:
            number, self.next_invoice_number = self.next_invoice_number, self.next_invoice_number + 1
        invoice_id, now = new_guid(), self._moment()
        rows = []
        for line_number, line in enumerate(lines, start=1):
            line = dict(zip(("description", "quantity", "unit_price", "vat_code"), line)) \
                if isinstance(line, (tuple, list)) else dict(line)
            quantity = Decimal(str(line.get("quantity", 1)))
            if kind == TYPE_CREDIT_NOTE:
                quantity = -abs(quantity)  # a credit note's amounts are negative
            unit_price = Decimal(str(line["unit_price"]))
            vat = self.vat_code(line.get("vat_code", "2"))
            net = money(quantity * unit_price)
            vat_amount = money(net * vat["Percentage"])
            rows.append({"ID": new_guid(), "InvoiceID": invoice_id, "LineNumber": line_number,
                         "Description": line.get("description", ""), "Quantity": quantity,
                         "UnitPrice": unit_price, "NetPrice": unit_price, "AmountFC": net, "AmountDC": net,
                         "VATCode": vat["Code"], "VATCodeDescription": vat["Description"],
                         "VATPercentage": vat["Percentage"], "VATAmountFC": vat_amount, "VATAmountDC": vat_amount,
                         "GLAccount": "8000", "Division": self.code})
        excl = sum((r["AmountFC"] for r in rows), Decimal("0.00"))
        vat_total = sum((r["VATAmountFC"] for r in rows), Decimal("0.00"))
        invoice = {
            "InvoiceID": invoice_id, "InvoiceNumber": number, "Type": kind, "TypeDescription": TYPE_DESCRIPTIONS[kind],
            "Status": status, "StatusDescription": STATUS_DESCRIPTIONS[status], "InvoiceTo": account_id,
            "InvoiceToName": account["Name"], "OrderedBy": account_id, "OrderedByName": account["Name"],
            "Journal": "70", "InvoiceDate": invoice_date, "DueDate": invoice_date + timedelta(days=due_days),
            "Currency": currency, "AmountFCExclVat": excl, "VATAmountFC": vat_total, "VATAmountDC": vat_total,
            "AmountFC": excl + vat_total, "AmountDC": excl + vat_total, "Description": description,
            "YourRef": your_ref, "PaymentReference": str(number), "Division": self.code, "Created": now,
            "Modified": now, "SalesInvoiceLines": rows, "Timestamp": 0, "_credits": credits,
        }
        self.invoices[invoice_id] = invoice
        self._touch(invoice)
        if status == 50:
            self._book_sales_entry(invoice)
        return invoice

    def _touch(self, invoice: dict) -> None:
        """A change to an invoice: new timestamps on the header and every line (Exact's sync text)."""
        invoice["Modified"] = self._moment()
        invoice["Timestamp"] = self.stamp()
        for line in invoice["SalesInvoiceLines"]:
            line["Timestamp"] = self.stamp()

    def process_invoice(self, invoice_id: str) -> dict:
        """The bookkeeper prints (processes) an open invoice: Status 50 and a sales entry."""
        invoice = self.invoices[invoice_id]
        if invoice["Status"] != 50:
            invoice["Status"], invoice["StatusDescription"] = 50, STATUS_DESCRIPTIONS[50]
            self._touch(invoice)
            self._book_sales_entry(invoice)
        return invoice

    def _book_sales_entry(self, invoice: dict) -> None:
        # UNCONFIRMED: the sales entry shares the invoice's GUID (Receivables.TransactionEntryID).
        kind = 21 if invoice["Type"] == TYPE_CREDIT_NOTE else 20
        common = {"EntryID": invoice["InvoiceID"], "EntryNumber": invoice["InvoiceNumber"],
                  "InvoiceNumber": invoice["InvoiceNumber"], "Account": invoice["InvoiceTo"],
                  "AccountCode": self.accounts[invoice["InvoiceTo"]]["Code"],
                  "AccountName": invoice["InvoiceToName"], "Date": invoice["InvoiceDate"], "Type": kind,
                  "JournalCode": invoice["Journal"], "Currency": invoice["Currency"], "Status": 50,
                  "YourRef": invoice["YourRef"], "PaymentReference": invoice["PaymentReference"],
                  "Notes": None}
        self._line(common, 0, invoice["AmountFC"], "1300", invoice["Description"], DueDate=invoice["DueDate"])
        for line in invoice["SalesInvoiceLines"]:
            self._line(common, line["LineNumber"], -line["AmountFC"], line["GLAccount"], line["Description"],
                       VATCode=line["VATCode"], VATPercentage=line["VATPercentage"])
        if invoice["VATAmountFC"]:
            self._line(common, len(invoice["SalesInvoiceLines"]) + 1, -invoice["VATAmountFC"], "1500", "BTW")
        self.receivables[invoice["InvoiceID"]] = {
            "ID": new_guid(), "Account": invoice["InvoiceTo"], "AccountCode": common["AccountCode"],
            "AccountName": invoice["InvoiceToName"], "AmountDC": invoice["AmountDC"],
            "AmountFC": invoice["AmountFC"], "Currency": invoice["Currency"], "Description": invoice["Description"],
            "DueDate": invoice["DueDate"], "InvoiceDate": invoice["InvoiceDate"],
            "InvoiceNumber": invoice["InvoiceNumber"], "EntryNumber": invoice["InvoiceNumber"],
            "TransactionEntryID": invoice["InvoiceID"], "TransactionType": kind, "Journal": invoice["Journal"],
            "YourRef": invoice["YourRef"], "PaymentReference": invoice["PaymentReference"],
            "IsFullyPaid": False, "LastPaymentDate": None, "Status": 20, "EndDate": None, "Division": self.code,
            "Modified": self._moment(), "_settled": Decimal("0.00"),
        }
        if invoice["_credits"] and invoice["_credits"] in self.receivables:
            self._settle(invoice["_credits"], -invoice["AmountDC"], None)
            self._settle(invoice["InvoiceID"], invoice["AmountDC"], None)

    def _line(self, common: dict, line_number: int, amount: Decimal, gl: str, description: str, **extra) -> dict:
        at = common["Date"]
        row = {**common, "ID": new_guid(), "LineNumber": line_number, "AmountDC": amount, "AmountFC": amount,
               "GLAccountCode": gl, "Description": description, "FinancialYear": at.year,
               "FinancialPeriod": at.month, "Division": self.code, "Timestamp": self.stamp(), **extra}
        self.transaction_lines[row["ID"]] = row
        return row

    def _settle(self, invoice_id: str, amount: Decimal, paid_on: date | None) -> None:
        """Money (or a credit note) settled against an invoice's receivable; negative re-opens it."""
        receivable = self.receivables[invoice_id]
        receivable["_settled"] += amount
        if paid_on is not None:
            receivable["LastPaymentDate"] = paid_on
        fully = receivable["_settled"] >= receivable["AmountDC"] if receivable["AmountDC"] > 0 \
            else receivable["_settled"] <= receivable["AmountDC"]
        receivable["IsFullyPaid"] = fully
        receivable["Status"] = 50 if fully else 20
        receivable["EndDate"] = (paid_on or self._moment().date()) if fully else None
        receivable["Modified"] = self._moment()

    def delete_invoice(self, invoice_id: str) -> None:
        """Deleted in Exact: gone from every endpoint, listed in sync/Deleted."""
        invoice = self.invoices.pop(invoice_id)
        self.receivables.pop(invoice_id, None)
        self._log_deleted(DELETED_SALES_INVOICES, invoice["InvoiceID"])
        for line_id, line in list(self.transaction_lines.items()):
            if line["EntryID"] == invoice_id:
                del self.transaction_lines[line_id]
                self._log_deleted(DELETED_TRANSACTION_LINES, line_id)

    def delete_account(self, account_id: str) -> None:
        self.accounts.pop(account_id)
        self._log_deleted(DELETED_ACCOUNTS, account_id)

    def _log_deleted(self, entity_type: int, key: str) -> None:
        self.deleted.append({"ID": new_guid(), "EntityKey": key, "EntityType": entity_type,
                             "DeletedDate": self._moment(), "DeletedBy": None, "Division": self.code,
                             "Timestamp": self.stamp()})

    # Bank entries: posted by a client, or the bookkeeper's bank statement (`pay`).
    def book_bank_entry(self, body: dict) -> dict:
        """A POST to financialtransaction/BankEntries; ValueError says what Exact would refuse."""
        journal = self.journal(body.get("JournalCode", ""))
        if journal is None or journal["Type"] not in (12, 16):
            raise ValueError(f"Journal {body.get('JournalCode')!r} is not a bank or payment service journal")
        lines = body.get("BankEntryLines")
        if isinstance(lines, dict):
            lines = lines.get("results")
        if not lines:
            raise ValueError("BankEntryLines: at least one line is mandatory")
        entry_id, number = new_guid(), self.next_entry_number
        self.next_entry_number += 1
        now = self._moment()
        stored = []
        for line_number, line in enumerate(lines, start=1):
            if line.get("AmountFC") is None:
                raise ValueError("BankEntryLines: AmountFC is mandatory")
            if not line.get("Account") and not line.get("GLAccount"):
                raise ValueError("BankEntryLines: Account or GLAccount is mandatory")
            if line.get("Account") and line["Account"] not in self.accounts:
                raise ValueError(f"Account {line['Account']} does not exist")
            amount = money(line["AmountFC"])
            stored.append({"ID": new_guid(), "EntryID": entry_id, "LineNumber": line_number,
                           "Account": line.get("Account"), "AmountFC": amount, "AmountDC": amount,
                           "Date": _date(line.get("Date")) or now.date(), "Description": line.get("Description"),
                           "GLAccount": line.get("GLAccount"), "Notes": line.get("Notes"),
                           "OurRef": int(line["OurRef"]) if line.get("OurRef") not in (None, "") else None,
                           "Division": self.code})
        entry = {"EntryID": entry_id, "EntryNumber": number, "JournalCode": journal["Code"],
                 "JournalDescription": journal["Description"], "Currency": body.get("Currency", "EUR"),
                 "FinancialYear": body.get("FinancialYear", now.year), "FinancialPeriod": body.get("FinancialPeriod",
                                                                                                   now.month),
                 "OpeningBalanceFC": body.get("OpeningBalanceFC"), "ClosingBalanceFC": body.get("ClosingBalanceFC"),
                 "Status": 20, "StatusDescription": "Open", "Created": now, "Modified": now, "Division": self.code,
                 "BankEntryLines": stored}
        self.bank_entries.append(entry)
        self._book_cash_flow(entry, journal)
        return entry

    def _book_cash_flow(self, entry: dict, journal: dict) -> None:
        total = Decimal("0.00")
        for line in entry["BankEntryLines"]:
            invoice = self._invoice_by_number(line["OurRef"], line["Account"]) if line["OurRef"] else None
            account = self.accounts.get(line["Account"]) if line["Account"] else None
            common = {"EntryID": entry["EntryID"], "EntryNumber": entry["EntryNumber"], "Type": 40,
                      "JournalCode": journal["Code"], "Currency": entry["Currency"], "Status": 20,
                      "Date": line["Date"], "Account": line["Account"],
                      "AccountCode": account["Code"] if account else None,
                      "AccountName": account["Name"] if account else None,
                      "InvoiceNumber": line["OurRef"], "YourRef": None, "PaymentReference": None,
                      "Notes": line["Notes"]}
            self._line(common, line["LineNumber"], line["AmountFC"], "1300" if account else (line["GLAccount"] or ""),
                       line["Description"])
            total += line["AmountFC"]
            if invoice and invoice["InvoiceID"] in self.receivables:
                # UNCONFIRMED sign: a negative line (credit on the customer) is money received.
                self._settle(invoice["InvoiceID"], -line["AmountFC"], line["Date"])
        bank = {"EntryID": entry["EntryID"], "EntryNumber": entry["EntryNumber"], "Type": 40,
                "JournalCode": journal["Code"], "Currency": entry["Currency"], "Status": 20,
                "Date": entry["BankEntryLines"][0]["Date"], "Account": None, "AccountCode": None,
                "AccountName": None, "InvoiceNumber": None, "YourRef": None, "PaymentReference": None, "Notes": None}
        self._line(bank, 0, -total, "1100", journal["Description"])

    def _invoice_by_number(self, number: int, account_id: str | None) -> dict | None:
        return next((i for i in self.invoices.values() if i["InvoiceNumber"] == number
                     and (account_id is None or i["InvoiceTo"] == account_id)), None)

    def pay(self, invoice_id: str, amount, *, paid_on: date | None = None, journal: str = "20",
            description: str | None = None) -> dict:
        """A bank transfer from the customer, matched to the invoice by the bookkeeper."""
        invoice = self.invoices[invoice_id]
        return self.book_bank_entry({"JournalCode": journal, "BankEntryLines": [{
            "Account": invoice["InvoiceTo"], "AmountFC": -money(amount), "OurRef": invoice["InvoiceNumber"],
            "Date": paid_on or self._moment().date(),
            "Description": description or f"Betaling factuur {invoice['InvoiceNumber']}"}]})

    # What the endpoints show.
    def receivables_list(self) -> list[dict]:
        """read/financial/ReceivablesList: the open items with what is still outstanding."""
        rows = []
        for hid, r in enumerate(self.receivables.values(), start=1):
            outstanding = r["AmountDC"] - r["_settled"]
            if outstanding:
                rows.append({"HID": hid, "AccountId": r["Account"], "AccountCode": r["AccountCode"],
                             "AccountName": r["AccountName"], "Amount": outstanding, "AmountInTransit": Decimal("0"),
                             "CurrencyCode": r["Currency"], "Description": r["Description"], "DueDate": r["DueDate"],
                             "InvoiceDate": r["InvoiceDate"], "InvoiceNumber": r["InvoiceNumber"],
                             "EntryNumber": r["EntryNumber"], "JournalCode": r["Journal"], "YourRef": r["YourRef"]})
        return rows

    def sync_invoice_rows(self) -> list[dict]:
        """sync/SalesInvoice/SalesInvoices: a header row (LineNumber 0) and a row per line, the
        header's fields repeated on each."""
        rows = []
        for invoice in self.invoices.values():
            header = {k: v for k, v in invoice.items() if k != "SalesInvoiceLines" and not k.startswith("_")}
            rows.append({**header, "ID": invoice["InvoiceID"], "LineNumber": 0})
            for line in invoice["SalesInvoiceLines"]:
                rows.append({**header, **line, "Timestamp": line["Timestamp"]})
        return rows

    def sales_invoice_lines(self) -> list[dict]:
        return [line for invoice in self.invoices.values() for line in invoice["SalesInvoiceLines"]]

    def bank_entry_lines(self) -> list[dict]:
        return [line for entry in self.bank_entries for line in entry["BankEntryLines"]]


def _date(value) -> date | None:
    """A date a client sent: 'YYYY-MM-DD', 'YYYY-MM-DDTHH:MM[:SS]' (as the official SDK writes) or /Date(ms)/."""
    if value is None or isinstance(value, date):
        return value
    text = str(value)
    if text.startswith("/Date("):
        return datetime.fromtimestamp(int(text[6:text.index(")")].split("+")[0]) / 1000, timezone.utc).date()
    return datetime.fromisoformat(text).date()
