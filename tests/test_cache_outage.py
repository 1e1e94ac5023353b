"""The provider through an outage of the shared cache (internal/shared_cache.py).

Before, every call the provider made on Django's cache raised with it: with Redis restarting,
every authorization request, token request and API call answered 500. Now each failed call is
made on the process's own memory, as under LocMemCache; tests/test_scaleout.py stops a real Redis
under two app servers. Each test here fails without the fallback."""

from __future__ import annotations

import logging
import time
import types
from importlib import import_module

import pytest
from django.core.cache import cache as django_cache
from django.test import Client, RequestFactory
from django.urls import reverse
from oauth2_provider.models import get_application_model

from oidc_provider_ext import throttle
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.internal import shared_cache

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


def _client_credentials_app():
    return Application.objects.create(
        client_id="throttled",
        client_secret="a human chosen secret",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )


def _client_credentials(browser, app, secret):
    return token_request(browser, {"grant_type": "client_credentials"}, auth=(app.client_id, secret))


def test_client_authentication_is_still_throttled_in_this_process(cache_down):
    """The failure counters move to this process's memory: an attacker gets the limit once per
    process during the outage, as under LocMemCache, not an unlimited number of guesses."""
    app = _client_credentials_app()
    attacker = Client(REMOTE_ADDR=ATTACKER)
    assert _client_credentials(attacker, app, "a human chosen secret").status_code == 200
    for _ in range(app_settings.CLIENT_AUTH_FAILURE_LIMIT):
        assert _client_credentials(attacker, app, "guess").status_code == 401
    # Over the limit even the right secret is refused from this address.
    assert _client_credentials(attacker, app, "a human chosen secret").status_code == 401


def test_a_client_change_in_this_process_is_honoured_at_once(cache_down, confidential_app):
    browser = Client()
    assert browser.get(authorize_url(confidential_app)).status_code == 302  # read and kept
    confidential_app.redirect_uris = "https://elsewhere.example/cb"
    confidential_app.save()
    response = browser.get(authorize_url(confidential_app))
    assert response.status_code == 400  # the old redirect URI is refused, not redirected to


def test_the_shared_cache_is_used_again_once_it_answers(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    with monkeypatch.context() as outage:
        outage.setattr(django_cache, "set", broken)
        shared_cache.cache.set("during", 1, 60)
    assert django_cache.get("during") is None  # it was down: kept in memory
    assert shared_cache.cache.get("during") == 1
    shared_cache.cache.set("within", 1, 60)  # within RETRY_SECONDS: still this process's memory
    assert django_cache.get("within") is None
    real_monotonic = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + shared_cache.RETRY_SECONDS)
    shared_cache.cache.set("after", 1, 60)
    assert django_cache.get("after") == 1  # back on it
    assert shared_cache.cache.get("during") is None  # and the memory is emptied


def test_a_cache_that_answers_reads_only_is_still_down(monkeypatch):
    """The first call after RETRY_SECONDS may be a read that works on a read-only Redis: the
    recovery is proven by a write, else the counts kept in memory were emptied every 5 s."""
    _refuse_writes(monkeypatch)
    request = _address(ATTACKER)
    for _ in range(app_settings.LOGIN_ADDRESS_FAILURE_LIMIT):
        throttle.count_login_failure(request)
    _after_retry(monkeypatch)
    assert throttle.login_address_refused(request)


def _after_retry(monkeypatch) -> None:
    real_monotonic = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + shared_cache.RETRY_SECONDS)


def _broken(*args, **kwargs):
    raise TimeoutError("Timeout reading from socket")


GONE = "https://elsewhere.example/cb"


def test_a_change_made_during_the_outage_is_not_undone_by_the_recovery(monkeypatch, confidential_app):
    """The generation bumped in memory during the outage is written to Redis when it answers:
    else Redis's old generation and entry serve the old client again (here and everywhere)."""
    browser = Client()
    assert browser.get(authorize_url(confidential_app)).status_code == 302  # cached in Redis
    with monkeypatch.context() as outage:
        for name in ("get", "get_many", "set", "add", "incr", "decr", "delete", "delete_many"):
            outage.setattr(django_cache, name, _broken)
        confidential_app.redirect_uris = GONE
        confidential_app.save()
        assert browser.get(authorize_url(confidential_app)).status_code == 400
    _after_retry(monkeypatch)
    assert browser.get(authorize_url(confidential_app)).status_code == 400, "the removed URI is back"


