"""Review round 7: the signed login round trip, the user read with the OP-session check
(oidc_provider_ext.backends.ModelBackend) and the consent remembered after the code, attacked.

Each test fails if its attack works."""

import time
from urllib.parse import unquote

import pytest
from django.test import Client

from oidc_provider_ext.models import AuthorizationGrant, Consent

from .factories import USER_PASSWORD, ApplicationFactory
from .flow import authorize_url, consent, query_of, signed_in

pytestmark = pytest.mark.django_db

LOGIN = "/login"


def next_of(response) -> str:
    assert response.status_code == 302 and LOGIN in response["Location"], response
    return unquote(response["Location"].split("next=", 1)[1])


def sign_in_through(browser, response, user):
    """Sign in on the login page ``response`` redirected to; the continue URL it sends back to."""
    answer = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
    assert answer.status_code == 302, answer.content[:300]
    return answer["Location"]


@pytest.fixture
def skip_app(db):
    return ApplicationFactory(profile__consent_policy="skip")


# --- the signed continue URL -------------------------------------------------------------------


class TestSignedReplay:
    """The signed continue URL stays valid for AUTHORIZE_REQUEST_MAX_AGE_SECONDS (30 min). It
    carries ``login_started``, which exempts a sign-in made after it from prompt=login and
    max_age ("signed in for this very request"). A request stored in the session was discarded
    when its code was issued; a signed URL is not, so following it again (back button, history)
    must not count as the sign-in for this request a second time."""

    @pytest.mark.parametrize(
        "params", [{"prompt": "login"}, {"prompt": "select_account"}, {"max_age": "0"}, {"max_age": "60"}]
    )
    def test_a_replayed_continue_url_does_not_skip_the_fresh_sign_in(
        self, monkeypatch, user, skip_app, params
    ):
        browser = Client()
        response = browser.get(authorize_url(skip_app, **params))
        continue_url = sign_in_through(browser, response, user)
        first = browser.get(continue_url)
        assert first.status_code == 302 and "code" in query_of(first["Location"]), first
        # Minutes later (within the request's lifetime), the same URL from the browser's history.
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 120)
        again = browser.get(continue_url)
        assert not (again.status_code == 302 and "code" in query_of(again["Location"])), (
            "a replayed continue URL issued a code without the fresh sign-in the client asked for"
        )
        assert AuthorizationGrant.objects.count() == 1

    def test_the_first_round_trip_still_works(self, user, skip_app):
        """prompt=login and max_age=0 are satisfied by the sign-in made for the request (no loop)."""
        browser = signed_in(user)
        response = browser.get(authorize_url(skip_app, prompt="login", max_age="0"))
        continue_url = sign_in_through(browser, response, user)
        first = browser.get(continue_url)
        assert first.status_code == 302 and "code" in query_of(first["Location"]), first


# --- the consent remembered after the code -----------------------------------------------------


class TestConsentAfterCode:
    @pytest.fixture
    def app(self, db):
        return ApplicationFactory(profile__consent_policy="remember")

    def test_a_refused_code_remembers_no_consent(self, user, app):
        """The change's own promise (views/authorize.py): "an answer whose code is refused
        remembers nothing" - also when oauthlib refuses it with an error redirect (not an
        exception): PKCE required while the page was open."""
        browser = signed_in(user)
        page = browser.get(authorize_url(app, scope="openid email"))
        assert page.status_code == 200
        app.oidc_profile.require_pkce = True
        app.oidc_profile.save()
        response = consent(browser, page)
        assert "code" not in query_of(response.get("Location", ""))
        assert not AuthorizationGrant.objects.exists()
        assert not Consent.objects.filter(user=user, application=app).exists()

    def test_a_denied_answer_remembers_nothing(self, user, app):
        browser = signed_in(user)
        page = browser.get(authorize_url(app, scope="openid email"))
        response = consent(browser, page, decision="deny")
        assert query_of(response["Location"]).get("error") == "access_denied"
        assert not Consent.objects.exists() and not AuthorizationGrant.objects.exists()

    def test_unticked_scopes_are_not_remembered(self, user, app):
        browser = signed_in(user)
        page = browser.get(authorize_url(app, scope="openid email profile"))
        consent(browser, page, untick=("profile",))
        stored = Consent.objects.get(user=user, application=app)
        assert set(stored.scope.split()) == {"openid", "email"}
