"""The GraphQL API for back-office systems (strawberry-graphql-django), at /api/graphql/.

A caller is a connection, by one of its API tokens (integrations.erp.views). It sees the clients
linked to that connection and their invoices, credit notes and payments; its mutations become
canonical events (integrations.erp.commands), the one way anything enters the ledger. Lists page
by opaque cursors (Relay connections) over a stable order, with every nested list fetched in one
query per level whatever the page size."""
from __future__ import annotations

import base64
import datetime
import enum
import logging
import re
from decimal import Decimal
from typing import Generic, Optional, TypeVar

import strawberry
import strawberry_django
from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from graphql import GraphQLError
from strawberry.extensions import (AddValidationRules, DisableIntrospection, MaxAliasesLimiter, MaxTokensLimiter,
                                   QueryDepthLimiter)
from strawberry.types import Info

from integrations.erp import commands
from integrations.erp.limits import ComplexityLimiter, page_size
from integrations.models import ClientLink, Connection as ConnectionModel
from invoices.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, Payment, PaymentAllocation, TaxCategory
from invoices.selectors import document_tax_breakdown
from portal.models import Client

Node = TypeVar("Node")
log = logging.getLogger(__name__)


# --- Reading --------------------------------------------------------------------------------

@strawberry.type(description="Base and tax per rate, from the stored lines "
                             "(invoices.selectors.document_tax_breakdown: what the PDF shows).")
class TaxRow:
    rate: Decimal
    base: Decimal
    tax: Decimal


VatCategory = strawberry.enum(
    enum.Enum("VatCategory", {choice.value: choice.value for choice in TaxCategory}),
    description="A line's VAT category (EN 16931 BT-151): " + "; ".join(
        f"{choice.value} {choice.name.lower().replace('_', ' ')}" for choice in TaxCategory)
    + ". Only S charges VAT (a rate above 0); every other category has the rate 0.")


@strawberry.type(description="A line of an invoice or credit note.")
class Line:
    position: int
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    discount_percent: Decimal
    tax_rate: Decimal
    net_amount: Decimal
    tax_amount: Decimal
    line_total: Decimal

    @strawberry.field(description="As sent, or S (Z at the rate 0) when none was.")
    def vat_category(self) -> VatCategory:
        return VatCategory(self.vat_category)

    @strawberry.field(description="Why no VAT is charged, as sent; empty: the category's usual wording.")
    def vat_exemption_reason(self) -> str:
        return self.tax_exemption_reason


@strawberry.type
class Address:
    line: str
    postal_code: str
    city: str
    country: str


@strawberry_django.type(Client, name="Client")
class ClientType:
    name: str
    billing_email: str
    kvk_number: str
    vat_number: str
    default_currency: str
    locale: str

    @strawberry.field(description="Your id of this client (the external id you sent).")
    def external_id(self, info: Info) -> str:
        return info.context["external_ids"].get(self.pk, "")

    @strawberry.field
    def address(self) -> Address:
        return Address(line=self.address_line, postal_code=self.postal_code, city=self.city, country=self.country)


InvoiceStatus = strawberry.enum(enum.Enum("InvoiceStatus", {s.name: s.value for s in Invoice.Status}),
                                description="The invoice's state; overdue is an open or partly paid one past its "
                                            "due date (overdueSince).")


@strawberry.enum
class EntryKind(enum.Enum):
    PAYMENT = "allocation"
    REFUND = "refund"
    CHARGEBACK = "chargeback"


@strawberry_django.type(CreditNote, name="CreditNote")
class CreditNoteType:
    external_id: str
    number: str
    issue_date: datetime.date
    currency: str
    reason: str
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    tax_currency: str = strawberry_django.field(description="The currency the seller accounts VAT in, when it "
                                                            "differs from the document's; empty otherwise.")
    tax_total_in_tax_currency: Optional[Decimal] = strawberry_django.field(description="The VAT in taxCurrency.")
    amount_applied: Decimal = strawberry_django.field(description="What it took off its invoice.")
    amount_to_credit: Decimal = strawberry_django.field(description="What it left as client credit.")
    status: str

    @strawberry.field
    def lines(self) -> list[Line]:
        return list(self.lines.all())

    @strawberry.field
    def tax_breakdown(self) -> list[TaxRow]:
        return document_tax_breakdown(document=self, lines=self.lines.all())

    @strawberry.field
    def invoice_number(self) -> str:
        return self.invoice.number


