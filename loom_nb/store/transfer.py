"""``loom_nb.store.copy``: move sessions from one store to another (SQLite, PostgreSQL, memory).

Every record of a session goes: its creation time and metadata, its messages at their indices,
its checkpoints, its runs, events, signals and feedback. Each session is written to the target in
one transaction, so a copy killed midway leaves whole sessions or none of one, and copying again
picks up where it stopped: a session the target already holds with the same records is skipped.
A session the target holds with other records is never overwritten: the copy refuses before it
writes anything (or, with ``existing="skip"``, leaves it and says so).

Reading uses the store protocols; the few things they do not expose (every checkpoint, a
session's creation time kept as it was) are read and written per built-in store below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..errors import ConfigError, StoreError
from ..events import RunEvent
from ..feedback import FeedbackRecord
from ..messages import message_from_dict
from .memory import InMemoryStore, _copy
from .postgres import PostgresStore, _utc
from .protocols import Checkpoint, RunRecord, SessionStore, SignalRecord, StoredMessage
from . import sqlite
from .sqlite import SQLiteStore, _dumps

__all__ = ["CopyResult", "copy"]

Existing = Literal["error", "skip"]


@dataclass(frozen=True)
class CopyResult:
    """What :func:`copy` did: the sessions it wrote, those the target already held with the same
    records (``unchanged``), and those it left because the target's differ (``existing="skip"``)."""

    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


@dataclass
class _Dump:
    """Every record of one session."""

    id: str
    created_at: datetime
    metadata: dict[str, Any]
    messages: list[StoredMessage]
    checkpoints: list[Checkpoint]
    runs: list[RunRecord]
    events: list[RunEvent]
    signals: list[SignalRecord]
    feedback: list[FeedbackRecord]


def copy(src: Any, dst: Any, *, sessions: list[str] | None = None,
         existing: Existing = "error") -> CopyResult:
    """Copy sessions (all, or those named) from ``src`` to ``dst``.

    Each is what ``SessionConfig(store=...)`` takes: an SQLite file path, a ``postgresql://``
    DSN, or a store object. A session already in ``dst`` with the same records is skipped (so a
    copy can be run again); with other records, the copy raises :class:`StoreError` before it
    writes anything, unless ``existing="skip"`` leaves such sessions as they are.
    """
    from . import open_store

    if existing not in ("error", "skip"):
        raise ConfigError(f"copy(existing=...) takes 'error' or 'skip', not {existing!r}.")
    source, target = open_store(src), open_store(dst)
    if source is target:
        raise ConfigError("copy(src, dst) was given the same store twice; name another target.")
    names = source.sessions() if sessions is None else list(sessions)
    missing = sorted(set(names) - set(source.sessions()))
    if missing:
        raise StoreError(f"{source!r} has no session {missing[0]!r}; copy(sessions=...) takes ids "
                         f"from its sessions().")
    in_target = set(target.sessions())
    result = CopyResult()
    plan: list[_Dump] = []
    for name in names:
        dump = _read(source, name)
        if name in in_target:
            same = _comparable(_read(target, name)) == _comparable(dump)
            (result.unchanged if same else result.left).append(name)
            continue
        _check_run_ids(target, dump)
        plan.append(dump)
    if result.left and existing == "error":
        raise StoreError(
            f"{target!r} already holds {len(result.left)} of these sessions with other records "
            f"({', '.join(repr(n) for n in result.left[:3])}); nothing was copied. Copy into "
            f"another store, delete those sessions there, or pass existing='skip' to copy the rest.")
    for dump in plan:
        _write(target, dump)
        result.copied.append(dump.id)
    return result


def _comparable(dump: _Dump) -> _Dump:
    """``dump`` as a PostgreSQL store keeps it: there, a NUL in a run's or a signal's free text
    is U+FFFD (see :mod:`loom_nb.store.postgres`), so a session copied to PostgreSQL once still
    counts as unchanged the next time."""
    from dataclasses import replace

    from .postgres import _text

    runs = [replace(r, agent=_text(r.agent), model=_text(r.model), prompt=_text(r.prompt),
                    output=_text(r.output), error=_text(r.error)) for r in dump.runs]
    signals = [replace(r, action=_text(r.action), reason=_text(r.reason))
               for r in dump.signals]
    return replace(dump, runs=runs, signals=signals)


