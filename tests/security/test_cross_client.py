"""The cross-client matrix: every client-facing URL, asked for another client's things.

Two clients, Alpha (A) and Bravo (B), each with invoices in every state, a credit note, payments,
notifications, one-invoice links, a checkout and a direct-debit mandate. Every URL the resolver
knows (less the prefixes in SKIPPED_PREFIXES, each with its reason) is requested by every persona
of A (owner, finance, viewer), by a member of both clients acting for A, by a user with no
membership and by an anonymous visitor:

- URLs with ids or tokens get B's values (ID_ROUTES says, per URL name and keyword, where B's
  values come from), as plain, htmx and query-string GETs and as plain and htmx POSTs. Every
  answer must refuse: 403 or 404 (410 for a withdrawn link, 405 for a method refused before any
  lookup), or for the anonymous visitor a redirect to the login page.
- URLs without ids get B's ids and numbers in their query strings and forms (?client=, ?invoice=,
  the search box, the ZIP and checkout forms; NO_ID_ROUTES). They may answer, but with A's data.

In every body (HTML, CSV, PDF text) none of B's identifying strings may appear: its name, numbers,
amounts, emails, mandate holder. A URL added with an id, or a keyword nobody mapped, fails the
matrix until it is covered. Positive controls (A's own ids as A's owner) show that a refusal is
about whose the thing is, not a broken page."""
from __future__ import annotations

import datetime
import io
import uuid
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import pytest
from django.core import signing
from django.test import Client as Browser
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from invoices import services as ledger
from invoices.links import document_link_issue, document_link_revoke
from invoices.models import CreditNote, DocumentLink, Invoice
from payments.models import CheckoutAttempt, CheckoutItem, GatewayAccount, Mandate, MandateCollection, SandboxPayment
from portal.models import Client, Membership, Notification
from portal.rls import staff_scope
from tests.invoices.factories import TODAY, line, make_invoice, pay
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory

# Prefixes that are not the client portal, and why the matrix leaves them to other tests.
SKIPPED_PREFIXES = {
    "admin/": "the back office: staff only, under the staff scope (tests/portal/test_admin.py, the admin MFA tests)",
    "accounts/": "allauth's login, signup, password and MFA pages: no client data (tests/portal/test_auth.py)",
    "i18n/": "Django's language switch: no client data",
    "static/": "static files: no client data",
    "brand/": "a brand's logo: public like the brand itself (portal_brand is in rls.NO_RLS_NEEDED, shown on the "
              "login page); tests/portal/test_object_storage.py",
    "webhooks/": "machine to machine, signed by the sender: tests/security/test_webhook_fuzz.py",
    "api/": "machine to machine, by a connection's API token (no session, no client scope); one connection "
            "not seeing another's records: tests/integrations/erp/test_api.py",
}

Role = Membership.Role


# --- The URL walk ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    route: str           # the pattern as written, e.g. "invoices/<int:pk>/"
    name: str            # "namespace:name"
    kwargs: tuple[str, ...]

    def __str__(self):
        return self.name or self.route


def _walk(patterns, prefix: str = "", namespace: str = "", kwargs: tuple = ()):
    for entry in patterns:
        route = prefix + str(entry.pattern)
        found = tuple(getattr(entry.pattern, "converters", {}))
        if isinstance(entry, URLResolver):
            inner = ":".join(n for n in (namespace, entry.namespace) if n)
            yield from _walk(entry.url_patterns, route, inner, kwargs + found)
        elif isinstance(entry, URLPattern):
            yield Route(route, ":".join(n for n in (namespace, entry.name) if n), kwargs + found)


def client_routes() -> list[Route]:
    return [r for r in _walk(get_resolver().url_patterns)
            if not any(r.route.startswith(prefix) for prefix in SKIPPED_PREFIXES)]


ROUTES = client_routes()
WITH_IDS = [r for r in ROUTES if r.kwargs]
WITHOUT_IDS = [r for r in ROUTES if not r.kwargs]


# --- The data: Alpha and Bravo ----------------------------------------------------------------

