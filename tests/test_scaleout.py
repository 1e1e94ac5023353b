"""Several app servers over one database and one Redis (docs/operations.md, "Running several app
servers").

The first part runs in-process: what a second server would do is played by the cache and the
database directly. The second part starts the real thing (tests/scaleout/cluster.py): two gunicorn
servers of idp_project behind HAProxy, over one database and one Redis DB; every change is made
through server A and checked directly against server B.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import clients

from .factories import ApplicationFactory

Application = get_application_model()


class _ReadRacingAChange:
    """Stands in for ``Application`` in ``internal.clients`` for one lookup: returns the row as it
    was before ``change`` and commits ``change`` while "reading", the way server B's query can
    return the old row while server A's save commits."""

    def __init__(self, client_id: str, change):
        self.client_id, self.change = client_id, change
        self.objects = self

    def select_related(self, *fields):
        return self

    def filter(self, **lookups):
        return self

    def first(self):
        stale = Application.objects.select_related("oidc_profile").get(client_id=self.client_id)
        with transaction.atomic():
            self.change()
        return stale


@pytest.mark.django_db(transaction=True)  # real commits: the second invalidation runs on commit
def test_a_client_read_while_a_change_commits_is_not_served_after_it(monkeypatch):
    app = ApplicationFactory(client_id="racing", redirect_uris="https://rp.example/old")

    def change():
        app.redirect_uris = "https://rp.example/new"
        app.save()

    with monkeypatch.context() as patched:
        patched.setattr(clients, "Application", _ReadRacingAChange("racing", change))
        assert clients.get_client("racing").redirect_uris == "https://rp.example/old"
    # The old row was cached after the change's invalidation ran; it must not be served for the
    # rest of CLIENT_CACHE_SECONDS (what a server sharing this cache would do).
    assert clients.get_client("racing").redirect_uris == "https://rp.example/new"


@pytest.mark.django_db
def test_an_evicted_generation_does_not_bring_back_old_entries(confidential_app):
    from django.core.cache import cache

    clients.get_client(confidential_app.client_id)
    Application.objects.filter(pk=confidential_app.pk).update(name="Changed")  # no signal
    clients.bump_generation()
    cache.delete(clients.GENERATION_CACHE_KEY)  # Redis evicted it (maxmemory) or was flushed
    assert clients.get_client(confidential_app.client_id).name == "Changed"


class TestSharedCacheCheck:
    """oidc_provider_ext.W040: production (DEBUG off, check --deploy) with a per-process cache."""

    LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    REDIS = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/8",
        }
    }

    def _messages(self, **kwargs):
        from django.core.checks import run_checks

        from oidc_provider_ext import checks

        return [m for m in run_checks(include_deployment_checks=True, **kwargs) if m.id == checks.W040]

    def test_warns_on_a_per_process_cache_in_production(self, settings):
        settings.DEBUG, settings.CACHES = False, self.LOCMEM
        [message] = self._messages()
        assert "LocMemCache" in message.msg and "REDIS_URL" in message.hint
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
        assert self._messages()

    def test_names_the_sessions_when_they_live_in_that_cache(self, settings):
        settings.DEBUG, settings.CACHES = False, self.LOCMEM
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
        [message] = self._messages()
        assert "SESSION_ENGINE" in message.msg

    def test_quiet_with_a_shared_cache_in_debug_and_outside_check_deploy(self, settings):
        from django.core.checks import run_checks

        settings.DEBUG, settings.CACHES = False, self.REDIS
        assert not self._messages()
        settings.DEBUG, settings.CACHES = True, self.LOCMEM
        assert not self._messages()
        settings.DEBUG = False
        assert "oidc_provider_ext.W040" not in {m.id for m in run_checks()}  # `make run`, the tests


class TestExampleSettings:
    """idp_project/settings.py reads the cache and the session engine from the environment."""

    def _settings(self, **env):
        import json
        import os
        import subprocess
        import sys

        code = (
            "import json, django; django.setup(); from django.conf import settings as s; "
            "print(json.dumps([s.CACHES['default']['BACKEND'], s.SESSION_ENGINE]))"
        )
        environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SESSION_ENGINE")}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**environ, "DJANGO_SETTINGS_MODULE": "idp_project.settings", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(result.stdout) if result.returncode == 0 else result.stderr

    def test_redis_url_and_session_engine(self):
        assert self._settings() == [
            "django.core.cache.backends.locmem.LocMemCache",
            "django.contrib.sessions.backends.db",
        ]
        assert self._settings(REDIS_URL="redis://127.0.0.1:6379/8", DJANGO_SESSION_ENGINE="cached_db") == [
            "django.core.cache.backends.redis.RedisCache",
            "django.contrib.sessions.backends.cached_db",
        ]

    def test_an_unknown_session_engine_is_refused(self):
        assert "use one of db, cached_db, cache, signed_cookies" in self._settings(
            DJANGO_SESSION_ENGINE="file"
        )
