import pytest


@pytest.fixture(autouse=True)
def _fresh_state():
    # Each test has its own database: the in-process signing-key snapshot and the cache (throttle
    # counters, cached clients) must not outlive it.
    from django.core.cache import cache

    from oidc_provider_ext import keys

    keys.invalidate()
    cache.clear()
    yield
    keys.invalidate()
    cache.clear()
