"""A store that fails (a full disk, a damaged file, a server that stops accepting writes) reaches
the user as StoreError with what to do: runs end failed and never raise, and the session goes on
once the store can be written again.

The full disk is real: SQLite's ``max_page_count`` on the store's own connection makes every write
that needs a new page fail with SQLITE_FULL, as a full file system does. On PostgreSQL the same
tests make the database refuse writes as a read-only standby does after a failover
(``default_transaction_read_only``, the store's connections ended by the server), and then
accept them again. The damaged file is a real store file with bytes overwritten in the middle.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, Model, ModelRequest, RuntimeSignal, SessionConfig, StoreError
from loom_nb.store import SQLiteStore
from tests.backends import Backend


def _answer(request: ModelRequest) -> str:
    return "answer to " + request.messages[-1].text[:20]


def _fill_disk(store: SQLiteStore) -> None:
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def _free_disk(store: SQLiteStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


def _read_only(backend: Backend, store: Any, on: bool) -> None:
    """The database refuses (or accepts again) every write, and the store's open connections are
    ended by the server, as at a failover: its pool reconnects to a database that says so."""
    (db,) = backend.query("SELECT current_database()")[0]
    change = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    import psycopg
    with psycopg.connect(backend.spec, autocommit=True) as admin:
        # Read-only too once the database is: it turns that off for itself first.
        admin.execute("SET default_transaction_read_only = off")
        admin.execute(f"ALTER DATABASE {db} {change}")
    backend.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    store._pool.check()  # replaces the ended connections now rather than at the next failure


class _Failing:
    """A store on ``backend`` that can be made to fail every write, and to accept them again."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.store = backend, backend.open()
        self.says = "is full" if backend.kind == "sqlite" else "accepts no writes"
        self.fix = "Free space on that disk" if backend.kind == "sqlite" else "Point the DSN at the primary"
        self.name = "s.sqlite" if backend.kind == "sqlite" else backend.spec.rsplit("/", 1)[1]

    def fail(self) -> None:
        if self.backend.kind == "sqlite":
            _fill_disk(self.store)
        else:
            _read_only(self.backend, self.store, True)

    def recover(self) -> None:
        if self.backend.kind == "sqlite":
            _free_disk(self.store)
        else:
            _read_only(self.backend, self.store, False)


def test_a_full_disk_fails_the_run_with_a_store_error_and_the_session_goes_on(backend: Backend) -> None:
    failing = _Failing(backend)
    store = failing.store
    session = Agent(Model.function(_answer)).session(SessionConfig(id="full", store=store))
    assert session.run_sync("before").status == "completed"
    failing.fail()
    result = session.run_sync("a long question " * 2_000)  # needs new pages: cannot be stored
    assert (result.status, result.error_type) == ("failed", "StoreError")
    assert failing.says in result.error and failing.fix in result.error
    assert failing.name in result.error
    assert [m.text for m in session.messages] == ["before", "answer to before"]  # nothing half-kept
    assert result.events[-1].type == "run.finished" and result.events[-1].data["status"] == "failed"
    with pytest.raises(StoreError, match=failing.says):  # a plain write raises it too, never the driver's
        session.feedback(session.runs[0].run_id, 1.0, "x" * 20_000)

    failing.recover()
    after = session.run_sync("after")
    assert after.status == "completed", after.error
    statuses = {r.prompt[:6]: r.status for r in session.runs}
    assert statuses == {"before": "completed", "a long": "failed", "after": "completed"}  # never stuck
    reopened = Agent(Model.scripted([])).session(SessionConfig(id="full", store=backend.open()))
    assert [m.text for m in reopened.messages] == ["before", "answer to before", "after", "answer to after"]
    assert [r.status for r in reopened.runs] == ["completed", "failed", "completed"]


def test_when_even_the_failed_end_cannot_be_written_the_result_still_says_failed(
        backend: Backend) -> None:
    failing = _Failing(backend)
    session = Agent(Model.function(_answer)).session(SessionConfig(id="full", store=failing.store))
    failing.fail()
    for _ in range(3):  # the disk stays full: every run fails the same way, none raises
        result = session.run_sync("a long question " * 2_000)
        assert (result.status, result.error_type) == ("failed", "StoreError")
        assert result.error.count(failing.says) >= 1
    assert "running" not in [r.status for r in session.runs]
    failing.recover()
    assert session.run_sync("room again").status == "completed"
    # the ends that could not be written were written before the next run: none stays running
    assert [r.status for r in session.runs] == ["failed", "failed", "failed", "completed"]
    assert all(r.error and failing.says in r.error for r in session.runs[:3])


def test_a_full_disk_during_a_background_run_and_a_signal_run(backend: Backend) -> None:
    failing = _Failing(backend)
    session = Agent(Model.function(_answer)).session(SessionConfig(id="bg", store=failing.store))
    assert session.run_sync("first").status == "completed"
    failing.fail()
    run = session.start("a long question " * 2_000)
    assert run.result(10).status == "failed" and run.status == "failed"
    with pytest.raises(StoreError, match=failing.says):  # the signal's record cannot be stored...
        session.receive_sync(RuntimeSignal(source="app", type="event", summary="x" * 20_000))
    session.wait_idle(10)  # ...its run still went, failed, and nothing escaped the queue's task
    failing.recover()
    assert session.run_sync("room again").status == "completed"
    assert [r.status for r in session.runs][-1] == "completed"
    assert "running" not in [r.status for r in session.runs]


# SQLite only from here: a damaged file is a file's failure; a PostgreSQL server checks its own
# pages, and a row loom_nb cannot decode is covered in test_postgres_store.py.
def _damaged_store(path: Path) -> None:
    """A real store with enough history to span many pages, its middle overwritten."""
    store = SQLiteStore(path)
    session = Agent(Model.function(lambda r: "answer " * 200)).session(SessionConfig(id="d", store=store))
    for i in range(20):
        session.run_sync(f"question {i} " * 100)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page_size,) = store._db.execute("PRAGMA page_size").fetchone()
    # The root page of each table read below too: which tables the middle of the file holds
    # depends on the schema's row sizes.
    roots = [r for (r,) in store._db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name IN ('runs', 'events', 'messages')")]
    store.close()
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xff\x00garbage" * 1_500)
        for root in roots:
            f.seek((root - 1) * page_size)
            f.write(b"\xff\x00garbage" * (page_size // 9))


@pytest.mark.parametrize("reader", ["open", "runs", "events", "messages"])
def test_a_damaged_file_is_a_store_error_that_says_what_to_do(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "d.sqlite"
    _damaged_store(path)
    store = SQLiteStore(path)  # the header is intact: opening the file itself works
    with pytest.raises(StoreError) as caught:
        if reader == "open":
            Agent(Model.scripted([])).session(SessionConfig(id="d", store=store))
        elif reader == "runs":
            store.runs("d")
        elif reader == "events":
            store.events(session_id="d")
        else:
            store.stored_messages("d")
    message = str(caught.value)
    assert "d.sqlite" in message and "damaged" in message and "Restore it from a backup" in message
    assert not isinstance(caught.value, sqlite3.Error)
    assert isinstance(caught.value.__cause__, sqlite3.Error | ValueError)


def test_a_new_store_file_after_damage_works(tmp_path: Path) -> None:
    _damaged_store(tmp_path / "d.sqlite")
    fresh = Agent(Model.function(_answer)).session(SessionConfig(id="d", store=tmp_path / "new.sqlite"))
    assert fresh.run_sync("again").status == "completed"
    assert os.path.exists(tmp_path / "new.sqlite")
