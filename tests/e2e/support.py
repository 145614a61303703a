"""What every browser test of a client page shares: signing in, the four screens a client uses
(phone 375 px and desktop 1280 px, in Dutch and English), an axe-core check, a sideways-scroll
check and a screenshot under var/screenshots/."""
from __future__ import annotations

import re
from pathlib import Path

from tests.portal.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
# (width, height, language) a client reads the portal on.
SCREENS = [(375, 740, "en"), (375, 740, "nl"), (1280, 800, "en"), (1280, 800, "nl")]
SCREEN_IDS = ["phone-en", "phone-nl", "desktop-en", "desktop-nl"]


def log_in(page, url: str, email: str, password: str = PASSWORD) -> None:
    """Sign in through the login form (whatever language it is in) and wait for the next page."""
    page.goto(url)
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        page.locator("form button[type=submit]").first.click()


def open_menu(page, *, account: bool = False) -> None:
    """Open the header's menu where it is folded: on a phone the pages and the account links are
    behind the Menu button; on a desktop the account, company and language behind the account
    button (`account=True`)."""
    for selector in (".site-menu", ".account-menu") if account else (".site-menu",):
        toggle = page.locator(f"{selector} > summary")
        if toggle.is_visible() and page.locator(f"{selector}[open]").count() == 0:
            toggle.click()


def axe_violations(page) -> list[tuple[str, str, int]]:
    """axe-core's serious and critical findings on the page as it is now. Evaluated through the
    DevTools protocol, which the page's Content-Security-Policy does not govern."""
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], len(v["nodes"])) for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


def sideways_overflow(page) -> list[str]:
    """Empty when the page fits the screen's width; else the page width and the widest offenders."""
    return page.evaluate("""() => {
        const width = window.innerWidth;
        if (document.documentElement.scrollWidth <= width) return [];
        const wide = [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > width + 1)
            .slice(0, 5).map(el => el.tagName.toLowerCase() + '.' + [...el.classList].join('.'));
        return [`scrollWidth ${document.documentElement.scrollWidth} > ${width}`, ...wide];
    }""")


def broken_numbers(page) -> list[str]:
    """Invoice numbers, references and amounts that wrap onto a second line (a number broken in
    the middle), as their text; empty when every one sits on one line."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '.invoice-number, .reference, td.num, dd.num, .big-amount, [data-testid=payment-number]')]
        .filter(el => el.offsetParent !== null && el.textContent.trim())
        .filter(el => {
            // The boxes of its text: two that do not overlap vertically are on different lines.
            const boxes = [];
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                const range = document.createRange();
                range.selectNodeContents(node);
                boxes.push(...[...range.getClientRects()].filter(r => r.width > 0 && r.height > 0));
            }
            return boxes.some(a => boxes.some(b => b.top >= a.bottom - 1));
        }).map(el => el.textContent.trim())""")


def clipped_content(page) -> list[str]:
    """Cards, tables and cells whose content is wider than their box (cut off or scrolled inside a
    card even though the page itself does not scroll sideways)."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '.site-main .card, .site-main table, .site-main td, .site-main dd')]
        .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
        .slice(0, 5).map(el => el.tagName.toLowerCase() + '.' + [...el.classList].join('.') + ': '
                         + el.textContent.trim().slice(0, 40))""")


def screenshot(page, name: str) -> Path:
    """A full-page screenshot, var/screenshots/<name>-<language>-<width>px.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    path = SCREENSHOTS / f"{safe}-{getattr(page, 'language', 'en')}-{page.screen_width}px.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_page(page, name: str) -> None:
    """The checks every client page passes on every screen: no sideways scroll, axe clean, and
    a screenshot for people to look at."""
    screenshot(page, name)
    assert sideways_overflow(page) == [], (name, sideways_overflow(page))
    assert axe_violations(page) == [], (name, axe_violations(page))


def sign_in_staff(page, live_url: str, staff) -> None:
    """Log a staff member in through the form, with the second factor admin asks for."""
    from tests.staff_mfa import enrol_totp, totp_code

    secret = enrol_totp(staff)
    log_in(page, f"{live_url}/", staff.email)
    page.wait_for_url(f"{live_url}/accounts/2fa/authenticate/")
    page.locator("input[name=code]").fill(totp_code(secret))
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url(f"{live_url}/admin/")


def wait_for_invoice(number: str, *, source: str, seconds: float = 90):
    """The invoice with this number, once the worker has brought it in from `source`."""
    import time

    from invoices.models import Invoice
    from portal.rls import staff_scope

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with staff_scope():
            invoice = Invoice.objects.filter(number=number).select_related("client").first()
        if invoice is not None:
            return invoice
        time.sleep(0.5)
    raise AssertionError(f"invoice {number} did not arrive from {source} within {seconds} s")
