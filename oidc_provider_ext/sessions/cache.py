"""A session engine: Django's cache sessions (``django.contrib.sessions.backends.cache``) with each
entry keyed by a hash of the session key, for ``SESSION_ENGINE = "oidc_provider_ext.sessions.cache"``.

Django's engine keys the cache entry by the cookie's value, so a copy of the cache (a Redis dump or
replica, ``KEYS *`` in a shared Redis) is a list of cookies that sign people in. Here the entry is
keyed by :func:`oidc_provider_ext.sessions.stored_key` of the key, as the database engine keys its
rows (DESIGN.md, "No bearer secret in clear"); everything else is Django's: the data, the cookie, the
expiry (the cache entry's timeout), a new key at sign-in. Sessions written by Django's engine are not
found: every browser signs in once more after switching to this one.

With several processes the cache must be one they share (Redis; check W044): each process of a
per-process cache would know only its own sessions.
"""

from __future__ import annotations

from django.contrib.sessions.backends import cache
from django.core.cache.backends.base import BaseCache

from . import SessionStore as HashedDBStore
from . import stored_key

KEY_PREFIX = "oidc_provider_ext.sessions.cache"


class HashedEntries:
    """The cache entry's name of Django's cache-based engines (``cache_key``, ``acache_key``): the
    engine's prefix and the session key's hash. Shared with ``cached_db``'s engine."""

    cache_key_prefix: str
    _cache: BaseCache  # Django's __init__ sets it (SESSION_CACHE_ALIAS); its type stubs do not say so

    def _entry(self, session_key: str) -> str:
        return self.cache_key_prefix + stored_key(session_key)

    @property
    def cache_key(self) -> str:
        return self._entry(self._get_or_create_session_key())  # type: ignore[attr-defined]

    async def acache_key(self) -> str:
        return self._entry(await self._aget_or_create_session_key())  # type: ignore[attr-defined]


class SessionStore(HashedEntries, cache.SessionStore):
    cache_key_prefix = KEY_PREFIX
    # A new key is not looked up first (Django's has_key round trip): create()'s add() refuses a
    # taken one, and create() then draws another, as the database engine's INSERT does.
    _get_new_session_key = HashedDBStore._get_new_session_key

    def exists(self, session_key: str) -> bool:
        return bool(session_key) and self._entry(session_key) in self._cache

    async def aexists(self, session_key: str) -> bool:
        return bool(session_key) and await self._cache.ahas_key(self._entry(session_key))

    def delete(self, session_key: str | None = None) -> None:
        session_key = self.session_key if session_key is None else session_key
        if session_key is not None:
            self._cache.delete(self._entry(session_key))

    async def adelete(self, session_key: str | None = None) -> None:
        session_key = self.session_key if session_key is None else session_key
        if session_key is not None:
            await self._cache.adelete(self._entry(session_key))
