"""End-to-end in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``, no
browser download) from a relying party's page through the IdP's hosted pages and back.

The hosted pages carry ``<meta name="referrer" content="no-referrer">``, so a browser sends
``Origin: null`` with their form POSTs (Fetch, "serializing a request origin") and Django's CSRF
check refuses every sign-in, consent and logout with HTTP 403. That provider bug is shown by
``test_hosted_forms_post_in_a_real_browser`` (strict xfail). So that the rest of the flow is still
proved in a browser, the other tests replace that meta element by one with ``same-origin`` (the
site's own ``Referrer-Policy`` header) as each IdP page loads (``page`` fixture), and the browser
sends the IdP's origin. Once the bug is fixed the script finds nothing to replace.

Screenshots of the pages are saved for every run in a temporary directory (its path is printed with
``-s``); with ``UPDATE_SCREENSHOTS=1`` they also replace docs/screenshots/*.png, which README.md
shows (``make screenshots``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.live import chromium_binary, run_demo, tenant_selection_implemented

from .rp_site import RelyingParty

pytestmark = pytest.mark.live

# The workaround for the no-referrer bug (module docstring): a referrer meta element inserted later
# replaces the document's policy (HTML "meta name=referrer"), and a test cannot set Origin itself.
SAME_ORIGIN_REFERRER_POLICY = """
new MutationObserver((records, observer) => {
  for (const meta of document.querySelectorAll('meta[name="referrer"][content="no-referrer"]')) {
    const policy = document.createElement("meta");
    policy.name = "referrer";
    policy.content = "same-origin";
    meta.replaceWith(policy);
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""
README_SCREENSHOTS = {"login", "consent", "error", "logout", "login-tenant", "connected-apps"}
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
    def take(page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path))
        print(f"screenshot: {path}")
        if os.environ.get("UPDATE_SCREENSHOTS") and name in README_SCREENSHOTS:
            DOCS_SCREENSHOTS.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path

    return take


@pytest.fixture
def rp(live_issuer):
    site = RelyingParty(live_issuer)
    demo = run_demo(site.callback, site.logged_out)
    site.start(demo["confidential"]["client_id"], demo["confidential"]["client_secret"])
    site.demo = demo
    yield site
    site.stop()


def _new_page(chromium, rp, origin_workaround: bool):
    context = chromium.new_context(viewport={"width": 720, "height": 440}, locale="en-US")
    if origin_workaround:
        context.add_init_script(SAME_ORIGIN_REFERRER_POLICY)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


@pytest.fixture
def page(chromium, rp):
    context, page = _new_page(chromium, rp, origin_workaround=True)
    yield page
    context.close()


@pytest.fixture
def plain_page(chromium, rp):
    """A browser page exactly as a user has it (no Origin rewrite)."""
    context, page = _new_page(chromium, rp, origin_workaround=False)
    yield page
    context.close()


def sign_in(page, rp, password: str | None = None):
    """From the RP's home page to the IdP's consent page; returns the login POST's response."""
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", password or rp.demo["user"]["password"])
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button[type=submit]")
    page.wait_for_load_state()
    return posted.value


def test_sign_in_consent_callback_token(page, rp, screenshot):
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")
    assert page.url.startswith(f"{rp.issuer}/connect/login"), "OIDC Core 3.1.2.3: the OP's login page"
    screenshot(page, "login")
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")
    page.wait_for_selector('button[name="decision"][value="allow"]')
    assert "Demo web app (confidential)" in page.inner_text("h1"), (
        "OIDC Core 3.1.2.4: consent names the client"
    )
    screenshot(page, "consent")
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")
    callback = urlsplit(page.url)
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == rp.callback, (
        "RFC 6749 4.1.2: the browser lands on the registered redirect_uri"
    )
    query = {key: values[0] for key, values in parse_qs(callback.query).items()}
    assert query["code"] == page.inner_text("#code"), "OIDC Core 3.1.2.5: code in the query"
    assert page.inner_text("#who") == "Dana Demo", "the RP redeemed the code and read userinfo"
    assert rp.last["nonce_ok"], "OIDC Core 3.1.3.7 item 11: the ID token carries the RP's nonce"
    assert rp.last["tokens"]["token_type"] == "Bearer", "OIDC Core 3.1.3.3"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "provider bug: the hosted pages set <meta name=referrer content=no-referrer>, so browsers send "
        "Origin: null with the login/consent/logout form POSTs and Django's CSRF check answers 403 "
        "(Fetch 'serialize a request origin'); no user can sign in from a real browser"
    ),
)
def test_hosted_forms_post_in_a_real_browser(plain_page, rp):
    with plain_page.expect_response(lambda r: r.request.method == "POST") as posted:
        sign_in_form = plain_page
        sign_in_form.goto(rp.url)
        sign_in_form.click("#sign-in")
        sign_in_form.fill("#id_username", rp.demo["user"]["username"])
        sign_in_form.fill("#id_password", rp.demo["user"]["password"])
        sign_in_form.click("button[type=submit]")
    response = posted.value
    assert response.status == 302, (
        f"OIDC Core 3.1.2.3: the OP authenticates the End-User on its login page; the browser's POST "
        f"(Origin: {response.request.headers.get('origin')}) answered HTTP {response.status}"
    )


