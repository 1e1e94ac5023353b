"""Review round 7: the signed login round trip, the user read with the OP-session check
(oidc_provider_ext.backends.ModelBackend) and the consent remembered after the code, attacked.

Each test fails if its attack works."""

import time
from urllib.parse import quote, unquote, urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from oidc_provider_ext import backends
from oidc_provider_ext.models import AuthorizationGrant, Consent, TenantMembership

from .factories import USER_PASSWORD, ApplicationFactory, TenantFactory, UserFactory
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


class TestSignedUrlElsewhere:
    def test_another_users_hint_gives_no_code(self, skip_app):
        """An attacker's continue URL (id_token_hint / sub for user A) opened by signed-in user B."""
        a, b = UserFactory(), UserFactory()
        claims = '{"id_token": {"sub": {"value": "%s"}}}'
        from oidc_provider_ext.tokens import subject_for

        attacker = Client()
        url = next_of(attacker.get(authorize_url(skip_app, claims=claims % subject_for(a))))
        victim = signed_in(b)
        response = victim.get(url)
        assert not (response.status_code == 302 and "code" in query_of(response["Location"]))
        assert not AuthorizationGrant.objects.exists()

    @pytest.mark.parametrize("disable", [False, True])
    def test_disabled_tenant_after_the_url_gives_no_code(self, user, skip_app, disable):
        tenant = TenantFactory(code="acme")
        TenantMembership.objects.create(tenant=tenant, user=user)
        browser = Client()
        response = browser.get(authorize_url(skip_app, acr_values="tenant:acme"))
        assert ":" in next_of(response)  # travels signed
        if disable:
            tenant.is_active = False
            tenant.save()
        answer = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        if answer.status_code == 302:
            answer = browser.get(answer["Location"])
        issued = answer.status_code == 302 and "code" in query_of(answer.get("Location", ""))
        assert issued is not disable  # the control (still active) gets its code
        assert AuthorizationGrant.objects.exists() is not disable

    def test_redirect_uri_changed_after_the_url_gives_no_code(self, user, skip_app):
        browser = Client()
        response = browser.get(authorize_url(skip_app))
        skip_app.redirect_uris = "https://elsewhere.example/cb"
        skip_app.save()
        continue_url = sign_in_through(browser, response, user)
        answer = browser.get(continue_url)
        assert "rp.example.com" not in answer.get("Location", "")
        assert not AuthorizationGrant.objects.exists()

    def test_pkce_required_after_the_url_gives_no_code(self, user, skip_app):
        browser = Client()
        response = browser.get(authorize_url(skip_app))
        skip_app.oidc_profile.require_pkce = True
        skip_app.oidc_profile.save()
        continue_url = sign_in_through(browser, response, user)
        answer = browser.get(continue_url)
        assert "code" not in query_of(answer.get("Location", ""))
        assert not AuthorizationGrant.objects.exists()

    def test_login_page_next_on_another_host_is_not_followed(self, user, skip_app):
        url = next_of(Client().get(authorize_url(skip_app)))
        browser = Client()
        for target in (f"https://evil.example{url}", f"//evil.example{url}", f"/\\evil.example{url}"):
            login = f"{reverse('oidc_provider_ext:login')}?{urlencode({'next': target})}"
            answer = browser.post(login, {"username": user.username, "password": USER_PASSWORD})
            assert answer.status_code == 302 and "evil.example" not in answer["Location"]

    def test_a_signed_url_is_no_device_confirmation(self, user, skip_app):
        browser = signed_in(user)
        url = next_of(Client().get(authorize_url(skip_app)))
        request_id = url.rstrip("/").rsplit("/", 1)[-1]
        device = reverse("oidc_provider_ext:device-continue", args=[request_id])
        assert browser.get(device).status_code == 400
        assert browser.post(device, {"request_id": request_id, "decision": "allow"}).status_code == 400
        step_up = reverse("oidc_provider_ext:authorize-step-up", args=[request_id])
        assert browser.post(step_up, {"factor": "totp", "code": "000000"}).status_code == 400


