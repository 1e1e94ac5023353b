"""The token endpoint's write transaction, opened at the request's first locking statement.

A token request first reads (the client, the code or refresh token, its grant, the user) and signs
its tokens, then writes: the single-use UPDATE that redeems the code or consumes the refresh token,
and the new tokens. Only the writes need the transaction. On SQLite the transaction is the
database's one write lock, which the workers take in turn (sqlite_writers.py): opened for the whole
request, it also held the reads and the RSA signatures, so the workers signed one at a time. Opened
at the first locking statement, it holds for the writes alone.

What was read before it is checked again by the locking statements themselves: the single-use
UPDATEs are conditional (``redeemed IS NULL AND expires > now``, ``revoked IS NULL``), and a
logout, revocation or deactivation expires the very rows they test. PostgreSQL reads in READ
COMMITTED, where a statement inside a transaction sees no more than one outside it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from django.db import transaction

from oidc_provider_ext.internal import sqlite_writers

_local = threading.local()  # the token request this thread (or greenlet) is serving


class _Writes:
    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.open = False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Around one token request: :func:`begin` opens its transaction, which commits when the
    block ends, or rolls back if it raises."""
    writes, previous = _Writes(), getattr(_local, "writes", None)
    _local.writes = writes
    try:
        with writes.stack:
            yield
    finally:
        _local.writes = previous


def begin() -> None:
    """Open the current token request's write transaction (the SQLite writers' turn, then
    ``transaction.atomic()``) before its first locking statement; once per request. Outside a
    token request (the validator serving another endpoint), nothing: each statement commits alone."""
    writes = getattr(_local, "writes", None)
    if writes is None or writes.open:
        return
    writes.open = True
    writes.stack.enter_context(sqlite_writers.writer_turn())
    writes.stack.enter_context(transaction.atomic())
