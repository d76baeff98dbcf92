"""SQLiteStore: an embedded SQLite file (stdlib ``sqlite3``, WAL mode) that survives a kernel
restart and that other processes can read while a session writes."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._owner import RunOwner
from .._store_errors import (SQLITE_CORRUPT, SQLITE_NOTADB, sqlite_errors_become_store_errors,
                             store_error)
from ..continuity import RestoreMode
from ..errors import StoreError
from ..events import RunEvent, utcnow
from ..feedback import FeedbackRecord
from ..messages import Message, Usage, message_from_dict
from ._writer import GroupWriter, Job
from .protocols import Checkpoint, RunRecord, SignalRecord, StoredMessage, StoredSession

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import Future

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, parent_run_id TEXT, agent TEXT, model TEXT,
    prompt TEXT, status TEXT NOT NULL, output TEXT, error TEXT, started_at TEXT NOT NULL,
    finished_at TEXT, usage TEXT NOT NULL, turns INTEGER NOT NULL, state TEXT, owner TEXT);
CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, started_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (session_id, status);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL, idx INTEGER NOT NULL, run_id TEXT NOT NULL, role TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (session_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, session_id TEXT NOT NULL, parent_run_id TEXT,
    type TEXT NOT NULL, ts TEXT NOT NULL, data TEXT NOT NULL, UNIQUE (run_id, seq));
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id);
CREATE TABLE IF NOT EXISTS checkpoints (
    session_id TEXT NOT NULL, through INTEGER NOT NULL, created_at TEXT NOT NULL,
    history TEXT NOT NULL, memory TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints (session_id);
CREATE TABLE IF NOT EXISTS signals (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, ts TEXT NOT NULL, signal_id TEXT NOT NULL,
    source TEXT NOT NULL, type TEXT NOT NULL, urgency TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT NOT NULL, run_id TEXT, data TEXT NOT NULL, UNIQUE (session_id, seq));
CREATE TABLE IF NOT EXISTS feedback (
    session_id TEXT NOT NULL, ts TEXT NOT NULL, run_id TEXT, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_by_session ON feedback (session_id);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL
    ) WITHOUT ROWID;
"""
#: 2: runs.owner (the process running a run, so that a run its dead process left "running" can
#: be told from one still going). 3: blobs (images and documents, each once by sha256; messages
#: hold references), which an earlier loom_nb could not read.
_SCHEMA_VERSION = 3
#: Columns added since version 1, with their type: a file from an earlier version gains them.
_ADDED_COLUMNS = {"runs": {"owner": "TEXT"}}
_RUN_COLUMNS = ("run_id, session_id, parent_run_id, agent, model, prompt, status, output, error, "
                "started_at, finished_at, usage, turns, state, owner")


