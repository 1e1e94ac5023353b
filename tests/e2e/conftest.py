"""What the browser tests share: Chromium, the relying party site, screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.live import chromium_binary, run_demo

from .rp_site import RelyingParty

# Shown in README.md; docs/screenshots/pages/ (docs/pages.md) holds every page in two languages,
# desktop and phone, taken by test_pages.py.
README_SCREENSHOTS = {"login", "consent", "error", "logout", "connected_apps"}
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium tries to reach Google's services and hangs where there is no network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium():
    executable = chromium_binary()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread, which makes Django refuse
    # ORM calls (SynchronousOnlyOperation) in the fixtures of these tests; there is no real
    # concurrency here, the loop only waits for the browser.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def screenshot(screenshot_dir):
    """``take(page, name)`` saves a whole-page PNG; with UPDATE_SCREENSHOTS=1 the README's and
    ``pages/…`` ones also replace those in docs/screenshots (``make screenshots``)."""

    def take(page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        if os.environ.get("UPDATE_SCREENSHOTS") and (name in README_SCREENSHOTS or name.startswith("pages/")):
            target = DOCS_SCREENSHOTS / f"{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return path

    return take


@pytest.fixture
def rp_issuer(live_issuer):
    """The issuer the relying party of ``rp`` talks to (a module may override it)."""
    return live_issuer


@pytest.fixture
def rp(rp_issuer):
    site = RelyingParty(rp_issuer)
    demo = run_demo(site.callback, site.logged_out)
    site.start(demo["confidential"]["client_id"], demo["confidential"]["client_secret"])
    site.demo = demo
    yield site
    site.stop()
