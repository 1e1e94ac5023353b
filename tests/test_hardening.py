"""Hardening: each rule attacked. (Races on PostgreSQL live in test_concurrency.py.)"""

import logging
import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken, RefreshToken

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import AuthorizationGrant, ClientProfile, TenantMembership

from .factories import REDIRECT_URI, USER_PASSWORD, ApplicationFactory, TenantFactory, UserFactory
from .flow import (
    authorize_url,
    basic_auth,
    consent,
    exchange,
    get_code,
    login,
    query_of,
    refresh,
    token_request,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def tokens_for(browser, rp, app, user, scope="openid offline_access"):
    code, _ = get_code(browser, app, user, scope=scope)
    return exchange(rp, app, code).json()


def works(rp, access_token):
    return (
        rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code
        == 200
    )


class TestRefreshTokens:
    def test_replayed_rotated_token_revokes_the_whole_family(self, browser, rp, user, confidential_app):
        first = tokens_for(browser, rp, confidential_app, user)
        second = refresh(rp, confidential_app, first["refresh_token"]).json()
        assert works(rp, second["access_token"])
        replay = refresh(rp, confidential_app, first["refresh_token"])
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # RFC 9700 4.14.2: the legitimate holder's current tokens die too.
        assert not works(rp, second["access_token"])
        assert refresh(rp, confidential_app, second["refresh_token"]).json()["error"] == "invalid_grant"

    def test_rotation_retires_the_previous_access_token(self, browser, rp, user, confidential_app):
        first = tokens_for(browser, rp, confidential_app, user)
        refresh(rp, confidential_app, first["refresh_token"])
        assert not works(rp, first["access_token"])

    def test_refresh_tokens_expire(self, browser, rp, user, confidential_app, settings):
        first = tokens_for(browser, rp, confidential_app, user)
        RefreshToken.objects.update(created=timezone.now() - timedelta(days=30, seconds=1))
        assert refresh(rp, confidential_app, first["refresh_token"]).json()["error"] == "invalid_grant"

    @pytest.mark.oidc_settings(REFRESH_TOKEN_EXPIRE_SECONDS=60)
    def test_expiry_setting_is_honoured(self, browser, rp, user, confidential_app):
        first = tokens_for(browser, rp, confidential_app, user)
        RefreshToken.objects.update(created=timezone.now() - timedelta(seconds=61))
        assert refresh(rp, confidential_app, first["refresh_token"]).json()["error"] == "invalid_grant"

    def test_bound_to_the_client(self, browser, rp, user, confidential_app):
        first = tokens_for(browser, rp, confidential_app, user)
        thief = ApplicationFactory()
        assert refresh(rp, thief, first["refresh_token"]).json()["error"] == "invalid_grant"
        assert refresh(rp, confidential_app, first["refresh_token"]).status_code == 200

    def test_bound_to_the_tenant(self, browser, rp, user, confidential_app):
        tenant = TenantFactory(code="acme")
        TenantMembership.objects.create(tenant=tenant, user=user)
        ClientProfile.objects.filter(application=confidential_app).update(default_tenant_code=tenant.code)
        first = tokens_for(browser, rp, confidential_app, user)
        tenant.is_active = False
        tenant.save()
        assert refresh(rp, confidential_app, first["refresh_token"]).json()["error"] == "invalid_grant"


class TestLoginThrottling:
    def _fail(self, client, username, times, path=None):
        for _ in range(times):
            response = client.post(
                path or reverse("oidc_provider_ext:login"), {"username": username, "password": "wrong"}
            )
        return response

    def test_locks_out_a_username_even_with_the_right_password(self, client, user):
        self._fail(client, user.username, 5)
        response = client.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        )
        assert response.status_code == 429
        assert "Too many sign-in attempts" in response.content.decode()
        assert "_auth_user_id" not in client.session

    def test_locks_out_an_ip_address_trying_many_usernames(self, client, user):
        # Per address over all usernames: LOGIN_ADDRESS_FAILURE_LIMIT (a spraying source), no
        # longer AXES_FAILURE_LIMIT, which locked everyone behind one NAT after 5 typos.
        for n in range(app_settings.LOGIN_ADDRESS_FAILURE_LIMIT):
            self._fail(client, f"user-{n}", 1)
        response = client.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        )
        assert response.status_code == 429

    def test_other_ips_and_users_are_not_locked(self, user):
        attacker = Client(REMOTE_ADDR="203.0.113.9")
        self._fail(attacker, "victim-not-me", 5)
        legit = Client(REMOTE_ADDR="198.51.100.7")
        response = legit.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        )
        assert response.status_code == 302

    def test_tenant_scoped_login_is_throttled_too(self, client, user, confidential_app):
        TenantFactory(code="acme")
        response = client.get(authorize_url(confidential_app, acr_values="tenant:acme"))
        login_page = response["Location"]
        self._fail(client, user.username, 5, path=login_page)
        response = client.post(login_page, {"username": user.username, "password": USER_PASSWORD})
        assert response.status_code == 429


