"""Every hosted page in a real browser, in two languages (the browser's Accept-Language), at desktop
and phone sizes, plus Arabic right-to-left (issue 14, items 9 and 10). Each page is captured as
``pages/<page>-<language>-<size>.png`` (docs/screenshots/pages/ with ``make screenshots``)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from oidc_provider_ext.models import ClientProfile
from tests.test_i18n import LOCALE, po_entries

pytestmark = pytest.mark.live

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}, "user_agent": CHROME_LINUX},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "user_agent": SAFARI_IPHONE,
    },
}
DEVICE = {"desktop": ("Chrome", "Linux"), "phone": ("Mobile Safari", "iOS")}
BROWSER_LOCALE = {"en": "en-US", "de": "de-DE", "ar": "ar"}
# A small logo (the client's logo_uri): the login and consent pages show it.
LOGO = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 40 40'%3E"
    "%3Crect width='40' height='40' rx='8' fill='%230d6efd'/%3E%3C/svg%3E"
)
NEW_PASSWORD = "a new passphrase for pat 42"


def translator(language: str):
    if language == "en":
        return lambda msgid: msgid
    catalogue = po_entries(LOCALE / language / "LC_MESSAGES" / "django.po")
    return lambda msgid: catalogue[msgid]


@pytest.fixture
def browser_page(chromium, rp, request):
    language, size = request.param
    context = chromium.new_context(locale=BROWSER_LOCALE[language], **SIZES[size])
    page = context.new_page()
    page.set_default_timeout(15_000)
    ClientProfile.objects.filter(application__client_id=rp.client_id).update(logo_uri=LOGO)
    yield page, language, size
    context.close()


def fits_the_screen(page):
    # Measured once the stylesheets and images are in: a selector can appear before them (a busy
    # machine showed a German login page 1302 px wide, unstyled, for a moment).
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page scrolls sideways ({width}px)"


def checkboxes_inside_the_card(page, rtl: bool = False):
    """Issue 14: the consent checkboxes sat on the card's border."""
    card = page.locator(".oidc-card").bounding_box()
    boxes = page.locator(".oidc-scopes input[type=checkbox]")
    assert boxes.count() >= 2
    for index in range(boxes.count()):
        box = boxes.nth(index).bounding_box()
        if rtl:
            assert card["x"] + card["width"] - (box["x"] + box["width"]) >= 12, (box, card)
        else:
            assert box["x"] - card["x"] >= 12, (box, card)


PAIRS = [(language, size) for language in ("en", "de") for size in ("desktop", "phone")]