@dataclass
class Side:
    client: Client
    invoices: dict[str, Invoice]            # by state
    credit_notes: dict[str, CreditNote]     # issued, draft
    notifications: list[Notification]
    links: dict[str, DocumentLink]          # valid, revoked
    attempts: list[CheckoutAttempt]
    mandates: list[Mandate]
    payments: list = field(default_factory=list)
    strings: list[str] = field(default_factory=list)          # what identifies this side's documents
    client_strings: list[str] = field(default_factory=list)   # what identifies the client itself


@dataclass
class World:
    a: Side
    b: Side
    users: dict  # persona -> user (None: anonymous)


def _amounts(value: Decimal) -> list[str]:
    """An amount as a page, CSV or PDF may write it (plain, English and Dutch grouping)."""
    plain = f"{value:.2f}"
    english = f"{value:,.2f}"
    return [plain, english, english.replace(",", "_").replace(".", ",").replace("_", ".")]


STATES = ("open", "partial", "paid", "overdue", "void", "draft")


def _side(client: Client, prefix: str, prices: dict[str, str], users: list, sandbox, mollie, iban: str) -> Side:
    # Invoices in every state the portal knows, and a draft nobody may see.
    invoices = {
        state: make_invoice(client, number=f"{prefix}-7001-{state.upper()}", lines=[line(unit_price=price)],
                            issue_date=TODAY - datetime.timedelta(days=100 if state == "overdue" else 10),
                            purchase_order=f"{prefix}-PO-{state.upper()}", open_now=state != "draft")
        for state, price in prices.items() if state in STATES}
    payments = [pay(client, [(invoices["partial"], prices["partial-paid"])], reference=f"{prefix}-PAYREF-1"),
                pay(client, [(invoices["paid"], str(invoices["paid"].total))], reference=f"{prefix}-PAYREF-2")]
    with staff_scope():
        ledger.invoice_void(invoice=invoices["void"])
        credit_notes = {
            "issued": ledger.credit_note_create(invoice=invoices["open"], number=f"{prefix}-CN-ISSUED",
                                                issue_date=TODAY, lines=[line(unit_price=prices["credit"])]),
            "draft": ledger.credit_note_create(invoice=invoices["partial"], number=f"{prefix}-CN-DRAFT",
                                               issue_date=TODAY, lines=[line(unit_price=prices["credit-draft"])],
                                               issue_now=False),
        }
        revoked = document_link_issue(invoice=invoices["overdue"], user=users[0])
        document_link_revoke(link=revoked)
        links = {"valid": document_link_issue(invoice=invoices["open"], user=users[0]), "revoked": revoked}
        key = uuid.uuid4()
        attempt = CheckoutAttempt.objects.create(
            client=client, gateway=sandbox, user=users[0], idempotency_key=key, method="ideal",
            amount=invoices["overdue"].open_balance, currency="EUR", status=CheckoutAttempt.Status.OPEN,
            provider_payment_id=f"sb_{uuid.uuid5(key, 'sandbox').hex}")
        CheckoutItem.objects.create(client=client, attempt=attempt, invoice=invoices["overdue"],
                                    amount=attempt.amount)
        SandboxPayment.objects.create(provider_payment_id=attempt.provider_payment_id, amount=attempt.amount,
                                      currency="EUR", description=f"{prefix} {invoices['overdue'].number}",
                                      redirect_url="/")
        mandate = Mandate.objects.create(
            client=client, gateway=mollie, provider_customer_id=f"cst_{prefix}", provider_mandate_id=f"mdt_{prefix}",
            status=Mandate.Status.VALID, consumer_name=f"{client.name} Treasury",
            consumer_account=iban,
            signed_on=TODAY)
        notifications = list(Notification.objects.filter(client=client))
        invoices = {state: Invoice.objects.get(pk=invoice.pk) for state, invoice in invoices.items()}
        credit_notes = {state: CreditNote.objects.get(pk=note.pk) for state, note in credit_notes.items()}
    strings = [*(i.number for i in invoices.values()), *(i.purchase_order for i in invoices.values()),
               *(c.number for c in credit_notes.values()), f"{prefix}-PAYREF-1", f"{prefix}-PAYREF-2",
               *(payment.number for payment in payments),
               mandate.consumer_name, mandate.masked_account, *(n.title for n in notifications),
               *(u.email for u in users)]
    for document in [*invoices.values(), *credit_notes.values()]:
        for amount in (document.subtotal, document.tax_total, document.total):
            strings += _amounts(amount)
    for invoice in invoices.values():
        for amount in (invoice.open_balance, invoice.amount_paid):
            if amount:
                strings += _amounts(amount)
    return Side(client=client, invoices=invoices, credit_notes=credit_notes, notifications=notifications,
                links=links, attempts=[attempt], mandates=[mandate], payments=payments, strings=strings,
                client_strings=[client.name, client.kvk_number, client.vat_number, client.billing_email])