def test_wrong_password(page, rp, screenshot):
    response = sign_in(page, rp, password="not the password")
    assert response.status == 400, "docs/flows.md: a wrong password answers HTTP 400"
    assert "The username or password is not correct" in page.content(), "one generic message"
    assert page.url.startswith(f"{rp.issuer}/connect/login"), "the user stays on the login page"
    screenshot(page, "login-failed")
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")
    page.wait_for_selector('button[name="decision"][value="allow"]')  # the request survived the retry


def test_deny(page, rp):
    sign_in(page, rp)
    page.click('button[name="decision"][value="deny"]')
    page.wait_for_selector("#error")
    assert page.inner_text("#error") == "access_denied", "RFC 6749 4.1.2.1: deny → access_denied"
    assert rp.last["query"].get("state"), "RFC 6749 4.1.2.1: state comes back with the error"


def test_invalid_request_error_page(page, rp, screenshot):
    url = rp.authorization_url().replace("%2Fcallback", "%2Fnot-registered")
    response = page.goto(url)
    assert response.status == 400, "RFC 6749 4.1.2.1: an unregistered redirect_uri is an error page"
    assert page.url.startswith(rp.issuer), "RFC 6749 3.1.2.4: the OP does not redirect to it"
    assert "This sign-in link is not valid" in page.content()
    screenshot(page, "error")


def test_logout(page, rp, screenshot):
    sign_in(page, rp)
    page.click('button[name="decision"][value="allow"]')
    page.click("#sign-out")
    page.wait_for_selector('button[name="allow"]')
    assert page.url.startswith(f"{rp.issuer}/connect/endsession"), "RP-Initiated Logout 1.0 §2"
    screenshot(page, "logout")
    page.click('button[name="allow"]')
    page.wait_for_selector("#state")
    assert page.url.startswith(rp.logged_out), "RP-Initiated Logout 1.0 §3: back to the RP"
    assert page.inner_text("#state") == "bye", "RP-Initiated Logout 1.0 §3: state comes back"
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")  # signed out of the IdP: asked to sign in again


def test_tenant_branded_login(page, rp, screenshot):
    if not tenant_selection_implemented(rp.demo):
        pytest.xfail("tenant selection not implemented yet")
    page.goto(rp.url)
    page.click("#sign-in-acme")
    page.wait_for_selector("#id_username")
    assert "Acme Corporation" in page.content(), "DESIGN.md: the login page is branded per tenant"
    screenshot(page, "login-tenant")


def test_connected_apps_page(page, rp, screenshot):
    from django.urls import NoReverseMatch, reverse

    for name in ("consents", "connected-apps", "connected_apps"):
        try:
            path = reverse(f"oidc_provider_ext:{name}")
            break
        except NoReverseMatch:
            continue
    else:
        pytest.skip("the connected apps page does not exist yet (DESIGN.md lists it among the hosted pages)")
    sign_in(page, rp)
    page.click('button[name="decision"][value="allow"]')
    page.goto(f"{rp.issuer}{path}")
    assert "Demo web app (confidential)" in page.content(), "the page lists the client the user allowed"
    screenshot(page, "connected-apps")
