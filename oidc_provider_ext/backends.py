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

``authenticate`` is Django's too, with the user read by name as SQL written once
(internal/lookups.py: the ORM compiles Django's ``get_by_natural_key()`` query on every sign-in)
where that answers exactly as the user model's manager would; otherwise the manager is asked.
Permissions are Django's ``ModelBackend``; a subclass works too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth import backends, get_user_model
from django.db import router
from django.views.decorators.debug import sensitive_variables

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

    @sensitive_variables("password")
    def authenticate(self, request, username=None, password=None, **kwargs):
        """Django's ``ModelBackend.authenticate`` (5.2 and 6.1 decide alike), the user read by
        :func:`lookups.user_by_name_lookup` where it answers as ``get_by_natural_key()`` would."""
        from .internal import lookups  # imports models: not at the import of the backend

        users = get_user_model()
        alias = router.db_for_read(users)  # where the manager's get() reads
        lookup = lookups.user_by_name_lookup(users, alias)
        if lookup is None:
            return super().authenticate(request, username, password, **kwargs)
        if username is None:
            username = kwargs.get(users.USERNAME_FIELD)
        if username is None or password is None:
            return None
        user: Any = lookup.one(username, using=alias)
        if user is None:
            # Django #20760: an unknown name costs one hash too, so timing does not tell names apart.
            users().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def get_user(self, user_id):
        user = self._read_with_op_sessions(user_id)
        return user if user is not None else super().get_user(user_id)

    async def aget_user(self, user_id):
        user = self._read_with_op_sessions(user_id)
        return user if user is not None else await super().aget_user(user_id)