PERSONAS = ["owner", "finance", "viewer", "member_of_both", "no_membership", "anonymous"]
PAYERS = {"owner", "finance"}


@pytest.fixture(scope="module")
def world(module_committed) -> World:
    def build():
        brand = BrandFactory(is_default=True, name="Issuer B.V.", allow_document_links=True)
        sandbox = GatewayAccount.objects.create(brand=brand, provider="sandbox", ideal=True, card=True)
        mollie = GatewayAccount.objects.create(brand=brand, provider="mollie", enabled=False, sepa_direct_debit=True)
        alpha = ClientFactory(brand=brand, name="Alpha Yankee B.V.", billing_email="billing@alpha-yankee.test",
                              kvk_number="12348765", vat_number="NL123487650B01", locale="en")
        bravo = ClientFactory(brand=brand, name="Bravo Zulu Holding B.V.", billing_email="accounts@bravo-zulu.test",
                              kvk_number="87654321", vat_number="NL876543210B01", locale="en")
        users = {
            "owner": MembershipFactory(client=alpha, role=Role.OWNER, user__email="owner@alpha-yankee.test").user,
            "finance": MembershipFactory(client=alpha, role=Role.FINANCE, user__email="finance@alpha-yankee.test").user,
            "viewer": MembershipFactory(client=alpha, role=Role.VIEWER, user__email="viewer@alpha-yankee.test").user,
            "member_of_both": MembershipFactory(client=alpha, role=Role.FINANCE, user__email="both@example.test").user,
            "no_membership": UserFactory(email="nobody@example.test"),
            "anonymous": None,
        }
        MembershipFactory(client=bravo, role=Role.OWNER, user=users["member_of_both"])
        b_users = [MembershipFactory(client=bravo, role=role, user__email=f"{role}@bravo-zulu.test").user
                   for role in (Role.OWNER, Role.FINANCE, Role.VIEWER)]
        a_users = [users["owner"], users["finance"], users["viewer"]]
        a = _side(alpha, "AY", {"open": "100.00", "partial": "1000.00", "partial-paid": "210.00", "paid": "50.00",
                                "overdue": "300.00", "void": "120.00", "draft": "80.00", "credit": "10.00",
                                "credit-draft": "20.00"}, a_users, sandbox, mollie, "NL20RABO0301234567")
        b = _side(bravo, "BZ", {"open": "4817.39", "partial": "6131.13", "partial-paid": "3141.59",
                                "paid": "2718.28", "overdue": "5923.71", "void": "1618.03", "draft": "1414.21",
                                "credit": "1732.05", "credit-draft": "1123.58"}, b_users, sandbox, mollie, "NL55INGB0009876543")
        return World(a=a, b=b, users=users)

    return module_committed.create(build)


