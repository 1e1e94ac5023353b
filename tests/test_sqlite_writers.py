"""internal/sqlite_writers.py: token requests on SQLite take turns for the write lock (an OS file
lock) instead of sleeping in SQLite's busy back-off; nothing changes on PostgreSQL."""

import threading
import time

import pytest
from django.db import connection

from oidc_provider_ext.internal import sqlite_writers

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's writers only")


@sqlite_only
def test_writers_take_turns():
    events = []
    inside = threading.Event()

    def first():
        with sqlite_writers.writer_turn():
            events.append("first in")
            inside.set()
            time.sleep(0.2)
            events.append("first out")

    def second():
        inside.wait()
        with sqlite_writers.writer_turn():
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert events == ["first in", "first out", "second in"]


@sqlite_only
def test_a_nested_turn_does_not_wait_for_itself():
    with sqlite_writers.writer_turn(), sqlite_writers.writer_turn():
        pass
    with sqlite_writers.writer_turn():  # released: taken again at once
        pass


@sqlite_only
def test_no_lock_file_means_no_turn(monkeypatch):
    monkeypatch.setattr(sqlite_writers, "_lock_path", lambda alias: "/nonexistent-directory/db-lock")
    with sqlite_writers.writer_turn():
        pass


def test_only_a_sqlite_file_database_has_a_lock_file():
    path = sqlite_writers._lock_path("default")
    if connection.vendor == "sqlite":
        assert path == f"{connection.settings_dict['NAME']}-oidc-writers.lock"
    else:
        assert path is None