@strawberry_django.type(PaymentAllocation, name="Allocation")
class AllocationType:
    amount: Decimal = strawberry_django.field(description="Negative for a refund or chargeback.")
    created_at: datetime.datetime

    @strawberry.field
    def kind(self) -> EntryKind:
        return EntryKind(self.kind)

    @strawberry.field
    def invoice_number(self) -> str:
        return self.invoice.number

    @strawberry.field
    def invoice_external_id(self) -> str:
        return self.invoice.external_id


@strawberry_django.type(Payment, name="Payment")
class PaymentType:
    number: str = strawberry_django.field(description="The reference the client reads, e.g. PAY-2026-000123.")
    external_id: str = strawberry_django.field(description="Your id, for payments you sent; empty for others.")
    amount: Decimal
    currency: str
    source: str
    method: str
    reference: str
    received_at: datetime.datetime

    @strawberry.field
    def client(self, info: Info) -> ClientType:
        return self.client

    @strawberry.field
    def allocations(self) -> list[AllocationType]:
        return list(self.allocations.all())


@strawberry_django.type(Invoice, name="Invoice")
class InvoiceType:
    external_id: str
    number: str
    issue_date: datetime.date
    due_date: datetime.date
    currency: str
    payment_terms_days: int
    purchase_order: str
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    tax_currency: str = strawberry_django.field(description="The currency the seller accounts VAT in, when it "
                                                            "differs from the document's; empty otherwise.")
    tax_total_in_tax_currency: Optional[Decimal] = strawberry_django.field(description="The VAT in taxCurrency.")
    amount_paid: Decimal
    amount_credited: Decimal
    amount_pending: Decimal = strawberry_django.field(description="Started in the portal, not settled yet.")
    open_balance: Decimal
    overdue_since: Optional[datetime.datetime]
    voided_at: Optional[datetime.datetime]
    void_reason: str
    updated_at: datetime.datetime

    @strawberry.field
    def status(self) -> InvoiceStatus:
        return InvoiceStatus(self.status)

    @strawberry.field
    def client(self) -> ClientType:
        return self.client

    @strawberry.field
    def lines(self) -> list[Line]:
        return list(self.lines.all())

    @strawberry.field
    def tax_breakdown(self) -> list[TaxRow]:
        return document_tax_breakdown(document=self, lines=self.lines.all())

    @strawberry.field
    def credit_notes(self) -> list[CreditNoteType]:
        return list(self.credit_notes.all())

    @strawberry.field(description="Payments, refunds and chargebacks on this invoice, oldest first.")
    def payments(self) -> list[AllocationType]:
        return list(self.allocations.all())


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: Optional[str]


@strawberry.type
class Edge(Generic[Node]):
    cursor: str
    node: Node


@strawberry.type
class Connection(Generic[Node]):
    edges: list[Edge[Node]]
    page_info: PageInfo


def _cursor(key) -> str:
    return base64.urlsafe_b64encode(f"v1:{key}".encode()).decode()


def _uncursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        version, key = text.split(":", 1)
        if version != "v1":
            raise ValueError(version)
        return int(key)
    except (ValueError, UnicodeError):
        raise GraphQLError("after: not a cursor this API gave", extensions={"code": "BAD_CURSOR"}) from None


def _page(queryset: QuerySet, *, first: int, after: str | None, key: str = "pk") -> Connection:
    """Keyset paging on a unique, increasing key: one query, stable under inserts."""
    rows = list(queryset.filter(**{f"{key}__gt": _uncursor(after)}).order_by(key)[:first + 1])
    more = len(rows) > first
    rows = rows[:first]
    edges = [Edge(cursor=_cursor(getattr(row, key)), node=row) for row in rows]
    return Connection(edges=edges, page_info=PageInfo(has_next_page=more,
                                                       end_cursor=edges[-1].cursor if edges else None))


