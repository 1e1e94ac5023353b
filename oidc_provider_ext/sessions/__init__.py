"""A session engine: Django's database sessions (``django.contrib.sessions.backends.db``) with
fewer statements per sign-in, for ``SESSION_ENGINE = "oidc_provider_ext.sessions"``.

Same table, same data, same cookie; only these differ:

- The row is keyed by a hash of the session key (:func:`stored_key`), not by the key itself: a
  copy of the table (a backup, a read replica, a view-only admin of another app) holds no cookie
  that signs anyone in (DESIGN.md, "No bearer secret in clear"). Sessions written by Django's
  engine before are not found: every browser signs in once more after switching to this one.
- A new session key is not looked up before it is used: the INSERT (``force_insert``) is the
  uniqueness check, and Django's ``create()`` draws another key on the ``CreateError`` a collision
  raises. Django asks first with a SELECT, one statement for every new session.
- ``cycle_key()`` (``django.contrib.auth.login``: the session fixation defence) deletes the old row
  at once as Django does, with one DELETE by key (Django reads the row first, then deletes it), and
  writes the row under its new key once, when the response saves the session, instead of inserting
  it at once and updating it a moment later with what the sign-in added. A request that fails
  before the session is saved leaves the browser with no session, as the old key is already gone.
- Saving is the one INSERT or UPDATE on its own, not inside a transaction of its own: outside a
  transaction a single statement is atomic already, and Django's transaction only guards an
  enclosing one (``ATOMIC_REQUESTS``) from the INSERT's failure on a taken key; inside one, the
  save is in a transaction (a savepoint) as Django does it. Per session write that is the BEGIN and
  COMMIT round trips less (on SQLite, ``BEGIN IMMEDIATE`` and ``COMMIT`` statements).
"""

from __future__ import annotations

import functools
import hashlib
import logging

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError, IntegrityError, router, transaction
from django.utils import timezone
from django.utils.crypto import get_random_string


def stored_key(session_key: str) -> str:
    """The primary key of the row of the session whose cookie holds ``session_key``: SHA-256 in hex,
    its first 40 characters (160 bits; Django's column is 40 long). The key is 165 random bits, so
    its hash needs no secret to be irreversible, as for access and refresh tokens."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:40]


@functools.cache
def _by_key(model):
    from oidc_provider_ext.internal.lookups import Lookup  # imports the models: not at settings time

    return Lookup(model, by=["session_key"])


class SessionStore(db.SessionStore):
    _unsaved = False  # cycle_key() gave a new key that has no row yet

    def _get_new_session_key(self) -> str:
        # 32 characters of 36 (165 bits): the INSERT's unique key is the check (see the module).
        return get_random_string(32, VALID_KEY_CHARS)

    def _get_session_from_db(self):
        """Django's read (the row with this key if it has not expired, else the key is forgotten)
        as SQL written once (internal/lookups.py) instead of a query compiled per request: the row
        by key (its hash), its expiry compared here."""
        if self.session_key is None:  # Django's load() does not ask without a key
            return None
        model = self.model
        using = router.db_for_read(model)
        lookup = _by_key(model)
        key = stored_key(self.session_key)
        if lookup.supported(using):
            row = lookup.one(key, using=using)
        else:  # Django's own query, by the stored key
            try:
                row = model.objects.get(session_key=key)
            except (model.DoesNotExist, SuspiciousOperation) as exc:
                if isinstance(exc, SuspiciousOperation):  # as Django logs it
                    logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
                row = None
        if row is None or not row.expire_date > timezone.now():
            self._session_key = None
            return None
        return row

    def create_model_instance(self, data):
        instance = super().create_model_instance(data)
        instance.session_key = stored_key(instance.session_key)
        return instance

    def exists(self, session_key: str) -> bool:
        return self.model.objects.filter(session_key=stored_key(session_key)).exists()

    def cycle_key(self) -> None:
        data = self._session  # type: ignore[attr-defined]  # SessionBase's property, as cycle_key uses it
        key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self._unsaved = True
        self.modified = True
        if key:
            self.delete(key)

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        # One DELETE by primary key (no SELECT first, no transaction), as Model.delete() of an
        # instance that has only its key runs it; a model referring to sessions (a cascade to
        # collect) gets that delete().
        from oidc_provider_ext.internal.lookups import delete_by_key

        model = self.model
        delete_by_key(model, stored_key(session_key), using=router.db_for_write(model))

    def save(self, must_create: bool = False) -> None:
        if not self._unsaved or self.session_key is None:
            self._save(must_create=must_create)
            return
        while True:
            try:
                self._save(must_create=True)
            except CreateError:  # the new key was taken: draw another
                self._session_key = self._get_new_session_key()
                continue
            self._unsaved = False
            return

    def _save(self, must_create: bool) -> None:
        """Django's ``db.SessionStore.save()``, without a transaction of its own in autocommit
        mode (see the module)."""
        if self.session_key is None:
            self.create()
            return
        # SessionBase's own accessor, as Django's save() reads it (no load for a new row).
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        obj = self.create_model_instance(data)
        using = router.db_for_write(self.model, instance=obj)
        # obj.save(force_insert/force_update), its SQL written once
        from oidc_provider_ext.internal.lookups import save

        try:
            if transaction.get_autocommit(using=using):
                save(obj, create=must_create, using=using)
            else:
                with transaction.atomic(using=using):
                    save(obj, create=must_create, using=using)
        except IntegrityError as exc:
            if must_create:
                raise CreateError from exc
            raise
        except DatabaseError as exc:
            if not must_create:
                raise UpdateError from exc
            raise

    # Django's async twins (alogin, request.auser(), an async view's request.session.aget…) run the
    # methods above, so both key rows by the same hash and write the same way; Django's own async
    # methods would query by the key itself. As Django's ORM runs async queries: in a thread.
    async def aload(self):
        return await sync_to_async(self.load)()

    async def aexists(self, session_key: str) -> bool:
        return await sync_to_async(self.exists)(session_key)

    async def acreate(self) -> None:
        await sync_to_async(self.create)()

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save)(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete)(session_key)

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()
