"""Django's default cache, with this process's memory standing in while it fails.

Every cache entry the provider keeps (the signing-key and client-registry generations, clients,
throttle counters, registration rate limits, refused metadata documents, a resource server's copy
of the provider's JWKS) goes through :data:`cache`. When a call on the shared cache (Redis,
Memcached, the database cache) raises, that call and every call for the next ``RETRY_SECONDS`` are
made on a cache in this process's memory instead, so a Redis restart is not an HTTP 500 on every
endpoint. Reads and writes go to the same place meanwhile: a Redis that answers reads but refuses
writes (a demoted primary after a failover, ``maxmemory`` with ``noeviction``) cannot have a
throttle count in one place and be checked in the other. While it lasts each process works as
under ``LocMemCache`` (docs/operations.md, "What needs Redis, and what breaks without it"):
throttles count per process, and a change made through another server reaches this one within
the caches' own expiry. Set the client's socket timeouts so that a cache that hangs fails quickly.

``incr``/``decr`` of a missing key raise ``ValueError``, as Django's backends do; that is the
caller's business, not an outage. A counter the shared cache has but this process's memory does
not (the cache failed between ``add`` and ``incr``) raises :class:`CountUnknown`.

This module imports no model: the resource-server helper uses it in projects without the app.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache as _shared
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60  # one warning per process per minute while the shared cache fails
RETRY_SECONDS = 5  # after a failed call, this process uses its memory for this long


class CountUnknown(ValueError):
    """``incr``/``decr`` failed on the shared cache, and this process's memory does not hold the
    counter: its value is unknown. A ValueError, so callers that give a count back ignore it;
    callers that count failures must refuse the attempt."""


# The stand-in: bounded; its entries expire on their own once the shared cache is back.
_fallback = LocMemCache("oidc_provider_ext.shared_cache", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
_down_until = 0.0  # monotonic time before which this process does not try the shared cache
_warned_at: float | None = None


def _call(name: str, *args: Any) -> Any:
    global _down_until, _warned_at
    if time.monotonic() >= _down_until:
        try:
            return getattr(_shared, name)(*args)
        except ValueError:  # incr/decr of a missing key, or a key the backend refuses
            raise
        except Exception as exc:
            now = time.monotonic()
            _down_until = now + RETRY_SECONDS
            if _warned_at is None or now - _warned_at >= WARN_EVERY_SECONDS:
                _warned_at = now
                log.warning(
                    "The shared cache failed (%s: %s); this process uses its own memory for the "
                    "provider's caches and throttles, and tries it again every %s s.",
                    type(exc).__name__,
                    exc,
                    RETRY_SECONDS,
                )
            if name in ("incr", "decr"):
                try:
                    return getattr(_fallback, name)(*args)
                except ValueError:
                    raise CountUnknown(f"{name} of a counter the shared cache holds failed") from exc
    return getattr(_fallback, name)(*args)


class SharedCache:
    """The methods of Django's cache API the provider uses, each falling back on process memory."""

    def get(self, key: str, default: Any = None) -> Any:
        return _call("get", key, default)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return _call("get_many", keys)

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> None:
        _call("set", key, value, timeout)

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT) -> bool:
        return _call("add", key, value, timeout)

    def incr(self, key: str, delta: int = 1) -> int:
        return _call("incr", key, delta)

    def decr(self, key: str, delta: int = 1) -> int:
        return _call("decr", key, delta)

    def delete(self, key: str) -> bool:
        return _call("delete", key)

    def delete_many(self, keys: list[str]) -> None:
        _call("delete_many", keys)


cache = SharedCache()