def _text(value: str | None, name: str, *, limit: int = 100) -> str | None:
    """A text argument the database can hold and a record could match: no control characters
    (PostgreSQL refuses NUL outright), at most `limit` characters."""
    if value is not None and (len(value) > limit or re.search(r"[\x00-\x1f\x7f]", value)):
        raise GraphQLError(f"{name}: at most {limit} characters, none of them control characters",
                           extensions={"code": "BAD_ARGUMENT"})
    return value


def _texts(values: list[str] | None, name: str) -> list[str] | None:
    if values is not None:
        if len(values) > settings.GRAPHQL_MAX_PAGE:
            raise GraphQLError(f"{name}: at most {settings.GRAPHQL_MAX_PAGE}", extensions={"code": "TOO_MANY"})
        for value in values:
            _text(value, name)
    return values


def _connection(info: Info) -> ConnectionModel:
    return info.context["connection"]


def _linked_clients(info: Info) -> QuerySet:
    return ClientLink.objects.filter(connection=_connection(info)).values("client_id")


def _invoices(info: Info) -> QuerySet:
    """This connection's invoices and the portal's own invoices to its clients."""
    return Invoice.objects.filter(Q(connection=_connection(info)) | Q(client__in=_linked_clients(info))).exclude(
        status=Invoice.Status.DRAFT, connection__isnull=True)


INVOICE_PREFETCH = (
    Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")),
    Prefetch("credit_notes", queryset=CreditNote.objects.select_related("invoice").order_by("issue_date", "pk")
             .prefetch_related(Prefetch("lines", queryset=CreditNoteLine.objects.order_by("position")))),
    Prefetch("allocations", queryset=PaymentAllocation.objects.select_related("invoice").order_by("pk")),
)


@strawberry.input
class DateRange:
    start: Optional[datetime.date] = None
    end: Optional[datetime.date] = None


@strawberry.input
class AmountRange:
    min: Optional[Decimal] = None
    max: Optional[Decimal] = None


@strawberry.input
class InvoiceFilter:
    status: Optional[list[InvoiceStatus]] = None
    client_external_id: Optional[str] = None
    number: Optional[str] = strawberry.field(default=None, description="Exact invoice number.")
    external_ids: Optional[list[str]] = None
    issued: Optional[DateRange] = None
    due: Optional[DateRange] = None
    total: Optional[AmountRange] = None
    overdue: Optional[bool] = None
    updated_since: Optional[datetime.datetime] = None


def _in_range(queryset: QuerySet, name: str, bounds) -> QuerySet:
    if bounds is None:
        return queryset
    low, high = (bounds.start, bounds.end) if isinstance(bounds, DateRange) else (bounds.min, bounds.max)
    if low is not None:
        queryset = queryset.filter(**{f"{name}__gte": low})
    if high is not None:
        queryset = queryset.filter(**{f"{name}__lte": high})
    return queryset


def _invoice_filter(queryset: QuerySet, info: Info, where: InvoiceFilter | None) -> QuerySet:
    if where is None:
        return queryset
    if where.status:
        queryset = queryset.filter(status__in=[s.value for s in where.status])
    if where.client_external_id is not None:
        queryset = queryset.filter(client__links__connection=_connection(info),
                                   client__links__external_id=_text(where.client_external_id, "clientExternalId"))
    if where.number is not None:
        queryset = queryset.filter(number=_text(where.number, "number"))
    if where.external_ids is not None:
        queryset = queryset.filter(external_id__in=_texts(where.external_ids, "externalIds"))
    queryset = _in_range(queryset, "issue_date", where.issued)
    queryset = _in_range(queryset, "due_date", where.due)
    queryset = _in_range(queryset, "total", where.total)
    if where.overdue is not None:
        queryset = queryset.filter(overdue_since__isnull=not where.overdue)
    if where.updated_since is not None:
        queryset = queryset.filter(updated_at__gt=where.updated_since)
    return queryset


@strawberry.input
class PaymentFilter:
    client_external_id: Optional[str] = None
    received: Optional[DateRange] = None
    from_portal: Optional[bool] = strawberry.field(default=None, description="Only payments made in the portal "
                                                                          "(true) or only those you sent (false).")