ODD_IDS = [
    "\x00",
    ":",
    "::",
    "a:\x00",
    "\u00e9t\u00e9:\u2603",
    "x" * (1024 * 1024),
    "x" * 1024 * 1024 + ":y",
    "..:..",
    ".:",
    "%00",
    "%ZZ:",
]


@pytest.mark.parametrize("odd", ODD_IDS, ids=lambda v: repr(v[:12]) + f"/{len(v)}")
@pytest.mark.parametrize("name", ["authorize-continue", "device-continue", "authorize-step-up"])
def test_odd_ids_are_a_400_page(user, name, odd):
    for browser in (Client(), signed_in(user)):
        path = reverse(f"oidc_provider_ext:{name}", args=["PLACEHOLDER"]).replace(
            "PLACEHOLDER", quote(odd, safe=":")
        )
        for method in ("get", "post"):
            response = getattr(browser, method)(path)
            assert response.status_code == 400, (name, method, response.status_code)


@pytest.mark.parametrize("odd", [v for v in ODD_IDS if len(v) < 8000], ids=repr)
def test_odd_ids_in_the_login_pages_next(user, odd):
    nexts = reverse("oidc_provider_ext:authorize-continue", args=["P"]).replace("P", quote(odd, safe=":"))
    browser = Client()
    login = f"{reverse('oidc_provider_ext:login')}?{urlencode({'next': unquote(nexts)})}"
    page = browser.get(login)
    assert page.status_code in (200, 400)
    answer = browser.post(login, {"username": user.username, "password": USER_PASSWORD})
    assert answer.status_code in (302, 400)


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


# --- the user read with the OP-session check ----------------------------------------------------


class TestUserRead:
    def _whoami(self, browser):
        response = browser.get(reverse("oidc_provider_ext:account-security"))
        return response.status_code == 200

    def test_deactivated_user_is_signed_out(self, user):
        browser = signed_in(user)
        assert self._whoami(browser)
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        assert not self._whoami(browser)

    def test_password_change_elsewhere_signs_out(self, user):
        browser = signed_in(user)
        assert self._whoami(browser)
        user.set_password("another password entirely 42")
        user.save()
        assert not self._whoami(browser)

    def test_the_row_is_not_handed_over_after_the_request(self, user):
        browser = signed_in(user)
        assert self._whoami(browser)
        assert backends._handed_over.get() is None

    def test_handed_over_only_for_its_own_pk_and_reset_on_error(self, user):
        other = UserFactory()
        backend = backends.ModelBackend()
        with backends.handing_over(user):
            assert backend.get_user(user.pk) is user
            fetched = backend.get_user(other.pk)
            assert fetched is not user and fetched.pk == other.pk
        with pytest.raises(RuntimeError), backends.handing_over(user):
            raise RuntimeError
        assert backends._handed_over.get() is None
        user.is_active = False
        with backends.handing_over(user):
            assert backend.get_user(user.pk) is None or backend.get_user(user.pk) is not user

    def test_session_of_another_backend_is_not_read_with_the_user(self, settings, user):
        """A session signed in with a backend no longer configured is anonymous (Django's rule)."""
        browser = signed_in(user)
        session = browser.session
        session["_auth_user_backend"] = "django.contrib.auth.backends.RemoteUserBackend"
        session.save()
        assert not self._whoami(browser)

    def test_session_naming_another_user_id_is_anonymous(self, user):
        other = UserFactory()
        browser = signed_in(user)
        session = browser.session
        session["_auth_user_id"] = str(other.pk)  # the hash is still user's
        session.save()
        assert not self._whoami(browser)

    def test_async_get_user_takes_the_row_only_inside_the_block(self, user):
        from asgiref.sync import async_to_sync

        other = UserFactory()
        backend = backends.ModelBackend()
        with backends.handing_over(user):
            assert async_to_sync(backend.aget_user)(user.pk) is user
            assert async_to_sync(backend.aget_user)(other.pk).pk == other.pk
        fetched = async_to_sync(backend.aget_user)(user.pk)
        assert fetched is not user and fetched.pk == user.pk
