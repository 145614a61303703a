"""One handler per canonical event type: normalise the data and call invoices.services.
Each runs inside the processing transaction; any error rolls all of it back."""
from __future__ import annotations

from decimal import Decimal

from integrations import normalise
from integrations.models import ClientLink, Connection
from invoices import services
from invoices.errors import DomainError, UnknownReference
from invoices.models import CreditNote, Invoice, Payment
from portal.models import Client


class Stale(Exception):
    """The event is older than what is stored: ignored, on purpose."""


def _client(connection: Connection, external_id: str) -> Client:
    link = ClientLink.objects.select_related("client", "client__brand").filter(
        connection=connection, external_id=external_id).first()
    if link is None:
        raise UnknownReference(f"client {external_id} is not known yet (send client.upserted first)")
    return link.client


def _invoice(connection: Connection, external_id: str, *, lock: bool = False) -> Invoice:
    invoices = Invoice.objects.select_for_update() if lock else Invoice.objects
    invoice = invoices.filter(connection=connection, external_id=external_id).first()
    if invoice is None:
        raise UnknownReference(f"invoice {external_id} is not known yet")
    return invoice


def client_upserted(connection: Connection, data: dict) -> None:
    address = data.get("address", {})
    fields = {"name": data["name"], "kvk_number": data.get("kvk_number", ""),
              "vat_number": data.get("vat_number", ""), "billing_email": data["billing_email"],
              "address_line": address.get("line", ""), "postal_code": address.get("postal_code", ""),
              "city": address.get("city", ""), "country": address.get("country", "NL"),
              "default_currency": data.get("default_currency", "EUR"), "locale": data.get("locale", "nl")}
    link = ClientLink.objects.filter(connection=connection, external_id=data["external_id"]).first()
    if link is None:
        client = Client.objects.create(brand=connection.brand, **fields)
        ClientLink.objects.create(connection=connection, external_id=data["external_id"], client=client)
    else:
        Client.objects.filter(pk=link.client_id).update(**fields)


def invoice_upserted(connection: Connection, data: dict) -> None:
    client = _client(connection, data["client_external_id"])
    version = normalise.moment(data["updated_at"])
    terms = data.get("payment_terms", {})
    content = dict(
        number=data["number"], issue_date=normalise.date(data["issue_date"]),
        due_date=normalise.date(data["due_date"]), currency=data["currency"],
        payment_terms_days=terms.get("days", 30), payment_terms_text=terms.get("text", ""),
        purchase_order=data.get("purchase_order", ""), notes=data.get("notes", ""), **normalise.tax_currency(data))
    existing = Invoice.objects.select_for_update().filter(connection=connection,
                                                          external_id=data["external_id"]).first()
    if existing is None:
        services.invoice_create(client=client, brand=client.brand, connection=connection,
                                external_id=data["external_id"], lines=normalise.lines(data),
                                source_updated_at=version, open_now=data.get("status", "open") == "open", **content)
        return
    if existing.source_updated_at and version <= existing.source_updated_at:
        raise Stale(f"invoice {existing.number}: version {version.isoformat()} is not newer than the stored "
                    f"{existing.source_updated_at.isoformat()}")
    services.invoice_update(invoice=existing, lines=normalise.lines(data), source_updated_at=version, **content)
    if existing.status == Invoice.Status.DRAFT and data.get("status", "open") == "open":
        services.invoice_open(invoice=existing)


def invoice_voided(connection: Connection, data: dict) -> None:
    invoice = _invoice(connection, data["external_id"], lock=True)
    version = normalise.moment(data["updated_at"])
    if invoice.source_updated_at and version <= invoice.source_updated_at:
        raise Stale(f"invoice {invoice.number}: void is older than the stored version")
    if invoice.status == Invoice.Status.VOID:
        raise Stale(f"invoice {invoice.number} is already void")
    services.invoice_void(invoice=invoice, reason=data.get("reason", "voided in accounting"))
    Invoice.objects.filter(pk=invoice.pk).update(source_updated_at=version)


def credit_note_created(connection: Connection, data: dict) -> None:
    if CreditNote.objects.filter(connection=connection, external_id=data["external_id"]).exists():
        raise Stale(f"credit note {data['number']} is already here")
    invoice = _invoice(connection, data["invoice_external_id"])
    if data.get("tax_currency") == invoice.currency:
        raise DomainError(f"credit note {data['number']}: tax_currency must differ from the currency of invoice "
                          f"{invoice.number} ({invoice.currency}), which the credit note is in")
    services.credit_note_create(invoice=invoice, number=data["number"], issue_date=normalise.date(data["issue_date"]),
                                lines=normalise.lines(data), reason=data.get("reason", ""), connection=connection,
                                external_id=data["external_id"], **normalise.tax_currency(data))


def payment_recorded(connection: Connection, data: dict) -> None:
    client = _client(connection, data["client_external_id"])
    allocations = [(_invoice(connection, row["invoice_external_id"]), Decimal(row["amount"]))
                   for row in data["allocations"]]
    _, created = services.payment_record(
        client=client, amount=Decimal(data["amount"]), currency=data["currency"], source=Payment.Source.ACCOUNTING,
        method=data.get("method", Payment.Method.BANK_TRANSFER), reference=data.get("reference", ""),
        received_at=normalise.moment(data["received_at"]), allocations=allocations, connection=connection,
        external_id=data["external_id"])
    if not created:
        raise Stale(f"payment {data['external_id']} is already recorded")


HANDLERS = {
    "client.upserted": client_upserted,
    "invoice.created": invoice_upserted,
    "invoice.updated": invoice_upserted,
    "invoice.voided": invoice_voided,
    "credit_note.created": credit_note_created,
    "payment.recorded": payment_recorded,
}