def test_what_memory_held_does_not_come_back_at_the_next_outage(monkeypatch, confidential_app):
    browser = Client()
    with monkeypatch.context() as outage:
        outage.setattr(django_cache, "get", _broken)
        assert browser.get(authorize_url(confidential_app)).status_code == 302  # kept in memory
    _after_retry(monkeypatch)
    confidential_app.redirect_uris = GONE
    confidential_app.save()  # Redis answers: the change goes there
    assert browser.get(authorize_url(confidential_app)).status_code == 400
    monkeypatch.setattr(django_cache, "get", _broken)  # a second outage
    assert browser.get(authorize_url(confidential_app)).status_code == 400, "the removed URI is back"


# --- a cache that answers reads but refuses writes (a demoted primary after a failover,
# maxmemory with noeviction): found by the round's attacker review ---------------------------------


def _refuse_writes(monkeypatch):
    def refused(*args, **kwargs):
        raise ConnectionError("READONLY You can't write against a read only replica.")

    for name in ("set", "add", "incr", "decr", "delete", "delete_many"):
        monkeypatch.setattr(django_cache, name, refused)


@pytest.fixture
def writes_fail(monkeypatch):
    _refuse_writes(monkeypatch)


def _address(address: str):
    return RequestFactory().get("/", REMOTE_ADDR=address)


def test_reads_that_work_do_not_hide_the_counts_writes_put_elsewhere(writes_fail):
    """Counting fell back on memory while the checks read the shared cache, which never saw a
    failure: every throttle was lifted."""
    request = _address(ATTACKER)
    for _ in range(app_settings.LOGIN_ADDRESS_FAILURE_LIMIT):
        throttle.count_login_failure(request)
    assert throttle.login_address_refused(request)
    sent = sum(throttle.allow_reset_email(request, "victim@example.com") for _ in range(20))
    assert sent <= throttle.RESET_EMAILS_PER_ADDRESS


def test_client_authentication_is_throttled_when_only_writes_fail(writes_fail):
    app = _client_credentials_app()
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(3 * app_settings.CLIENT_AUTH_FAILURE_LIMIT):
        assert _client_credentials(attacker, app, "guess").status_code == 401
    assert _client_credentials(attacker, app, "a human chosen secret").status_code == 401


def test_a_client_change_is_honoured_when_only_writes_fail(monkeypatch, confidential_app):
    browser = Client()
    assert browser.get(authorize_url(confidential_app)).status_code == 302  # cached in Redis
    _refuse_writes(monkeypatch)  # then the node we talk to turns read-only
    confidential_app.redirect_uris = "https://elsewhere.example/cb"
    confidential_app.save()  # its invalidation goes to this process's memory
    assert browser.get(authorize_url(confidential_app)).status_code == 400


def test_a_counter_the_cache_loses_between_add_and_incr_refuses_the_attempt(monkeypatch):
    """add() found the counter in Redis (over the limit), then incr() failed: this process's
    memory has no such counter, and starting it at 1 checked one more guess."""
    victim = types.SimpleNamespace(pk=4242)
    request = _address(ATTACKER)
    for _ in range(app_settings.MFA_FAILURE_LIMIT + 1):
        throttle.factor_attempt(request, victim)
    real_incr = django_cache.incr
    calls: list[str] = []

    def times_out_once(key, delta=1, *args, **kwargs):
        calls.append(key)
        if len(calls) == 1:
            raise TimeoutError("Timeout reading from socket")
        return real_incr(key, delta, *args, **kwargs)

    monkeypatch.setattr(django_cache, "incr", times_out_once)
    assert throttle.factor_attempt(request, victim) is False
    throttle.factor_succeeded(request, victim)  # giving a count back meanwhile is no error


def test_the_outage_is_logged_once_a_minute_per_process(cache_down, caplog, monkeypatch):
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


# --- sessions in cached_db over the failing cache ---------------------------------------------------


def test_cached_db_sessions_sign_in_and_out_through_the_outage(settings, cache_down, user, confidential_app):
    """Django's cached_db engine reads the table and logs when the cache fails on a read or a
    write, but its delete() raised: the sign-in (the pending request's session is cycled) and the
    sign-out answered 500. The row, which every request checks, is what ends the session."""
    settings.SESSION_ENGINE = "oidc_provider_ext.sessions.cached_db"
    browser, rp = Client(), Client()
    code, _ = get_code(browser, confidential_app, user)
    tokens = exchange(rp, confidential_app, code).json()
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 200  # signed in
    response = browser.get(reverse("oidc_provider_ext:endsession"), {"id_token_hint": tokens["id_token"]})
    assert response.status_code == 200 and "You are signed out" in response.content.decode()
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 302  # to sign-in