@strawberry.type
class FeedEntry:
    cursor: str
    kind: EntryKind
    amount: Decimal = strawberry.field(description="Negative for a refund or chargeback.")
    at: datetime.datetime
    invoice_number: str
    invoice_external_id: str
    payment: PaymentType


@strawberry.type
class PaymentFeed:
    entries: list[FeedEntry]
    cursor: str = strawberry.field(description="Pass it as paymentsSince(cursor:) next time; it moves only past "
                                               "what you were given.")
    has_more: bool


@strawberry.type
class Query:
    @strawberry.field(description="Clients linked to your connection (the ones you sent), in the order they "
                                  "were linked.")
    def clients(self, info: Info, first: int = 50, after: Optional[str] = None,
                external_ids: Optional[list[str]] = None) -> Connection[ClientType]:
        links = ClientLink.objects.filter(connection=_connection(info)).select_related("client")
        if external_ids is not None:
            links = links.filter(external_id__in=_texts(external_ids, "externalIds"))
        page = _page(links, first=page_size(first), after=after)
        info.context["external_ids"].update({edge.node.client_id: edge.node.external_id for edge in page.edges})
        for edge in page.edges:
            edge.node = edge.node.client
        return page

    @strawberry.field(description="Your invoices and those the portal issued to your clients, oldest first.")
    def invoices(self, info: Info, first: int = 50, after: Optional[str] = None,
                 filter: Optional[InvoiceFilter] = None) -> Connection[InvoiceType]:  # noqa: A002
        queryset = _invoice_filter(_invoices(info), info, filter).select_related("client").prefetch_related(
            *INVOICE_PREFETCH)
        page = _page(queryset, first=page_size(first), after=after)
        _learn_external_ids(info, [edge.node.client_id for edge in page.edges])
        return page

    @strawberry.field(description="One invoice by your external id or by its number.")
    def invoice(self, info: Info, external_id: Optional[str] = None,
                number: Optional[str] = None) -> Optional[InvoiceType]:
        if (external_id is None) == (number is None):
            raise GraphQLError("give externalId or number", extensions={"code": "BAD_ARGUMENTS"})
        found = _invoices(info).filter(**({"external_id": _text(external_id, "externalId")} if external_id is not None
                                          else {"number": _text(number, "number")})).select_related("client").prefetch_related(
            *INVOICE_PREFETCH).first()
        if found is not None:
            _learn_external_ids(info, [found.client_id])
        return found

    @strawberry.field
    def credit_notes(self, info: Info, first: int = 50, after: Optional[str] = None,
                     invoice_external_id: Optional[str] = None,
                     issued: Optional[DateRange] = None) -> Connection[CreditNoteType]:
        queryset = CreditNote.objects.filter(invoice__in=_invoices(info)).select_related("invoice").prefetch_related(
            Prefetch("lines", queryset=CreditNoteLine.objects.order_by("position")))
        if invoice_external_id is not None:
            queryset = queryset.filter(invoice__external_id=_text(invoice_external_id, "invoiceExternalId"))
        return _page(_in_range(queryset, "issue_date", issued), first=page_size(first), after=after)

    @strawberry.field(description="Payments of your clients: those you sent and those made in the portal.")
    def payments(self, info: Info, first: int = 50, after: Optional[str] = None,
                 filter: Optional[PaymentFilter] = None) -> Connection[PaymentType]:  # noqa: A002
        queryset = _payments(info)
        if filter is not None:
            if filter.client_external_id is not None:
                queryset = queryset.filter(client__links__connection=_connection(info),
                                           client__links__external_id=_text(filter.client_external_id,
                                                                            "clientExternalId"))
            if filter.received is not None:
                queryset = _in_range(queryset, "received_at__date", filter.received)
            if filter.from_portal is not None:
                queryset = queryset.exclude(source=Payment.Source.ACCOUNTING) if filter.from_portal else \
                    queryset.filter(source=Payment.Source.ACCOUNTING)
        page = _page(queryset, first=page_size(first), after=after)
        _learn_external_ids(info, [edge.node.client_id for edge in page.edges])
        return page

    @strawberry.field(description="Every payment, refund and chargeback on your clients' invoices that did not "
                                  "come from you, in the order the portal recorded them. Start with no cursor; "
                                  "keep the answer's cursor for the next call.")
    def payments_since(self, info: Info, cursor: Optional[str] = None, first: int = 100) -> PaymentFeed:
        return payments_feed(info, cursor=cursor, first=page_size(first))


