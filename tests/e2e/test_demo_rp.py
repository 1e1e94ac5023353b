"""The example project's OIDC playground (idp_project/demo_rp.py, issue 14 item 8) clicked through in
Chromium: what a newcomer does after `make run`. With ``UPDATE_SCREENSHOTS=1`` the signed-in page
replaces docs/screenshots/playground.png (README.md, "What users see")."""

from __future__ import annotations

import json
import os
import shutil
from io import StringIO

import pytest
from django.core.management import call_command

from .conftest import DOCS_SCREENSHOTS

pytestmark = pytest.mark.live


@pytest.fixture
def demo(chromium, live_issuer):  # noqa: F811
    out = StringIO()
    call_command("oidc_demo", "--json", stdout=out)  # its default: the playground's redirect URIs
    return json.loads(out.getvalue())


@pytest.fixture
def page(chromium, demo):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []  # CSP refusals and failed loads (the browser's favicon.ico request aside)
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)

    def on_response(response):
        if response.status >= 400 and "favicon" not in response.url:
            errors.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    page.errors = errors
    yield page
    context.close()


def test_playground_sign_in_tokens_refresh_logout(page, demo, live_issuer, tmp_path):
    page.goto(f"{live_issuer}/demo-rp/")
    page.click("#sign-in")  # one click starts the flow
    page.wait_for_selector("#id_username")
    assert page.url.startswith(f"{live_issuer}/connect/login")
    page.fill("#id_username", demo["user"]["username"])
    page.fill("#id_password", demo["user"]["password"])
    page.click("button[type=submit]")
    page.wait_for_selector('button[name="decision"][value="allow"]')
    page.click('button[name="decision"][value="allow"]')

    page.wait_for_selector("#id-token-verified")
    assert page.url == f"{live_issuer}/demo-rp/", "the callback redeemed the code and came back home"
    assert page.inner_text("#who") == "Dana Demo"
    assert page.is_visible("#access-token-verified"), "RFC 9068 access token verified against the JWKS"
    claims = json.loads(page.inner_text("#id-token-claims"))
    assert claims["iss"] == live_issuer and claims["aud"] == demo["confidential"]["client_id"]
    userinfo = json.loads(page.inner_text("#userinfo-json"))
    assert userinfo["address"]["locality"] == "Los Angeles" and userinfo["phone_number_verified"] is True
    assert "offline_access" in page.inner_text("#granted-scope")
    path = tmp_path / "playground.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copyfile(path, DOCS_SCREENSHOTS / "playground.png")

    before = json.loads(page.inner_text("#access-token-claims"))["jti"]
    page.click("#refresh")
    page.wait_for_selector("#refresh-count:text('1')")
    assert json.loads(page.inner_text("#access-token-claims"))["jti"] != before, "a new access token"

    page.click("#sign-out")
    # The ID token hint names this browser's own session: no confirmation page (docs/logout.md).
    page.wait_for_selector("#sign-in")
    assert page.url == f"{live_issuer}/demo-rp/"
    assert "Signed out at the IdP" in page.inner_text("#notice")
    page.click("#sign-in")
    page.wait_for_selector("#id_username")  # the IdP session really ended
    assert not page.errors, f"the pages logged errors (CSP?): {page.errors}"