def _log_in(browser: Browser, user) -> None:
    """A logged-in session, as force_login makes it, written as set-up (staff scope) and without
    the login signal's side effects (last login, an audit event): the matrix is about what the
    session may see, not about logging in (tests/portal/test_auth.py)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    with staff_scope():
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
    browser.cookies[settings.SESSION_COOKIE_NAME] = session.session_key


@pytest.fixture(scope="module")
def browsers(world, module_committed) -> dict[str, Browser]:
    """One browser per persona, logged in once for the module."""
    found = {}
    for persona, user in world.users.items():
        found[persona] = Browser()
        if user is not None:
            _log_in(found[persona], user)
    return found


@pytest.fixture
def browser(request, browsers, world, open_db):
    """The persona's browser, acting for Alpha (the member of both is switched to it first)."""
    http = browsers[request.param]
    if request.param == "member_of_both":
        assert http.post(reverse("portal:switch_client"), {"client_id": world.a.client.pk}).status_code == 302
    return http


# --- What B's values are, per URL -------------------------------------------------------------

def _forged_tokens(w: World) -> list[str]:
    """What A can make of a one-invoice link for B's invoice: B's link id signed with another salt,
    unsigned, or under A's own signature; and B's withdrawn link. (B's valid token is B's secret, a
    bearer credential like a password: with it anyone sees that one invoice, by design.)"""
    theirs, ours = w.b.links["valid"].pk, w.a.links["valid"].token()
    own_signature = ours.rsplit(":", 1)[1]
    renamed = signing.dumps(theirs, salt=DocumentLink.TOKEN_SALT, compress=True).rsplit(":", 1)[0]
    return [signing.dumps(theirs, salt="another.salt", compress=True), str(theirs), f"{renamed}:{own_signature}",
            signing.dumps(theirs, compress=True), w.b.links["revoked"].token()]


def _guessed_sandbox_ids(w: World) -> list[str]:
    """What A can guess of B's sandbox payment id (derived from B's secret checkout key)."""
    attempt = w.b.attempts[0]
    return [f"sb_{attempt.pk}", str(attempt.pk), f"sb_{uuid.uuid5(w.a.attempts[0].idempotency_key, str(attempt.pk)).hex}",
            f"sb_{uuid.UUID(int=attempt.pk).hex}"]


def _invoices(w: World) -> list[int]:
    return [invoice.pk for invoice in w.b.invoices.values()]


def _payments(w: World) -> list[int]:
    return [payment.pk for payment in w.b.payments]


@dataclass(frozen=True)
class Ids:
    """Where B's values for each keyword come from (each is tried), and A's own values for the
    positive control: A's owner asks for them (`ours_method`) and gets `ours_status`, not a refusal. `ours` is None
    where the only way in is a POST that would reach a gateway (the reason is in a comment)."""

    theirs: dict[str, Callable[[World], list]]
    ours: Callable[[World], dict] | None
    ours_status: int = 200
    ours_method: str = "get"
    refusals: frozenset = frozenset({403, 404, 405})


