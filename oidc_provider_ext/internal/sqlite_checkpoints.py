"""SQLite's WAL checkpoints run in a background thread of each process, not in a request.

In WAL mode SQLite appends each commit to the ``-wal`` file and copies the pages back into the
database file in a *checkpoint*. By default the commit that takes the WAL past 1,000 pages runs
that checkpoint itself, before ``COMMIT`` returns: on the token endpoint that is inside the
writers' turn (``sqlite_writers``), so every other token request waits for it too. Measured
in-process on SQLite: every ~52nd code exchange took 6-7 ms instead of 2 ms; over HTTP at 8
clients those stalls are the exchange's 99th percentile (docs/performance.md).

So each process that opens a file database in WAL mode starts one daemon thread that runs a
``PASSIVE`` checkpoint every ``INTERVAL_SECONDS`` on a connection of its own, kept open. A passive
checkpoint takes no lock that a writer or a reader waits for (https://sqlite.org/wal.html,
"Checkpointing"; https://sqlite.org/pragma.html#pragma_wal_checkpoint), and the thread holds no
GIL while SQLite copies. Request connections keep an automatic checkpoint only as a backstop,
at ``BACKSTOP_PAGES``, for a process whose thread is not running (or has fallen far behind).

Nothing changes on PostgreSQL, for an in-memory database, or for a database not in WAL mode.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from urllib.parse import quote

from oidc_provider_ext.internal import sqlite_writers

log = logging.getLogger(__name__)

# Four times a second: at ~600 code exchanges a second the WAL gains ~4,600 pages a second. With a
# one-second tick a commit still stalled 11-17 ms every ~500 exchanges (in-process, 1,200 in a
# row); with 0.25 s none did (max 7.5 ms). A tick with nothing to copy costs microseconds.
INTERVAL_SECONDS = 0.25
# 40 MB of WAL with 4 KiB pages: reached only if no thread checkpoints (SQLite's default: 1,000).
BACKSTOP_PAGES = 10_000

_lock = threading.Lock()
_running: dict[str, int] = {}  # database file -> pid of the process whose thread checkpoints it


def connection_created(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: a file database in WAL mode gets the backstop and, once
    per process, the checkpointing thread."""
    name = sqlite_writers.database_file(connection)
    if not name or name.startswith("file:"):  # another vendor, in memory, or a URI
        return
    raw = connection.connection
    mode = raw.execute("PRAGMA journal_mode").fetchone()
    if not mode or str(mode[0]).lower() != "wal":
        return
    raw.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    start(name)


def start(path: str) -> bool:
    """Start this process's checkpointing thread for the database file ``path`` unless one runs.
    True if this call started it."""
    path = os.path.abspath(path)
    pid = os.getpid()
    with _lock:
        if _running.get(path) == pid:  # a forked worker inherits the dict, not the thread
            return False
        _running[path] = pid
    threading.Thread(target=_run, args=(path, pid), name="oidc-sqlite-checkpoint", daemon=True).start()
    return True


def _run(path: str, pid: int) -> None:
    # mode=rw: a database file deleted meanwhile (a test database torn down) is not created again.
    uri = f"file:{quote(path)}?mode=rw"
    db, inode = None, None
    try:
        while True:
            time.sleep(INTERVAL_SECONDS)
            try:
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    return  # the database is gone; a new connection to it starts a new thread
                if db is not None and current != inode:  # deleted and created again: reopen
                    db.close()
                    db = None
                if db is None:  # kept open: a tick with nothing to copy reads the WAL index only
                    db = sqlite3.connect(uri, uri=True, timeout=0)
                    inode = current
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                # Busy (another process's checkpoint, a schema change), or a file that is not a
                # database (yet): the next tick retries.
                log.debug("SQLite checkpoint of %s skipped: %s", path, exc)
    finally:
        if db is not None:
            db.close()
        with _lock:
            if _running.get(path) == pid:
                del _running[path]
