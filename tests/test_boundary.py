"""Attack tests of the request boundary (oidc_provider_ext.internal.requests): every endpoint refuses
control characters, invalid UTF-8, malformed escapes, oversized values and deep nesting with its own
protocol error, never a 500."""

import json
import secrets
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oidc_provider_ext import urls
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal.requests import value_problem
from oidc_provider_ext.sessions import stored_key

from .factories import REDIRECT_URI, USER_PASSWORD
from .flow import authorize_url, login, query_of

pytestmark = pytest.mark.django_db


def assert_boundary_page(response):
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert "oidc_provider_ext/error.html" in [t.name for t in response.templates]
    assert "Location" not in response


def _redirected_error(response, state="state-123"):
    assert response.status_code == 302, (response.status_code, response.content[:300])
    assert response["Location"].startswith(REDIRECT_URI), response["Location"]
    query = query_of(response["Location"])
    assert query["error"] == "invalid_request", query
    assert query["state"] == state and query["iss"]
    return query


class TestReviewFindings:
    def test_nul_in_nonce_signed_in(self, client, user, confidential_app):
        login(client, user)
        response = client.get(authorize_url(confidential_app).replace("nonce-456", "a%00b"))
        _redirected_error(response)

    def test_nul_in_acr_values(self, client, confidential_app):
        response = client.get(authorize_url(confidential_app) + "&acr_values=tenant:acme%00")
        _redirected_error(response)

    def test_nul_client_id_at_endsession(self, client):
        response = client.get(reverse("oidc_provider_ext:endsession") + "?client_id=%00")
        assert_boundary_page(response)

    def test_deep_claims_post(self, client, confidential_app):
        data = {
            "response_type": "code", "client_id": confidential_app.client_id, "redirect_uri": REDIRECT_URI,
            "scope": "openid", "state": "state-123", "claims": "[" * 4000 + "]" * 4000,
        }  # fmt: skip
        response = client.post(reverse("oidc_provider_ext:authorize"), data)
        _redirected_error(response)

    @pytest.mark.parametrize("endpoint", ["authorize", "userinfo"])
    def test_malformed_percent_escape(self, client, confidential_app, endpoint):
        if endpoint == "authorize":
            # Even client_id and redirect_uri cannot be trusted: the query cannot be decoded.
            assert_boundary_page(client.get(authorize_url(confidential_app) + "&x=%zz"))
        else:
            response = client.get(reverse("oidc_provider_ext:userinfo") + "?x=%zz")
            assert response.status_code == 400 and response.json()["error"] == "invalid_request"
            assert response["WWW-Authenticate"] == 'Bearer error="invalid_request"'

    @pytest.mark.parametrize(
        "param, value",
        [("nonce", "n" * 400), ("code_challenge", "c" * 400), ("claims", '{"a":1e999}'),
         ("claims", '{"id_token":{"a\\u0000":null}}')],
    )  # fmt: skip
    def test_values_the_code_cannot_store(self, client, user, confidential_app, param, value):
        login(client, user)
        extra = {"code_challenge_method": "S256"} if param == "code_challenge" else {}
        response = client.get(authorize_url(confidential_app, **{param: value}, **extra))
        _redirected_error(response)

    def test_long_username(self, client, user):
        response = client.post(reverse("oidc_provider_ext:login"), {"username": "u" * 300, "password": "x"})
        assert_boundary_page(response)

    @pytest.mark.parametrize("endpoint", ["login", "authorize", "endsession", "sessions"])
    def test_utf16_form_to_pages(self, user, endpoint):
        # A real browser session: CSRF is enforced, and the CSRF check reads the body too.
        client = Client(enforce_csrf_checks=True)
        if endpoint == "sessions":
            client.force_login(user)
        body = "username=a&password=b".encode("utf-16")
        response = client.generic(
            "POST", reverse(f"oidc_provider_ext:{endpoint}"), body,
            content_type="application/x-www-form-urlencoded; charset=utf-16",
        )  # fmt: skip
        assert_boundary_page(response)

    @pytest.mark.parametrize("endpoint", ["token", "introspect", "revocation"])
    def test_utf16_form_to_back_channel(self, client, endpoint):
        body = "grant_type=client_credentials".encode("utf-16")
        response = client.generic(
            "POST", reverse(f"oidc_provider_ext:{endpoint}"), body,
            content_type="application/x-www-form-urlencoded; charset=utf-16",
        )  # fmt: skip
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