def _payments(info: Info) -> QuerySet:
    return Payment.objects.filter(client__in=_linked_clients(info)).select_related("client").prefetch_related(
        Prefetch("allocations", queryset=PaymentAllocation.objects.select_related("invoice").order_by("pk")))


def _learn_external_ids(info: Info, client_ids: list[int]) -> None:
    """Your ids of the clients on this page, in one query, for Client.externalId."""
    wanted = set(client_ids) - set(info.context["external_ids"])
    if wanted:
        info.context["external_ids"].update(ClientLink.objects.filter(
            connection=_connection(info), client_id__in=wanted).values_list("client_id", "external_id"))


def payments_feed(info: Info, *, cursor: str | None, first: int) -> PaymentFeed:
    """The ledger's allocation rows (append-only, increasing ids) past the cursor. Rows younger
    than FEED_SETTLE_SECONDS are held back: a row whose transaction commits after a later one's
    would otherwise be skipped by a reader that had already moved past it."""
    since = _uncursor(cursor)
    horizon = info.context["now"] - datetime.timedelta(seconds=settings.GRAPHQL_FEED_SETTLE_SECONDS)
    rows = list(PaymentAllocation.objects.filter(
        pk__gt=since, created_at__lte=horizon, client__in=_linked_clients(info))
        .exclude(payment__source=Payment.Source.ACCOUNTING, payment__connection=_connection(info))
        .select_related("invoice", "payment", "payment__client")
        .prefetch_related(Prefetch("payment__allocations",
                                   queryset=PaymentAllocation.objects.select_related("invoice").order_by("pk")))
        .order_by("pk")[:first + 1])
    more = len(rows) > first
    rows = rows[:first]
    _learn_external_ids(info, [row.payment.client_id for row in rows])
    entries = [FeedEntry(cursor=_cursor(row.pk), kind=EntryKind(row.kind), amount=row.amount, at=row.created_at,
                         invoice_number=row.invoice.number, invoice_external_id=row.invoice.external_id,
                         payment=row.payment) for row in rows]
    return PaymentFeed(entries=entries, cursor=entries[-1].cursor if entries else (cursor or _cursor(0)),
                       has_more=more)


# --- Writing --------------------------------------------------------------------------------

