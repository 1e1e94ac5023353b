"""oidc_provider_ext.sessions.cache and .cached_db: Django's cache-based session engines with every
cache entry (and, for cached_db, every row) keyed by the session key's hash (DESIGN.md, "No bearer
secret in clear"), and Django's guarantees otherwise: a new key at sign-in, the old one dead, a
signed-out cookie worthless, async and sync seeing the same sessions."""

import pickle
from importlib import import_module

import pytest
from asgiref.sync import async_to_sync
from django.contrib.sessions.models import Session
from django.core.cache import cache, caches
from django.test import Client
from django.urls import reverse

from oidc_provider_ext.sessions import stored_key

from .factories import USER_PASSWORD
from .flow import signed_in

pytestmark = pytest.mark.django_db

ENGINES = ["oidc_provider_ext.sessions.cache", "oidc_provider_ext.sessions.cached_db"]


@pytest.fixture(params=ENGINES, ids=["cache", "cached_db"])
def engine(request, settings):
    settings.SESSION_ENGINE = request.param
    return import_module(request.param)


def _cache_contents() -> str:
    """Every key and (unpickled) value in the test's LocMemCache, as one text: what a dump gives."""
    entries = cache._cache  # type: ignore[attr-defined]  # LocMemCache's dict: the dump
    return repr([(key, pickle.loads(value)) for key, value in entries.items()])


def test_the_example_project_offers_them():
    from idp_project import settings as example

    assert [example._session_engine(name) for name in ("cache", "cached_db")] == ENGINES


def test_no_copy_of_the_store_holds_a_session_key(engine, user):
    """A Redis dump (or the table, for cached_db) names no cookie: the entry is under the key's hash,
    and that hash sent as a cookie is not a session."""
    browser = signed_in(user)
    key = browser.cookies["sessionid"].value
    assert engine.SessionStore(key).load()["_auth_user_id"] == str(user.pk)
    dump = _cache_contents()
    assert stored_key(key) in dump and key not in dump
    rows = repr(list(Session.objects.values_list()))
    assert key not in rows
    if engine.__name__.endswith("cached_db"):
        assert Session.objects.get().session_key == stored_key(key)
    else:
        assert not Session.objects.exists()  # nothing in the database at all
    thief = Client()
    thief.cookies["sessionid"] = stored_key(key)
    assert thief.get(reverse("oidc_provider_ext:connected-apps")).status_code == 302  # to the sign-in
    assert engine.SessionStore(stored_key(key)).load() == {}
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 200


def test_sign_in_gives_a_new_key_and_the_old_one_is_dead(engine, user):
    """Session fixation: the key planted before the sign-in is worthless after it."""
    browser = Client()
    assert browser.get(reverse("oidc_provider_ext:login")).status_code == 200
    session = browser.session
    session["planted"] = True
    session.save()
    before = browser.cookies["sessionid"].value
    response = browser.post(
        reverse("oidc_provider_ext:login"), {"username": user.username, "password": USER_PASSWORD}
    )
    assert response.status_code == 302
    after = browser.cookies["sessionid"].value
    assert after != before
    assert not engine.SessionStore().exists(before)
    assert engine.SessionStore(after).load()["_auth_user_id"] == str(user.pk)
    attacker = Client()
    attacker.cookies["sessionid"] = before
    assert "_auth_user_id" not in attacker.session.load()


def test_a_signed_out_cookie_is_worthless(engine, user):
    browser = signed_in(user)
    key = browser.cookies["sessionid"].value
    browser.logout()  # django.contrib.auth.logout: the session flushed
    assert not engine.SessionStore().exists(key)
    assert stored_key(key) not in _cache_contents()
    assert not Session.objects.filter(session_key=stored_key(key)).exists()
    replayed = Client()
    replayed.cookies["sessionid"] = key
    assert replayed.get(reverse("oidc_provider_ext:connected-apps")).status_code == 302


def test_a_taken_key_is_never_reused(engine, monkeypatch):
    """A new key is not looked up before it is used (one cache call less per new session): the
    add() (cache) or INSERT (cached_db) refuses a taken one and another is drawn."""
    from oidc_provider_ext import sessions

    taken = engine.SessionStore()
    taken["who"] = "alice"
    taken.create()
    drawn = iter([taken.session_key, "e" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda *args: next(drawn))

    def looked_up(*args, **kwargs):
        raise AssertionError("a new key was looked up before its add()")

    monkeypatch.setattr(type(caches["default"]), "has_key", looked_up)
    fresh = engine.SessionStore()
    fresh["who"] = "mallory"
    fresh.save()
    assert fresh.session_key == "e" * 32
    assert engine.SessionStore(taken.session_key).load() == {"who": "alice"}
    assert engine.SessionStore("e" * 32).load() == {"who": "mallory"}


def test_the_async_api_sees_the_same_sessions(engine):
    """alogin and request.auser() use the async twins: the same entries as the sync methods."""
    store = engine.SessionStore()
    store["who"] = "alice"
    async_to_sync(store.asave)()
    key = store.session_key
    assert engine.SessionStore(key)["who"] == "alice"  # written async, read sync
    reader = engine.SessionStore(key)
    assert async_to_sync(reader.aget)("who") == "alice"
    assert async_to_sync(reader.aexists)(key) and not async_to_sync(reader.aexists)(stored_key(key))
    async_to_sync(reader.acycle_key)()  # alogin's fixation defence
    async_to_sync(reader.asave)()
    assert reader.session_key != key and not engine.SessionStore().exists(key)
    assert engine.SessionStore(reader.session_key)["who"] == "alice"
    assert key not in _cache_contents()
    async_to_sync(reader.aflush)()
    assert not engine.SessionStore().exists(reader.session_key)
    assert not Session.objects.exists()


def test_cached_db_reads_the_table_when_the_cache_lost_the_entry(settings, user):
    """The cache is a copy: after a Redis restart (or eviction) the row still signs the browser in,
    and is cached again under the key's hash."""
    settings.SESSION_ENGINE = "oidc_provider_ext.sessions.cached_db"
    browser = signed_in(user)
    key = browser.cookies["sessionid"].value
    cache.clear()
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 200
    dump = _cache_contents()
    assert stored_key(key) in dump and key not in dump
    cache.clear()  # the async read of the table (request.auser()) finds the same row
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    assert async_to_sync(store.aget)("_auth_user_id") == str(user.pk)
    assert async_to_sync(store.aexists)(key)


def test_a_cache_session_survives_nothing_but_the_cache(settings, user):
    """The cache engine keeps nothing durable: a cleared cache signs the browser out (the trade-off
    docs/operations.md names), rather than leaving it half signed in."""
    settings.SESSION_ENGINE = "oidc_provider_ext.sessions.cache"
    browser = signed_in(user)
    cache.clear()
    assert browser.get(reverse("oidc_provider_ext:connected-apps")).status_code == 302


def test_deploy_check_names_an_engine_that_stores_the_cookie(settings):
    """W046: Django's own database, cache and file engines store each session under the cookie's
    value; ours, and signed cookies (nothing stored), are quiet."""
    from django.core.checks import run_checks

    from oidc_provider_ext import checks

    def warned(engine: str) -> bool:
        settings.SESSION_ENGINE = engine
        messages = run_checks(include_deployment_checks=True, tags=["security"])
        return any(m.id == checks.W046 for m in messages)

    for clear in ("db", "cache", "cached_db", "file"):
        assert warned(f"django.contrib.sessions.backends.{clear}")
    for quiet in ("oidc_provider_ext.sessions", *ENGINES, "django.contrib.sessions.backends.signed_cookies"):
        assert not warned(quiet)