ID_ROUTES: dict[str, Ids] = {
    "portal:client_detail": Ids({"pk": lambda w: [w.b.client.pk]}, lambda w: {"pk": w.a.client.pk}),
    "portal:notification_open": Ids({"pk": lambda w: [n.pk for n in w.b.notifications]},
                                    lambda w: {"pk": next(n.pk for n in w.a.notifications
                                                          if n.user_id == w.users["owner"].pk)}, 302),
    "invoices:detail": Ids({"pk": _invoices}, lambda w: {"pk": w.a.invoices["open"].pk}),
    "invoices:pay": Ids({"pk": _invoices}, lambda w: {"pk": w.a.invoices["open"].pk}, 302),
    "invoices:invoice_pdf": Ids({"pk": _invoices}, lambda w: {"pk": w.a.invoices["open"].pk}),
    "invoices:invoice_ubl": Ids({"pk": _invoices}, lambda w: {"pk": w.a.invoices["open"].pk}),
    "invoices:credit_note_detail": Ids({"pk": lambda w: [c.pk for c in w.b.credit_notes.values()]},
                                       lambda w: {"pk": w.a.credit_notes["issued"].pk}),
    "invoices:credit_note_pdf": Ids({"pk": lambda w: [c.pk for c in w.b.credit_notes.values()]},
                                    lambda w: {"pk": w.a.credit_notes["issued"].pk}),
    "invoices:document_link": Ids({"token": _forged_tokens}, lambda w: {"token": w.a.links["valid"].token()},
                                  refusals=frozenset({404, 405, 410})),
    "invoices:document_link_pdf": Ids({"token": _forged_tokens}, lambda w: {"token": w.a.links["valid"].token()},
                                      refusals=frozenset({404, 405, 410})),
    "payments:return": Ids({"key": lambda w: [a.idempotency_key for a in w.b.attempts]},
                           lambda w: {"key": w.a.attempts[0].idempotency_key}),
    "payments:abandon": Ids({"key": lambda w: [a.idempotency_key for a in w.b.attempts]},
                            lambda w: {"key": w.a.attempts[0].idempotency_key}, 204, ours_method="post"),
    "payments:return_check": Ids({"key": lambda w: [a.idempotency_key for a in w.b.attempts]},
                                 lambda w: {"key": w.a.attempts[0].idempotency_key}, ours_method="post"),
    "payments:sandbox_checkout": Ids({"payment_id": _guessed_sandbox_ids},
                                     lambda w: {"payment_id": w.a.attempts[0].provider_payment_id}),
    # Revoking A's own mandate calls Mollie: no positive control here (tests/payments/test_mandates.py has it).
    "payments:receipt": Ids({"pk": _payments}, lambda w: {"pk": w.a.payments[0].pk}),
    "payments:receipt_pdf": Ids({"pk": _payments}, lambda w: {"pk": w.a.payments[0].pk}),
    "payments:mandate_revoke": Ids({"pk": lambda w: [m.pk for m in w.b.mandates]}, None),
    "payments:collect_on_due_date": Ids({"pk": _invoices}, lambda w: {"pk": w.a.invoices["open"].pk}, 302,
                                        ours_method="post"),
}


def _combinations(spec: Ids, world: World) -> list[dict]:
    combos = [{}]
    for keyword, values in spec.theirs.items():
        combos = [{**combo, keyword: value} for combo in combos for value in values(world)]
    return combos


def _spec_for(route: Route) -> Ids:
    spec = ID_ROUTES.get(route.name)
    if spec is None:
        pytest.fail(f"{route.route} ({route.name}) takes {', '.join(route.kwargs)} and the cross-client matrix does "
                    f"not cover it: add it to ID_ROUTES in {__name__} (where another client's values come from)")
    unknown = set(route.kwargs) - set(spec.theirs)
    if unknown:
        pytest.fail(f"{route.route} ({route.name}): no mapping for the keyword(s) {sorted(unknown)} in ID_ROUTES")
    return spec


# --- Sending and judging ----------------------------------------------------------------------

HTMX = {"HX-Request": "true", "HX-Target": "results", "HX-Current-URL": "http://testserver/"}


def _hostile_fields(w: World) -> dict:
    """Fields a forged request may add, naming B's things."""
    return {"client": w.b.client.pk, "client_id": w.b.client.pk, "invoice": _invoices(w),
            "idempotency_key": str(w.b.attempts[0].idempotency_key), "outcome": "paid", "method": "ideal"}


def _variants(w: World):
    """(label, send) for each way a URL is asked: plain, htmx and query-string GETs; plain and htmx POSTs."""
    fields = _hostile_fields(w)
    return [
        ("GET", lambda http, url: http.get(url)),
        ("GET htmx", lambda http, url: http.get(url, headers=HTMX)),
        ("GET ?client=B", lambda http, url: http.get(url, fields)),
        ("POST", lambda http, url: http.post(url, fields)),
        ("POST htmx", lambda http, url: http.post(url, fields, headers=HTMX)),
    ]


