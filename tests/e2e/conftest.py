"""Browser tests: a real gunicorn serving committed data, driven by Debian's Chromium via Playwright."""
import os
from pathlib import Path

import pytest

from tests.e2e.support import SCREEN_IDS, SCREENS
from tests.support.servers import gunicorn

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts"
# Playwright's sync API keeps an event loop on the main thread; the ORM calls the
# tests make next to it are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def live_url(live_port, process_env):
    with gunicorn(port=live_port, env=process_env, threads=4) as url:
        yield url


@pytest.fixture(params=[(375, 740), (1280, 800)], ids=["phone", "desktop"])
def page(request, browser):
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    page.screen_width = width
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(params=SCREENS, ids=SCREEN_IDS)
def screen(request, browser):
    """A page on one of the four screens a client uses: phone or desktop, Dutch or English.
    `screen.language` is the language the test's contact should have (their portal language)."""
    width, height, language = request.param
    context = browser.new_context(viewport={"width": width, "height": height},
                                  locale="nl-NL" if language == "nl" else "en-GB")
    page = context.new_page()
    page.screen_width = width
    page.language = language
    yield page
    context.close()
