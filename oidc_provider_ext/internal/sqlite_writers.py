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


def _lock_path(alias: str) -> str | None:
    connection = connections[alias]
    if fcntl is None or connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return f"{name}-oidc-writers.lock"


def _descriptor(path: str) -> int | None:
    """This thread's descriptor of the lock file: ``flock()`` excludes other descriptors, so each
    thread (gthread workers) and each process (a forked worker never shares its parent's) has one.
    None if the file cannot be opened (then SQLite's busy timeout alone orders the writers)."""
    pid = os.getpid()
    held = vars(_local).setdefault("descriptors", {})
    entry = held.get(path)
    if entry is None or entry[0] != pid:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        held[path] = entry = (pid, descriptor)
    return entry[1]


@contextlib.contextmanager
def writer_turn(alias: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Wait for this process's (and thread's) turn to write to SQLite database ``alias``; around a
    ``transaction.atomic()`` whose ``BEGIN IMMEDIATE`` then finds the write lock free."""
    path = _lock_path(alias)
    descriptor = None if path is None or getattr(_local, "in_turn", False) else _descriptor(path)
    if descriptor is None:  # not SQLite, already our turn (nested), or no lock file
        yield
        return
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    _local.in_turn = True
    try:
        yield
    finally:
        _local.in_turn = False
        fcntl.flock(descriptor, fcntl.LOCK_UN)
