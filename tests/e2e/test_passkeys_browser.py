"""Passkeys in real Chromium with a virtual authenticator (Chrome DevTools Protocol ``WebAuthn``
domain; issue 17, proof): add a passkey on the account page, sign out, sign in with it through a
relying party's authorization request, and see a clear error when the passkey fails.

WebAuthn refuses IP addresses as RP ID, so the IdP is served as http://localhost:PORT here
(a secure context for browsers, like https)."""

from __future__ import annotations

import threading
import time

import pyotp
import pytest

from oidc_provider_ext import acr
from oidc_provider_ext.internal import totp
from oidc_provider_ext.models import Passkey
from tests.conftest import oidc_settings

pytestmark = pytest.mark.live


@pytest.fixture
def rp_issuer(live_issuer, settings):
    """The e2e ``rp`` fixture, against http://localhost:PORT (WebAuthn refuses IP addresses)."""
    url = live_issuer.replace("127.0.0.1", "localhost")
    oidc_settings(settings, ISSUER=url)
    return url


@pytest.fixture
def page(chromium, rp):
    context = chromium.new_context(viewport={"width": 720, "height": 640}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.authenticator = (cdp, added["authenticatorId"])
    yield page
    context.close()


def submit_password(page, rp):
    """From the relying party's sign-in button to the demo user's password posted."""
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")


def sign_in_with_password(page, rp):
    submit_password(page, rp)
    page.wait_for_selector('button[name="decision"][value="allow"]')
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")


def add_passkey(page, rp, name: str):
    page.goto(f"{rp.issuer}/connect/account/passkeys")
    page.wait_for_selector("#passkey-new-name")
    page.fill("#passkey-new-name", name)
    page.click("[data-passkey-action=register]")
    page.wait_for_selector(f"li[data-passkey] >> text={name}")


NO_AUTOFILL = "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"


def sign_out(page, rp):
    page.click("#sign-out")  # RP-Initiated Logout with the ID token: no confirmation page
    page.wait_for_selector("#state")


def test_add_a_passkey_sign_out_and_sign_in_with_the_button(page, rp, screenshot):
    page.add_init_script(NO_AUTOFILL)  # the button, not the autofill (next test)
    sign_in_with_password(page, rp)
    add_passkey(page, rp, "Test laptop")
    assert "Passkey “Test laptop” added." in page.inner_text("main")
    screenshot(page, "pages/passkeys-added-en-desktop")
    passkey = Passkey.objects.get()
    assert passkey.name == "Test laptop" and passkey.user.username == rp.demo["user"]["username"]

    page.goto(rp.url)
    page.click("#sign-in")
    # Still signed in at the IdP, with the password only: a user with a passkey signs in with it
    # every time (adapter.minimum_acr), so the step-up page asks for the passkey, and nothing else.
    page.wait_for_selector('[data-step="step-up"] [data-passkey-action=verify]')
    assert page.locator("#id_password").count() == 0
    page.click("[data-passkey-action=verify]")
    page.wait_for_selector("#who")
    sign_out(page, rp)
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("[data-passkey-action=sign-in]")
    assert page.url.startswith(f"{rp.issuer}/connect/login")
    screenshot(page, "pages/login-passkey-en-desktop")
    page.click("[data-passkey-action=sign-in]")
    page.wait_for_selector("#who")
    claims = rp.last["claims"]
    assert claims["acr"] == acr.PHISHING_RESISTANT
    assert claims["amr"] == ["hwk", "user", "mfa"]
    assert Passkey.objects.get().last_used is not None


def test_an_rp_asking_for_phishing_resistant_steps_a_code_sign_in_up_to_the_passkey(page, rp):
    """Issue 17: a sign-in with password + authenticator app (multi-factor) that a relying party
    asks for phishing-resistant (acr_values) is asked for the passkey only — not a new login, not
    the app again — and the ID token says what was achieved (OIDC Core 3.1.2.1, RFC 8176)."""
    page.add_init_script(NO_AUTOFILL)
    sign_in_with_password(page, rp)
    add_passkey(page, rp, "Laptop")
    user = Passkey.objects.get().user
    device = totp.start_enrolment(user)
    app = pyotp.TOTP(totp.secret_of(device))
    assert totp.verify(device, app.now(), confirming=True)
    page.context.clear_cookies()  # a new browser session: sign in again with the factors

    page.goto(rp.authorization_url(acr_values=acr.MFA))
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")
    page.click("a[data-factor=totp]")  # the passkey is offered first; take the app this time
    page.get_by_label("Code from your authenticator app").fill(app.at(time.time() + 30))
    page.click("button[type=submit]")
    page.wait_for_selector("#who")
    first = rp.last["claims"]
    assert first["acr"] == acr.MFA and {"pwd", "otp", "mfa"} <= set(first["amr"])

    page.goto(rp.authorization_url(acr_values=acr.PHISHING_RESISTANT))
    page.wait_for_selector('[data-step="step-up"] [data-passkey-action=verify]')
    assert page.locator("#id_password").count() == 0
    assert page.locator("a[data-factor=totp]").count() == 0, "only a factor that reaches the level"
    page.click("[data-passkey-action=verify]")
    page.wait_for_selector("#who")
    claims = rp.last["claims"]
    assert claims["acr"] == acr.PHISHING_RESISTANT
    assert {"pwd", "otp", "mfa"} <= set(claims["amr"]) and {"hwk", "swk"} & set(claims["amr"])
    assert claims["sid"] == first["sid"], "the same OP session gained the factor"
    assert claims["auth_time"] >= first["auth_time"]


def test_autofill_signs_in_with_the_passkey(page, rp):
    """Conditional mediation: the login page asks at load; the browser offers the passkey in the
    username field's autofill (the virtual authenticator picks it at once)."""
    sign_in_with_password(page, rp)
    add_passkey(page, rp, "Phone")
    page.context.clear_cookies()  # a browser that never signed in here
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#who")
    assert rp.last["claims"]["amr"] == ["hwk", "user", "mfa"]


def test_a_failing_passkey_shows_a_clear_error(page, rp, screenshot):
    page.add_init_script(NO_AUTOFILL)
    sign_in_with_password(page, rp)
    add_passkey(page, rp, "Old key")
    page.context.clear_cookies()
    # The passkey was removed at the IdP (say, by an operator) but is still on the device.
    Passkey.objects.all().delete()
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("[data-passkey-action=sign-in]")
    page.click("[data-passkey-action=sign-in]")
    alert = page.wait_for_selector("[role=alert]:not([hidden])")
    assert "This passkey is not registered here" in alert.inner_text()
    assert page.url.startswith(f"{rp.issuer}/connect/login")
    screenshot(page, "pages/login-passkey-error-en-desktop")

    # The authenticator refuses to verify the user: the browser's error is announced, in words.
    cdp, authenticator_id = page.authenticator
    cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator_id, "isUserVerified": False})
    page.click("[data-passkey-action=sign-in]")
    page.wait_for_selector("#oidc-passkey-error:not([hidden])")
    assert "cancelled or timed out" in page.inner_text("#oidc-passkey-error")
    assert page.evaluate("document.activeElement.id") == "oidc-passkey-error", "focus moves to the error"