@sqlite_errors_become_store_errors
class SQLiteStore:
    """An embedded SQLite file; safe for one writer and many readers across processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sqlite3
        from pathlib import Path

        self.path = Path(path).expanduser().absolute()
        folder = self.path.parent
        if not folder.is_dir():
            raise StoreError(
                f"The folder {str(folder)!r} for the session store does not exist. Create it "
                f"first (os.makedirs({str(folder)!r}, exist_ok=True)) or choose a path in an "
                f"existing folder."
            )
        if self.path.is_dir():
            raise StoreError(f"{str(self.path)!r} is a folder; give a file path such as "
                             f"{str(self.path / 'sessions.sqlite')!r}.")
        self._lock = threading.Lock()
        self._writer = GroupWriter(self._write_batch, name=f"loom-store {self.path.name}")
        self._running: set[str] = set()
        try:
            # One connection shared by the caller's thread and the background loop thread;
            # self._lock serializes its use.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 10000")
            _wal(self._db)
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF not in (SQLITE_NOTADB, SQLITE_CORRUPT):
                raise store_error(self.path, exc, "open the store") from exc  # full, read-only...
            raise StoreError(
                f"{str(self.path)!r} cannot be used as a loom_nb session store ({exc}). Choose "
                f"another file name; loom_nb creates the file if it does not exist."
            ) from None

    def __repr__(self) -> str:
        return f"<SQLiteStore {str(self.path)!r}>"

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise StoreError(
                f"{str(self.path)!r} was written by a newer loom_nb (schema {version}); "
                f"upgrade loom_nb to open it."
            )
        # Every statement is IF NOT EXISTS: a file from an earlier version gains the tables added
        # since, and two processes creating the same file at once do no harm. The columns are
        # looked at inside the same transaction, so two processes migrating one file at once add
        # each column once.
        with self._tx():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            for table, columns in _ADDED_COLUMNS.items():
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._writer.close()  # what was queued is written first
        with self._lock:
            self._db.close()

    def open_session(self, session_id: str, metadata: dict[str, Any],
                     restore: RestoreMode = "checkpoint") -> StoredSession:
        with self._lock, self._tx():
            row = self._db.execute(
                "SELECT created_at, metadata FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                created, meta = utcnow(), dict(metadata)
                self._db.execute("INSERT INTO sessions VALUES (?, ?, ?)",
                                 (session_id, created.isoformat(), _dumps(meta)))
            else:
                created, meta = datetime.fromisoformat(row[0]), {**json.loads(row[1]), **metadata}
                if metadata:
                    self._db.execute("UPDATE sessions SET metadata = ? WHERE id = ?",
                                     (_dumps(meta), session_id))
            blobs = self._blob_reader()
            history, memory, through = self._latest_checkpoint(session_id, restore, blobs)
            rows = self._db.execute(
                "SELECT data FROM messages WHERE session_id = ? AND idx >= ? ORDER BY idx",
                (session_id, through)).fetchall()
            # One JSON document for all of them: one decoder call instead of one per message.
            history += [message_from_dict(m, blobs)
                        for m in json.loads("[" + ",".join([r[0] for r in rows]) + "]")]
            (count,) = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM messages WHERE session_id = ?", (session_id,)
            ).fetchone()
        return StoredSession(id=session_id, created_at=created, metadata=meta, messages=history,
                             restored=row is not None, memory=memory, message_count=count)

    def _latest_checkpoint(self, session_id: str, restore: RestoreMode,
                           blobs: Callable[[str], bytes | None]) -> tuple[list[Message], list[str], int]:
        if restore != "checkpoint":
            return [], [], 0
        row = self._db.execute(
            "SELECT through, history, memory FROM checkpoints WHERE session_id = ? "
            "ORDER BY rowid DESC LIMIT 1", (session_id,)).fetchone()
        if row is None:
            return [], [], 0
        return ([message_from_dict(m, blobs) for m in json.loads(row[1])], json.loads(row[2]),
                row[0])

    def _blob_reader(self) -> Callable[[str], bytes | None]:
        """For one read (with the lock held): each blob loaded and checked against its sha256
        once, and the same bytes object shared by every message that references it."""
        loaded: dict[str, bytes | None] = {}

        def blob(sha256: str) -> bytes | None:
            if sha256 not in loaded:
                row = self._db.execute("SELECT data FROM blobs WHERE sha256 = ?",
                                       (sha256,)).fetchone()
                data = bytes(row[0]) if row is not None else None
                if data is not None and hashlib.sha256(data).hexdigest() != sha256:
                    raise StoreError(f"The blob {sha256[:12]} in {str(self.path)!r} does not "
                                     f"match its sha256; the store file is damaged.")
                loaded[sha256] = data
            return loaded[sha256]
        return blob

    def _put_blobs(self, messages: list[Message]) -> list[str]:
        """The messages as JSON text; their binary parts go to the blobs table (each once)."""
        blobs: dict[str, bytes] = {}
        texts = [_dumps(m.to_dict(blobs)) for m in messages]
        if blobs:
            kinds = {p.sha256: p.media_type for m in messages for p in m.media}
            self._db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)",
                                 [(sha, kinds.get(sha, ""), len(data), data)
                                  for sha, data in blobs.items()])
        return texts

    def append_signal(self, record: SignalRecord) -> None:
        sig = record.signal
        row = (record.session_id, record.seq, record.ts.isoformat(), sig["id"], sig["source"],
               sig["type"], sig["urgency"], record.action, record.reason, record.run_id, _dumps(sig))
        with self._lock, self._tx():
            self._db.execute("INSERT INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def signals(self, session_id: str) -> list[SignalRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, ts, action, reason, run_id, data FROM signals WHERE session_id = ? "
                "ORDER BY seq", (session_id,)).fetchall()
        return [SignalRecord(session_id=session_id, seq=r[0], ts=datetime.fromisoformat(r[1]),
                             action=r[2], reason=r[3], run_id=r[4], signal=json.loads(r[5]))
                for r in rows]

    def signal_count(self, session_id: str) -> int:
        """How many signal records the session has, counted on the unique index."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM signals WHERE session_id = ?",
                                        (session_id,)).fetchone()
        return int(count)

    def append_feedback(self, record: FeedbackRecord) -> None:
        row = (record.session_id, record.ts.isoformat(), record.run_id, record.kind, _dumps(record.data))
        with self._lock, self._tx():
            self._db.execute("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", row)

    def feedback(self, session_id: str, kind: str | None = None) -> list[FeedbackRecord]:
        """The session's feedback records, oldest first (only those of ``kind`` when given)."""
        where, params = ("session_id = ?", (session_id,)) if kind is None else (
            "session_id = ? AND kind = ?", (session_id, kind))
        with self._lock:
            rows = self._db.execute(f"SELECT ts, run_id, kind, data FROM feedback WHERE {where} "
                                    f"ORDER BY rowid", params).fetchall()
        return [FeedbackRecord(session_id=session_id, ts=datetime.fromisoformat(r[0]), run_id=r[1],
                               kind=r[2], data=json.loads(r[3])) for r in rows]

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._lock, self._tx():
            history = "[" + ", ".join(self._put_blobs(checkpoint.history)) + "]"
            row = (checkpoint.session_id, checkpoint.through, checkpoint.created_at.isoformat(),
                   history, _dumps(checkpoint.memory))
            self._db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)", row)

    def append_messages(self, session_id: str, run_id: str, messages: list[Message]) -> None:
        self.append_turn(session_id, run_id, messages, [])

    def append_events(self, events: list[RunEvent]) -> None:
        if events:
            self.append_turn("", "", [], events)

    def append_turn(self, session_id: str, run_id: str, messages: list[Message],
                    events: list[RunEvent]) -> None:
        """A turn's messages and events in one transaction: both are stored, or neither."""
        if messages or events:
            with self._lock, self._tx():
                self._insert_turn(session_id, run_id, messages, events)

    def submit_turn(self, session_id: str, run_id: str, messages: list[Message],
                    events: list[RunEvent]) -> Future[None] | None:
        """:meth:`append_turn`, on the store's writer thread while several runs use the store.

        With one run at a time the turn is written here and now (None: it is stored; a
        StoreError if not), which is quickest. While others run, it is queued for the writer
        thread, which writes the turns queued meanwhile (by any session on this file) in one
        transaction: the returned future, to await with :func:`loom_nb.store._writer.written`,
        holds the turn's StoreError, if any.
        """
        if len(self._running) <= 1 and not self._writer.busy:
            self.append_turn(session_id, run_id, messages, events)
            return None
        return self._writer.submit(
            functools.partial(self._insert_turn, session_id, run_id, messages, events))

    def _track(self, record: RunRecord) -> None:
        # The runs this process is running on the store: turns go to the writer thread when
        # there are several (a hint for submit_turn; a run whose end was not stored stays in).
        if record.status == "running":
            self._running.add(record.run_id)
        else:
            self._running.discard(record.run_id)

    def _insert_turn(self, session_id: str, run_id: str, messages: list[Message],
                     events: list[RunEvent]) -> None:
        if messages:
            (start,) = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM messages WHERE session_id = ?",
                (session_id,)).fetchone()
            texts = self._put_blobs(messages)  # images and documents: each once, in the blobs
            self._db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                [(session_id, start + i, run_id, m.role, text)
                 for i, (m, text) in enumerate(zip(messages, texts, strict=True))])
        if events:
            self._db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.run_id, e.seq, e.session_id, e.parent_run_id, e.type, e.ts.isoformat(),
                  _dumps(e.data)) for e in events])

    def _write_batch(self, jobs: list[Job]) -> None:
        """The writer thread's batch: one transaction, a savepoint per job so that one job's
        failure (its own error) leaves the others; a failure of the transaction fails all."""
        import sqlite3
        outcomes: list[StoreError | None] = []
        try:
            with self._lock, self._tx():
                for job, _ in jobs:
                    self._db.execute("SAVEPOINT turn")
                    try:
                        job()
                    except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
                        self._db.execute("ROLLBACK TO turn")  # raises if SQLite undid it all
                        outcomes.append(store_error(self.path, exc, "append a turn"))
                    else:
                        outcomes.append(None)
                    self._db.execute("RELEASE turn")
        except Exception as exc:  # noqa: BLE001 - the futures carry it to the runs that wait
            error = exc if isinstance(exc, StoreError) else store_error(self.path, exc,
                                                                        "append a turn")
            for _, future in jobs:
                future.set_exception(error)
            return
        for (_, future), outcome in zip(jobs, outcomes, strict=True):
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)

    def save_run(self, record: RunRecord) -> None:
        row = _run_row(record)
        with self._lock, self._tx():
            self._db.execute(f"INSERT OR REPLACE INTO runs ({_RUN_COLUMNS}) VALUES "
                             f"({', '.join('?' * len(row))})", row)
            self._track(record)

    def claim_run(self, record: RunRecord, *, expected: str) -> bool:
        # One UPDATE whose WHERE holds the expected status: SQLite runs it under the write lock
        # (BEGIN IMMEDIATE), so of two connections (processes) only one finds the old status.
        row = _run_row(record)
        assignments = ", ".join(f"{name} = ?" for name in _RUN_COLUMNS.split(", ")[1:])
        with self._lock, self._tx():
            cursor = self._db.execute(
                f"UPDATE runs SET {assignments} WHERE run_id = ? AND status = ?",
                (*row[1:], record.run_id, expected))
            if cursor.rowcount != 1:
                return False
            self._track(record)
            return True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?",
                                   (run_id,)).fetchone()
        return _run_from_row(row) if row else None

    def runs(self, session_id: str | None = None) -> list[RunRecord]:
        """The runs of a session (of every session when None), in the order they started."""
        where, args = ("session_id = ?", (session_id,)) if session_id is not None else ("1", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} ORDER BY started_at, rowid",
                args).fetchall()
        return [_run_from_row(r) for r in rows]

    def blob_count(self) -> int:
        """How many distinct images and documents the store holds."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0])

    def runs_with_status(self, session_id: str, statuses: tuple[str, ...]) -> list[RunRecord]:
        """The session's runs with one of ``statuses``, oldest first (on an index: opening a
        long session reads its open runs, not all of them)."""
        marks = ", ".join("?" * len(statuses))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE session_id = ? AND status IN ({marks}) "
                f"ORDER BY started_at, rowid", (session_id, *statuses)).fetchall()
        return [_run_from_row(r) for r in rows]

    def sessions(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM sessions ORDER BY created_at")]

    def stored_messages(self, session_id: str) -> list[StoredMessage]:
        with self._lock:
            rows = self._db.execute("SELECT idx, run_id, data FROM messages WHERE session_id = ? "
                                    "ORDER BY idx", (session_id,)).fetchall()
            blobs = self._blob_reader()
            return [StoredMessage(session_id, r[0], r[1], message_from_dict(json.loads(r[2]), blobs))
                    for r in rows]

    def events(self, *, session_id: str | None = None, run_id: str | None = None) -> list[RunEvent]:
        # rowid is insertion order, which is the order the events happened in.
        args: tuple[str, ...]
        if run_id is not None:
            where, args, order = "run_id = ?", (run_id,), "seq"
        elif session_id is not None:
            where, args, order = "session_id = ?", (session_id,), "rowid"
        else:
            where, args, order = "1", (), "rowid"
        with self._lock:
            rows = self._db.execute(
                f"SELECT run_id, seq, session_id, parent_run_id, type, ts, data FROM events "
                f"WHERE {where} ORDER BY {order}", args).fetchall()
        return [RunEvent(run_id=r[0], seq=r[1], session_id=r[2], parent_run_id=r[3], type=r[4],
                         ts=datetime.fromisoformat(r[5]), data=json.loads(r[6])) for r in rows]


def _wal(db: sqlite3.Connection, seconds: float = 10.0) -> None:
    """Switch ``db`` to WAL, waiting like busy_timeout does: SQLite answers "database is locked"
    at once, without its busy handler, to a connection that asks while another one switches the
    same new file (processes opening one new store at once)."""
    import random
    import sqlite3
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == 5  # SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not exc_type:
            try:
                self._db.execute("COMMIT")
            except BaseException:
                self._roll_back()  # a COMMIT that failed (disk full) may leave it open
                raise
            return
        self._roll_back()

    def _roll_back(self) -> None:
        # SQLite may have rolled back already (disk full, I/O error), and a failing ROLLBACK must
        # not hide the error that caused it; an open transaction would block every later write.
        import sqlite3
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _run_row(record: RunRecord) -> tuple[Any, ...]:
    """A record as the values of _RUN_COLUMNS, in that order."""
    return (record.run_id, record.session_id, record.parent_run_id, record.agent, record.model,
            record.prompt, record.status, record.output, record.error,
            record.started_at.isoformat(),
            record.finished_at.isoformat() if record.finished_at else None,
            _dumps(record.usage.to_dict()), record.turns,
            _dumps(record.state) if record.state is not None else None,
            _dumps(record.owner.to_dict()) if record.owner is not None else None)


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0], session_id=row[1], parent_run_id=row[2], agent=row[3], model=row[4],
        prompt=row[5], status=row[6], output=row[7] or "", error=row[8],
        started_at=datetime.fromisoformat(row[9]),
        finished_at=datetime.fromisoformat(row[10]) if row[10] else None,
        usage=Usage.from_dict(json.loads(row[11])), turns=row[12],
        state=json.loads(row[13]) if row[13] else None,
        owner=RunOwner.from_dict(json.loads(row[14])) if row[14] else None,
    )
