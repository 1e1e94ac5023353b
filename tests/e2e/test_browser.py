"""End-to-end in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``, no
browser download) from a relying party's page through the IdP's hosted pages and back.

Nothing is patched in the browser: the forms are submitted exactly as a user's browser submits
them, with the ``Origin`` and ``Referer`` the IdP's ``Referrer-Policy: same-origin`` lets it send,
which Django's CSRF check needs (``test_hosted_forms_post_in_a_real_browser``).

Screenshots of the pages are saved for every run in a temporary directory (its path is printed with
``-s``); with ``UPDATE_SCREENSHOTS=1`` they also replace docs/screenshots/*.png, which README.md
shows (``make screenshots``).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = pytest.mark.live


@pytest.fixture
def page(chromium, rp):
    """A browser page exactly as a user has it."""
    context = chromium.new_context(viewport={"width": 720, "height": 440}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
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


def test_hosted_forms_post_in_a_real_browser(page, rp):
    """The browser's own POSTs of the login and consent forms pass Django's CSRF check: the pages'
    ``Referrer-Policy: same-origin`` lets Chromium send the IdP's Origin (Fetch, "serializing a
    request origin"; a ``no-referrer`` policy made it ``Origin: null``, refused with 403)."""
    issuer_origin = rp.issuer
    login = page.goto(rp.authorization_url())
    page.wait_for_selector("#id_username")
    assert login.status == 200 and login.url.startswith(f"{rp.issuer}/connect/login")
    assert login.all_headers().get("referrer-policy") == "same-origin", (
        "docs/security.md: the hosted pages send Referrer-Policy: same-origin"
    )
    assert page.locator('meta[name="referrer"]').count() == 0, "no referrer meta element overrides it"
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", rp.demo["user"]["password"])
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button[type=submit]")
    response = posted.value
    assert response.request.all_headers().get("origin") == issuer_origin, (
        "Fetch: a same-origin form POST under Referrer-Policy same-origin carries the page's Origin"
    )
    assert response.status == 302, (
        f"OIDC Core 3.1.2.3: the OP authenticates the End-User on its login page; the browser's POST "
        f"(Origin: {response.request.all_headers().get('origin')}) answered HTTP {response.status}"
    )
    page.wait_for_selector('button[name="decision"][value="allow"]')
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click('button[name="decision"][value="allow"]')
    response = posted.value
    assert response.status == 302 and response.headers["location"].startswith(rp.callback + "?"), (
        f"OIDC Core 3.1.2.5: the consent POST redirects to the client, got HTTP {response.status}"
    )
    assert response.all_headers().get("referrer-policy") == "no-referrer", (
        "the authorization response's redirect sends no Referer to the client (RFC 9700 4.2.4: the "
        "code must not leak through Referer)"
    )
    page.wait_for_selector("#who")


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


def test_logout(page, rp):
    """An id_token_hint of the browser's own session: signed out at once, no confirmation page
    (docs/logout.md; RP-Initiated Logout 1.0 §2 only makes asking a SHOULD here)."""
    sign_in(page, rp)
    page.click('button[name="decision"][value="allow"]')
    with page.expect_response(lambda r: r.url.startswith(f"{rp.issuer}/connect/endsession")) as ended:
        page.click("#sign-out")
    assert ended.value.status == 302, "docs/logout.md: no confirmation page for the user's own ID token"
    page.wait_for_selector("#state")
    assert page.url.startswith(rp.logged_out), "RP-Initiated Logout 1.0 §3: back to the RP"
    assert page.inner_text("#state") == "bye", "RP-Initiated Logout 1.0 §3: state comes back"
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")  # signed out of the IdP: asked to sign in again


def test_logout_confirmation(page, rp, screenshot):
    """No id_token_hint: the OP MUST ask (RP-Initiated Logout 1.0 §2); its form is posted by the
    browser (CSRF-checked) and the user lands on the client's post_logout_redirect_uri."""
    sign_in(page, rp)
    page.click('button[name="decision"][value="allow"]')
    page.click("#sign-out-without-hint")
    page.wait_for_selector('button[name="confirm"][value="yes"]')
    assert page.url.startswith(f"{rp.issuer}/connect/endsession"), "RP-Initiated Logout 1.0 §2"
    assert "Demo web app (confidential)" in page.inner_text("h1"), "the page names the client"
    screenshot(page, "logout")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click('button[name="confirm"][value="yes"]')
    assert posted.value.status == 302, f"the confirmation POST answered HTTP {posted.value.status}"
    page.wait_for_selector("#state")
    assert page.url.startswith(rp.logged_out), "RP-Initiated Logout 1.0 §3: back to the RP"
    assert page.inner_text("#state") == "bye", "RP-Initiated Logout 1.0 §3: state comes back"
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")  # signed out of the IdP: asked to sign in again


def test_tenant_branded_login(page, rp, screenshot):
    page.goto(rp.url)
    page.click("#sign-in-acme")
    page.wait_for_selector("#id_username")
    assert page.inner_text("[data-tenant]").splitlines()[-1] == "Acme Corporation", (
        "docs/tenants.md: acr_values=tenant:acme brands the login page with the tenant's name"
    )
    assert page.title() == "Sign in to Acme Corporation"
    screenshot(page, "login-tenant")
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")
    assert rp.last["claims"]["tenant"] == "acme", "docs/tenants.md: the ID token names the tenant"
    assert rp.last["userinfo"]["tenant"] == "acme", "docs/tenants.md: userinfo names the tenant"


def test_unknown_tenant_error_page(page, rp, screenshot):
    response = page.goto(rp.authorization_url(acr_values="tenant:globex"))
    assert response.status == 400, "docs/tenants.md: an unknown tenant is an HTTP 400 page at the IdP"
    assert page.url.startswith(rp.issuer), "docs/tenants.md: the client is not redirected to"
    assert page.inner_text("h1") == "Unknown organisation", "the page names the problem"
    screenshot(page, "error-tenant")


def test_connected_apps_page(page, rp, screenshot):
    """docs/consent.md: the user's consents at /connect/apps; Revoke → confirmation → POST removes
    the consent and revokes the client's tokens at once."""
    sign_in(page, rp)
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")
    access_token = rp.last["tokens"]["access_token"]
    page.goto(f"{rp.issuer}/connect/apps")
    app = page.locator("li[data-consent]")
    assert app.count() == 1 and "Demo web app (confidential)" in app.inner_text(), (
        "docs/consent.md: the page lists the client the user allowed"
    )
    assert "at Acme Corporation" in app.inner_text(), "docs/consent.md: consent is per tenant"
    screenshot(page, "connected_apps")
    app.get_by_role("link", name="Revoke").click()
    page.wait_for_selector("h1:has-text('Revoke access')")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button[type=submit]")
    assert posted.value.status == 302, f"the revocation POST answered HTTP {posted.value.status}"
    page.wait_for_selector("text=No applications have access to your account.")
    userinfo = rp.http.get(
        rp.meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
    assert userinfo.status_code == 401, "docs/consent.md: revoking stops the client's tokens at once"


def test_sessions_page(page, rp):
    """docs/logout.md: /connect/sessions lists where the user is signed in, this browser marked."""
    sign_in(page, rp)
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")
    page.goto(f"{rp.issuer}/connect/sessions")
    session = page.locator("li[data-sid]")
    assert session.count() == 1, "one sign-in, one OP session"
    assert "this browser" in session.inner_text() and "acme" in session.inner_text()
    assert session.get_attribute("data-sid") == rp.last["claims"]["sid"], "the ID token's sid"