def _check_run_ids(target: SessionStore, dump: _Dump) -> None:
    for record in dump.runs:
        found = target.get_run(record.run_id)
        if found is not None:
            raise StoreError(
                f"Run {record.run_id!r} of session {dump.id!r} is already in {target!r}, in session "
                f"{found.session_id!r}; nothing was copied. Run ids are unique across a store: "
                f"copy into another store.")


def _read(store: SessionStore, session_id: str) -> _Dump:
    opened = store.open_session(session_id, {}, restore="full")  # no metadata: nothing is written
    return _Dump(id=session_id, created_at=opened.created_at, metadata=opened.metadata,
                 messages=store.stored_messages(session_id),
                 checkpoints=_checkpoints(store, session_id), runs=store.runs(session_id),
                 events=store.events(session_id=session_id), signals=store.signals(session_id),
                 feedback=store.feedback(session_id))


def _checkpoints(store: SessionStore, session_id: str) -> list[Checkpoint]:
    rows: list[tuple[Any, ...]]
    blobs: Any = None
    if isinstance(store, SQLiteStore):
        with store._lock:
            rows = store._db.execute("SELECT through, created_at, history, memory FROM checkpoints "
                                     "WHERE session_id = ? ORDER BY rowid", (session_id,)).fetchall()
            # Images and documents in a checkpoint are references to the file's blobs.
            loaded = store._blob_reader()
            shas = {str(p.get("sha256")) for r in rows for m in json.loads(r[2])
                    for p in _media_refs(m)}
            blobs = {sha: loaded(sha) for sha in shas}
    elif isinstance(store, PostgresStore):
        with store._read() as conn:
            rows = conn.execute("SELECT through, created_at, history, memory FROM checkpoints "
                                "WHERE session_id = %s ORDER BY pos", (session_id,)).fetchall()
    elif isinstance(store, InMemoryStore):
        with store._lock:  # an in-memory store keeps only the latest one
            latest = store._checkpoints.get(session_id)
        return [latest] if latest is not None else []
    else:
        raise StoreError(f"copy() reads checkpoints from SQLite, PostgreSQL and in-memory stores; "
                         f"{type(store).__name__} has no way to list them.")
    return [Checkpoint(session_id=session_id, through=r[0], created_at=_time(r[1]),
                       history=[message_from_dict(m, blobs) for m in json.loads(r[2])],
                       memory=json.loads(r[3])) for r in rows]


def _media_refs(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The image and document parts of stored message data, a tool result's included."""
    found = []
    for part in message.get("parts", []):
        if part.get("kind") in ("image", "document"):
            found.append(part)
        found.extend(part.get("media") or [])
    return found


def _time(value: Any) -> datetime:
    return _utc(value) if isinstance(value, datetime) else datetime.fromisoformat(value)


def _write(store: SessionStore, dump: _Dump) -> None:
    """Write one session in one transaction; the store's failures as its StoreErrors."""
    import sqlite3

    from .._store_errors import store_error
    from .postgres import _import_psycopg, _store_error

    action = f"copy session {dump.id!r} into it"
    if isinstance(store, SQLiteStore):
        try:
            _write_sqlite(store, dump)
        except sqlite3.Error as exc:
            raise store_error(store.path, exc, action) from exc
    elif isinstance(store, PostgresStore):
        psycopg, pool = _import_psycopg()
        try:
            _write_postgres(store, dump)
        except (psycopg.Error, pool.PoolTimeout) as exc:
            raise _store_error(store, exc, action) from exc
    elif isinstance(store, InMemoryStore):
        _write_memory(store, dump)
    else:
        raise StoreError(f"copy() writes to SQLite, PostgreSQL and in-memory stores, not to "
                         f"{type(store).__name__}.")


def _taken(session_id: str, target: SessionStore) -> StoreError:
    return StoreError(f"Session {session_id!r} appeared in {target!r} while it was being copied "
                      f"(another copy or a session opened it); it was left as it is. Run the copy "
                      f"again to check it.")


def _write_sqlite(store: SQLiteStore, dump: _Dump) -> None:
    with store._lock, store._tx():
        db = store._db
        cursor = db.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?)",
                            (dump.id, dump.created_at.isoformat(), _dumps(dump.metadata)))
        if cursor.rowcount != 1:
            raise _taken(dump.id, store)
        # Images and documents go to the blobs table (each once), the rows hold references.
        texts = store._put_blobs([m.message for m in dump.messages])
        db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                       [(dump.id, m.idx, m.run_id, m.message.role, text)
                        for m, text in zip(dump.messages, texts, strict=True)])
        db.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)", [
            (dump.id, c.through, c.created_at.isoformat(),
             "[" + ", ".join(store._put_blobs(c.history)) + "]", _dumps(c.memory))
            for c in dump.checkpoints])
        for record in dump.runs:
            row = sqlite._run_row(record)
            db.execute(f"INSERT INTO runs ({sqlite._RUN_COLUMNS}) VALUES ({', '.join('?' * len(row))})",
                       row)
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (e.run_id, e.seq, e.session_id, e.parent_run_id, e.type, e.ts.isoformat(),
             _dumps(e.data)) for e in dump.events])
        db.executemany("INSERT INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (r.session_id, r.seq, r.ts.isoformat(), r.signal["id"], r.signal["source"],
             r.signal["type"], r.signal["urgency"], r.action, r.reason, r.run_id, _dumps(r.signal))
            for r in dump.signals])
        db.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", [
            (r.session_id, r.ts.isoformat(), r.run_id, r.kind, _dumps(r.data)) for r in dump.feedback])


