"""The local custom ERP's GraphQL flavour (tests/fakes/erp.py): the SDL below, executed by
graphql-core's graphql_sync, so any query (fragments, aliases, variables, introspection) works as on
a real server.

- Lists follow the GraphQL Cursor Connections Specification (relay.dev/graphql/connections.htm):
  `(first: Int!, after: String, updatedSince: DateTime)` → {edges {cursor node}, pageInfo {hasNextPage
  hasPreviousPage startCursor endCursor}}. Records come in (updatedAt, id) order; a cursor is opaque
  (base64 of the edge's updatedAt and id), so paging stays right while records change: a record
  changed after a client passed it moves behind the cursor and is seen again. `first` below 0 is an
  error (the spec's "must throw an error"), and so is `first` above `max_first` (200, as GitHub's
  API refuses beyond its maximum rather than clamping). startCursor/endCursor are null on an empty
  page; hasPreviousPage is true when records precede `after` (allowed "if it can do so efficiently").
  `totalCount` is there too, as many servers give it (the spec is silent).
- `updatedSince` keeps records with updatedAt strictly after it (as the REST modified_since).
- Nodes: camelCase, amounts as strings ("242.00"), dates "DD-MM-YYYY", moments ISO 8601 with Z.
- Queries need the token's scope "read", the mutation "write"; without it the field is null with an
  error whose extensions.code is "insufficient_scope" (HTTP 200, as GraphQL over HTTP answers field
  errors).
- recordPortalPayment is idempotent on messageId: the same messageId again answers the first id with
  duplicate: true and records nothing.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from decimal import Decimal, InvalidOperation

from graphql import GraphQLError, build_schema, graphql_sync
from graphql.language import StringValueNode

from tests.fakes.erp_data import graphql_node, parse_moment

SDL = '''
"An ISO 8601 moment with a time zone, e.g. 2026-03-01T10:00:00Z."
scalar DateTime

type Query {
  customers(first: Int!, after: String, updatedSince: DateTime): CustomerConnection!
  invoices(first: Int!, after: String, updatedSince: DateTime): InvoiceConnection!
  creditNotes(first: Int!, after: String, updatedSince: DateTime): CreditNoteConnection!
  payments(first: Int!, after: String, updatedSince: DateTime): PaymentConnection!
}

type Mutation {
  "Tells the ERP of a payment, refund or chargeback made in the portal; idempotent on messageId."
  recordPortalPayment(input: PortalPaymentInput!): PortalPaymentResult!
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type Address {
  street: String
  zip: String
  city: String
  country: String
}

type Customer {
  id: ID!
  name: String
  email: String
  vat: String
  kvk: String
  address: Address
  language: String
  currency: String
  updatedAt: DateTime!
}

type Line {
  text: String
  qty: String
  price: String
  vat: String
  discount: String
}

type Totals {
  net: String
  vat: String
  gross: String
}

type VatRow {
  rate: String
  base: String
  amount: String
}

type Invoice {
  id: ID!
  customerId: String
  number: String
  "DD-MM-YYYY"
  date: String
  "DD-MM-YYYY"
  dueDate: String
  currency: String
  "open or void"
  status: String
  reference: String
  lines: [Line!]!
  totals: Totals
  vatBreakdown: [VatRow!]!
  updatedAt: DateTime!
}

type CreditNote {
  id: ID!
  invoiceId: String
  number: String
  "DD-MM-YYYY"
  date: String
  reason: String
  lines: [Line!]!
  totals: Totals
  vatBreakdown: [VatRow!]!
  updatedAt: DateTime!
}

type Allocation {
  invoiceId: String
  amount: String
}

type Payment {
  id: ID!
  customerId: String
  amount: String
  currency: String
  paidAt: DateTime
  method: String
  reference: String
  allocations: [Allocation!]!
  updatedAt: DateTime!
}

type CustomerEdge { cursor: String! node: Customer! }
type InvoiceEdge { cursor: String! node: Invoice! }
type CreditNoteEdge { cursor: String! node: CreditNote! }
type PaymentEdge { cursor: String! node: Payment! }

type CustomerConnection { edges: [CustomerEdge!]! pageInfo: PageInfo! totalCount: Int! }
type InvoiceConnection { edges: [InvoiceEdge!]! pageInfo: PageInfo! totalCount: Int! }
type CreditNoteConnection { edges: [CreditNoteEdge!]! pageInfo: PageInfo! totalCount: Int! }
type PaymentConnection { edges: [PaymentEdge!]! pageInfo: PageInfo! totalCount: Int! }

enum PortalPaymentKind {
  payment
  refund
  chargeback
}

input PortalPaymentInput {
  messageId: String!
  kind: PortalPaymentKind!
  invoiceNumbers: [String!]
  customerId: String
  "A decimal string above zero, e.g. \\"242.00\\""
  amount: String!
  currency: String!
  paidAt: DateTime
  reference: String
}

type PortalPaymentResult {
  id: ID!
  duplicate: Boolean!
}
'''

MAX_FIRST = 200
QUERIES = {"customers": "customers", "invoices": "invoices", "creditNotes": "credit-notes", "payments": "payments"}


def _moment(value):
    if not isinstance(value, str):
        raise GraphQLError("DateTime must be an ISO 8601 string")
    try:
        return parse_moment(value)
    except ValueError:
        raise GraphQLError(f"DateTime is not an ISO 8601 moment: {value!r}") from None


def _moment_literal(node):
    if not isinstance(node, StringValueNode):
        raise GraphQLError("DateTime must be an ISO 8601 string")
    return _moment(node.value)


def _serialize_moment(value):
    return value if isinstance(value, str) else value.isoformat()


schema = build_schema(SDL)
_datetime = schema.type_map["DateTime"]
# graphql-core 3.3's names (parse_value, parse_literal and serialize are their deprecated forms).
_datetime.coerce_input_value = _moment  # type: ignore[attr-defined]
_datetime.coerce_input_literal = _moment_literal  # type: ignore[attr-defined]
_datetime.coerce_output_value = _serialize_moment  # type: ignore[attr-defined]


def cursor_of(record: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([record["modified"], record["id"]]).encode()).decode()


def _position(cursor: str):
    try:
        modified, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return parse_moment(modified), str(record_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise GraphQLError("after: not a cursor of this list", extensions={"code": "BAD_USER_INPUT"}) from None


def _need(info, scope: str) -> None:
    if scope not in info.context["scopes"]:
        raise GraphQLError(f"the access token lacks the scope {scope!r}", extensions={"code": "insufficient_scope"})


def _connection(collection: str):
    def resolve(info, first: int, after: str | None = None, updatedSince=None):
        _need(info, "read")
        if first < 0 or first > MAX_FIRST:
            raise GraphQLError(f"first must be from 0 to {MAX_FIRST}", extensions={"code": "BAD_USER_INPUT"})
        records = info.context["books"].ordered(collection, updatedSince)
        start = 0
        if after is not None:
            position = _position(after)
            start = next((i for i, r in enumerate(records)
                          if (parse_moment(r["modified"]), r["id"]) > position), len(records))
        page = records[start:start + first]
        edges = [{"cursor": cursor_of(r), "node": graphql_node(collection, r)} for r in page]
        return {"edges": edges, "totalCount": len(records),
                "pageInfo": {"hasNextPage": start + first < len(records), "hasPreviousPage": start > 0,
                             "startCursor": edges[0]["cursor"] if edges else None,
                             "endCursor": edges[-1]["cursor"] if edges else None}}
    return resolve


def _record_portal_payment(info, input: dict):
    context = info.context
    stored = {**input, "paidAt": input["paidAt"].isoformat() if input.get("paidAt") else None}
    delivery = {"flavour": "graphql", "key": input["messageId"], "body": stored, "status": 200, "replayed": False,
                "error": None}
    context["deliveries"].append(delivery)
    try:
        _need(info, "write")
        try:
            amount = Decimal(input["amount"])
        except InvalidOperation:
            raise GraphQLError("amount: not a decimal", extensions={"code": "BAD_USER_INPUT"}) from None
        if not amount.is_finite() or amount <= 0:
            raise GraphQLError("amount: must be above zero", extensions={"code": "BAD_USER_INPUT"})
    except GraphQLError as error:
        delivery["error"] = error.message
        raise
    known = context["payments_by_message"].get(input["messageId"])
    if known is not None:
        delivery["replayed"] = True
        return {"id": known, "duplicate": True}
    payment_id = "PP-" + uuid.uuid4().hex[:12]
    context["payments_by_message"][input["messageId"]] = payment_id
    context["received"].append({"flavour": "graphql", "id": payment_id, "key": input["messageId"], "body": stored,
                                "headers": context["headers"]})
    return {"id": payment_id, "duplicate": False}


ROOT = {**{field: _connection(collection) for field, collection in QUERIES.items()},
        "recordPortalPayment": _record_portal_payment}


def execute(body: dict, context: dict) -> dict:
    """One GraphQL-over-HTTP request body ({query, variables?, operationName?}) → the JSON answer."""
    result = graphql_sync(schema, body.get("query") or "", root_value=ROOT, context_value=context,
                          variable_values=body.get("variables"), operation_name=body.get("operationName"))
    return result.formatted