def test_every_endpoint_goes_through_the_boundary():
    patterns = list(urls.endpoint_urlpatterns + urls.discovery_urlpatterns)
    # four password-reset pages, two RFC 9728 metadata paths, five of passkeys, three of devices, seven
    # second-factor pages, two of registration
    assert len(patterns) == 37
    for pattern in patterns:
        assert getattr(pattern.callback, "oidc_request_boundary", False), pattern.name


@pytest.mark.parametrize(
    "endpoint", ["login", "sessions", "password-reset", "login-verify", "account-security"]
)
def test_csrf_is_still_checked_after_the_boundary(user, endpoint):
    client = Client(enforce_csrf_checks=True)
    if endpoint == "sessions":
        client.force_login(user)
    response = client.post(reverse(f"oidc_provider_ext:{endpoint}"), {"username": "a", "password": "b"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "value",
    [
        "[" * 10000 + "]" * 10000, '{"a":' * 9 + "1" + "}" * 9, "[]", '"x"', "{", '{"a":NaN}',
        '{"a":-Infinity}', '{"a":1e999}', '{"a":9007199254740993}', '{"a":"\\u0000"}', '{"a":"\\ud800"}',
        '{"a":1,"a":2}', '{"\\u001f":1}', '{"a":"\\u0085"}',
    ],
)  # fmt: skip
def test_claims_must_be_i_json_of_bounded_depth(value):
    assert value_problem("claims", value)


def test_a_real_claims_request_passes():
    claims = '{"id_token":{"acr":{"essential":true,"values":["tenant:x"]}},"userinfo":{"email":null}}'
    assert value_problem("claims", claims) is None


@pytest.mark.parametrize("value", ["a" * 42, "a" * 129, "a" * 42 + "=", "a" * 42 + "/", "a" * 42 + "+"])
def test_code_challenge_shape(value):
    # RFC 7636 4.2: 43..128 characters of the unreserved set.
    assert value_problem("code_challenge", value)
    assert value_problem("code_challenge", "a" * 43) is None


class TestAnonymousStorage:
    """DESIGN.md "Anonymous requests": each cookieless POST /connect/authorize used to leave a
    ~21.7 KB session row for 14 days. Now a request travels signed in the login URL and leaves
    nothing; one too long for a URL (internal/authorization.py, MAX_SIGNED_LENGTH) leaves a
    bounded row that expires with it."""

    def _largest_request(self, app):
        # Random values: they do not compress, so the signed form is too long for a URL.
        claims = json.dumps({"userinfo": {secrets.token_hex(2): {"essential": True} for _ in range(70)}})
        assert 1900 < len(claims) <= 2048
        return {
            "response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email", "state": secrets.token_urlsafe(1536),
            "nonce": secrets.token_urlsafe(191), "claims": claims,
            "login_hint": secrets.token_urlsafe(191), "ui_locales": "en " * 85,
        }  # fmt: skip

    def test_an_ordinary_request_leaves_no_row_and_no_cookie(self, confidential_app):
        for _ in range(20):
            response = Client().get(authorize_url(confidential_app, scope="openid profile email"))
            assert response.status_code == 302 and "/login" in response["Location"]
            assert settings.SESSION_COOKIE_NAME not in response.cookies
        assert not Session.objects.exists()

    def test_rows_are_bounded_and_expire_with_the_request(self, confidential_app):
        lifetime = app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        for _ in range(20):
            response = Client().post(
                reverse("oidc_provider_ext:authorize"), self._largest_request(confidential_app)
            )
            assert response.status_code == 302 and "/login" in response["Location"]
        rows = list(Session.objects.all())
        assert len(rows) == 20
        soon = timezone.now() + timedelta(seconds=lifetime + 5)
        for row in rows:
            assert len(row.session_data) < 8 * 1024
            assert row.expire_date <= soon

    def test_oversized_values_leave_no_row(self, confidential_app):
        data = {**self._largest_request(confidential_app), "state": "s" * 2049}
        response = Client().post(reverse("oidc_provider_ext:authorize"), data)
        assert response.status_code == 400
        assert not Session.objects.exists()

    def test_sign_in_restores_the_sites_expiry(self, settings, user, confidential_app):
        browser = Client()
        largest = self._largest_request(confidential_app)
        response = browser.post(reverse("oidc_provider_ext:authorize"), largest)
        assert browser.session.get_expiry_age() <= app_settings.AUTHORIZE_REQUEST_MAX_AGE_SECONDS
        response = browser.post(response["Location"], {"username": user.username, "password": USER_PASSWORD})
        assert response.status_code == 302
        assert browser.session.get_expiry_age() == settings.SESSION_COOKIE_AGE
        row = Session.objects.get(session_key=stored_key(browser.session.session_key))
        assert row.expire_date > timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)

    def test_a_signed_in_session_keeps_its_expiry(self, settings, user, confidential_app):
        browser = Client()
        login(browser, user)
        response = browser.get(authorize_url(confidential_app, prompt="login"))
        assert response.status_code == 302 and "/login" in response["Location"]
        assert browser.session.get_expiry_age() == settings.SESSION_COOKIE_AGE

    def test_a_session_with_other_data_keeps_its_expiry(self, settings, confidential_app):
        browser = Client()
        session = browser.session
        session["cart"] = ["book"]
        session.save()
        browser.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
        browser.get(authorize_url(confidential_app))
        assert browser.session.get_expiry_age() == settings.SESSION_COOKIE_AGE

    def test_cleanup_removes_expired_sessions(self, confidential_app):
        for _ in range(2):
            Client().post(reverse("oidc_provider_ext:authorize"), self._largest_request(confidential_app))
        Session.objects.filter(pk=Session.objects.first().pk).update(
            expire_date=timezone.now() - timedelta(seconds=1)
        )
        out = StringIO()
        call_command("oidc_cleanup", stdout=out)
        assert Session.objects.count() == 1
        assert "expired sessions: removed" in out.getvalue()