def test_the_passkey_factor_in_a_browser(page, rp, settings):
    """PasskeyFactor's partial and script on a bare challenge page (tests/passkey_factor_urls.py):
    the browser answers the page's options; verify() gives the amr of the user's own passkey."""
    settings.ROOT_URLCONF = "tests.passkey_factor_urls"
    sign_in_with_password(page, rp)
    add_passkey(page, rp, "Laptop")
    page.goto(f"{rp.issuer}/test/factor")
    page.click("[data-passkey-action=verify]")
    page.wait_for_selector("#result")
    assert page.inner_text("#result") == '["hwk", "user"]'
    # Each challenge page issues its own challenge (the first one was used up).
    page.goto(f"{rp.issuer}/test/factor")
    page.click("[data-passkey-action=verify]")
    page.wait_for_selector("#result")
    assert page.inner_text("#result") == '["hwk", "user"]', "a reload issues a fresh challenge"


@pytest.mark.parametrize("language", ["en", "de"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_passkeys_page_in_two_languages_and_sizes(chromium, rp, screenshot, language, size):
    from tests.e2e.test_pages import BROWSER_LOCALE, SIZES, fits_the_screen, translator

    _ = translator(language)
    context = chromium.new_context(locale=BROWSER_LOCALE[language], **SIZES[size])
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in_with_password(page, rp)
        page.goto(f"{rp.issuer}/connect/account/passkeys")
        page.wait_for_selector("#passkey-new-name")
        assert page.inner_text("h2") == _("Add a passkey")
        assert page.inner_text("main li") == _("You have no passkeys yet.")
        fits_the_screen(page)
        screenshot(page, f"pages/passkeys-{language}-{size}")
    finally:
        context.close()


def test_a_password_sign_in_is_not_undone_by_the_autofill_request(page, rp, monkeypatch):
    """The login page asks for a passkey challenge as it loads (autofill), and the server keeps the
    challenge in the session. When that request is served after a password sign-in on the same page
    has replaced the session (the fixation defence deletes the old key), it finds no session, starts
    a new one and sets its cookie: the browser lost the sign-in and its pending request ("This
    sign-in request has expired"; seen in CI). Here the server holds the challenge request until the
    sign-in has been answered (at most 3 s), and the consent page until the challenge has been
    answered: the login page must not post while its challenge request is out."""
    from django.contrib.sessions.middleware import SessionMiddleware

    from oidc_provider_ext.views import authorize, login

    signed_in, challenged = threading.Event(), threading.Event()
    arrive, leave = SessionMiddleware.process_request, SessionMiddleware.process_response
    post, resume = login.LoginView.post, authorize.AuthorizeContinueView.get

    def arriving(self, request):
        if request.path.endswith("/passkeys/options"):
            signed_in.wait(3)  # the challenge request reaches the server after the password
        return arrive(self, request)

    def signing_in(self, request, *args, **kwargs):
        try:
            return post(self, request, *args, **kwargs)
        finally:
            signed_in.set()

    def leaving(self, request, response):
        try:
            return leave(self, request, response)
        finally:
            if request.path.endswith("/passkeys/options"):
                challenged.set()

    def continuing(self, request, *args, **kwargs):
        challenged.wait(3)
        time.sleep(0.3)  # the challenge's response reaches the browser first
        return resume(self, request, *args, **kwargs)

    monkeypatch.setattr(SessionMiddleware, "process_request", arriving)
    monkeypatch.setattr(SessionMiddleware, "process_response", leaving)
    monkeypatch.setattr(login.LoginView, "post", signing_in)
    monkeypatch.setattr(authorize.AuthorizeContinueView, "get", continuing)
    sign_in_with_password(page, rp)  # the consent page's answer would be "expired"
    assert challenged.is_set() and signed_in.is_set()  # the challenge was asked for, and held
    assert rp.last["claims"]["sub"]
