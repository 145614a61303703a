"""What the pull adapter's tests share: the feeds a developer would configure for the local ERP
(tests/fakes/erp.py), in its REST flavour (amounts as JSON numbers, ISO dates) and its GraphQL
flavour (amounts as strings, dates DD-MM-YYYY), and a pull connection made with them."""
from __future__ import annotations

from integrations.erp.models import ErpFeed, ErpPull
from integrations.models import Connection
from portal.models import Brand
from tests.portal.factories import BrandFactory

Entity = ErpFeed.Entity
DOCUMENT_LISTS = {
    "lines[]": "lines", "lines[].description": "text", "lines[].quantity": "qty", "lines[].unit_price": "price",
    "lines[].tax_rate": "vat", "lines[].discount_percent": "discount",
    "tax_breakdown[].rate": "rate", "tax_breakdown[].base": "base", "tax_breakdown[].tax": "amount",
    "subtotal": "totals.net", "tax_total": "totals.vat", "total": "totals.gross",
}

REST_FEEDS = {
    Entity.CLIENTS: ("customers", {
        "external_id": "id", "name": "name", "billing_email": "email", "vat_number": "vat", "kvk_number": "kvk",
        "address.line": "address.street", "address.postal_code": "address.zip", "address.city": "address.city",
        "address.country": "address.country", "locale": "language", "default_currency": "currency"}),
    Entity.INVOICES: ("invoices", {
        "external_id": "id", "number": "number", "client_external_id": "customer_id", "issue_date": "date",
        "due_date": "due", "currency": "currency", "status": "status", "purchase_order": "reference",
        "tax_breakdown[]": "vat_breakdown", "updated_at": "modified", **DOCUMENT_LISTS}),
    Entity.CREDIT_NOTES: ("credit-notes", {
        "external_id": "id", "number": "number", "invoice_external_id": "invoice_id", "issue_date": "date",
        "reason": "reason", "tax_breakdown[]": "vat_breakdown", **DOCUMENT_LISTS}),
    Entity.PAYMENTS: ("payments", {
        "external_id": "id", "client_external_id": "customer_id", "amount": "amount", "currency": "currency",
        "received_at": "date", "method": "method", "reference": "reference", "allocations[]": "allocations",
        "allocations[].invoice_external_id": "invoice_id", "allocations[].amount": "amount"}),
}

NODE_FIELDS = {
    "customers": "id name email vat kvk address { street zip city country } language currency updatedAt",
    "invoices": "id customerId number date dueDate currency status reference lines { text qty price vat discount } "
                "totals { net vat gross } vatBreakdown { rate base amount } updatedAt",
}
GRAPHQL_FEEDS = {
    Entity.CLIENTS: ("customers", {
        "external_id": "id", "name": "name", "billing_email": "email", "vat_number": "vat", "kvk_number": "kvk",
        "address.line": "address.street", "address.postal_code": "address.zip", "address.city": "address.city",
        "address.country": "address.country", "locale": "language", "default_currency": "currency"}),
    Entity.INVOICES: ("invoices", {
        "external_id": "id", "number": "number", "client_external_id": "customerId",
        "issue_date": "date(date, '%d-%m-%Y')", "due_date": "date(dueDate, '%d-%m-%Y')", "currency": "currency",
        "status": "status", "purchase_order": "reference", "tax_breakdown[]": "vatBreakdown",
        "updated_at": "updatedAt", **DOCUMENT_LISTS}),
}


def graphql_query(collection: str) -> str:
    return (f"query Page($first: Int!, $after: String, $since: DateTime) {{ {collection}(first: $first, "
            f"after: $after, updatedSince: $since) {{ edges {{ cursor node {{ {NODE_FIELDS[collection]} }} }} "
            f"pageInfo {{ hasNextPage endCursor }} }} }}")


def make_pull(fake, *, style=ErpPull.Style.REST, paging=ErpPull.Paging.OFFSET, auth=None, page_size=2,
              entities=(Entity.CLIENTS, Entity.INVOICES), incremental=True, enabled=True, slug="erp-pull",
              mapping_changes: dict | None = None) -> ErpPull:
    """A pull connection to the local ERP with a feed per entity (run in a committed transaction
    and the staff scope: committed.create)."""
    graphql = style == ErpPull.Style.GRAPHQL
    if auth is None:
        auth = ErpPull.Auth.OAUTH2 if graphql else ErpPull.Auth.BEARER
    credentials = {"token": fake.rest_token} if auth == ErpPull.Auth.BEARER else {
        "token_url": fake.token_url, "client_id": fake.client_id, "client_secret": fake.client_secret,
        "scope": "read"}
    link = Connection.objects.create(name=f"ERP {slug}", slug=slug, kind=Connection.Kind.ERP_PULL,
                                     brand=Brand.objects.filter(is_default=True).first() or BrandFactory(is_default=True),
                                     signing_secrets="whsec_unused")
    erp = ErpPull.objects.create(connection=link, style=style, base_url=fake.graphql_url if graphql else fake.rest_url,
                                 auth=auth, credentials=credentials, paging=paging, page_size=page_size,
                                 enabled=enabled)
    feeds = GRAPHQL_FEEDS if graphql else REST_FEEDS
    for position, entity in enumerate(entities):
        collection, mapping = feeds[entity]
        mapping = {**mapping, **((mapping_changes or {}).get(entity, {}))}
        if graphql:
            ErpFeed.objects.create(erp=erp, entity=entity, position=position, request=graphql_query(collection),
                                   records=f"data.{collection}.edges[].node", mapping=mapping, key="id",
                                   version="updatedAt", since_param="since" if incremental else "",
                                   next_cursor=f"data.{collection}.pageInfo.endCursor"
                                   if paging == ErpPull.Paging.CURSOR else "")
        else:
            ErpFeed.objects.create(erp=erp, entity=entity, position=position, request=collection, records="items",
                                   mapping=mapping, key="id", version="modified",
                                   since_param="modified_since" if incremental else "")
    return erp
