"""The device code-entry page in a real browser (RFC 8628 3.3): typed the way people type it
(lower case, no dash), a wrong code announced, sign-in, the confirmation with its phishing warning
(5.4), the result; in English and German, at desktop and phone sizes. Screenshots go to
``pages/device*-<language>-<size>.png`` (docs/screenshots/pages/ with ``make screenshots``)."""

from __future__ import annotations

import pytest

from oidc_provider_ext.models import ClientProfile, DeviceAuthorization
from tests.conftest import oidc_settings
from tests.e2e.test_pages import BROWSER_LOCALE, SIZES, fits_the_screen, translator
from tests.live import http_session

pytestmark = pytest.mark.live

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PAIRS = [(language, size) for language in ("en", "de") for size in ("desktop", "phone")]


@pytest.fixture
def cli(demo, settings):
    """The demo's public client, allowed the device flow, polling every second."""
    oidc_settings(settings, DEVICE_POLL_INTERVAL_SECONDS=1)
    client_id = demo["public"]["client_id"]
    ClientProfile.objects.filter(application__client_id=client_id).update(allow_device_flow=True)
    return client_id


def device_authorization(demo, client_id: str) -> dict:
    response = http_session().post(
        f"{demo['issuer']}/connect/device_authorization",
        data={"client_id": client_id, "scope": "openid profile"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def poll(demo, client_id: str, device_code: str) -> dict:
    return (
        http_session()
        .post(
            f"{demo['issuer']}/connect/token",
            data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
            timeout=10,
        )
        .json()
    )


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{lang}-{size}" for lang, size in PAIRS])
def test_code_entry_page(chromium, demo, cli, screenshot, pair):
    language, size = pair
    _ = translator(language)
    context = chromium.new_context(locale=BROWSER_LOCALE[language], **SIZES[size])
    page = context.new_page()
    page.set_default_timeout(15_000)

    def shot(name):
        fits_the_screen(page)
        screenshot(page, f"pages/{name}-{language}-{size}")

    try:
        grant = device_authorization(demo, cli)
        page.goto(grant["verification_uri"])
        field = page.locator("#id_user_code")
        assert page.inner_text("h1") == _("Connect a device")
        # Easy to type: an accessible label, capitals on phones, no autocorrect.
        assert page.locator("label[for=id_user_code]").inner_text() == _("Code")
        assert field.get_attribute("autocapitalize") == "characters"
        assert field.get_attribute("autocorrect") == "off" and field.get_attribute("spellcheck") == "false"
        assert field.get_attribute("aria-describedby") == "user-code-help"
        shot("device")

        # A wrong code: one alert, announced (role=alert), the field marked invalid.
        field.fill("bcdf-ghjk" if grant["user_code"] != "BCDF-GHJK" else "bcdf-ghjl")
        page.click("button[type=submit]")
        page.wait_for_selector("[role=alert]")
        assert page.inner_text("[role=alert]") == _(
            "That code is not valid or has expired. Check the code on your device and try again."
        )
        assert page.get_attribute("#id_user_code", "aria-invalid") == "true"
        shot("device-failed")

        # The right code, the way people type it: lower case, without the dash.
        page.fill("#id_user_code", grant["user_code"].replace("-", "").lower())
        page.click("button[type=submit]")
        page.wait_for_selector("#id_username")
        assert "Demo" in page.inner_text("[data-client]"), "the login page names the application"
        page.fill("#id_username", demo["user"]["username"])
        page.fill("#id_password", demo["user"]["password"])
        page.click("button[type=submit]")

        # RFC 8628 5.4: always a confirmation, with the warning.
        page.wait_for_selector("[data-device-warning]")
        assert page.inner_text("[data-device-warning]") == _(
            "You entered a code to sign in a device. Only allow this if you started the sign-in "
            "yourself, on a device or terminal in front of you."
        )
        assert DeviceAuthorization.objects.get().status == "pending"
        shot("device-confirm")
        page.click('button[name="decision"][value="allow"]')
        page.wait_for_selector("[data-device-result=approved]")
        shot("device-done")

        tokens = poll(demo, cli, grant["device_code"])
        assert tokens.get("token_type") == "Bearer", tokens
        assert tokens["id_token"]
    finally:
        context.close()


def test_verification_uri_complete_prefills_only(chromium, demo, cli):
    context = chromium.new_context(**SIZES["phone"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        grant = device_authorization(demo, cli)
        page.goto(grant["verification_uri_complete"])
        assert page.input_value("#id_user_code") == grant["user_code"]
        # Opening the link (a QR code, or a link an attacker sent) approves nothing.
        assert DeviceAuthorization.objects.get().status == "pending"
        assert poll(demo, cli, grant["device_code"])["error"] == "authorization_pending"
    finally:
        context.close()
