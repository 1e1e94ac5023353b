import contextlib
import os

import pytest
from django.test import Client
from jwcrypto import jwk

from oidc_provider_ext import keys

from .factories import ApplicationFactory, PublicApplicationFactory, UserFactory

# Live-server fixtures (live_issuer, demo) for tests/interop, tests/e2e and tests/conformance.
pytest_plugins = ["tests.live"]


def pytest_report_header(config):
    from django.conf import settings

    url = "set" if os.environ.get("DATABASE_URL") else "unset"
    return f"database: {settings.DATABASES['default']['ENGINE']} (DATABASE_URL {url})"


def pytest_sessionfinish(session, exitstatus):
    # Django deletes the SQLite test database; the token endpoint's lock file beside it
    # (internal/sqlite_writers.py) is ours to delete.
    from django.conf import settings

    from oidc_provider_ext.internal.sqlite_writers import lock_file

    database = settings.DATABASES["default"]
    name = (database.get("TEST") or {}).get("NAME")
    if name and database["ENGINE"].endswith("sqlite3"):
        with contextlib.suppress(OSError):
            os.unlink(lock_file(name))


_generated: dict = {}


@pytest.fixture(autouse=True)
def _fresh_key_snapshot(monkeypatch):
    # Each test has its own database; the in-process key snapshot must not outlive it.
    keys.invalidate()
    # RSA generation costs ~0.5 s: generate one key pair per algorithm per session. Keys are still
    # created, encrypted and stored through the real code path, per test.
    real_generate = keys._generate

    def cached_generate(alg):
        if alg not in _generated:
            _generated[alg] = real_generate(alg).export_private()
        return jwk.JWK.from_json(_generated[alg])

    monkeypatch.setattr(keys, "_generate", cached_generate)
    yield
    keys.invalidate()


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Failure counters (oidc_provider_ext.throttle) and cached clients live in the cache: one test's
    # failed attempts from 127.0.0.1 must not throttle the next test.
    from django.core.cache import cache

    from oidc_provider_ext.internal import shared_cache
    from oidc_provider_ext.sessions import cached_db

    def forget_outages():  # what stood in for the cache while a test broke it
        shared_cache._fallback.clear()
        shared_cache._unexpiring.clear()
        for breaker in (shared_cache._breaker, cached_db._breaker):
            breaker.down_until, breaker.warned_at = 0.0, None

    cache.clear()
    forget_outages()
    yield
    cache.clear()
    forget_outages()


@pytest.fixture
def cache_down(monkeypatch):
    """Django's default cache fails every call (Redis restarting, say)."""
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    for name in ("get", "get_many", "set", "add", "incr", "decr", "delete", "delete_many"):
        monkeypatch.setattr(cache, name, broken)


@pytest.fixture(autouse=True, scope="session")
def _demo_rp_credentials_file(tmp_path_factory):
    # `oidc_demo` writes the demo relying party's credentials (idp_project/demo_rp.py): into a
    # temporary file during the tests, never over the developer's <repo>/.demo-rp.json.
    from django.conf import settings
    from django.test import override_settings

    if not getattr(settings, "DEMO_RP", None):
        yield
        return
    path = tmp_path_factory.mktemp("demo-rp") / "credentials.json"
    with override_settings(DEMO_RP={**settings.DEMO_RP, "CREDENTIALS_FILE": path}):
        yield


def record_calls(monkeypatch, cls, name: str, record=lambda args, kwargs: True) -> list:
    """Wrap method ``name`` of ``cls`` as a library would (a tracker wrapping ``save_base``, say):
    the list returned gets ``record(args, kwargs)`` for each call, and the method still runs."""
    calls: list = []
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        calls.append(record(args, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


def oidc_settings(settings, **overrides) -> None:
    """Merge ``overrides`` into OIDC_PROVIDER_EXT through pytest-django's ``settings`` fixture
    (undone after the test). For a change in the middle of a test (a SECRET_KEYS rotation between
    two steps); an override for the whole test is the ``oidc_settings`` marker."""
    settings.OIDC_PROVIDER_EXT = {**settings.OIDC_PROVIDER_EXT, **overrides}


@pytest.fixture(autouse=True)
def _oidc_settings_marker(request):
    """``@pytest.mark.oidc_settings(*presets, **overrides)`` on a test, class or module: the
    presets (tests/presets.py), then the keywords, merged into OIDC_PROVIDER_EXT before any other
    fixture runs. A marker closer to the test wins over a class or module one."""
    markers = list(request.node.iter_markers("oidc_settings"))
    if not markers:
        return
    overrides: dict = {}
    for marker in reversed(markers):  # iter_markers yields the closest first
        for preset in marker.args:
            overrides.update(preset)
        overrides.update(marker.kwargs)
    oidc_settings(request.getfixturevalue("settings"), **overrides)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def confidential_app(db):
    return ApplicationFactory()


@pytest.fixture
def public_app(db):
    return PublicApplicationFactory()


@pytest.fixture
def browser():
    """A fresh cookie jar: the user's browser."""
    return Client()


@pytest.fixture
def rp():
    """The relying party's back channel: no cookies shared with the browser."""
    return Client()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Django's advice for test suites: PBKDF2 with 1M iterations is the deliberate cost of a real
    # login, not something the tests measure. PBKDF2 stays listed so its hashes still verify.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "oidc_provider_ext.hashers.ClientSecretHasher",
    ]
