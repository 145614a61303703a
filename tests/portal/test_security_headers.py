"""What every page tells the browser: a strict Content-Security-Policy (nonces, no inline script,
handler or style attribute), Permissions-Policy, Referrer-Policy, nosniff, COOP, HSTS in
production, and no copy of a private page in any cache."""
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from invoices.models import DocumentLink
from invoices.links import document_link_issue
from portal.rls import staff_scope
from tests.invoices.factories import line, make_invoice
from tests.portal.factories import BrandFactory, ClientFactory, MembershipFactory, UserFactory
from tests.portal.test_settings import PRODUCTION_ENV, _manage

TEMPLATES = Path(settings.BASE_DIR) / "templates"
# Not served as pages: WeasyPrint renders these to PDF (reminders/letter.html too) and emails are
# read in a mail client, where inline styles are the only styles that work.
NOT_PAGES = ("invoices/pdf/", "portal/email/", "account/email/", "integrations/email/", "reminders/letter.html", "reminders/email.html")
INLINE_HANDLER = re.compile(r"""<[^>]*\son[a-z]+\s*=""", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


@pytest.fixture
def alpha(db):
    brand = BrandFactory(is_default=True, primary_colour="#0b6e4f", allow_document_links=True)
    client = ClientFactory(brand=brand, name="Alpha B.V.")
    owner = MembershipFactory(client=client, user__email="owner@alpha.test", user__language="en").user
    invoice = make_invoice(client, number="A-1", lines=[line("Audit", unit_price="100.00")])
    return {"client": client, "owner": owner, "invoice": invoice}


def _client_pages(alpha):
    invoice = alpha["invoice"]
    return [reverse("portal:home"), reverse("invoices:list"), reverse("invoices:detail", args=[invoice.pk]),
            reverse("portal:notifications"), reverse("portal:notification_preferences"),
            reverse("payments:mandates"), reverse("portal:client_detail", args=[alpha["client"].pk]),
            reverse("invoices:statement"), reverse("mfa_index")]


def test_client_pages_carry_a_strict_content_security_policy(alpha, client):
    client.force_login(alpha["owner"])
    for url in _client_pages(alpha):
        response = client.get(url)
        assert response.status_code == 200, url
        policy = _policy(response)
        assert policy["default-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["base-uri"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["form-action"] == ["'self'"], url  # only the checkout may lead to a gateway
        assert policy["img-src"] == ["'self'", "data:"]
        header = response["Content-Security-Policy"]
        assert "unsafe-inline" not in header and "unsafe-eval" not in header and "*" not in header, url


def test_the_brand_style_runs_by_its_nonce_and_every_response_gets_a_new_one(alpha, client):
    client.force_login(alpha["owner"])
    nonces = []
    for _ in range(2):
        response = client.get(reverse("portal:home"))
        [nonce] = re.findall(r'<style nonce="([^"]+)">:root \{ --brand-primary: #0b6e4f;', response.text)
        assert f"'nonce-{nonce}'" in _policy(response)["style-src"]
        assert _policy(response)["style-src"][0] == "'self'"
        nonces.append(nonce)
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 16


def test_pages_have_no_inline_script_handler_or_style_attribute(alpha, client):
    client.force_login(alpha["owner"])
    for url in _client_pages(alpha) + [reverse("invoices:list") + "?status=open"]:
        page = client.get(url).text
        assert not INLINE_HANDLER.search(page), url
        assert not INLINE_SCRIPT.search(page), url
        assert "style=" not in page and "javascript:" not in page, url
    # The language switch still submits on change: the handler lives in a static file now.
    assert 'data-submit-on-change' in client.get(reverse("portal:home")).text
    assert "data-submit-on-change" in (Path(settings.BASE_DIR) / "static/portal/app.js").read_text()


def test_no_template_served_as_a_page_has_inline_handlers_scripts_or_styles():
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        name = path.relative_to(TEMPLATES).as_posix()
        if name.startswith(NOT_PAGES):
            continue
        text = path.read_text()
        for problem, pattern in (("handler", INLINE_HANDLER), ("inline script", INLINE_SCRIPT),
                                 ("style attribute", re.compile(r"\sstyle\s*=")),
                                 ("javascript: URL", re.compile("javascript:", re.IGNORECASE)),
                                 ("style element without nonce", re.compile(r"<style(?![^>]*\bnonce=)"))):
            if pattern.search(text):
                found.append(f"{name}: {problem}")
    assert found == []


def test_the_checkout_alone_may_send_its_form_on_to_the_payment_gateway(alpha, client, settings):
    from payments.models import GatewayAccount

    settings.PAYMENT_CHECKOUT_ORIGINS = ["https://www.mollie.com", "https://checkout.stripe.com"]
    with staff_scope():
        GatewayAccount.objects.create(brand=alpha["client"].brand, provider=GatewayAccount.Provider.SANDBOX,
                                      ideal=True)
    client.force_login(alpha["owner"])
    checkout = client.get(reverse("payments:checkout"), {"invoice": alpha["invoice"].pk})
    assert checkout.status_code == 200
    assert _policy(checkout)["form-action"] == ["'self'", "https://www.mollie.com", "https://checkout.stripe.com"]
    assert _policy(client.get(reverse("invoices:list")))["form-action"] == ["'self'"]


def test_admin_works_under_the_same_policy_without_an_exception(db, client):
    staff = UserFactory(is_staff=True, is_superuser=True, email="staff@portal.test")
    client.force_login(staff)
    for url in ("/admin/", "/admin/portal/job/", "/admin/invoices/invoice/", "/admin/portal/webhookrequest/",
                "/admin/reminders/reminderpolicy/add/", "/admin/health/"):
        response = client.get(url)
        if response.status_code == 302:  # staff must enrol a second factor first (point 6 of the issue)
            pytest.skip("admin asks for a second factor before these pages")
        assert response.status_code == 200, url
        assert _policy(response)["default-src"] == ["'self'"]
        assert "unsafe-inline" not in response["Content-Security-Policy"], url
        assert "style=" not in response.text and not INLINE_SCRIPT.search(response.text), url
        assert not INLINE_HANDLER.search(response.text), url


def test_the_other_security_headers(alpha, client):
    client.force_login(alpha["owner"])
    for response in (client.get(reverse("portal:home")), client.get(reverse("account_login"))):
        permissions = response["Permissions-Policy"]
        for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
            assert feature in permissions
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert "Strict-Transport-Security" not in response  # development: no HSTS over plain http


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_no_authenticated_page_is_kept_in_any_cache(alpha, client):
    client.force_login(alpha["owner"])
    invoice = alpha["invoice"]
    for url in _client_pages(alpha) + [reverse("invoices:invoice_pdf", args=[invoice.pk]),
                                       reverse("invoices:export_csv"), "/no-such-page/"]:
        response = client.get(url)
        assert _no_store(response) and "private" in response["Cache-Control"], url
    partial = client.get(reverse("invoices:list"), {"status": "open"}, headers={"HX-Request": "true"})
    assert _no_store(partial) and "public" not in partial["Cache-Control"]
    redirect = client.post(reverse("portal:notifications_read_all"))
    assert redirect.status_code == 302 and _no_store(redirect)


def test_pages_that_set_or_read_the_session_are_not_cached_and_static_files_are(db, client):
    login = client.get(reverse("account_login"))  # sets the CSRF cookie, reads the session
    assert login.status_code == 200 and _no_store(login)
    css = client.get("/static/portal/app.css")
    assert css.status_code == 200 and not _no_store(css)


def test_one_invoice_link_pages_and_their_pdf_are_never_cached(alpha, client):
    with staff_scope():
        link = document_link_issue(invoice=alpha["invoice"], user=alpha["owner"])
        path = link.url_path()
    page = client.get(path)
    assert page.status_code == 200 and "A-1" in page.text and _no_store(page)
    assert "private" in page["Cache-Control"] and "max-age=0" in page["Cache-Control"]
    pdf = client.get(path + "pdf/")
    assert pdf.status_code == 200 and _no_store(pdf)
    refused = client.get(path.replace("/d/", "/d/x"))
    assert refused.status_code == 404 and _no_store(refused)
    with staff_scope():
        DocumentLink.objects.filter(pk=link.pk).update(revoked_at="2020-01-01T00:00:00Z")
    gone = client.get(path)
    assert gone.status_code == 410 and _no_store(gone)


def test_a_secure_response_carries_hsts_when_the_production_values_are_set(db, client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    response = client.get(reverse("account_login"), secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_production_sets_hsts_and_the_same_policy():
    code = ("from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
            "s.SECURE_HSTS_PRELOAD, s.MIDDLEWARE[0], 'csp.middleware.CSPMiddleware' in s.MIDDLEWARE, "
            "s.PAYMENT_CHECKOUT_ORIGINS)")
    result = _manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    assert result.stdout.strip() == ("31536000 True True django.middleware.security.SecurityMiddleware True "
                                     "['https://www.mollie.com', 'https://checkout.stripe.com']"), result.stderr


def test_what_counts_as_private(rf):
    from django.contrib.sessions.backends.base import SessionBase
    from django.http import HttpResponse

    from portal.headers import is_private_response

    anonymous = rf.get("/")
    anonymous.session = SessionBase()
    assert not is_private_response(anonymous, HttpResponse())  # nothing read: a proxy may keep it
    signed_in = rf.get("/", HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}=abc")
    assert is_private_response(signed_in, HttpResponse())  # the cookie alone, the user not looked up
    anonymous.session.get("anything")
    assert is_private_response(anonymous, HttpResponse())  # the session was read
    sets_cookie = HttpResponse()
    sets_cookie.set_cookie("csrftoken", "x")
    assert is_private_response(rf.get("/"), sets_cookie)
