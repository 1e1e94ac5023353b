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

from django.contrib.sessions.backends import cached_db

from . import SessionStore as HashedDBStore
from .cache import HashedEntries

KEY_PREFIX = "oidc_provider_ext.sessions.cached_db"


class SessionStore(HashedEntries, cached_db.SessionStore, HashedDBStore):
    cache_key_prefix = KEY_PREFIX

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