class TestHostedPageHeaders:
    def test_csp_frame_and_referrer_on_pages(self, client, confidential_app):
        page = client.get(authorize_url(confidential_app), follow=True)
        csp = page["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert page["X-Frame-Options"] == "DENY"
        # same-origin: no-referrer would make browsers send "Origin: null" and fail CSRF.
        assert page["Referrer-Policy"] == "same-origin"
        assert 'name="referrer"' not in page.content.decode()
        # No inline code: the one script is a same-origin static file (script-src 'self').
        scripts = re.findall(r"<script[^>]*>", page.content.decode())
        assert scripts == ['<script src="/static/oidc_provider_ext/passkeys.js" defer>']

    def test_brand_colour_style_carries_the_csp_nonce(self, client, confidential_app):
        TenantFactory(code="acme", brand_colour="#aa3300")
        page = client.get(authorize_url(confidential_app, acr_values="tenant:acme"), follow=True)
        nonce = page["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
        assert f'<style nonce="{nonce}">' in page.content.decode()

    def test_code_redirect_has_no_referrer_and_no_store(self, browser, user, confidential_app):
        login(browser, user)
        response = consent(browser, browser.get(authorize_url(confidential_app)))
        assert response["Referrer-Policy"] == "no-referrer"
        assert "no-store" in response["Cache-Control"]

    @pytest.mark.parametrize("page", ["login", "consent"])
    def test_login_and_consent_are_no_store(self, browser, user, confidential_app, page):
        if page == "consent":
            login(browser, user)
        response = browser.get(authorize_url(confidential_app), follow=True)
        assert response.templates[0].name == f"oidc_provider_ext/{page}.html"
        assert "no-store" in response["Cache-Control"]

    def test_token_and_userinfo_are_no_store(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user)
        for response in (
            exchange(rp, confidential_app, code),
            exchange(rp, confidential_app, code),  # the error, too
        ):
            assert response["Cache-Control"] == "no-store"
        bad = rp.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION="Bearer nope")
        assert bad.status_code == 401 and bad["Cache-Control"] == "no-store"

    def test_production_profile_passes_check_deploy(self):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "idp_project.settings_production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "OIDC_SECRET_KEYS": secrets.token_urlsafe(50),
            "OIDC_ISSUER": "https://id.example.com",
            "DJANGO_ALLOWED_HOSTS": "id.example.com",
            "REDIS_URL": "redis://127.0.0.1:6379/0",  # several processes share a cache (W044)
        }
        env.pop("DATABASE_URL", None)
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        cookies = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from django.conf import settings as s; "
                "print(s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
                "s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SECURE)",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cookies.stdout.split() == ["True", "True", "Lax", "True"], cookies.stderr