def _body_text(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    kind = response.get("Content-Type", "")
    if kind.startswith("application/pdf"):
        return _pdf_text(content)
    if kind.startswith("application/zip"):
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return "\n".join([*archive.namelist(), *(_pdf_text(archive.read(n)) for n in archive.namelist())])
    return content.decode("utf-8", "replace")


def _pdf_text(content: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


def _leaks(response, w: World, persona: str) -> list[str]:
    """B's strings in the body. The member of both may see B's name (B is one of its companies,
    e.g. in the company switcher), never B's documents while acting for A."""
    text = _body_text(response)
    strings = w.b.strings + ([] if persona == "member_of_both" else w.b.client_strings)
    return [s for s in strings if s and s in text]


def _judge(response, w: World, persona: str, refusals: frozenset | None) -> str | None:
    """What is wrong with one answer (None: nothing). `refusals` None: the URL may answer (with
    A's data); otherwise it must refuse."""
    status = response.status_code
    if status >= 500:
        return f"{status} (server error)"
    leaked = _leaks(response, w, persona)
    if leaked:
        return f"{status} with B's data in the body: {leaked[:5]}"
    if refusals is None:
        return None
    if persona == "anonymous" and status == 302 and response["Location"].startswith(reverse("account_login")):
        return None
    if status not in refusals:
        return f"{status}, expected one of {sorted(refusals)}" + (
            f" (redirect to {response['Location']})" if status in (301, 302) else "")
    return None


# --- The matrix: URLs with ids ----------------------------------------------------------------

@pytest.mark.parametrize("browser", PERSONAS, indirect=True)
@pytest.mark.parametrize("route", WITH_IDS, ids=str)
def test_another_clients_ids_are_refused_on_every_url(route, browser, request, world):
    persona = request.node.callspec.params["browser"]
    spec = _spec_for(route)
    problems = []
    for label, send, url in _requests(route, spec, world):
        problem = _judge(send(browser, url), world, persona, spec.refusals)
        if problem:
            problems.append(f"{label} {url} as {persona}: {problem}")
    assert not problems, "\n".join(problems)


def _requests(route: Route, spec: Ids, world: World):
    """Every one of B's values as a plain GET; each other variant (htmx, query string, POSTs) with
    the values in turn, so every variant and every value is sent without the full product."""
    urls = [reverse(route.name, kwargs=kwargs) for kwargs in _combinations(spec, world)]
    (plain, send), *others = _variants(world)
    yield from ((plain, send, url) for url in urls)
    for index, (label, send) in enumerate(others):
        for url in urls[index::len(others)] or urls[index % len(urls):][:1]:
            yield label, send, url


@pytest.mark.parametrize("browser", ["owner"], indirect=True)
@pytest.mark.parametrize("route", WITH_IDS, ids=str)
def test_alphas_own_ids_are_served_to_its_owner(route, browser, world):
    """The positive control: the same URLs with A's own values answer, so a refusal above is about
    whose the thing is (and the browser is logged in and acting for A)."""
    spec = _spec_for(route)
    if spec.ours is None:
        pytest.skip("no positive control: the only way in calls a gateway (see ID_ROUTES)")
    response = getattr(browser, spec.ours_method)(reverse(route.name, kwargs=spec.ours(world)))
    assert response.status_code == spec.ours_status, response.content[:500]
    assert not _leaks(response, world, "owner")


# --- The matrix: URLs without ids, with B's ids in the query string and forms ------------------

@dataclass(frozen=True)
class Probe:
    """One request to a URL without ids. `refused`: it names only B's things, so A's personas must
    get a refusal (400, 403 or 404; a login redirect for the anonymous visitor). `switches`: it asks
    to act for B, which the member of both may legitimately do (so it is not sent as that persona)."""

    method: str
    fields: Callable[[World], dict]
    htmx: bool = False
    refused: bool = False
    switches: bool = False

    def send(self, http: Browser, url: str, w: World):
        headers = HTMX if self.htmx else {}
        return getattr(http, self.method)(url, self.fields(w), headers=headers)


def _b_query(w: World) -> dict:
    # A search fragment of B's numbers, not a whole one: the list echoes the search box, and the
    # leak check looks for B's whole numbers.
    return {**_hostile_fields(w), "q": "BZ-7001", "pk": w.b.invoices["open"].pk, "id": w.b.invoices["open"].pk}


QUERY = Probe("get", _b_query)
QUERY_HTMX = Probe("get", _b_query, htmx=True)
FORM = Probe("post", _hostile_fields)
FORM_HTMX = Probe("post", _hostile_fields, htmx=True)


@dataclass(frozen=True)
class Page:
    probes: tuple[Probe, ...]
    # What A's owner sees on a plain GET (the positive control); None: nothing of A's to show.
    ours: Callable[[World], str] | None = None


def _a_open(w: World) -> str:
    return w.a.invoices["open"].number


NO_ID_ROUTES: dict[str, Page] = {
    "portal:home": Page((QUERY, QUERY_HTMX, FORM), _a_open),
    "portal:choose_client": Page((Probe("get", lambda w: {"next": f"/invoices/{w.b.invoices['open'].pk}/"}),
                                  Probe("post", lambda w: {"client_id": w.b.client.pk}, refused=True, switches=True))),
    "portal:switch_client": Page((Probe("post", lambda w: {"client_id": w.b.client.pk}, refused=True, switches=True),
                                  Probe("post", lambda w: {"client_id": w.b.client.pk}, htmx=True, refused=True,
                                        switches=True))),
    "portal:notifications": Page((QUERY, QUERY_HTMX), lambda w: w.a.invoices["open"].number),
    "portal:notifications_read_all": Page((FORM, FORM_HTMX)),
    "portal:notification_preferences": Page((QUERY, Probe("post", lambda w: {"email": "invoice_issued",
                                                                              "user": w.b.notifications[0].user_id}))),
    "portal:live": Page((QUERY, QUERY_HTMX, Probe("get", lambda w: {"v": "1", "client": w.b.client.pk}))),
    "portal:set_language": Page((Probe("post", lambda w: {"language": "nl",
                                                          "next": f"/invoices/{w.b.invoices['open'].pk}/"}),)),
    "invoices:list": Page((QUERY, QUERY_HTMX, Probe("get", lambda w: {"q": "BZ-CN"}),
                           Probe("get", lambda w: {"status": "overdue", "amount_min": "4000"})), _a_open),
    "invoices:export_csv": Page((QUERY, Probe("get", lambda w: {"q": "BZ-PO", "amount_min": "1000"})), _a_open),
    # B's ids are no selection: back to the list with a message, as when nothing is ticked.
    "invoices:download_zip": Page((Probe("post", lambda w: {"invoice": _invoices(w)}),
                                   Probe("post", lambda w: {"invoice": _invoices(w)}, htmx=True))),
    "invoices:statement": Page((QUERY, Probe("get", lambda w: {"client": w.b.client.pk, "start": "2026-01-01",
                                                               "end": "2026-12-31"}))),
    # B's invoices are nothing A can pay: the checkout sends A back to its own list (a redirect,
    # checked for B's data like every answer; test_the_matrix_changed_nothing_of_bravos: no attempt).
    "payments:checkout": Page((Probe("get", lambda w: {"invoice": _invoices(w)}),
                               Probe("get", lambda w: {"overdue": "1", "currency": "EUR"}),
                               Probe("post", lambda w: {"invoice": _invoices(w)}),
                               Probe("post", lambda w: {"invoice": _invoices(w), "method": "ideal"}),
                               Probe("post", lambda w: {"invoice": _invoices(w), "method": "ideal"}, htmx=True))),
    "payments:summary": Page((FORM, FORM_HTMX, Probe("post", lambda w: {
        "invoice": _invoices(w), **{f"amount_{pk}": "1,00" for pk in _invoices(w)}}, htmx=True))),
    "payments:list": Page((QUERY, QUERY_HTMX), lambda w: w.a.payments[0].number),
    "payments:mandates": Page((QUERY, QUERY_HTMX), lambda w: w.a.mandates[0].consumer_name),
}
NO_ID_REFUSALS = frozenset({400, 403, 404, 405})


@pytest.mark.parametrize("browser", PERSONAS, indirect=True)
@pytest.mark.parametrize("route", WITHOUT_IDS, ids=str)
def test_another_clients_ids_in_query_strings_and_forms_reveal_nothing(route, browser, request, world):
    persona = request.node.callspec.params["browser"]
    page = NO_ID_ROUTES.get(route.name)
    if page is None:
        pytest.fail(f"{route.route} ({route.name}) is not in the cross-client matrix: add it to NO_ID_ROUTES "
                    f"in {__name__} with the query strings and forms that name another client's things")
    url = reverse(route.name)
    problems = []
    for probe in page.probes:
        if probe.switches and persona == "member_of_both":
            continue
        problem = _judge(probe.send(browser, url, world), world, persona, NO_ID_REFUSALS if probe.refused else None)
        if problem:
            problems.append(f"{probe.method.upper()}{' htmx' if probe.htmx else ''} {url} {probe.fields(world)} "
                            f"as {persona}: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("browser", ["owner"], indirect=True)
@pytest.mark.parametrize("route", [r for r in WITHOUT_IDS if (NO_ID_ROUTES.get(r.name) or Page(())).ours], ids=str)
def test_pages_without_ids_show_alphas_own_data(route, browser, world):
    """The positive control for the probes above: with B's ids in the query string the page still
    answers, with A's things in it (so "no B string" is not just an empty page)."""
    response = browser.get(reverse(route.name), _hostile_fields(world))
    assert response.status_code == 200
    assert NO_ID_ROUTES[route.name].ours(world) in _body_text(response)


def test_every_client_url_is_in_the_matrix():
    """A URL added without a place in the matrix fails here, with what to add; so does an entry
    left behind for a URL that is gone."""
    names = {r.name for r in ROUTES}
    assert all(r.name for r in ROUTES), [r.route for r in ROUTES if not r.name]
    assert [str(r) for r in WITH_IDS if r.name not in ID_ROUTES] == []
    assert [str(r) for r in WITHOUT_IDS if r.name not in NO_ID_ROUTES] == []
    assert sorted((set(ID_ROUTES) | set(NO_ID_ROUTES)) - names) == [], "entries for URLs that are gone"
    for route in WITH_IDS:
        assert set(route.kwargs) <= set(ID_ROUTES[route.name].theirs), route


# --- Known findings and side effects ----------------------------------------------------------

@pytest.mark.parametrize("browser", ["owner"], indirect=True)
def test_another_clients_checkout_key_is_refused_without_an_error(browser, world):
    invoice = world.a.invoices["partial"]
    response = browser.post(reverse("payments:checkout"), {
        "invoice": invoice.pk, "method": "ideal", "idempotency_key": str(world.b.attempts[0].idempotency_key),
        f"amount_{invoice.pk}": str(invoice.open_balance)})
    text = response.content.decode()
    assert response.status_code == 200  # the form again, with its error (in the contact's language)
    assert "This payment form has expired" in text or "Dit betaalformulier is verlopen" in text
    assert not _leaks(response, world, "owner")


def test_the_matrix_changed_nothing_of_bravos(world, open_db):
    """Runs last in this module: none of the POSTs above changed B's invoices, notifications,
    mandates, checkouts or links."""
    b = world.b
    with staff_scope():
        assert {i.pk: i.status for i in Invoice.objects.filter(client=b.client)} == \
            {i.pk: i.status for i in b.invoices.values()}
        assert not Notification.objects.filter(client=b.client, read_at__isnull=False).exists()
        assert list(Mandate.objects.filter(client=b.client).values_list("status", flat=True)) == [Mandate.Status.VALID]
        assert not MandateCollection.objects.filter(client=b.client).exists()
        assert CheckoutAttempt.objects.filter(client=b.client).count() == len(b.attempts)
        assert not CheckoutAttempt.objects.exclude(client=b.client).filter(items__invoice__client=b.client).exists()
        assert SandboxPayment.objects.get(provider_payment_id=b.attempts[0].provider_payment_id).status == "open"
        assert DocumentLink.objects.get(pk=b.links["valid"].pk).use_count == 0