@pytest.mark.parametrize("browser_page", PAIRS, indirect=True, ids=[f"{lang}-{size}" for lang, size in PAIRS])
def test_every_hosted_page(browser_page, rp, screenshot):
    page, language, size = browser_page
    _ = translator(language)

    def shot(name):
        fits_the_screen(page)
        screenshot(page, f"pages/{name}-{language}-{size}")

    # Sign in, for the demo client: the page says which application asks, with its logo.
    page.goto(rp.url)
    page.click("#sign-in")
    page.wait_for_selector("#id_username")
    assert page.get_attribute("html", "lang") == language and page.get_attribute("html", "dir") == "ltr"
    assert page.inner_text("h1") == _("Sign in")
    client = page.locator("[data-client]")
    assert "Demo web app (confidential)" in client.inner_text() and client.locator("img").count() == 1
    shot("login")

    # A wrong password: one red box, in the page's language.
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", "not the password")
    page.click("button[type=submit]")
    page.wait_for_selector(".alert-danger")
    assert page.locator(".alert-danger").count() == 1
    assert page.inner_text(".alert-danger") == _("The username or password is not correct. Please try again.")
    shot("login-failed")

    # Consent: the checkboxes sit inside the card.
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")
    page.wait_for_selector('button[name="decision"][value="allow"]')
    assert _("This application would like to:") in page.inner_text("main")
    checkboxes_inside_the_card(page)
    shot("consent")
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#who")
    logout_url = page.get_attribute("#sign-out-without-hint", "href")

    # The account pages.
    page.goto(f"{rp.issuer}/connect/apps")
    assert page.inner_text("h1") == _("Connected apps")
    shot("connected_apps")
    page.goto(f"{rp.issuer}/connect/sessions")
    browser, system = DEVICE[size]
    device = _("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    assert page.inner_text("li[data-sid] strong") == device, "the parsed user agent, not the raw string"
    shot("sessions")

    # Sign out? "Stay signed in" leads to the account, not to "/".
    page.goto(logout_url)
    page.wait_for_selector('button[name="confirm"][value="yes"]')
    assert page.get_attribute("[data-stay]", "href") == "/connect/sessions"
    shot("logout")
    page.click("[data-stay]")
    page.wait_for_selector("li[data-sid]")  # still signed in, on the sessions page
    page.goto(logout_url)
    page.click('button[name="confirm"][value="yes"]')
    page.wait_for_selector("#state")
    page.goto(f"{rp.issuer}/connect/endsession")
    assert page.inner_text("h1") == _("You are signed out")
    shot("logged_out")

    # An invalid sign-in link: an error page at the IdP.
    page.goto(rp.authorization_url().replace("%2Fcallback", "%2Fnot-registered"))
    assert page.inner_text("h1") == _("This sign-in link is not valid")
    shot("error")

    # Forgot password? Django's reset views, inside the hosted pages.
    # (Django mails only users with a usable password.)
    name = f"pat-{language}-{size}"
    user = get_user_model().objects.create_user(name, f"{name}@example.com", "an old password 1")
    page.goto(rp.url)
    page.click("#sign-in")
    page.click(f"text={_('Forgot password?')}")
    page.wait_for_selector("#id_email")
    assert page.inner_text("h1") == _("Reset your password")
    shot("password_reset")
    mail.outbox.clear()
    page.fill("#id_email", user.email)
    page.click("button[type=submit]")
    page.wait_for_selector(f"h1:has-text('{_('Check your email')}')")
    shot("password_reset_sent")
    (link,) = re.findall(r"https?://\S+/connect/password/reset/\S+", mail.outbox[0].body)
    assert link.startswith(rp.issuer), "the link is built from the issuer"
    page.goto(link)
    page.wait_for_selector("#id_new_password1")
    shot("password_reset_confirm")
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(f"h1:has-text('{_('Password changed')}')")
    shot("password_reset_complete")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)

    # Too many wrong passwords: django-axes' lockout page, in the same language.
    page.goto(rp.url)
    page.click("#sign-in")
    for _attempt in range(5):
        page.wait_for_selector("#id_username")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "wrong")
        page.click("button[type=submit]")
        page.wait_for_load_state()
    assert page.inner_text("h1") == _("Too many sign-in attempts")
    shot("lockout")


RTL = [("ar", "desktop"), ("ar", "phone")]


@pytest.mark.parametrize("browser_page", RTL, indirect=True, ids=[f"{lang}-{size}" for lang, size in RTL])
def test_right_to_left(browser_page, rp, screenshot):
    """ui_locales=ar (the RP's choice, whatever the browser says): Arabic, right to left."""
    page, language, size = browser_page
    _ = translator(language)
    page.goto(rp.authorization_url(ui_locales="ar"))
    page.wait_for_selector("#id_username")
    assert page.get_attribute("html", "lang") == "ar" and page.get_attribute("html", "dir") == "rtl"
    assert page.inner_text("h1") == _("Sign in")
    # Right to left: the label sits right of the box it names... and the card text starts right.
    assert page.evaluate("getComputedStyle(document.querySelector('.card-body')).direction") == "rtl"
    fits_the_screen(page)
    screenshot(page, f"pages/login-ar-{size}")
    page.fill("#id_username", rp.demo["user"]["username"])
    page.fill("#id_password", rp.demo["user"]["password"])
    page.click("button[type=submit]")
    page.wait_for_selector('button[name="decision"][value="allow"]')
    checkboxes_inside_the_card(page, rtl=True)
    box = page.locator(".oidc-scopes input[type=checkbox]").first.bounding_box()
    label = page.locator(".oidc-scopes label").first.bounding_box()
    assert box["x"] > label["x"], "right to left: the checkbox is right of its label"
    fits_the_screen(page)
    screenshot(page, f"pages/consent-ar-{size}")