class TestCSPHeaderBuiltOnce:
    """oidc_provider_ext.middleware.CSPMiddleware writes a response without a policy of its own
    from a header built once: always the header django-csp's own middleware writes."""

    @staticmethod
    def _middleware(middleware_class=None):
        from django.http import HttpResponse

        from oidc_provider_ext.middleware import CSPMiddleware

        return (middleware_class or CSPMiddleware)(lambda request: HttpResponse())

    @staticmethod
    def _headers(middleware, path="/login/", **attributes):
        from csp.constants import HEADER, HEADER_REPORT_ONLY
        from django.http import HttpResponse
        from django.test import RequestFactory

        request = RequestFactory().get(path)
        middleware.process_request(request)
        response = HttpResponse()
        for name, value in attributes.items():
            setattr(response, name, value)
        response = middleware.process_response(request, response)
        return request, {name: response.get(name) for name in (HEADER, HEADER_REPORT_ONLY)}

    @pytest.mark.parametrize(
        "attributes",
        [
            {},
            {"_csp_update": {"img-src": ["https://cdn.example"]}},
            {"_csp_replace": {"script-src": ["'none'"]}},
            {"_csp_config": {"default-src": ["'none'"]}},
            {"_csp_exempt": True},
            {"_csp_update_ro": {"img-src": ["'self'"]}},
        ],
    )
    def test_the_header_is_django_csps(self, settings, attributes):
        from csp.middleware import CSPMiddleware as DjangoCSP

        settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"img-src": ["'self'", "https:"]}}
        middleware = self._middleware()
        self._headers(middleware)  # a plain response first: the built header is kept
        _request, ours = self._headers(middleware, **attributes)
        _request, theirs = self._headers(self._middleware(DjangoCSP), **attributes)
        assert ours == theirs
        assert (ours["Content-Security-Policy"] is None) == ("_csp_exempt" in attributes)

    def test_a_subclass_choosing_its_parts_per_request_is_asked_every_time(self):
        """django-csp's documented extension point (``get_policy_parts``) is honoured."""
        from oidc_provider_ext.middleware import CSPMiddleware

        class PerPath(CSPMiddleware):
            def get_policy_parts(self, request, response, report_only=False):
                parts = super().get_policy_parts(request, response, report_only)
                if request.path_info.startswith("/partner/") and not report_only:
                    parts.update = {"frame-ancestors": ["https://partner.example"]}
                return parts

        middleware = self._middleware(PerPath)
        _request, page = self._headers(middleware)
        assert "partner.example" not in page["Content-Security-Policy"]
        _request, partner = self._headers(middleware, path="/partner/embed")
        assert "frame-ancestors 'none' https://partner.example" in partner["Content-Security-Policy"]

    def test_a_path_under_an_excluded_prefix_gets_no_header(self, settings):
        settings.CONTENT_SECURITY_POLICY = {
            **settings.CONTENT_SECURITY_POLICY,
            "EXCLUDE_URL_PREFIXES": ["/embedded/"],
        }
        middleware = self._middleware()
        _request, page = self._headers(middleware)
        assert "default-src 'self'" in page["Content-Security-Policy"]
        _request, excluded = self._headers(middleware, path="/embedded/widget")
        assert excluded["Content-Security-Policy"] is None

    def test_a_nonce_taken_after_the_header_was_written_raises(self):
        from csp.exceptions import CSPNonceError

        middleware = self._middleware()
        self._headers(middleware)
        request, headers = self._headers(middleware)  # the header kept from the first
        assert "nonce-" not in headers["Content-Security-Policy"]
        with pytest.raises(CSPNonceError):
            str(request.csp_nonce)


