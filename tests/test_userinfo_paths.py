"""views/userinfo.py answers without oauthlib; DOT's view through oauthlib's UserInfoEndpoint and
our validator stays for a site's own validator class. Both must answer every request alike:
status, RFC 6750 challenge, body, and the headers a client reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from oidc_provider_ext import validator

from . import presets
from .factories import ResourceServerFactory, TenantFactory, TenantMembershipFactory
from .flow import exchange, get_code

pytestmark = [pytest.mark.django_db, pytest.mark.oidc_settings(presets.API_SCOPES)]

API = "https://api.example.com/mcp"
HEADERS = ("Content-Type", "Cache-Control", "WWW-Authenticate", "Pragma", "Access-Control-Allow-Origin")


def _answer(client, served_directly: bool, monkeypatch, method: str, **kwargs):
    monkeypatch.setattr(validator, "userinfo_served_directly", lambda: served_directly)
    response = getattr(client, method)(reverse("oidc_provider_ext:userinfo"), **kwargs)
    return response.status_code, {name: response.get(name) for name in HEADERS}, response.content


def _both(client, monkeypatch, method="get", **kwargs):
    fast = _answer(client, True, monkeypatch, method, **kwargs)
    slow = _answer(client, False, monkeypatch, method, **kwargs)
    assert fast == slow
    return fast


@pytest.fixture
def token(browser, rp, user, confidential_app):
    code, _ = get_code(browser, confidential_app, user, scope="openid profile email")
    return exchange(rp, confidential_app, code).json()["access_token"]


def test_a_good_token_in_the_header_and_in_a_form_body(rp, token, monkeypatch):
    status, headers, body = _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store" and b'"sub"' in body
    assert _both(rp, monkeypatch, "post", data={"access_token": token})[0] == 200
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"bearer   {token}")[0] == 200


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer a b", "Basic dXNlcjpwYXNz", "", "Bearer unknown-token", "Token abc"],
)
def test_bad_headers(rp, token, monkeypatch, authorization):
    status, headers, body = _both(rp, monkeypatch, HTTP_AUTHORIZATION=authorization)
    assert status == 401 and headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert b"invalid_token" in body


def test_no_token_and_an_empty_body_token(rp, monkeypatch):
    assert _both(rp, monkeypatch)[0] == 401
    assert _both(rp, monkeypatch, "post", data={"access_token": ""})[0] == 401
    assert _both(rp, monkeypatch, "post", data={"other": "x"})[0] == 401


def test_the_query_string_and_two_ways_at_once_are_refused(rp, token, monkeypatch):
    url = reverse("oidc_provider_ext:userinfo") + f"?access_token={token}"
    monkeypatch.setattr(validator, "userinfo_served_directly", lambda: True)
    assert rp.get(url).status_code == 400
    two = _both(rp, monkeypatch, "post", data={"access_token": token}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert two[0] == 400


def test_expired_and_revoked(rp, token, monkeypatch):
    stored = get_access_token_model().objects.get()
    stored.expires = timezone.now() - timedelta(seconds=1)
    stored.save()
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")[0] == 401
    stored.delete()
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")[0] == 401


def test_a_token_without_openid(browser, rp, user, confidential_app, monkeypatch):
    code, _ = get_code(browser, confidential_app, user, scope="openid profile")
    token = exchange(rp, confidential_app, code).json()["access_token"]
    get_access_token_model().objects.update(scope="profile")
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")[0] == 401


def test_a_token_for_an_api_is_not_good_at_userinfo(browser, rp, user, confidential_app, monkeypatch):
    # RFC 8707 / RFC 9068 4: audience confusion.
    ResourceServerFactory(identifier=API, scopes="api:read", allowed_clients=[confidential_app])
    code, _ = get_code(browser, confidential_app, user, scope="openid api:read", resource=API)
    token = exchange(rp, confidential_app, code, resource=API).json()["access_token"]
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")[0] == 401


def test_the_account_state_rule(browser, rp, user, confidential_app, monkeypatch):
    tenant = TenantFactory(code="acme")
    membership = TenantMembershipFactory(tenant=tenant, user=user)
    code, _ = get_code(browser, confidential_app, user, scope="openid", acr_values="tenant:acme")
    token = exchange(rp, confidential_app, code).json()["access_token"]
    status, _headers, body = _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert status == 200 and b'"tenant": "acme"' in body
    membership.is_active = False
    membership.save()
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")[0] == 401
    membership.is_active = True
    membership.save()
    user.is_active = False
    user.save()
    assert _both(rp, monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}")[0] == 401


def test_cors_for_the_tokens_client_only(rp, token, confidential_app, monkeypatch):
    confidential_app.allowed_origins = "https://rp.example.com"
    confidential_app.save()
    allowed = _both(
        Client(), monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ORIGIN="https://rp.example.com"
    )
    assert allowed[1]["Access-Control-Allow-Origin"] == "https://rp.example.com"
    other = _both(
        Client(), monkeypatch, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ORIGIN="https://evil.example.com"
    )
    assert other[1]["Access-Control-Allow-Origin"] is None
