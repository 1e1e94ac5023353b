"""SQLite WAL checkpoints run in a background thread, not in the commit of a request
(oidc_provider_ext/internal/sqlite_checkpoints.py)."""

from __future__ import annotations

import os
import sqlite3
import time
from types import SimpleNamespace

import pytest
from django.db import connection

from oidc_provider_ext.internal import sqlite_checkpoints


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def fast_ticks(monkeypatch):
    monkeypatch.setattr(sqlite_checkpoints, "INTERVAL_SECONDS", 0.02)


@pytest.fixture
def wal_database(tmp_path):
    """A WAL database file whose writer never checkpoints by itself (autocheckpoint off)."""
    path = str(tmp_path / "wal.sqlite3")
    writer = sqlite3.connect(path)
    assert writer.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (payload BLOB)")
    writer.commit()
    yield path, writer
    writer.close()


@pytest.mark.django_db
def test_a_request_connection_to_a_wal_database_keeps_only_the_backstop_checkpoint():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0].lower() != "wal":
            pytest.skip("the test database is not in WAL mode")
        cursor.execute("PRAGMA wal_autocheckpoint")
        # SQLite's default is 1,000 pages: the commit reaching it would copy them inside the
        # request (and, on the token endpoint, inside the writers' turn).
        assert cursor.fetchone()[0] == sqlite_checkpoints.BACKSTOP_PAGES


def test_the_thread_copies_committed_pages_into_the_database_file(wal_database, fast_ticks):
    path, writer = wal_database
    size_before = os.path.getsize(path)
    writer.execute("INSERT INTO t VALUES (?)", (os.urandom(256 * 1024),))
    writer.commit()
    time.sleep(0.2)
    # Nothing checkpoints yet: the rows are in the -wal file only.
    assert os.path.getsize(path) == size_before
    assert sqlite_checkpoints.start(path) is True
    assert _wait_for(lambda: os.path.getsize(path) >= size_before + 256 * 1024)


def test_one_thread_per_database_and_process(wal_database, fast_ticks):
    path, _ = wal_database
    assert sqlite_checkpoints.start(path) is True
    assert sqlite_checkpoints.start(path) is False


def test_a_deleted_database_is_not_created_again_and_its_thread_ends(wal_database, fast_ticks):
    path, writer = wal_database
    assert sqlite_checkpoints.start(path) is True
    writer.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    assert _wait_for(lambda: os.path.abspath(path) not in sqlite_checkpoints._running)
    time.sleep(0.1)
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    "vendor, journal_mode",
    [("sqlite", "DELETE"), ("postgresql", "WAL")],
)
def test_no_thread_without_a_wal_sqlite_file(tmp_path, vendor, journal_mode):
    path = str(tmp_path / "other.sqlite3")
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA journal_mode={journal_mode}")
    fake = SimpleNamespace(vendor=vendor, settings_dict={"NAME": path}, connection=raw)
    sqlite_checkpoints.connection_created(sender=None, connection=fake)
    assert os.path.abspath(path) not in sqlite_checkpoints._running
    assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # left as it was
    raw.close()


def test_a_wal_sqlite_file_gets_the_thread_and_the_backstop(tmp_path, fast_ticks):
    path = str(tmp_path / "wal2.sqlite3")
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=WAL")
    fake = SimpleNamespace(vendor="sqlite", settings_dict={"NAME": path}, connection=raw)
    sqlite_checkpoints.connection_created(sender=None, connection=fake)
    assert sqlite_checkpoints._running.get(os.path.abspath(path)) == os.getpid()
    assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == sqlite_checkpoints.BACKSTOP_PAGES
    raw.close()


def test_a_database_created_again_at_the_same_path_is_checkpointed(wal_database, fast_ticks):
    path, writer = wal_database
    assert sqlite_checkpoints.start(path) is True
    time.sleep(0.1)  # the thread has its connection to the first file
    writer.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    again = sqlite3.connect(path)
    try:
        again.execute("PRAGMA journal_mode=WAL")
        again.execute("PRAGMA wal_autocheckpoint=0")
        again.execute("CREATE TABLE t (payload BLOB)")
        again.commit()
        size_before = os.path.getsize(path)
        again.execute("INSERT INTO t VALUES (?)", (os.urandom(256 * 1024),))
        again.commit()
        # Either the thread noticed the new file and checkpoints it, or it saw the path empty,
        # ended, and the next start() begins a new one: the pages reach the file either way.
        sqlite_checkpoints.start(path)
        assert _wait_for(lambda: os.path.getsize(path) >= size_before + 256 * 1024)
    finally:
        again.close()