def test_the_login_form_posts_like_a_browser(user, confidential_app):
    # A browser posts every named input of the form: one CSRF token, not crispy-forms' second copy
    # (a repeated parameter, which the boundary refuses). The live conformance suite found it.
    from .live import forms_of

    browser = Client(enforce_csrf_checks=True)
    login_url = browser.get(authorize_url(confidential_app))["Location"]
    page = browser.get(login_url)
    form = next(f for f in forms_of(page.content.decode()) if "password" in f.controls)
    names = [name for name, _value in form.data]
    assert names.count("csrfmiddlewaretoken") == 1
    data = dict(form.data) | {"username": user.username, "password": USER_PASSWORD}
    response = browser.post(login_url, data)
    assert response.status_code == 302, response.content[:300]


def test_boundary_error_redirects_only_where_the_authorization_response_may_go(client, confidential_app):
    # A confidential client's loopback URI on another port is not its redirect URI (RFC 8252 7.3 is
    # for public clients): a bad nonce there gets the IdP's page, never a redirect to that port.
    confidential_app.redirect_uris = "http://127.0.0.1/callback"
    confidential_app.save()
    url = authorize_url(confidential_app, redirect_uri="http://127.0.0.1:9999/callback", nonce="a\x00b")
    response = client.get(url)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "endpoint", ["oidc_provider_ext:token", "oidc_provider_ext:introspect", "oidc_provider_ext:revocation"]
)
def test_a_parameter_named_like_the_validators_state_is_just_a_parameter(client, endpoint):
    # oauthlib's Request answers unknown attributes with the request's parameters: the validator's
    # own state must not be reachable that way (was a 500 for anyone, before client authentication).
    for name in ("oidc_state", "_oidc_state", "_oidc_grant", "oidc_context"):
        response = client.post(
            reverse(endpoint), f"grant_type=client_credentials&token=t&{name}=x",
            content_type="application/x-www-form-urlencoded",
        )  # fmt: skip
        assert response.status_code in (400, 401), (name, response.content)
        assert response.json()["error"]


