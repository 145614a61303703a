"""The REST and sync endpoints of the local Exact Online (tests/fakes/exact.py): for each, its key, the
fields it shows (names as in Exact's REST reference, start.exactonline.nl/docs/
HlpRestAPIResourcesDetails.aspx?name=…, copied into picqer/exact-php-client and Pi-Systems/exact-online),
where its rows come from, whether it is a sync endpoint (pages of 1,000, Timestamp the only filter)
and whether Exact's "mandatory filtering" applies to it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ACCOUNT = ("ID", "Code", "Name", "Email", "VATNumber", "ChamberOfCommerce", "AddressLine1", "Postcode", "City",
           "Country", "IsSales",
           "Status", "Division", "Created", "Modified")
INVOICE = ("InvoiceID", "InvoiceNumber", "Type", "TypeDescription", "Status", "StatusDescription", "InvoiceTo",
           "InvoiceToName", "OrderedBy", "OrderedByName", "Journal", "InvoiceDate", "DueDate", "Currency",
           "AmountFCExclVat", "VATAmountFC", "VATAmountDC", "AmountFC", "AmountDC", "Description", "YourRef",
           "PaymentReference", "Division", "Created", "Modified")
INVOICE_LINE = ("ID", "InvoiceID", "LineNumber", "Description", "Quantity", "UnitPrice", "NetPrice", "AmountFC",
                "AmountDC", "VATCode", "VATCodeDescription", "VATPercentage", "VATAmountFC", "VATAmountDC",
                "GLAccount", "Division")
RECEIVABLE = ("ID", "Account", "AccountCode", "AccountName", "AmountDC", "AmountFC", "Currency", "Description",
              "DueDate", "EndDate", "InvoiceDate", "InvoiceNumber", "EntryNumber", "TransactionEntryID",
              "TransactionType", "Journal", "YourRef", "PaymentReference", "IsFullyPaid", "LastPaymentDate",
              "Status", "Division", "Modified")
RECEIVABLES_LIST = ("HID", "AccountId", "AccountCode", "AccountName", "Amount", "AmountInTransit", "CurrencyCode",
                    "Description", "DueDate", "InvoiceDate", "InvoiceNumber", "EntryNumber", "JournalCode", "YourRef")
TRANSACTION_LINE = ("Timestamp", "ID", "EntryID", "EntryNumber", "LineNumber", "Type", "Date", "DueDate", "Account",
                    "AccountCode", "AccountName", "AmountDC", "AmountFC", "GLAccountCode", "Description",
                    "InvoiceNumber", "JournalCode", "Currency", "Status", "YourRef", "PaymentReference", "Notes",
                    "VATCode", "VATPercentage", "FinancialYear", "FinancialPeriod", "Division")
DELETED = ("Timestamp", "ID", "EntityKey", "EntityType", "DeletedDate", "DeletedBy", "Division")
VAT_CODE = ("ID", "Code", "Description", "Percentage", "Type", "VATTransactionType", "IsBlocked", "Division")
JOURNAL = ("ID", "Code", "Description", "Type", "BankAccountIBAN", "Division")
BANK_ENTRY = ("EntryID", "EntryNumber", "JournalCode", "JournalDescription", "Currency", "FinancialYear",
              "FinancialPeriod", "OpeningBalanceFC", "ClosingBalanceFC", "Status", "StatusDescription", "Created",
              "Modified", "Division", "BankEntryLines")
BANK_ENTRY_LINE = ("ID", "EntryID", "LineNumber", "Account", "AmountFC", "AmountDC", "Date", "Description",
                   "GLAccount", "Notes", "OurRef", "Division")
DIVISION = ("Code", "Description", "Currency", "Country", "Main")
SUBSCRIPTION = ("ID", "CallbackURL", "ClientID", "Division", "Topic", "UserID", "Description", "Created", "Creator")


@dataclass(frozen=True)
class Endpoint:
    key: str
    fields: tuple[str, ...]
    rows: Callable  # (fake, books) -> list of stored rows
    sync: bool = False
    filter_required: bool = False
    methods: tuple[str, ...] = ("GET",)

    def project(self, row: dict) -> dict:
        return {name: row.get(name) for name in self.fields}


def _divisions(fake, books) -> list[dict]:
    return [{"Code": code, "Description": b.name, "Currency": "EUR", "Country": "NL",
             "Main": code == fake.current_division} for code, b in fake.divisions.items()]


ENDPOINTS = {
    "system/Divisions": Endpoint("Code", DIVISION, _divisions),
    "crm/Accounts": Endpoint("ID", ACCOUNT, lambda f, b: list(b.accounts.values()), filter_required=True),
    "salesinvoice/SalesInvoices": Endpoint("InvoiceID", INVOICE + ("SalesInvoiceLines",),
                                           lambda f, b: list(b.invoices.values()), filter_required=True),
    "salesinvoice/SalesInvoiceLines": Endpoint("ID", INVOICE_LINE, lambda f, b: b.sales_invoice_lines(),
                                               filter_required=True),
    "cashflow/Receivables": Endpoint("ID", RECEIVABLE, lambda f, b: list(b.receivables.values())),
    "read/financial/ReceivablesList": Endpoint("HID", RECEIVABLES_LIST, lambda f, b: b.receivables_list()),
    "vat/VATCodes": Endpoint("ID", VAT_CODE, lambda f, b: b.vat_codes),
    "financial/Journals": Endpoint("ID", JOURNAL, lambda f, b: b.journals),
    "financialtransaction/BankEntries": Endpoint("EntryID", BANK_ENTRY, lambda f, b: b.bank_entries,
                                                 methods=("GET", "POST")),
    "financialtransaction/BankEntryLines": Endpoint("ID", BANK_ENTRY_LINE, lambda f, b: b.bank_entry_lines()),
    "sync/CRM/Accounts": Endpoint("Timestamp", ("Timestamp",) + ACCOUNT, lambda f, b: list(b.accounts.values()),
                                  sync=True),
    "sync/SalesInvoice/SalesInvoices": Endpoint(
        "Timestamp", ("Timestamp",) + INVOICE + tuple(f for f in INVOICE_LINE if f not in INVOICE),
        lambda f, b: b.sync_invoice_rows(), sync=True),
    "sync/Financial/TransactionLines": Endpoint("Timestamp", TRANSACTION_LINE,
                                                lambda f, b: list(b.transaction_lines.values()), sync=True),
    "sync/Deleted": Endpoint("Timestamp", DELETED, lambda f, b: b.deleted, sync=True),
    "webhooks/WebhookSubscriptions": Endpoint(
        "ID", SUBSCRIPTION, lambda f, b: [s for s in f.subscriptions.values() if s["Division"] == b.code],
        methods=("GET", "POST", "DELETE")),
}


def me_row(fake) -> dict:
    """current/Me: "CurrentDivision: Division number that is currently used in the API" (picqer Me.php)."""
    return {**fake.user, "CurrentDivision": fake.current_division,
            "DivisionCustomerName": fake.divisions[fake.current_division].name if fake.current_division else None}
