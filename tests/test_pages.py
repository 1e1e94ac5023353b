"""The hosted pages as a user sees them (issue 14, item 10): one error box, the client named on the
login page, where "Stay signed in" leads, readable sessions, and "Forgot password?"."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.urls import reverse

from oidc_provider_ext.internal.user_agents import describe
from oidc_provider_ext.models import OPSession

from .factories import USER_PASSWORD, ApplicationFactory, UserFactory
from .flow import authorize_url, login

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append(dict(attrs))


def inputs_of(html: str) -> list[dict]:
    parser = _Inputs()
    parser.feed(html)
    return parser.inputs


def login_page(browser, app, **params):
    response = browser.get(authorize_url(app, **params))
    assert response.status_code == 302
    return response["Location"], browser.get(response["Location"])


class TestLoginPage:
    def test_wrong_password_shows_one_error_box(self, browser, user, confidential_app):
        url, _page = login_page(browser, confidential_app)
        response = browser.post(url, {"username": user.username, "password": "wrong"})
        html = response.content.decode()
        assert response.status_code == 400
        assert html.count("alert-danger") == 1, "one red box, not ours and crispy-forms' both"
        assert html.count("The username or password is not correct") == 1

    def test_empty_fields_are_marked_at_the_fields_not_as_a_wrong_password(self, browser, confidential_app):
        url, _page = login_page(browser, confidential_app)
        html = browser.post(url, {"username": "", "password": ""}).content.decode()
        assert "The username or password is not correct" not in html
        assert html.count("is-invalid") == 2 and "alert-danger" not in html

    def test_no_nameless_input_and_one_csrf_token(self, browser, user, confidential_app):
        url, _page = login_page(browser, confidential_app)
        html = browser.post(url, {"username": user.username, "password": "wrong"}).content.decode()
        inputs = inputs_of(html)
        assert all(field.get("name") for field in inputs), inputs
        assert [field["name"] for field in inputs].count("csrfmiddlewaretoken") == 1
        assert "next" not in [field["name"] for field in inputs], "the action URL carries next once"
        (action,) = re.findall(r'<form method="post" action="([^"]*)"', html)
        assert action.replace("&amp;", "&") == url, "the retry posts to the same login URL (next kept)"

    def test_names_the_client_and_shows_its_logo(self, browser, db):
        app = ApplicationFactory(name="Photo Album", profile__logo_uri="https://rp.example.com/logo.png")
        _url, page = login_page(browser, app)
        html = page.content.decode()
        assert re.search(r"to continue to <strong>Photo Album</strong>", html)
        assert 'src="https://rp.example.com/logo.png"' in html

    def test_without_a_logo_no_image(self, browser, confidential_app):
        _url, page = login_page(browser, confidential_app)
        html = page.content.decode()
        assert f"to continue to <strong>{confidential_app.name}</strong>" in html
        assert "oidc-client-logo" not in html

    def test_plain_login_names_no_client(self, browser, db):
        html = browser.get(reverse("oidc_provider_ext:login")).content.decode()
        assert "to continue to" not in html

    def test_links_to_password_reset(self, browser, confidential_app):
        _url, page = login_page(browser, confidential_app)
        assert f'href="{reverse("oidc_provider_ext:password-reset")}"' in page.content.decode()


class TestLogoutConfirmation:
    def stay_href(self, browser, user, app):
        login(browser, user)
        page = browser.get(reverse("oidc_provider_ext:endsession"), {"client_id": app.client_id})
        assert page.templates[0].name == "oidc_provider_ext/logout_confirm.html"
        (href,) = re.findall(r'href="([^"]*)"[^>]*data-stay', page.content.decode())
        return href

    def test_stay_signed_in_returns_to_the_client(self, browser, user, db):
        app = ApplicationFactory(profile__client_uri="https://rp.example.com/home")
        assert self.stay_href(browser, user, app) == "https://rp.example.com/home"

    def test_stay_signed_in_without_client_home_goes_to_the_account(self, browser, user, confidential_app):
        assert self.stay_href(browser, user, confidential_app) == reverse("oidc_provider_ext:sessions")


class TestSessionsPage:
    @pytest.mark.parametrize(
        ("user_agent", "shown"),
        [
            (FIREFOX_LINUX, "Firefox on Linux"),
            (SAFARI_IPHONE, "Mobile Safari on iOS"),
            ("", "Unknown browser"),
        ],
    )
    def test_shows_the_browser_not_the_raw_string(self, browser, user, user_agent, shown):
        browser.post(
            reverse("oidc_provider_ext:login"),
            {"username": user.username, "password": USER_PASSWORD},
            headers={"User-Agent": user_agent},
        )
        assert OPSession.objects.get(user=user).user_agent == user_agent
        page = browser.get(reverse("oidc_provider_ext:sessions"))
        assert re.search(rf"<strong[^>]*>{re.escape(shown)}</strong>", page.content.decode())

    def test_unknown_strings_are_not_echoed_as_the_name(self):
        assert describe("curl/8.5.0") == "curl"
        assert describe("<script>nonsense</script>") == "Unknown browser"


class TestPasswordReset:
    def request_reset(self, client, user, **extra):
        return client.post(reverse("oidc_provider_ext:password-reset"), {"email": user.email}, **extra)

    def test_the_whole_reset(self, browser, user):
        response = self.request_reset(browser, user)
        assert response.status_code == 302
        assert response["Location"] == reverse("oidc_provider_ext:password-reset-done")
        assert browser.get(response["Location"]).status_code == 200
        (message,) = mail.outbox
        (link,) = re.findall(r"https?://\S+", message.body)
        confirm = browser.get(urlsplit(link).path, follow=True)
        assert confirm.context["validlink"]
        new_password = "a brand new passphrase 42"
        done = browser.post(
            confirm.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password}
        )
        assert done["Location"] == reverse("oidc_provider_ext:password-reset-complete")
        user.refresh_from_db()
        assert user.check_password(new_password)

    def test_nobody_can_flood_a_mailbox_or_use_the_provider_as_a_mail_cannon(self, user):
        from django.test import Client

        from oidc_provider_ext import throttle

        for n in range(throttle.RESET_EMAILS_PER_ADDRESS + 3):
            response = self.request_reset(Client(REMOTE_ADDR=f"198.51.100.{n}"), user)
            # The same answer every time: the page never tells whether an email went out.
            assert response["Location"] == reverse("oidc_provider_ext:password-reset-done")
        assert len(mail.outbox) == throttle.RESET_EMAILS_PER_ADDRESS
        others = [UserFactory() for _ in range(throttle.RESET_EMAILS_PER_SOURCE + 2)]
        mail.outbox.clear()
        for other in others:  # one source, many victims
            self.request_reset(Client(REMOTE_ADDR="203.0.113.7"), other)
        assert len(mail.outbox) == throttle.RESET_EMAILS_PER_SOURCE

    @pytest.mark.oidc_settings(ISSUER="https://id.example.com")
    def test_the_link_comes_from_the_issuer_not_the_host_header(self, user, settings):
        # A forged Host (allowed by a lax ALLOWED_HOSTS) must not send the token to another site.
        settings.ALLOWED_HOSTS = ["*"]
        from django.test import Client

        self.request_reset(Client(), user, headers={"Host": "evil.example.net"})
        (message,) = mail.outbox
        assert "evil.example.net" not in message.body + message.subject
        assert "https://id.example.com/connect/password/reset/" in message.body

    def test_unknown_address_looks_the_same_and_sends_nothing(self, browser, db):
        response = browser.post(reverse("oidc_provider_ext:password-reset"), {"email": "nobody@example.com"})
        assert response.status_code == 302
        assert response["Location"] == reverse("oidc_provider_ext:password-reset-done")
        assert mail.outbox == []

    def test_a_used_link_is_refused(self, browser, user):
        self.request_reset(browser, user)
        (link,) = re.findall(r"https?://\S+", mail.outbox[0].body)
        user.set_password("changed elsewhere 123")
        user.save()
        page = browser.get(urlsplit(link).path, follow=True)
        assert not page.context["validlink"]
        assert "This link is not valid" in page.content.decode()
