"""The provider through an outage of the shared cache (internal/shared_cache.py).

Before, every call the provider made on Django's cache raised with it: with Redis restarting,
every authorization request, token request and API call answered 500. Now each failed call is
made on the process's own memory, as under LocMemCache; tests/test_scaleout.py stops a real Redis
under two app servers. Each test here fails without the fallback."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import cache as django_cache
from django.test import Client
from oauth2_provider.models import get_application_model

from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import clients, shared_cache

from .flow import authorize_url, exchange, get_code, introspect, refresh, token_request, userinfo, verify_jwt

pytestmark = pytest.mark.django_db

Application = get_application_model()
ATTACKER = "203.0.113.9"


def test_sign_in_and_every_token_endpoint_work_through_the_outage(cache_down, user, confidential_app):
    browser, rp = Client(), Client()
    code, _ = get_code(browser, confidential_app, user, scope="openid offline_access")
    response = exchange(rp, confidential_app, code)
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert verify_jwt(tokens["id_token"])["sub"] == str(user.pk)
    assert userinfo(rp, tokens["access_token"]).status_code == 200
    assert introspect(rp, confidential_app, tokens["access_token"])["active"] is True
    response = refresh(rp, confidential_app, tokens["refresh_token"])
    assert response.status_code == 200, response.content


def test_client_authentication_is_still_throttled_in_this_process(cache_down):
    """The failure counters move to this process's memory: an attacker gets the limit once per
    process during the outage, as under LocMemCache, not an unlimited number of guesses."""
    app = Application.objects.create(
        client_id="throttled",
        client_secret="a human chosen secret",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    attacker = Client(REMOTE_ADDR=ATTACKER)

    def attempt(secret):
        return token_request(attacker, {"grant_type": "client_credentials"}, auth=(app.client_id, secret))

    assert attempt("a human chosen secret").status_code == 200
    for _ in range(app_settings.CLIENT_AUTH_FAILURE_LIMIT):
        assert attempt("guess").status_code == 401
    # Over the limit even the right secret is refused from this address.
    assert attempt("a human chosen secret").status_code == 401


def test_a_client_change_in_this_process_is_honoured_at_once(cache_down, confidential_app):
    browser = Client()
    assert browser.get(authorize_url(confidential_app)).status_code == 302  # read and kept
    confidential_app.redirect_uris = "https://elsewhere.example/cb"
    confidential_app.save()
    response = browser.get(authorize_url(confidential_app))
    assert response.status_code == 400  # the old redirect URI is refused, not redirected to


def test_the_shared_cache_is_used_again_once_it_answers(monkeypatch, confidential_app):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    with monkeypatch.context() as outage:
        for name in ("get", "add", "set"):
            outage.setattr(django_cache, name, broken)
        clients.get_client(confidential_app.client_id)
    assert django_cache.get(clients._key(confidential_app.client_id)) is None  # it was down
    clients.get_client(confidential_app.client_id)
    assert django_cache.get(clients._key(confidential_app.client_id)) is not None  # back on it


def test_the_outage_is_logged_once_a_minute_per_process(cache_down, caplog, monkeypatch):
    monkeypatch.setattr(shared_cache, "_warned_at", None)
    with caplog.at_level(logging.WARNING, logger=shared_cache.__name__):
        for n in range(20):
            shared_cache.cache.set(f"k{n}", n, 60)
            assert shared_cache.cache.get(f"k{n}") == n
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "ConnectionError: cache down" in caplog.records[0].message


def test_a_missing_counter_is_the_callers_business_not_an_outage(caplog):
    with pytest.raises(ValueError):
        shared_cache.cache.incr("no-such-counter")
    assert not caplog.records  # answered by the shared cache: nothing fell back
    assert shared_cache._fallback.get("no-such-counter") is None