def test_a_cached_session_left_behind_by_a_failed_delete_signs_nobody_in(settings, user, confidential_app):
    """The delete skipped during an outage leaves the copy in a Redis that kept its data: the
    browser's OP session rows, ended in the database, still sign it out."""
    settings.SESSION_ENGINE = "oidc_provider_ext.sessions.cached_db"
    browser, rp = Client(), Client()
    code, _ = get_code(browser, confidential_app, user)
    tokens = exchange(rp, confidential_app, code).json()
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 200
    names = [name.split(":", 2)[-1] for name in django_cache._cache]  # type: ignore[attr-defined]
    copies = {name: django_cache.get(name) for name in names if name.startswith("oidc_provider_ext.sessions")}
    assert [copy["_auth_user_id"] for copy in copies.values()] == [str(user.pk)], "the session is cached"
    signed_in_key = browser.cookies["sessionid"].value
    response = browser.get(reverse("oidc_provider_ext:endsession"), {"id_token_hint": tokens["id_token"]})
    assert "You are signed out" in response.content.decode()
    django_cache.set_many(copies, 600)  # Redis comes back with the copy the delete missed
    store = import_module(settings.SESSION_ENGINE).SessionStore(signed_in_key)
    assert store.load()["_auth_user_id"] == str(user.pk)  # the engine reads the copy ...
    browser.cookies["sessionid"] = signed_in_key  # ... for the old cookie (kept, or stolen)
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 302  # ... in vain


def test_a_hanging_session_cache_costs_one_timeout_per_interval(settings, user, caplog, monkeypatch):
    """Each failing call waits for the client's socket timeout: the session cache, like the
    shared one, is left alone for RETRY_SECONDS after a failure and logged once a minute."""
    from django.core.cache import caches

    settings.SESSION_ENGINE = "oidc_provider_ext.sessions.cached_db"
    browser = Client()
    browser.force_login(user)
    session_cache = caches[settings.SESSION_CACHE_ALIAS]
    tries: list[object] = []

    def hangs(*args, **kwargs):
        tries.append(args)
        raise TimeoutError("Timeout reading from socket")

    for name in ("get", "set", "delete", "has_key"):
        monkeypatch.setattr(session_cache, name, hangs)
    with caplog.at_level(logging.WARNING, logger=shared_cache.__name__):
        codes = {browser.get(reverse("oidc_provider_ext:connected-apps")).status_code for _ in range(10)}
    assert codes == {200}  # the table serves the session
    assert len(tries) == 1
    assert [r.message for r in caplog.records if "session cache" in r.message] == [caplog.records[0].message]


def test_one_thread_at_a_time_tries_a_cache_that_still_fails(monkeypatch):
    """When RETRY_SECONDS are up, the threads that find the cache still failing do not each wait
    for its timeout in turn: one tries, the others keep to memory."""
    import threading

    from django.core.cache import caches

    tries: list[int] = []

    def times_out(*args, **kwargs):
        tries.append(1)
        time.sleep(0.3)
        raise TimeoutError("Timeout reading from socket")

    shared_cache._breaker.down_until = time.monotonic() - 1  # an outage whose retry time has come
    shared_cache._unexpiring["generation"] = "bumped in memory"
    monkeypatch.setattr(type(caches["default"]), "set", times_out)  # every thread's cache object
    threads = [threading.Thread(target=shared_cache.cache.get, args=("x",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(tries) == 1
    assert shared_cache._unexpiring == {"generation": "bumped in memory"}  # kept for the next try


def test_a_generation_bumped_in_memory_reaches_the_shared_cache_and_an_idle_add_does_not_undo_it(
    monkeypatch,
):
    django_cache.set("generation", "before the outage", None)
    with monkeypatch.context() as outage:
        for name in ("get", "set", "add"):
            outage.setattr(django_cache, name, _broken)
        shared_cache.cache.set("generation", "bumped", None)  # a change during the outage
        assert shared_cache.cache.add("generation", "a reader's guess", None) is False
    _after_retry(monkeypatch)
    assert shared_cache.cache.get("generation") == "bumped"  # written before the read
    assert django_cache.get("generation") == "bumped"
