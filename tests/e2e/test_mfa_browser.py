"""Second factors in a real browser (docs/mfa.md): set up an authenticator app from the QR code's
key, see the recovery codes once, sign in with password + code, a wrong code announced, a relying
party's step-up (acr_values) asking for the code only, and the page a policy shows when no factor is
strong enough. Screenshots: ``pages/<page>-en-<size>.png`` (``make screenshots``)."""

from __future__ import annotations

import time

import pyotp
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from oidc_provider_ext import acr
from oidc_provider_ext.models import ClientProfile, OPSession

from .test_pages import SIZES, fits_the_screen

pytestmark = pytest.mark.live


def code_at(app: pyotp.TOTP, steps: int) -> str:
    return app.at(time.time() + 30 * steps)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_enrol_sign_in_with_a_code_and_step_up(chromium, rp, screenshot, size):
    def shot(page, name):
        fits_the_screen(page)
        screenshot(page, f"pages/{name}-en-{size}")

    user = rp.demo["user"]
    context = chromium.new_context(locale="en-US", **SIZES[size])
    page = context.new_page()
    page.set_default_timeout(15_000)

    # A password sign-in (no factor yet), then the security page from the account.
    page.goto(rp.authorization_url())
    page.fill("#id_username", user["username"])
    page.fill("#id_password", user["password"])
    page.click("button[type=submit]")
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")
    assert rp.last["claims"]["acr"] == acr.PASSWORD

    page.goto(f"{rp.issuer}/connect/security")
    shot(page, "security")
    page.click("a[href='/connect/security/app']")
    page.wait_for_selector("img.oidc-qr")
    assert page.get_attribute("img.oidc-qr", "src").startswith("data:image/svg+xml;base64,")
    assert page.evaluate("document.activeElement.id") == "id_code", "the code field has the focus"
    page.click("details summary")  # "Can't scan it?": the key for typing in
    secret = page.inner_text("[data-secret]").replace(" ", "")
    assert page.get_attribute("#id_code", "autocomplete") == "one-time-code"
    assert page.get_attribute("#id_code", "inputmode") == "numeric"
    shot(page, "totp_enrol")
    app = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(code_at(app, 0))
    page.click("button[type=submit]")
    page.wait_for_selector("[data-recovery-codes]")
    assert page.locator("[data-recovery-codes] li").count() == 10
    recovery = page.locator("[data-recovery-codes] li").first.inner_text()
    another = page.locator("[data-recovery-codes] li").nth(1).inner_text()
    shot(page, "recovery_codes")
    # Setting the app up was not a sign-in with it: changing factors now asks for one first (the
    # account step-up page, not the password), and comes back to the page the user was on.
    page.goto(f"{rp.issuer}/connect/security/app/remove")
    page.wait_for_selector("[data-step=account]")
    assert page.locator("#id_password").count() == 0
    assert "Before you change how you sign in" in page.inner_text("main")
    shot(page, "account_step_up")
    page.click("a[data-factor=recovery]")
    page.get_by_label("Recovery code").fill(another)
    page.click("button[type=submit]")
    page.wait_for_url(f"{rp.issuer}/connect/security/app/remove")
    context.close()

    # Another browser: the password, then the app's code.
    context = chromium.new_context(locale="en-US", **SIZES[size])
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(rp.authorization_url(acr_values=acr.MFA))
    page.fill("#id_username", user["username"])
    page.fill("#id_password", user["password"])
    page.click("button[type=submit]")
    page.wait_for_selector("#id_code")
    assert "Your password was right" in page.inner_text("main")
    assert page.evaluate("document.activeElement.id") == "id_code"
    shot(page, "challenge")
    wrong = "000000" if code_at(app, 1) != "000000" else "111111"
    page.get_by_label("Code from your authenticator app").fill(wrong)
    page.click("button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "factor-error" in page.get_attribute("#id_code", "aria-describedby")
    assert page.get_attribute("#id_code", "aria-invalid") == "true"
    shot(page, "challenge-failed")
    # The next time step's code (the confirmation used this one: a code works once).
    page.get_by_label("Code from your authenticator app").fill(code_at(app, 1))
    page.click("button[type=submit]")
    page.wait_for_selector("#who")  # consent was remembered from the first sign-in
    claims = rp.last["claims"]
    assert claims["acr"] == acr.MFA and claims["amr"] == ["pwd", "otp", "mfa"]

    # A session from a page that asks no second factor (here: made on the server, as the admin's
    # login page would): a relying party asking for multi-factor gets the step-up page, and a
    # recovery code does it.
    context.close()
    server_side = Client()
    server_side.force_login(get_user_model().objects.get(username=user["username"]))
    # ...signed in to the demo clients' tenant.
    session = server_side.session
    entries = session["oidc_op_sessions"]
    entries[rp.demo["tenant"]] = entries.pop("")
    session["oidc_op_sessions"] = entries
    session.save()
    OPSession.objects.filter(pk=entries[rp.demo["tenant"]]["id"]).update(tenant=rp.demo["tenant"])
    context = chromium.new_context(locale="en-US", **SIZES[size])
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": server_side.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": rp.issuer,
            }
        ]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(rp.authorization_url(acr_values=acr.MFA))
    page.wait_for_selector("#id_code")
    assert page.locator("#id_password").count() == 0, "the missing factor only, not a new login"
    assert "asks for a stronger sign-in" in page.inner_text("main")
    shot(page, "step_up")
    page.click("a[data-factor=recovery]")
    page.get_by_label("Recovery code").fill(recovery)
    page.click("button[type=submit]")
    page.wait_for_selector("#who")
    assert rp.last["claims"]["acr"] == acr.MFA and "otp" in rp.last["claims"]["amr"]

    # A client that needs a passkey: the user has none, the page says what to do.
    profile = ClientProfile.objects.get(application__client_id=rp.client_id)
    profile.minimum_acr = acr.PHISHING_RESISTANT
    profile.save()  # as the admin does: the cached client is dropped
    page.goto(rp.authorization_url())
    page.wait_for_selector("a.btn-primary")
    assert "/connect/security?next=" in page.get_attribute("a.btn-primary", "href")
    shot(page, "factor_required")
    context.close()
