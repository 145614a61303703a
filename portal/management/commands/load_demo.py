"""Demo brands, clients, logins and a full ledger for `make run`. Idempotent.

Clients, invoices, payments, voids and credit notes arrive as signed events from a demo
ERP through the real webhook pipeline (integrations.demo); brands, connections, logins and
recurring schedules are set up directly, as staff would in admin."""
import datetime
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from integrations import demo
from integrations.models import ClientLink, Connection
from integrations.peppol.models import DocumentKind, PeppolDelivery
from integrations.signing import generate_secret
from invoices import services as ledger
from invoices.models import Invoice, RecurringSchedule
from payments.models import Mandate
from payments.services import gateway_for_brand
from portal.models import Brand, Client, Membership, User
from portal.participants import participant
from portal.rls import staff_scope
from reminders.models import ReminderPolicy, ReminderStep

DEMO_PASSWORD = "portal-demo-2026"

DEMO_API_TOKEN = "ptk_demo-acme-erp-graphql-api-development-only"
BRANDS = [
    dict(slug="acme", name="Acme Accounting B.V.", is_default=True, support_email="support@acme.test",
         primary_colour="#1f4e79", accent_colour="#f2a900", kvk_number="12345678", vat_number="NL001234567B01",
         peppol_scheme="0106", peppol_id="12345678",
         address_line="Keizersgracht 1", postal_code="1015 CC", city="Amsterdam", bank_account_name="Acme Accounting B.V.",
         iban="NL91ABNA0417164300", bic="ABNANL2A",
         legal_footer="Acme Accounting B.V. · KvK 12345678 · BTW NL001234567B01 · IBAN NL91 ABNA 0417 1643 00"),
    dict(slug="harbor", name="Blue Harbor Services", is_default=False, support_email="billing@harbor.test",
         primary_colour="#0b6e4f", accent_colour="#e76f51", kvk_number="87654321", vat_number="NL009876543B01",
         peppol_scheme="0106", peppol_id="87654321",
         address_line="Wilhelminakade 10", postal_code="3072 AP", city="Rotterdam", bank_account_name="Blue Harbor Services B.V.",
         iban="NL20INGB0001234567", bic="INGBNL2A",
         legal_footer="Blue Harbor Services B.V. · KvK 87654321 · BTW NL009876543B01"),
]
# key: (brand, invoice number prefix, client.upserted data, ledger profile). The clients differ as
# real ones do: Dutch and English, euro and pound, a long history and a new client, one paying
# by SEPA direct debit.
CLIENTS = {
    "northwind": ("acme", "NW", dict(name="Northwind Traders B.V.", kvk_number="34567890", vat_number="NL003456789B01",
                                     billing_email="finance@northwind.test", locale="nl", address=dict(
                                         line="Damrak 50", postal_code="1012 LM", city="Amsterdam", country="NL")),
                  dict(language="nl", currency="EUR", extra_paid=18)),
    "globex": ("acme", "GX", dict(name="Globex Nederland B.V.", kvk_number="45678901", vat_number="NL004567890B01",
                                  billing_email="ap@globex.test", locale="en", address=dict(
                                      line="Stationsplein 8", postal_code="3511 ED", city="Utrecht", country="NL")),
               dict(language="en", currency="EUR", extra_paid=2)),
    "initech": ("harbor", "IT", dict(name="Initech Logistics B.V.", kvk_number="56789012", vat_number="NL005678901B01",
                                     billing_email="invoices@initech.test", locale="nl", address=dict(
                                         line="Coolsingel 40", postal_code="3011 AD", city="Rotterdam", country="NL")),
                dict(language="nl", currency="EUR", few=True, mandate=True)),
    "umbrella": ("harbor", "UM", dict(name="Umbrella Trading Ltd", vat_number="GB980780684",
                                      billing_email="accounts@umbrella.test", locale="en",
                                      default_currency="GBP", address=dict(
                                          line="221 Baker Street", postal_code="NW1 6XE", city="London", country="GB")),
                 dict(language="en", currency="GBP")),
    # A Belgian company, which since 2026 receives its invoices over Peppol.
    "brugge": ("acme", "BB", dict(name="Brugse Bouwwerken NV", vat_number="BE0712345630",
                                  billing_email="facturen@brugse-bouw.test", locale="nl", address=dict(
                                      line="Markt 7", postal_code="8000", city="Brugge", country="BE")),
               dict(language="nl", currency="EUR", few=True)),
}
# What staff enter in admin for each client's e-invoices: its Peppol identifier where it has one
# (a Dutch company's KvK number, a Belgian one's enterprise number) and its own reference for
# invoices without a purchase order.
E_INVOICING = {
    "northwind": dict(peppol_scheme="0106", peppol_id="34567890", buyer_reference="NW-FIN-4410"),
    "globex": dict(peppol_scheme="0106", peppol_id="45678901", buyer_reference="GX-AP-0042"),
    "initech": dict(peppol_scheme="0106", peppol_id="56789012", buyer_reference="IT-KOSTEN-7"),
    "umbrella": dict(buyer_reference="UMB-ACCOUNTS"),  # reached by its UK VAT number
    "brugge": dict(peppol_scheme="0208", peppol_id="0712345630", buyer_reference="BB-AANKOOP-3"),
}
USERS = [
    dict(email="admin@example.com", first_name="Sam", last_name="Staff", is_staff=True, is_superuser=True,
         language="en", memberships=[]),
    dict(email="alice@northwind.test", first_name="Alice", last_name="de Vries", language="nl",
         memberships=[("northwind", Membership.Role.OWNER)]),
    dict(email="bob@globex.test", first_name="Bob", last_name="Jansen", language="en",
         memberships=[("globex", Membership.Role.OWNER), ("initech", Membership.Role.FINANCE)]),
    dict(email="pieter@northwind.test", first_name="Pieter", last_name="Bakker", language="nl",
         memberships=[("northwind", Membership.Role.FINANCE)]),
    dict(email="emma@globex.test", first_name="Emma", last_name="Clarke", language="en",
         memberships=[("globex", Membership.Role.VIEWER)]),
    dict(email="sanne@initech.test", first_name="Sanne", last_name="Visser", language="nl",
         memberships=[("initech", Membership.Role.OWNER)]),
    dict(email="carol@umbrella.test", first_name="Carol", last_name="Hughes", language="en",
         memberships=[("umbrella", Membership.Role.OWNER)]),
    dict(email="lotte@brugse-bouw.test", first_name="Lotte", last_name="Peeters", language="nl",
         memberships=[("brugge", Membership.Role.OWNER)]),
]
# The monthly subscription each client has, in its language.
SUBSCRIPTION = {"en": ("Monthly bookkeeping subscription", "Bookkeeping subscription", "month"),
                "nl": ("Abonnement maandelijkse boekhouding", "Abonnement boekhouding", "maand")}


