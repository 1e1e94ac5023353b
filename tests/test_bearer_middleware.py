"""BearerEndpointsMiddleware and CSPMiddleware (oidc_provider_ext/middleware.py): userinfo,
introspection, token and revocation skip the browser's middleware and keep every security header."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from .factories import REDIRECT_URI
from .flow import basic_auth, exchange, get_code, introspect, refresh, token_request

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
)


@pytest.fixture
def token(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid")
    return exchange(rp, confidential_app, code).json()["access_token"]


def _userinfo(token, client=None):
    client = client or Client()
    return client.get(reverse("oidc_provider_ext:userinfo"), HTTP_AUTHORIZATION=f"Bearer {token}")


def _without_bearer_middleware(settings_):
    settings_.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("BearerEndpointsMiddleware")]


def _directives(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}


def test_userinfo_keeps_every_security_header(token, settings):
    fast = _userinfo(token)
    assert fast.status_code == 200
    _without_bearer_middleware(settings)
    whole_chain = _userinfo(token)
    for name in SECURITY_HEADERS:
        assert fast.has_header(name), name
        if name == "Content-Security-Policy":  # django-csp does not keep the directives' order
            assert _directives(fast[name]) == _directives(whole_chain[name])
        else:
            assert fast[name] == whole_chain[name], name


def test_errors_keep_them_too(settings):
    response = _userinfo("unknown")
    assert response.status_code == 401 and all(response.has_header(name) for name in SECURITY_HEADERS)


def test_the_browser_middleware_does_not_run(token, rp, confidential_app):
    response = _userinfo(token)
    request = response.wsgi_request
    # No session, no user, no CSRF cookie, no messages: nothing a bearer request could use.
    assert not hasattr(request, "session") and not hasattr(request, "user")
    assert not response.cookies and "Cookie" not in response.get("Vary", "")
    assert introspect(rp, confidential_app, token)["active"]


def test_other_paths_get_the_whole_chain(client):
    response = client.get("/.well-known/openid-configuration")
    assert hasattr(response.wsgi_request, "session")


def test_atomic_requests_get_the_whole_chain(token, monkeypatch):
    monkeypatch.setitem(settings.DATABASES["default"], "ATOMIC_REQUESTS", True)
    response = _userinfo(token)
    assert response.status_code == 200 and hasattr(response.wsgi_request, "session")


def test_the_csp_header_follows_the_setting(token, settings):
    first = _userinfo(token)["Content-Security-Policy"]
    assert "default-src 'self'" in first
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    assert _userinfo(token)["Content-Security-Policy"] == "default-src 'none'"
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"img-src": ["'self'"]}}
    fast = _userinfo(token)["Content-Security-Policy-Report-Only"]
    _without_bearer_middleware(settings)
    whole_chain = _userinfo(token)["Content-Security-Policy-Report-Only"]
    assert "img-src 'self'" in fast and _directives(fast) == _directives(whole_chain)


def test_a_mounted_provider_is_found_under_its_prefix(token, settings):
    settings.ROOT_URLCONF = "tests.prefixed_urls"
    response = Client().get("/idp/connect/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and not hasattr(response.wsgi_request, "session")


def _client_endpoints(rp, user, confidential_app, browser):
    """A refresh, a failed exchange and a revocation: the answers of the token and revocation
    endpoints a client gets, through ``rp`` (a test client)."""
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    tokens = exchange(rp, confidential_app, code).json()
    auth = (confidential_app.client_id, confidential_app.raw_secret)
    spent = {"grant_type": "authorization_code", "code": "spent", "redirect_uri": REDIRECT_URI}
    return [
        refresh(rp, confidential_app, tokens["refresh_token"]),
        token_request(rp, spent, auth=auth),
        rp.post(
            reverse("oidc_provider_ext:revocation"),
            urlencode({"token": tokens["access_token"]}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic_auth(*auth),
        ),
    ]


def test_token_and_revocation_skip_the_browser_middleware_and_keep_the_headers(
    rp, user, confidential_app, browser, settings
):
    fast = _client_endpoints(rp, user, confidential_app, browser)
    assert [response.status_code for response in fast] == [200, 400, 200]
    for response in fast:
        request = response.wsgi_request
        assert not hasattr(request, "session") and not hasattr(request, "user")
        assert not response.cookies
    _without_bearer_middleware(settings)
    whole_chain = _client_endpoints(Client(), user, confidential_app, browser)  # a new handler
    assert hasattr(whole_chain[0].wsgi_request, "session")
    for quick, slow in zip(fast, whole_chain, strict=True):
        assert quick.status_code == slow.status_code
        for name in (*SECURITY_HEADERS, "Cache-Control"):
            assert quick.has_header(name), name
            if name == "Content-Security-Policy":
                assert _directives(quick[name]) == _directives(slow[name])
            else:
                assert quick[name] == slow[name], name
