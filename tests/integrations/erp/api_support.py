"""Calling the GraphQL API as a back-office system does: a token made in admin's way, JSON over POST."""
import datetime

from django.utils import timezone

from integrations.erp.models import ApiToken
from portal.rls import staff_scope

CLIENT_INPUT = {"externalId": "C-100", "name": "Northwind Traders B.V.", "billingEmail": "finance@northwind.test",
                "kvkNumber": "34567890", "vatNumber": "NL003456789B01",
                "address": {"line": "Damrak 50", "postalCode": "1012 LM", "city": "Amsterdam", "country": "NL"},
                "defaultCurrency": "EUR", "locale": "nl"}


def invoice_input(external_id="INV-1", number="2026-0001", **overrides):
    data = {"externalId": external_id, "clientExternalId": "C-100", "number": number,
            "issueDate": "2026-11-01", "dueDate": "2026-12-01", "currency": "EUR", "purchaseOrder": "PO-77",
            "lines": [{"description": "Consulting", "quantity": "10", "unit": "hour", "unitPrice": "95.00",
                       "taxRate": "21"},
                      {"description": "Books", "quantity": "3", "unitPrice": "19.99", "discountPercent": "10",
                       "taxRate": "9"}],
            "taxBreakdown": [{"rate": "9", "base": "53.97", "tax": "4.86"},
                             {"rate": "21", "base": "950.00", "tax": "199.50"}],
            "subtotal": "1003.97", "taxTotal": "204.36", "total": "1208.33"}
    data.update(overrides)
    return data


def make_token(connection, *, read=True, write=True, expires_in=datetime.timedelta(days=30), rate=600) -> str:
    secret = ApiToken.new_secret()
    with staff_scope():
        token = ApiToken(connection=connection, name="ERP", can_read=read, can_write=write, rate_per_minute=rate,
                         expires_at=timezone.now() + expires_in)
        token.set_secret(secret)
        token.save()
    return secret


def gql(http, token, query, variables=None, *, key=None, operation=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if key:
        headers["Idempotency-Key"] = key
    body = {"query": query, "variables": variables or {}}
    if operation:
        body["operationName"] = operation
    return http.post("/api/graphql/", data=body, content_type="application/json", headers=headers)


UPSERT_CLIENT = """mutation($input: ClientInput!) { upsertClient(input: $input) {
  status duplicate errors { field code message } client { externalId name billingEmail address { city } } } }"""

UPSERT_INVOICE = """mutation($input: InvoiceInput!) { upsertInvoice(input: $input) {
  status duplicate errors { field code message }
  invoice { externalId number status total openBalance client { externalId }
            lines { description quantity unitPrice taxRate lineTotal } taxBreakdown { rate base tax } } } }"""

RECORD_PAYMENT = """mutation($input: PaymentInput!) { recordPayment(input: $input) {
  status duplicate errors { field code message }
  payment { externalId number amount currency allocations { kind amount invoiceExternalId } } } }"""