def test_a_parameter_named_like_the_validators_state_at_userinfo(client):
    response = client.get(
        reverse("oidc_provider_ext:userinfo"), {"oidc_state": "x"}, HTTP_AUTHORIZATION="Bearer x"
    )
    assert response.status_code == 401


# --- the back-channel endpoints' decorators: applied once, to the view function -------------------

BACK_CHANNEL_SENSITIVE = {
    "token": ("client_secret", "code", "code_verifier", "refresh_token", "device_code"),
    "introspect": ("client_secret", "token"),
    "device-authorization": ("client_secret",),
    "revocation": ("client_secret", "token"),
    "userinfo": ("access_token",),
}


@pytest.mark.parametrize("endpoint", sorted(BACK_CHANNEL_SENSITIVE))
def test_back_channel_decorators_wrap_the_view_once(endpoint):
    # method_decorator(name="dispatch") re-wraps dispatch on every request; decorated_view wraps
    # the view function once. Whatever the decorators say about the view stays said.
    from django.urls import resolve

    view = resolve(reverse(f"oidc_provider_ext:{endpoint}")).func
    assert not hasattr(view.view_class.dispatch, "__wrapped__"), "a decorator re-applied per request"
    assert view.csrf_exempt is True
    assert view.login_required is False
    assert view.oidc_request_boundary is True


@pytest.mark.parametrize("endpoint", sorted(BACK_CHANNEL_SENSITIVE))
def test_back_channel_hides_its_secrets_from_error_reports(client, endpoint):
    response = client.post(reverse(f"oidc_provider_ext:{endpoint}"), {"client_secret": "s3cret"})
    expected = BACK_CHANNEL_SENSITIVE[endpoint]
    assert getattr(response.wsgi_request, "sensitive_post_parameters", None) == (expected)


@pytest.mark.parametrize("endpoint", sorted(BACK_CHANNEL_SENSITIVE))
def test_back_channel_needs_no_sign_in_on_a_login_required_site(client, settings, endpoint):
    # Django's LoginRequiredMiddleware redirects every view not marked login_not_required. Without
    # BearerEndpointsMiddleware (which answers these paths before it), the mark is what counts.
    settings.MIDDLEWARE = [
        name
        for name in settings.MIDDLEWARE
        if name != "oidc_provider_ext.middleware.BearerEndpointsMiddleware"
    ] + ["django.contrib.auth.middleware.LoginRequiredMiddleware"]
    response = client.post(reverse(f"oidc_provider_ext:{endpoint}"), {"client_secret": "s3cret"})
    assert response.status_code in (400, 401), (response.status_code, response.get("Location"))
    assert "error" in response.json()


def test_decorated_view_wraps_a_subclass_outside_its_parent():
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.views.generic import View

    from oidc_provider_ext.internal.requests import decorated_view

    calls = []

    def tagging(tag):
        def decorator(view):
            def wrapped(request, *args, **kwargs):
                calls.append(tag)
                return view(request, *args, **kwargs)

            return wrapped

        return decorator

    @decorated_view(tagging("parent-outer"), tagging("parent-inner"))
    class Parent(View):
        def get(self, request):
            calls.append("view")
            return HttpResponse("ok")

    @decorated_view(tagging("child"))
    class Child(Parent):
        pass

    Child.as_view()(RequestFactory().get("/"))
    assert calls == ["child", "parent-outer", "parent-inner", "view"]
    calls.clear()
    Parent.as_view()(RequestFactory().get("/"))
    assert calls == ["parent-outer", "parent-inner", "view"]


def test_every_page_is_reachable_behind_login_required_middleware_unless_it_needs_a_user():
    # Django's LoginRequiredMiddleware redirects every view without login_required=False. Ours
    # decide themselves: a page for signed-in users only says so with LoginRequiredMixin (and sends
    # the browser through our own login); everything else must be reachable as it is.
    from django.contrib.auth.mixins import LoginRequiredMixin

    patterns = list(urls.endpoint_urlpatterns + urls.discovery_urlpatterns)
    for pattern in patterns:
        view_class = getattr(pattern.callback, "view_class", None)
        needs_user = view_class is not None and issubclass(view_class, LoginRequiredMixin)
        assert getattr(pattern.callback, "login_required", True) is needs_user, pattern.name