@strawberry.enum
class ErrorCode(enum.Enum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    REFUSED = "REFUSED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    STALE = "STALE"


@strawberry.enum
class EventStatus(enum.Enum):
    APPLIED = "applied"
    IGNORED = strawberry.enum_value("ignored", description="Older than what the portal holds (an earlier "
                                                           "updatedAt): nothing changed; the answer shows what it holds.")
    PENDING = "pending"
    REFUSED = "refused"


SHOWN = ("applied", "ignored")  # what the portal holds is in the answer


@strawberry.type
class UserError:
    field: list[str] = strawberry.field(description="Path to what is wrong, e.g. [\"input\", \"lines\", \"0\", "
                                                    "\"unitPrice\"].")
    code: ErrorCode
    message: str


@strawberry.input
class AddressInput:
    line: str = ""
    postal_code: str = ""
    city: str = ""
    country: str = "NL"


@strawberry.input
class ClientInput:
    external_id: str
    name: str
    billing_email: str
    kvk_number: Optional[str] = None
    vat_number: Optional[str] = None
    address: Optional[AddressInput] = None
    default_currency: Optional[str] = None
    locale: Optional[str] = None


@strawberry.input
class LineInput:
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    unit: Optional[str] = None
    discount_percent: Optional[Decimal] = None
    vat_category: Optional[VatCategory] = strawberry.field(
        default=None, description="Left out: S, or Z at the rate 0.")
    vat_exemption_reason: Optional[str] = strawberry.field(
        default=None, description="Why no VAT is charged, for E, AE, K, G and O (at most 300 characters). "
                                  "Left out: the category's usual wording.")


@strawberry.input
class TaxRowInput:
    rate: Decimal
    base: Decimal
    tax: Decimal


@strawberry.input
class PaymentTermsInput:
    days: int = 30
    text: str = ""


@strawberry.enum
class NewInvoiceStatus(enum.Enum):
    OPEN = "open"
    DRAFT = "draft"


@strawberry.input
class InvoiceInput:
    external_id: str
    client_external_id: str
    number: str
    issue_date: datetime.date
    due_date: datetime.date
    currency: str
    lines: list[LineInput]
    tax_breakdown: list[TaxRowInput]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    status: NewInvoiceStatus = NewInvoiceStatus.OPEN
    payment_terms: Optional[PaymentTermsInput] = None
    purchase_order: Optional[str] = None
    notes: Optional[str] = None
    tax_currency: Optional[str] = strawberry.field(
        default=None, description="The currency the seller accounts VAT in (EUR), for a document in another "
                                  "currency; with taxTotalInTaxCurrency.")
    tax_total_in_tax_currency: Optional[Decimal] = strawberry.field(
        default=None, description="The document's VAT in taxCurrency; with taxCurrency.")
    updated_at: Optional[datetime.datetime] = strawberry.field(
        default=None, description="When your record last changed: an older version than the portal holds is "
                                  "ignored. Defaults to now.")


@strawberry.input
class VoidInvoiceInput:
    external_id: str
    reason: Optional[str] = None
    updated_at: Optional[datetime.datetime] = None


@strawberry.input
class CreditNoteInput:
    external_id: str
    invoice_external_id: str
    number: str
    issue_date: datetime.date
    lines: list[LineInput]
    tax_breakdown: list[TaxRowInput]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    reason: Optional[str] = None
    tax_currency: Optional[str] = strawberry.field(
        default=None, description="The currency the seller accounts VAT in (EUR), for a document in another "
                                  "currency; with taxTotalInTaxCurrency.")
    tax_total_in_tax_currency: Optional[Decimal] = strawberry.field(
        default=None, description="The document's VAT in taxCurrency; with taxCurrency.")


@strawberry.enum
class PaymentMethod(enum.Enum):
    BANK_TRANSFER = "bank_transfer"
    IDEAL = "ideal"
    CARD = "card"
    SEPA_DIRECT_DEBIT = "sepa_direct_debit"
    OTHER = "other"


@strawberry.input
class AllocationInput:
    invoice_external_id: str
    amount: Decimal


@strawberry.input
class PaymentInput:
    external_id: str
    client_external_id: str
    amount: Decimal
    currency: str
    received_at: datetime.datetime
    allocations: list[AllocationInput]
    method: Optional[PaymentMethod] = None
    reference: Optional[str] = None


def _plain(value):
    """An input as canonical JSON: amounts as decimal strings, dates and moments in ISO 8601,
    names in snake_case; what was not given is left out."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "__strawberry_definition__"):
        return {name: _plain(item) for name, item in vars(value).items() if item is not None}
    return value


def _payload(info: Info, event_type: str, data: dict, defaults: dict | None = None) -> commands.Outcome:
    """One event; a second mutation in the same request gets its own idempotency key (key#2)."""
    info.context["operations"].append(event_type)
    key = info.context["idempotency_key"]
    count = len(info.context["operations"])
    return commands.submit(_connection(info), event_type=event_type, data=data, defaults=defaults,
                           idempotency_key=f"{key}#{count}" if key and count > 1 else key)


def _errors(outcome: commands.Outcome) -> list[UserError]:
    return [UserError(field=p.field, code=ErrorCode(p.code), message=p.message) for p in outcome.problems]


@strawberry.type
class ClientPayload:
    status: EventStatus
    duplicate: bool = strawberry.field(description="A repeat of an earlier call: nothing changed.")
    errors: list[UserError]
    client: Optional[ClientType]


@strawberry.type
class InvoicePayload:
    status: EventStatus
    duplicate: bool
    errors: list[UserError]
    invoice: Optional[InvoiceType]


@strawberry.type
class CreditNotePayload:
    status: EventStatus
    duplicate: bool
    errors: list[UserError]
    credit_note: Optional[CreditNoteType]


@strawberry.type
class PaymentPayload:
    status: EventStatus
    duplicate: bool
    errors: list[UserError]
    payment: Optional[PaymentType]


def _invoice(info: Info, external_id: str):
    return (Invoice.objects.filter(connection=_connection(info), external_id=external_id).select_related("client")
            .prefetch_related(*INVOICE_PREFETCH).first())


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create or update a client by your external id.")
    def upsert_client(self, info: Info, input: ClientInput) -> ClientPayload:  # noqa: A002
        outcome = _payload(info, "client.upserted", _plain(input))
        link = ClientLink.objects.filter(connection=_connection(info), external_id=input.external_id).select_related(
            "client").first()
        if link is not None:
            info.context["external_ids"][link.client_id] = link.external_id
        return ClientPayload(status=EventStatus(outcome.status), duplicate=outcome.duplicate, errors=_errors(outcome),
                             client=link.client if link and outcome.status in SHOWN else None)

    @strawberry.mutation(description="Create or correct an invoice by your external id, with its lines and tax "
                                     "breakdown; the totals must add up as the portal computes them.")
    def upsert_invoice(self, info: Info, input: InvoiceInput) -> InvoicePayload:  # noqa: A002
        outcome = _payload(info, "invoice.updated", _plain(input), {"updated_at": commands.now_iso()})
        return _invoice_payload(info, outcome, input.external_id)

    @strawberry.mutation(description="Void an invoice: nothing is owed any more; what was paid becomes client "
                                     "credit.")
    def void_invoice(self, info: Info, input: VoidInvoiceInput) -> InvoicePayload:  # noqa: A002
        outcome = _payload(info, "invoice.voided", _plain(input), {"updated_at": commands.now_iso()})
        return _invoice_payload(info, outcome, input.external_id)

    @strawberry.mutation(description="Credit (part of) an invoice.")
    def create_credit_note(self, info: Info, input: CreditNoteInput) -> CreditNotePayload:  # noqa: A002
        outcome = _payload(info, "credit_note.created", _plain(input))
        note = None
        if outcome.status in SHOWN:
            note = CreditNote.objects.filter(connection=_connection(info), external_id=input.external_id) \
                .select_related("invoice").prefetch_related("lines").first()
        return CreditNotePayload(status=EventStatus(outcome.status), duplicate=outcome.duplicate,
                                 errors=_errors(outcome), credit_note=note)

    @strawberry.mutation(description="Record a payment received outside the portal and what it pays.")
    def record_payment(self, info: Info, input: PaymentInput) -> PaymentPayload:  # noqa: A002
        outcome = _payload(info, "payment.recorded", _plain(input))
        payment = None
        if outcome.status in SHOWN:
            payment = _payments(info).filter(connection=_connection(info), external_id=input.external_id).first()
            if payment is not None:
                _learn_external_ids(info, [payment.client_id])
        return PaymentPayload(status=EventStatus(outcome.status), duplicate=outcome.duplicate,
                              errors=_errors(outcome), payment=payment)


def _invoice_payload(info: Info, outcome: commands.Outcome, external_id: str) -> InvoicePayload:
    invoice = _invoice(info, external_id) if outcome.status in SHOWN else None
    if invoice is not None:
        _learn_external_ids(info, [invoice.client_id])
    return InvoicePayload(status=EventStatus(outcome.status), duplicate=outcome.duplicate, errors=_errors(outcome),
                          invoice=invoice)


def build_schema(*, introspection: bool) -> strawberry.Schema:
    depth, aliases, tokens = settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES, settings.GRAPHQL_MAX_TOKENS
    extensions = [
        lambda: QueryDepthLimiter(max_depth=depth),
        lambda: MaxAliasesLimiter(max_alias_count=aliases),
        lambda: MaxTokensLimiter(max_token_count=tokens),
        lambda: AddValidationRules([ComplexityLimiter]),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return Schema(query=Query, mutation=Mutation, extensions=extensions)


class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Only what went wrong inside is logged (by the view, in full); a caller's mistake is
        answered, not logged."""
        for error in errors:
            if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
                log.debug("GraphQL error: %s", error.message)


def schema_sdl() -> str:
    """The schema as SDL (docs/graphql/schema.graphql is this, checked by a test)."""
    return build_schema(introspection=True).as_str() + "\n"