class TestIntrospectionScope:
    def _introspect(self, rp, app, token):
        return rp.post(
            reverse("oidc_provider_ext:introspect"),
            urlencode({"token": token}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(app.client_id, app.raw_secret),
        ).json()

    def test_other_clients_tokens_are_only_inactive(self, browser, rp, user, confidential_app):
        tokens = tokens_for(browser, rp, confidential_app, user)
        assert self._introspect(rp, ApplicationFactory(), tokens["access_token"]) == {"active": False}

    def test_resource_server_may_introspect_its_audience(self, browser, rp, user, confidential_app):
        tokens = tokens_for(browser, rp, confidential_app, user)
        api = ApplicationFactory(profile__introspection_audiences=confidential_app.client_id)
        unrelated = ApplicationFactory(profile__introspection_audiences="someone-else")
        assert self._introspect(rp, api, tokens["access_token"])["active"] is True
        assert self._introspect(rp, api, tokens["refresh_token"])["active"] is True
        assert self._introspect(rp, unrelated, tokens["access_token"]) == {"active": False}

    def test_public_client_cannot_introspect(self, browser, rp, user, public_app):
        response = rp.post(
            reverse("oidc_provider_ext:introspect"),
            urlencode({"token": "x", "client_id": public_app.client_id}),
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 401


class TestStorage:
    def test_tokens_and_codes_are_not_stored_in_clear(self, browser, rp, user, confidential_app):
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        assert set(AccessToken.objects.values_list("token", flat=True)) == {""}
        assert set(RefreshToken.objects.values_list("token", flat=True)) == {""}
        grant = AuthorizationGrant.objects.get()
        assert code not in str(grant.__dict__) and len(grant.code_checksum) == 64
        # ... and lookups by checksum still work.
        assert works(rp, tokens["access_token"])

    def test_client_secrets_are_hashed(self, confidential_app):
        stored = type(confidential_app).objects.get(pk=confidential_app.pk).client_secret
        assert stored != confidential_app.raw_secret
        # A generated 256-bit secret: the keyed fast hash (docs/client-secrets.md).
        assert stored.startswith("oidc_hmac_sha256$")

    def test_secrets_never_reach_the_logs(self, browser, rp, user, confidential_app, caplog):
        caplog.set_level(logging.DEBUG)
        code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
        tokens = exchange(rp, confidential_app, code).json()
        token_request(
            rp,
            {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
            auth=(confidential_app.client_id, "wrong-" + confidential_app.raw_secret),
        )
        refresh(rp, confidential_app, tokens["refresh_token"])
        refresh(rp, confidential_app, tokens["refresh_token"])  # a replay, logged as a warning
        logged = "\n".join(record.getMessage() for record in caplog.records)
        for secret in (
            confidential_app.raw_secret,
            code,
            tokens["refresh_token"],
            tokens["access_token"],
            USER_PASSWORD,
        ):
            assert secret not in logged


BACK_CHANNEL = ["token", "introspect", "revocation"]


class TestBadInput:
    @pytest.mark.parametrize("endpoint", BACK_CHANNEL + ["userinfo"])
    def test_repeated_parameters(self, rp, confidential_app, endpoint):
        body = (
            "grant_type=client_credentials&grant_type=client_credentials"
            "&token=a&token=b&access_token=x&access_token=y"
        )
        response = rp.post(
            reverse(f"oidc_provider_ext:{endpoint}"),
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
        assert "repeated" in response.json()["error_description"]

    @pytest.mark.parametrize("param", ["nonce", "state", "redirect_uri", "scope"])
    def test_repeated_parameters_at_authorize(self, browser, user, confidential_app, param):
        login(browser, user)
        response = browser.get(authorize_url(confidential_app) + f"&{param}=again")
        assert response.status_code == 400 and "Location" not in response

    def test_oversized_parameter(self, rp, confidential_app):
        response = token_request(
            rp,
            {"grant_type": "authorization_code", "code": "x" * 10000, "redirect_uri": REDIRECT_URI},
            auth=(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"

    def test_oversized_body(self, rp):
        response = rp.post(
            reverse("oidc_provider_ext:token"),
            "a=" + "b" * 70000,
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"

    def test_oversized_authorize_query(self, browser, confidential_app):
        response = browser.get(authorize_url(confidential_app, state="s" * 9000))
        assert response.status_code == 400 and "Location" not in response

    def test_non_utf8(self, rp, browser, confidential_app):
        response = rp.post(
            reverse("oidc_provider_ext:token"),
            b"grant_type=\xff\xfe&code=\xc3\x28",
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(confidential_app.client_id, confidential_app.raw_secret),
        )
        assert response.status_code == 400 and "error" in response.json()
        page = browser.get(reverse("oidc_provider_ext:authorize") + "?client_id=%FF%FE&redirect_uri=%C3%28")
        assert page.status_code == 400

    @pytest.mark.parametrize(
        "header", ["Basic", "Basic !!!", "Basic " + "a" * 5000, "Bearer x", "Digest abc", "Basic Og=="]
    )
    def test_malformed_authorization_headers(self, rp, header):
        response = rp.post(
            reverse("oidc_provider_ext:token"),
            "grant_type=client_credentials",
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=header,
        )
        assert response.status_code in (400, 401) and response.json()["error"] in (
            "invalid_client",
            "invalid_request",
        )

    @pytest.mark.parametrize(
        "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"]
    )
    def test_wrong_content_types(self, rp, content_type):
        response = rp.post(reverse("oidc_provider_ext:token"), "{}", content_type=content_type)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"


class TestOpenRedirects:
    @pytest.mark.parametrize(
        "next_url",
        [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example/",
            "https:evil.example",
            "javascript:alert(1)",
        ],
    )
    def test_login_next(self, client, user, next_url):
        response = client.post(
            f"{reverse('oidc_provider_ext:login')}?{urlencode({'next': next_url})}",
            {"username": user.username, "password": USER_PASSWORD},
        )
        assert response.status_code == 302 and not response["Location"].startswith(
            ("http", "//", "/\\", "javascript")
        )

    def test_authorize_error_for_unregistered_redirect_is_a_page(self, browser, confidential_app):
        response = browser.get(
            authorize_url(confidential_app, redirect_uri="https://evil.example/cb", response_type="token")
        )
        assert response.status_code == 400 and "Location" not in response

    def test_logout_never_redirects_to_unregistered(self, browser, confidential_app):
        response = browser.get(
            reverse("oidc_provider_ext:endsession"),
            {"client_id": confidential_app.client_id, "post_logout_redirect_uri": "https://evil.example/"},
        )
        assert response.status_code == 400 and "Location" not in response


class TestIssuerInAuthorizationResponses:
    def test_success_and_error_carry_iss(self, browser, user, confidential_app):
        """RFC 9207 2: iss in every authorization response, error responses included."""
        login(browser, user)
        success = consent(browser, browser.get(authorize_url(confidential_app)))
        assert query_of(success["Location"])["iss"] == app_settings.ISSUER
        error = browser.get(authorize_url(confidential_app, scope="openid nope"))
        assert query_of(error["Location"])["iss"] == app_settings.ISSUER
        denied = consent(
            browser, browser.get(authorize_url(confidential_app, prompt="consent")), decision="deny"
        )
        assert query_of(denied["Location"])["iss"] == app_settings.ISSUER
        assert len([k for k in success["Location"].split("?")[1].split("&") if k.startswith("iss=")]) == 1


def test_users_sign_in_once_per_lockout_window(client):
    """The failure counter resets after a successful sign-in (AXES_RESET_ON_SUCCESS)."""
    user = UserFactory()
    for _ in range(4):
        client.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": "wrong"})
    assert (
        client.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        ).status_code
        == 302
    )
    client.logout()
    for _ in range(4):
        client.post(reverse("oidc_provider_ext:login"), {"username": user.username, "password": "wrong"})
    assert (
        client.post(
            reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
        ).status_code
        == 302
    )


@pytest.mark.parametrize("endpoint", ["token", "introspect", "revocation"])
def test_non_ascii_basic_credentials_are_invalid_client_not_500(rp, endpoint):
    """Found by tests/test_fuzz.py: DOT's base64 decoding raised on non-ASCII Basic credentials."""
    response = rp.post(
        reverse(f"oidc_provider_ext:{endpoint}"),
        "grant_type=client_credentials&token=x",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic \x80\x81",
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
