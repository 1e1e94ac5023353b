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
the caches' own expiry. When the retry time has come, one thread writes the generations this
process bumped meanwhile and a probe to the shared cache (a write: a Redis that answers only reads
is still down) before anything is read from it, and the memory is emptied. Set the client's socket
timeouts so that a cache that hangs fails quickly.

``incr``/``decr`` of a missing key raise ``ValueError``, as Django's backends do; that is the
caller's business, not an outage. A counter the shared cache has but this process's memory does
not (the cache failed between ``add`` and ``incr``) raises :class:`CountUnknown`.

This module imports no model: the resource-server helper uses it in projects without the app.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache import cache as _shared
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60  # one warning per process per minute while a cache fails
RETRY_SECONDS = 5  # after a failed call, this process leaves the cache alone for this long


class CountUnknown(ValueError):
    """``incr``/``decr`` failed on the shared cache, and this process's memory does not hold the
    counter: its value is unknown. A ValueError, so callers that give a count back ignore it;
    callers that count failures must refuse the attempt."""


class Breaker:
    """When a cache last failed in this process: it is left alone for ``RETRY_SECONDS`` after a
    failure (a Redis that times out costs one timeout per interval, not one per call), and the
    failure is logged once per ``WARN_EVERY_SECONDS``."""

    def __init__(self, what: str, meanwhile: str) -> None:
        self.what, self.meanwhile = what, meanwhile
        self.down_until = 0.0  # monotonic; 0: the cache answered the last call made on it
        self.warned_at: float | None = None

    def closed(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self.down_until = now + RETRY_SECONDS
        if self.warned_at is None or now - self.warned_at >= WARN_EVERY_SECONDS:
            self.warned_at = now
            log.warning(
                "%s failed (%s: %s); %s It is tried again every %s s.",
                self.what,
                type(exc).__name__,
                exc,
                self.meanwhile,
                RETRY_SECONDS,
            )


_breaker = Breaker("The shared cache", "this process uses its own memory for the provider's caches.")
# The stand-in: bounded; emptied when the shared cache is back, so that nothing it held (a client
# stamped with its generation, say) comes back at the next outage.
_fallback = LocMemCache("oidc_provider_ext.shared_cache", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
# Entries without expiry written to the stand-in: the key and client-registry generations, i.e. the
# invalidations this process made during the outage. Written to the shared cache before anything
# is read from it again, so that the change is not undone there for the other processes, or for
# this one.
_unexpiring: dict[str, Any] = {}
_recovery = threading.Lock()
_PROBE = "oidc_provider_ext:shared_cache:probe"


def _recover() -> bool:
    """Whether the shared cache may be used again: RETRY_SECONDS after its last failure, the
    generations bumped in memory written to it and a probe written (a Redis that answers reads but
    refuses writes is still down); then the memory is emptied. One thread tries at a time."""
    if not _breaker.closed():
        return False
    with _recovery:
        if not _breaker.down_until:  # another thread did it
            return True
        if not _breaker.closed():  # another thread found it still down
            return False
        try:
            for key, value in list(_unexpiring.items()):
                _shared.set(key, value, None)
                if _unexpiring.get(key) == value:  # else a newer one was written meanwhile
                    del _unexpiring[key]
            _shared.set(_PROBE, True, 1)
        except Exception as exc:
            _breaker.failed(exc)
            return False
        _fallback.clear()
        _breaker.down_until = 0.0
        return True


def _in_memory(name: str, *args: Any) -> Any:
    result = getattr(_fallback, name)(*args)
    # An add that changed nothing (or that a pending set would undo) is not an invalidation.
    if (
        name in ("set", "add")
        and args[2] is None
        and (name == "set" or (result and args[0] not in _unexpiring))
    ):
        _unexpiring[args[0]] = args[1]
    return result


def _call(name: str, *args: Any) -> Any:
    if _breaker.down_until and not _recover():
        return _in_memory(name, *args)
    try:
        return getattr(_shared, name)(*args)
    except ValueError:  # incr/decr of a missing key, or a key the backend refuses
        raise
    except Exception as exc:
        _breaker.failed(exc)
        if name in ("incr", "decr"):
            try:
                return getattr(_fallback, name)(*args)
            except ValueError:
                raise CountUnknown(f"{name} of a counter the shared cache holds failed") from exc
        return _in_memory(name, *args)


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
