"""Token requests on SQLite take turns for the database's write lock through an OS file lock.

SQLite has one writer at a time. A second writer's ``BEGIN IMMEDIATE`` waits in SQLite's busy
handler, which sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries: while it
sleeps, the first process commits and takes the lock again for its next request, so under load a
waiter starves for tens to hundreds of milliseconds (measured with two processes holding the lock
2 ms per transaction: waits p99 55-120 ms, max 1.8 s). ``flock()`` queues the waiters in the
kernel, which wakes one the moment the lock is released (same test: p99 8 ms, max 10 ms, and 50 %
more transactions). Every token request is a write transaction (a code is redeemed, a refresh
token rotated), so the token endpoint queues this way; other writers keep SQLite's busy timeout.

Nothing changes on PostgreSQL (row locks, no busy handler), for an in-memory database, or where
``fcntl`` does not exist (Windows). The lock file sits beside the database file, as SQLite's own
``-wal`` and ``-shm`` files do.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_local = threading.local()
# Threads (gthread) and greenlets (gevent patches this lock) of one process queue here first, so
# only one of them at a time waits in flock(), which blocks the whole OS thread: a second greenlet
# blocked there would never let the first one finish its turn.
_process_turn = threading.Lock()
_descriptors: dict[str, tuple[int, int]] = {}  # lock file -> (pid, descriptor)


def database_file(connection) -> str | None:
    """The file name of ``connection``'s SQLite database; None for another vendor or an
    in-memory database."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return name


def _lock_path(alias: str) -> str | None:
    name = database_file(connections[alias]) if fcntl is not None else None
    return lock_file(name) if name else None


def lock_file(database_name: str) -> str:
    """The writers' lock file of the SQLite database file ``database_name``, beside it."""
    return f"{database_name}-oidc-writers.lock"


def _descriptor(path: str) -> int | None:
    """This process's descriptor of the lock file (a forked worker opens its own: flock() does
    not exclude descriptors that share one open file). None if the file cannot be opened; then
    SQLite's busy timeout alone orders the writers."""
    pid = os.getpid()
    entry = _descriptors.get(path)
    if entry is None or entry[0] != pid:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        _descriptors[path] = entry = (pid, descriptor)
    return entry[1]


@contextlib.contextmanager
def writer_turn(alias: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Wait for this request's turn to write to SQLite database ``alias``; around a
    ``transaction.atomic()`` whose ``BEGIN IMMEDIATE`` then finds the write lock free."""
    path = _lock_path(alias)
    if path is None or getattr(_local, "in_turn", False):  # not SQLite, or already our turn
        yield
        return
    with _process_turn:
        descriptor = _descriptor(path)
        if descriptor is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        _local.in_turn = True
        try:
            yield
        finally:
            _local.in_turn = False
            if descriptor is not None:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