def _write_postgres(store: PostgresStore, dump: _Dump) -> None:
    from .postgres import _EVENT_COLUMNS, _RUN_COLUMNS, _run_row, _text

    with store._tx() as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO sessions (id, created_at, metadata) VALUES (%s, %s, %s) "
                       "ON CONFLICT (id) DO NOTHING RETURNING id",
                       (dump.id, dump.created_at, _dumps(dump.metadata)))
        if cursor.fetchone() is None:  # (in a pipeline, rowcount is not known yet)
            raise _taken(dump.id, store)
        cursor.executemany("INSERT INTO messages (session_id, idx, run_id, role, data) VALUES "
                           "(%s, %s, %s, %s, %s)",
                           [(dump.id, m.idx, m.run_id, m.message.role, _dumps(m.message.to_dict()))
                            for m in dump.messages])
        cursor.executemany("INSERT INTO checkpoints (session_id, through, created_at, history, memory) "
                           "VALUES (%s, %s, %s, %s, %s)", [
                               (dump.id, c.through, c.created_at,
                                _dumps([m.to_dict() for m in c.history]), _dumps(c.memory))
                               for c in dump.checkpoints])
        marks = ", ".join(["%s"] * len(_RUN_COLUMNS.split(", ")))
        cursor.executemany(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({marks})",
                           [_run_row(r) for r in dump.runs])
        cursor.executemany(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                           [(e.run_id, e.seq, e.session_id, e.parent_run_id, e.type, e.ts,
                             _dumps(e.data)) for e in dump.events])
        cursor.executemany(
            "INSERT INTO signals (session_id, seq, ts, signal_id, source, type, urgency, action, "
            "reason, run_id, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", [
                (r.session_id, r.seq, r.ts, _text(r.signal["id"]), _text(r.signal["source"]),
                 _text(r.signal["type"]), _text(r.signal["urgency"]), _text(r.action),
                 _text(r.reason), r.run_id, _dumps(r.signal)) for r in dump.signals])
        cursor.executemany("INSERT INTO feedback (session_id, ts, run_id, kind, data) VALUES "
                           "(%s, %s, %s, %s, %s)", [(r.session_id, r.ts, r.run_id, _text(r.kind),
                                                     _dumps(r.data)) for r in dump.feedback])


def _write_memory(store: InMemoryStore, dump: _Dump) -> None:
    with store._lock:
        if dump.id in store._sessions:
            raise _taken(dump.id, store)
        store._sessions[dump.id] = (dump.created_at, dict(dump.metadata))
        store._messages[dump.id] = [(m.run_id, store._share(dump.id, m.message))
                                    for m in dump.messages]  # images: one copy, as appended
        if dump.checkpoints:
            store._checkpoints[dump.id] = dump.checkpoints[-1]
        for record in dump.runs:
            store._runs[record.run_id] = _copy(record)
        for event in dump.events:
            store._events.setdefault(event.run_id, []).append(event)
        store._signals[dump.id] = [_copy(r) for r in dump.signals]
        store._feedback[dump.id] = list(dump.feedback)
