"""A session engine: Django's cached database sessions (``django.contrib.sessions.backends.cached_db``)
over :mod:`oidc_provider_ext.sessions`, for ``SESSION_ENGINE = "oidc_provider_ext.sessions.cached_db"``.

Reads come from the cache and fall back to the table; every write goes to the table, then the
cache, as Django's engine does. Both are keyed by :func:`oidc_provider_ext.sessions.stored_key` of
the session key, never by the key itself (DESIGN.md, "No bearer secret in clear"), and the table is
written as ``oidc_provider_ext.sessions`` writes it (fewer statements per sign-in).

The class takes the hashed cache entry names, then Django's ``cached_db`` methods, then this
package's database engine under them (``SessionStore.__mro__``); what Django's methods do with the
clear key (the cache entry's name in ``exists()`` and ``delete()``, the async reads of the table)
is replaced here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import cached_db

from oidc_provider_ext.internal.shared_cache import Breaker

from . import SessionStore as HashedDBStore
from .cache import HashedEntries

KEY_PREFIX = "oidc_provider_ext.sessions.cached_db"


_breaker = Breaker("The session cache", "the database serves every session meanwhile.")


class _Copy:
    """The session cache as what it is here, a copy of the table: a call that fails (Redis down)
    is a miss, or a write skipped, and the cache is left alone for a few seconds (logged once a
    minute). Django's engine catches its reads and its saves, but not the copy stored after a
    read of the table nor the delete, so a Redis outage made every sign-in (the session is
    cycled) and sign-out a 500. A copy left behind by a skipped delete is harmless: every request
    also checks the browser's OP session rows in the database."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def _try(self, call: Any, *args: Any, default: Any = None) -> Any:
        if not _breaker.closed():
            return default
        try:
            return call(*args)
        except Exception as exc:
            _breaker.failed(exc)
            return default

    async def _atry(self, call: Any, *args: Any, default: Any = None) -> Any:
        if not _breaker.closed():
            return default
        try:
            return await call(*args)
        except Exception as exc:
            _breaker.failed(exc)
            return default

    def get(self, key: str, default: Any = None) -> Any:
        return self._try(self._cache.get, key, default, default=default)

    def set(self, key: str, value: Any, timeout: Any) -> None:
        self._try(self._cache.set, key, value, timeout)

    def delete(self, key: str) -> None:
        self._try(self._cache.delete, key)

    def __contains__(self, key: str) -> bool:
        return self._try(self._cache.has_key, key, default=False)

    async def aget(self, key: str, default: Any = None) -> Any:
        return await self._atry(self._cache.aget, key, default, default=default)

    async def aset(self, key: str, value: Any, timeout: Any) -> None:
        await self._atry(self._cache.aset, key, value, timeout)

    async def adelete(self, key: str) -> None:
        await self._atry(self._cache.adelete, key)

    def __repr__(self) -> str:
        return repr(self._cache)


class SessionStore(HashedEntries, cached_db.SessionStore, HashedDBStore):
    cache_key_prefix = KEY_PREFIX

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._cache = _Copy(self._cache)  # type: ignore[assignment]

    def exists(self, session_key: str) -> bool:
        return bool(session_key) and (
            self._entry(session_key) in self._cache or HashedDBStore.exists(self, session_key)
        )

    def delete(self, session_key: str | None = None) -> None:
        session_key = self.session_key if session_key is None else session_key
        if session_key is None:
            return
        HashedDBStore.delete(self, session_key)
        self._cache.delete(self._entry(session_key))

    # The async twins: HashedDBStore's, which run the methods of this class in a thread. Django's
    # cached_db ones come first in the MRO and would read the table by the clear key; its aflush()
    # calls adelete(), so it needs no twin of its own.
    aload = HashedDBStore.aload
    aexists = HashedDBStore.aexists
    asave = HashedDBStore.asave
    adelete = HashedDBStore.adelete