class Command(BaseCommand):
    help = "Load demo brands, clients, logins and ledgers (development only; idempotent)."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("load_demo refuses to run with DJANGO_ENV=production")
        today = timezone.localdate()
        with transaction.atomic(), staff_scope():
            brands = {spec["slug"]: Brand.objects.update_or_create(slug=spec["slug"], defaults=spec)[0]
                      for spec in BRANDS}
            connections = {slug: Connection.objects.get_or_create(
                slug=f"{slug}-erp", defaults={"name": f"{brand.name} ERP (demo)", "brand": brand,
                                              "signing_secrets": generate_secret()})[0]
                for slug, brand in brands.items()}
        for key, (brand, _prefix, data, _profile) in CLIENTS.items():
            demo.send(connections[brand], demo.client_events(key, data))
        with transaction.atomic(), staff_scope():
            clients = {key: ClientLink.objects.select_related("client").get(
                connection=connections[brand], external_id=key).client for key, (brand, *_) in CLIENTS.items()}
            for key, client in clients.items():
                Client.objects.filter(pk=client.pk).update(**E_INVOICING[key])
            for spec in USERS:
                spec = dict(spec)
                memberships = spec.pop("memberships")
                user, created = User.objects.get_or_create(email=spec["email"], defaults=spec)
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save(update_fields=["password"])
                EmailAddress.objects.update_or_create(
                    user=user, email=user.email, defaults={"verified": True, "primary": True})
                for key, role in memberships:
                    Membership.objects.update_or_create(user=user, client=clients[key], defaults={"role": role})
        accepted = 0
        for key, (brand, prefix, _data, profile) in CLIENTS.items():
            ledger_profile = {k: v for k, v in profile.items() if k != "mandate"}
            answers = demo.send(connections[brand], demo.ledger_events(key, prefix, today, **ledger_profile))
            accepted += sum(1 for status in answers.values() if status == "accepted")
        with transaction.atomic(), staff_scope():
            for key, client in clients.items():
                profile = CLIENTS[key][3]
                if profile.get("mandate"):
                    _demo_mandate(client, today)
                if not RecurringSchedule.objects.filter(client=client).exists():
                    name, description, unit = SUBSCRIPTION[profile["language"]]
                    # The direct-debit client's subscription starts next month: the sandbox
                    # gateway takes no collections, so none falls due in the demo.
                    first = (today.replace(day=28) + datetime.timedelta(days=4)).replace(day=1) if profile.get(
                        "mandate") else today.replace(day=1) - datetime.timedelta(days=60)
                    ledger.recurring_create(
                        client=client, brand=client.brand, name=name, next_date=first, currency=profile["currency"],
                        lines=[{"description": description, "quantity": Decimal("1"), "unit": unit,
                                "unit_price": Decimal("299.00"), "discount_percent": Decimal("0"),
                                "tax_rate": Decimal("21")}])
            _demo_api_token(connections["acme"])
            generated = ledger.recurring_generate_due(today=today)
            ledger.invoice_mark_overdue()
            _demo_peppol_deliveries(clients["brugge"])
            for brand in brands.values():
                _default_reminder_policy(brand)
        self.stdout.write(self.style.SUCCESS(
            f"demo data ready: {len(brands)} brands, {len(clients)} clients, {len(USERS)} logins; "
            f"{accepted} new ledger events, {generated} recurring invoices"))


