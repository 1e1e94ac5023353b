"""``ModelBackend``: Django's ``django.contrib.auth.backends.ModelBackend`` that takes the user's row
from the OP-session check of the same request instead of reading it again.

A signed-in browser's request costs Django a ``SELECT`` of the user (``AuthenticationMiddleware`` →
``get_user``) and the provider another one to check that its OP sessions are still live
(``OPSessionMiddleware``). With this backend named in the browser's session, the OP-session check
reads the user's row in its own statement (a join; op_sessions.browser_entries) and hands it over
while ``request.user`` is loaded: one statement for both. Django still verifies what this returns,
exactly as for its own backend (``django.contrib.auth.get_user``): the session auth hash, with
``SECRET_KEY_FALLBACKS``; the row is returned only for the user id Django asks for and only if
``user_can_authenticate`` (``is_active``); anything else is read from the database as before.

The row is handed over through a ``contextvars.ContextVar`` set only around the evaluation of
``request.user`` and reset afterwards, whatever happens: it never reaches another request, thread
or task. Swap it for Django's in ``AUTHENTICATION_BACKENDS`` (docs/operations.md)::

    AUTHENTICATION_BACKENDS = [..., "oidc_provider_ext.backends.ModelBackend"]

Everything else (``authenticate``, permissions) is Django's ``ModelBackend``; a subclass works too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth import backends

#: The user's row read by this request's OP-session check, while ``request.user`` is loaded.
_handed_over: ContextVar[Any] = ContextVar("oidc_provider_ext_user_read", default=None)


@contextmanager
def handing_over(user) -> Iterator[None]:
    """``user`` (a row just read) is what :meth:`ModelBackend.get_user` returns for its pk inside
    this block, if it may authenticate; nowhere else."""
    token = _handed_over.set(user)
    try:
        yield
    finally:
        _handed_over.reset(token)


class ModelBackend(backends.ModelBackend):
    """Django's ``ModelBackend``; ``get_user`` takes the row the OP-session check read in this
    request (:func:`handing_over`) when it is the user asked for and may authenticate."""

    def _read_with_op_sessions(self, user_id):
        user = _handed_over.get()
        if user is not None and user.pk == user_id and self.user_can_authenticate(user):
            return user
        return None

    def get_user(self, user_id):
        user = self._read_with_op_sessions(user_id)
        return user if user is not None else super().get_user(user_id)

    async def aget_user(self, user_id):
        user = self._read_with_op_sessions(user_id)
        return user if user is not None else await super().aget_user(user_id)
