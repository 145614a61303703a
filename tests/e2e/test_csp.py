"""The client pages under the Content-Security-Policy, in Chromium: nothing on them is refused
(Chromium reports every blocked script, style, handler, image or form target in the console as
"Refused to ..."), and what used to be inline still works: the language switch, htmx filters,
opening a notification."""
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.support import open_menu
from tests.e2e.test_portal import _ledger, _log_in, _open_filters, _rows

pytestmark = pytest.mark.e2e


def _watch_for_refusals(page) -> list[str]:
    refused = []
    page.on("console", lambda message: refused.append(f"{page.url}: {message.text}")
            if "Refused to" in message.text or "Content Security Policy" in message.text else None)
    return refused


def test_client_pages_run_with_nothing_refused_by_the_policy(committed, live_url, page):
    committed.create(_ledger)
    refused = _watch_for_refusals(page)
    _log_in(page, f"{live_url}/")
    expect(page.get_by_test_id("open-balance")).to_have_text("€471.90")
    csp = page.request.get(f"{live_url}/").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp

    open_menu(page)
    page.get_by_role("link", name="Invoices", exact=True).click()
    _open_filters(page)
    page.get_by_label("Status").select_option("paid")  # htmx from a static file, no inline config
    page.wait_for_url(re.compile(r"status=paid"))
    assert _rows(page, ["NW-PAID"]) == ["NW-PAID"]
    with page.expect_response(lambda r: r.request.is_navigation_request() and r.url.endswith("/invoices/")):
        page.go_back()  # htmx keeps no copy: the list comes back from the server
    page.wait_for_url(re.compile(r"/invoices/$"))
    assert _rows(page, ["NW-LATE", "NW-OPEN", "NW-PAID"]) == ["NW-LATE", "NW-OPEN", "NW-PAID"]

    page.goto(f"{live_url}/invoices/?status=overdue")
    page.locator(".invoice-row").get_by_role("link", name="NW-LATE", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Invoice NW-LATE"))

    # A notification opens with a POST (a button): its invoice, and it is read afterwards.
    open_menu(page)
    page.get_by_role("link", name=re.compile(r"^Notifications")).click()
    page.wait_for_url(re.compile(r"/notifications/$"))  # count on the new page, not the invoice's
    expect(page.get_by_role("heading", level=1)).to_have_text("Notifications")
    unread = page.locator(".notification-list li.unread")
    expect(unread.first).to_be_visible()
    count = unread.count()
    assert count >= 1
    unread.first.get_by_role("button").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^(Invoice|Credit note)"))
    open_menu(page)
    page.get_by_role("link", name=re.compile(r"^Notifications")).click()
    expect(page.locator(".notification-list li.unread")).to_have_count(count - 1)

    for path in ("/notifications/settings/", "/direct-debit/", "/statement/", "/accounts/2fa/",
                 "/accounts/2fa/totp/activate/"):  # the TOTP QR code is a data: image
        response = page.goto(f"{live_url}{path}")
        assert response.status == 200, path
        assert "no-store" in response.headers["cache-control"], path

    # The language switch submits on change from static/portal/app.js (it had an inline onchange).
    open_menu(page, account=True)
    page.get_by_label("Language").select_option("nl")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    open_menu(page)
    expect(page.get_by_role("link", name="Facturen", exact=True)).to_be_visible()
    assert refused == []


def test_the_back_office_runs_under_the_same_policy_with_nothing_refused(committed, live_url, page):
    # Django 5.2's admin has no inline script, handler or style attribute of its own; ours use
    # classes from static/portal/admin.css. So /admin/ needs no exception from the policy.
    from tests.portal.factories import PASSWORD, UserFactory
    from tests.staff_mfa import enrol_totp, totp_code

    client = committed.create(_ledger)
    staff = committed.create(lambda: UserFactory(email="sam@acme.test", is_staff=True, is_superuser=True))
    secret = enrol_totp(staff)
    refused = _watch_for_refusals(page)
    page.goto(f"{live_url}/")
    page.get_by_label("Email").fill("sam@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.get_by_placeholder("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_url}/admin/")
    for path in ("/admin/", "/admin/portal/job/", "/admin/invoices/invoice/",
                 f"/admin/portal/client/{client.pk}/change/", "/admin/reminders/reminderpolicy/add/",
                 "/admin/payments/gatewayaccount/reconciliation/", "/admin/health/"):
        response = page.goto(f"{live_url}{path}")
        assert response.status == 200, path
        assert "unsafe-inline" not in response.headers["content-security-policy"], path
    assert refused == []