REMINDER_STEPS = [
    (-3, "friendly", "email", "Invoice {{ invoice_number }} is due on {{ due_date }}",
     "Dear {{ client }},\n\nA friendly note: invoice {{ invoice_number }} ({{ open_balance }}) is due on {{ due_date }}.",
     "Factuur {{ invoice_number }} vervalt op {{ due_date }}",
     "Beste {{ client }},\n\nEen vriendelijke herinnering: factuur {{ invoice_number }} ({{ open_balance }}) vervalt op {{ due_date }}."),
    (3, "friendly", "both", "Reminder: invoice {{ invoice_number }}",
     "Dear {{ client }},\n\nInvoice {{ invoice_number }} was due {{ days_overdue }} days ago; {{ open_balance }} is open.",
     "Herinnering: factuur {{ invoice_number }}",
     "Beste {{ client }},\n\nFactuur {{ invoice_number }} is {{ days_overdue }} dagen vervallen; er staat {{ open_balance }} open."),
    (14, "firm", "both", "Second reminder: invoice {{ invoice_number }}",
     "Dear {{ client }},\n\nWe have not yet received {{ open_balance }} for invoice {{ invoice_number }}. Please pay now.",
     "Tweede herinnering: factuur {{ invoice_number }}",
     "Beste {{ client }},\n\nWe hebben {{ open_balance }} voor factuur {{ invoice_number }} nog niet ontvangen. Betaal alstublieft nu."),
    (30, "final", "both", "Final notice: invoice {{ invoice_number }}",
     "Dear {{ client }},\n\nThis is our final notice for invoice {{ invoice_number }} ({{ open_balance }}).",
     "Laatste aanmaning: factuur {{ invoice_number }}",
     "Beste {{ client }},\n\nDit is onze laatste aanmaning voor factuur {{ invoice_number }} ({{ open_balance }})."),
]


def _demo_api_token(connection):
    """The GraphQL API's demo token (read and write) for Acme's demo ERP, printed by `make run`:
    a developer can call /api/graphql/ at once. Demo data only (load_demo refuses production)."""
    from integrations.erp.models import ApiToken, token_digest

    if not ApiToken.objects.filter(digest=token_digest(DEMO_API_TOKEN)).exists():
        token = ApiToken(connection=connection, name="Demo ERP", can_read=True, can_write=True,
                         expires_at=timezone.now() + datetime.timedelta(days=365))
        token.set_secret(DEMO_API_TOKEN)
        token.save()


def _default_reminder_policy(brand):
    policy, created = ReminderPolicy.objects.get_or_create(brand=brand, client=None,
                                                           defaults={"name": f"{brand.name}: standard"})
    if created:
        for offset, level, channel, subject_en, body_en, subject_nl, body_nl in REMINDER_STEPS:
            ReminderStep.objects.create(policy=policy, offset_days=offset, level=level, channel=channel,
                                        subject_en=subject_en, body_en=body_en, subject_nl=subject_nl,
                                        body_nl=body_nl)


def _demo_mandate(client, today):
    """A valid SEPA direct-debit mandate on the brand's gateway (the sandbox in development), as a
    first payment with a mandate would have left it."""
    gateway = gateway_for_brand(client.brand)
    Mandate.objects.get_or_create(
        gateway=gateway, provider_mandate_id=f"mdt_demo_{client.pk}",
        defaults={"client": client, "provider_customer_id": f"cst_demo_{client.pk}", "status": Mandate.Status.VALID,
                  "consumer_name": client.name, "consumer_account": "NL55INGB0001234567",
                  "signed_on": today - datetime.timedelta(days=40)})


def _demo_peppol_deliveries(client) -> None:
    """The Belgian client's issued invoices as delivered over Peppol, so the demo shows what the
    client reads and what staff see (Peppol deliveries in admin). The demo has no access point:
    a real brand connects one (docs/integrations/peppol.md) and its deliveries get there by jobs."""

    for invoice in Invoice.objects.filter(client=client).exclude(status=Invoice.Status.DRAFT):
        PeppolDelivery.objects.get_or_create(invoice=invoice, defaults=dict(
            client=client, brand=invoice.brand, document=DocumentKind.INVOICE, state=PeppolDelivery.State.DELIVERED,
            receiver=participant(client), submission_id=f"demo-{invoice.number}",
            submitted_at=timezone.now(), delivered_at=timezone.now()))
