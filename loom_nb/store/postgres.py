"""PostgresStore: sessions in a PostgreSQL database, shared by every process that reaches it
(several notebooks, a JupyterHub, evaluation workers on other machines).

The same tables as :class:`~loom_nb.store.SQLiteStore`, with the same guarantees: everything is
appended, never rewritten, except a run's record (replaced by ``save_run``, compare-and-set by
``claim_run``). psycopg 3 with a connection pool: each call takes a connection for one
transaction, so threads (a cell and loom_nb's background loop) do not wait for each other as
they do on SQLite's one connection. Each write is one transaction sent as one pipeline, one
network round trip (see docs/stores.md for what that costs the loop).

Text columns cannot hold NUL characters in PostgreSQL; the JSON columns keep them (escaped as
``\\u0000``), and the free-text columns of a run or a signal (a model's output, say) store each
NUL as U+FFFD, the replacement character.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..continuity import RestoreMode
from ..errors import LoomError, StoreError
from ..events import RunEvent, utcnow
from ..feedback import FeedbackRecord
from ..messages import Message, message_from_dict
from . import sqlite
from .protocols import Checkpoint, RunRecord, SignalRecord, StoredMessage, StoredSession
from .sqlite import _dumps

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "PostgresStore", "is_postgres_dsn"]

INSTALL_HINT = "pip install 'loom-nb[postgres]'"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loom_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, metadata TEXT NOT NULL,
    pos BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, parent_run_id TEXT, agent TEXT, model TEXT,
    prompt TEXT, status TEXT NOT NULL, output TEXT, error TEXT, started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ, usage TEXT NOT NULL, turns INTEGER NOT NULL, state TEXT, owner TEXT,
    pos BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, started_at);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL, idx INTEGER NOT NULL, run_id TEXT NOT NULL, role TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (session_id, idx));
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, session_id TEXT NOT NULL, parent_run_id TEXT,
    type TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, data TEXT NOT NULL,
    pos BIGINT GENERATED ALWAYS AS IDENTITY, UNIQUE (run_id, seq));
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, pos);
CREATE TABLE IF NOT EXISTS checkpoints (
    session_id TEXT NOT NULL, through INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    history TEXT NOT NULL, memory TEXT NOT NULL, pos BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints (session_id, pos);
CREATE TABLE IF NOT EXISTS signals (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, ts TIMESTAMPTZ NOT NULL, signal_id TEXT NOT NULL,
    source TEXT NOT NULL, type TEXT NOT NULL, urgency TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT NOT NULL, run_id TEXT, data TEXT NOT NULL, pos BIGINT GENERATED ALWAYS AS IDENTITY,
    UNIQUE (session_id, seq));
CREATE TABLE IF NOT EXISTS feedback (
    session_id TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, run_id TEXT, kind TEXT NOT NULL,
    data TEXT NOT NULL, pos BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE INDEX IF NOT EXISTS feedback_by_session ON feedback (session_id, pos)
"""
#: The schema this loom_nb writes (version 2 as SQLite's: runs have an owner from the start).
SCHEMA_VERSION = 2
#: A pooled connection idle longer than this is checked (one round trip) before it is used.
IDLE_CHECK_SECONDS = 2.0
#: Serialises schema creation: CREATE TABLE IF NOT EXISTS is not safe against a concurrent one.
_MIGRATION_LOCK = 0x6C6F6F6D  # "loom"
_RUN_COLUMNS = sqlite._RUN_COLUMNS
_EVENT_COLUMNS = "run_id, seq, session_id, parent_run_id, type, ts, data"
#: The free-text values of a run's row: agent, model, prompt, output, error.
_FREE_TEXT = (3, 4, 5, 7, 8)

_Store = TypeVar("_Store")


def is_postgres_dsn(spec: object) -> bool:
    """Whether ``SessionConfig(store=spec)`` names a PostgreSQL database."""
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))


def _import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise StoreError(f"A PostgreSQL store needs psycopg 3 and psycopg_pool ({exc.name} is not "
                         f"installed): {INSTALL_HINT}") from None
    return psycopg, psycopg_pool


def _safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a DSN psycopg cannot parse is shown as its scheme only
        return dsn.split("://", 1)[0] + "://..."
    host, port, db = parts.get("host", "localhost"), parts.get("port", 5432), parts.get("dbname", "")
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{db}"


def _store_error(store: PostgresStore, exc: Exception, action: str) -> StoreError:
    psycopg, pool = _import_psycopg()
    where = f"The PostgreSQL session store {store.where}"
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if isinstance(exc, pool.PoolClosed):
        hint = "this store object was closed. Open a new PostgresStore(dsn), or the session again"
    elif isinstance(exc, psycopg.errors.LockNotAvailable):
        hint = (f"another connection held a lock for more than {store.lock_timeout:g} s. Find the "
                "transaction left open (pg_stat_activity, state 'idle in transaction') and end "
                "it, then run again")
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        hint = (f"the server took longer than {store.statement_timeout:g} s (statement_timeout). "
                "Check the server's load and its log; PostgresStore(dsn, statement_timeout=...) "
                "allows more")
    elif isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        hint = ("the server accepts no writes (a read-only standby, or default_transaction_read_only "
                "is on). Point the DSN at the primary, or turn read-only off, then run again: the "
                "session goes on from what was stored")
    elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
        hint = ("the database user may not read or write loom_nb's tables. GRANT it SELECT, "
                "INSERT and UPDATE on them, or connect as their owner")
    elif isinstance(exc, psycopg.errors.DiskFull | psycopg.errors.OutOfMemory):
        hint = "the server is out of disk space or memory. Free some on the server, then run again"
    elif isinstance(exc, pool.PoolTimeout | psycopg.OperationalError):
        hint = ("the server cannot be reached or closed the connection. Check that it is running "
                "and reachable from here (pg_isready), and the DSN's host, port, user and "
                "password; the session goes on from what was stored once it is back")
    elif not isinstance(exc, psycopg.Error):
        hint = ("a stored record no longer decodes: the table was changed by something other "
                "than loom_nb. Repair or delete that row")
    else:
        hint = "check the server's log for the cause, then run again"
    return StoreError(f"{where} could not {action} ({type(exc).__name__}: {text}): {hint}.")


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    action = method.__name__.replace("_", " ")

    @functools.wraps(method)
    def call(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        psycopg, pool = _import_psycopg()
        try:
            return method(self, *args, **kwargs)
        except LoomError:
            raise
        except (psycopg.Error, pool.PoolTimeout, pool.PoolClosed, ValueError, KeyError) as exc:
            raise _store_error(self, exc, action) from exc
    return call


def _errors_become_store_errors(cls: type[_Store]) -> type[_Store]:
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value) and name != "close":
            setattr(cls, name, _translated(value))
    return cls


@_errors_become_store_errors
class PostgresStore:
    """A PostgreSQL database, for many writers and readers on many machines.

    ``dsn`` is a libpq URI (``postgresql://user:password@host:5432/dbname``); its tables are made
    in the connection's default schema (pick another one with ``?options=-csearch_path%3Dname``).
    ``max_connections`` bounds the pool of this store object. Nothing waits without end, since a
    store call blocks the thread that makes it (loom_nb's loop, during a run): a statement waits
    at most ``lock_timeout`` seconds for a lock another connection holds (a transaction left
    open elsewhere), runs at most ``statement_timeout`` seconds, and a connection whose server
    stops answering (a network partition) fails within about ``statement_timeout`` too (TCP
    keepalives and ``tcp_user_timeout``); each fails the call with a StoreError.
    """

    def __init__(self, dsn: str, *, max_connections: int = 4, connect_timeout: float = 10.0,
                 lock_timeout: float = 10.0, statement_timeout: float = 30.0) -> None:
        psycopg, pool_module = _import_psycopg()
        if not isinstance(dsn, str) or not dsn.strip():
            raise StoreError("PostgresStore(dsn) takes a DSN such as "
                             "'postgresql://user@localhost:5432/loom'.")
        self.dsn = dsn
        self.where = _safe_dsn(dsn)
        self.lock_timeout, self.statement_timeout = lock_timeout, statement_timeout
        self._last_used: dict[int, float] = {}  # id(connection) -> when it was last given back
        self._closed = threading.Event()
        self._pool = pool_module.ConnectionPool(
            dsn, min_size=1, max_size=max(1, max_connections), open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, **_network_limits(connect_timeout, statement_timeout)},
            configure=functools.partial(_configure, lock_ms=_ms(lock_timeout),
                                        statement_ms=_ms(statement_timeout)),
            # Not bound methods: the pool must not hold the store, or the finalizer never runs.
            check=functools.partial(_check, self._last_used),
            reset=functools.partial(_returned, self._last_used), name="loom_nb", num_workers=1)
        # A store nobody holds any more gives its connections back (a loop opening stores).
        weakref.finalize(self, self._pool.close)
        try:
            # One connection of its own first: a server that refuses fails here at once, with
            # its reason (the pool would retry until its timeout, then say only that).
            limits = _network_limits(connect_timeout, statement_timeout)
            with psycopg.connect(dsn, autocommit=True, **limits) as conn:
                self._migrate(conn)
            self._pool.open(wait=True, timeout=connect_timeout)
        except BaseException as exc:
            self._pool.close()
            if isinstance(exc, LoomError):
                raise
            if isinstance(exc, Exception):
                raise _store_error(self, exc, "open the store") from exc
            raise

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where}>"

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in one transaction, its statements pipelined: one round trip."""
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        # A store of this version is used as it is: no DDL, so a user with SELECT, INSERT and
        # UPDATE only (no CREATE on the schema) can open it.
        if self._version(conn) == SCHEMA_VERSION:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if self._version(conn) is None:  # (another process may have made it meanwhile)
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
                # Guarded: to_regclass reads the catalog through a cache that an advisory lock
                # does not refresh, so a process that waited on the lock can miss the table
                # another just made; this statement's own snapshot sees that one's row.
                conn.execute("INSERT INTO loom_schema SELECT %s WHERE NOT EXISTS "
                             "(SELECT 1 FROM loom_schema)", (SCHEMA_VERSION,))

    def _version(self, conn: psycopg.Connection[Any]) -> int | None:
        """The schema version stored, None for a database without loom_nb's tables; a newer one
        is refused."""
        row = conn.execute("SELECT to_regclass('loom_schema') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return None
        found = conn.execute("SELECT max(version) FROM loom_schema").fetchone()
        version: int | None = found[0] if found else None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"The PostgreSQL store {self.where} was written by a newer loom_nb "
                             f"(schema {version}); upgrade loom_nb to open it.")
        return version

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (its connections are gone)."""
        return self._closed.is_set()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    def open_session(self, session_id: str, metadata: dict[str, Any],
                     restore: RestoreMode = "checkpoint") -> StoredSession:
        with self._pool.connection() as conn, conn.transaction():
            # The row lock makes two processes opening one new session agree on it.
            inserted = conn.execute(
                "INSERT INTO sessions (id, created_at, metadata) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                (session_id, utcnow(), _dumps(metadata))).fetchone()
            restored = inserted is None
            created, stored_meta = conn.execute(
                "SELECT created_at, metadata FROM sessions WHERE id = %s FOR UPDATE",
                (session_id,)).fetchone()
            meta = {**json.loads(stored_meta), **metadata}
            if restored and metadata:
                conn.execute("UPDATE sessions SET metadata = %s WHERE id = %s",
                             (_dumps(meta), session_id))
            history, memory, through = self._latest_checkpoint(conn, session_id, restore)
            rows = conn.execute("SELECT data FROM messages WHERE session_id = %s AND idx >= %s "
                                "ORDER BY idx", (session_id, through)).fetchall()
            history += [message_from_dict(json.loads(data)) for (data,) in rows]
            (count,) = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM messages "
                                    "WHERE session_id = %s", (session_id,)).fetchone()
        return StoredSession(id=session_id, created_at=_utc(created), metadata=meta, messages=history,
                             restored=restored, memory=memory, message_count=count)

    @staticmethod
    def _latest_checkpoint(conn: psycopg.Connection[Any], session_id: str,
                           restore: RestoreMode) -> tuple[list[Message], list[str], int]:
        if restore != "checkpoint":
            return [], [], 0
        row = conn.execute("SELECT through, history, memory FROM checkpoints WHERE session_id = %s "
                           "ORDER BY pos DESC LIMIT 1", (session_id,)).fetchone()
        if row is None:
            return [], [], 0
        return [message_from_dict(m) for m in json.loads(row[1])], json.loads(row[2]), row[0]

    def append_signal(self, record: SignalRecord) -> None:
        sig = record.signal
        row = (record.session_id, record.seq, record.ts, _text(sig["id"]), _text(sig["source"]),
               _text(sig["type"]), _text(sig["urgency"]), _text(record.action),
               _text(record.reason), record.run_id, _dumps(sig))
        with self._tx() as conn:
            conn.execute("INSERT INTO signals (session_id, seq, ts, signal_id, source, type, urgency, "
                         "action, reason, run_id, data) VALUES "
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", row)

    def signals(self, session_id: str) -> list[SignalRecord]:
        with self._read() as conn:
            rows = conn.execute("SELECT seq, ts, action, reason, run_id, data FROM signals "
                                "WHERE session_id = %s ORDER BY seq", (session_id,)).fetchall()
        return [SignalRecord(session_id=session_id, seq=r[0], ts=_utc(r[1]), action=r[2],
                             reason=r[3], run_id=r[4], signal=json.loads(r[5])) for r in rows]

    def append_feedback(self, record: FeedbackRecord) -> None:
        row = (record.session_id, record.ts, record.run_id, _text(record.kind), _dumps(record.data))
        with self._tx() as conn:
            conn.execute("INSERT INTO feedback (session_id, ts, run_id, kind, data) "
                         "VALUES (%s, %s, %s, %s, %s)", row)

    def feedback(self, session_id: str, kind: str | None = None) -> list[FeedbackRecord]:
        """The session's feedback records, oldest first (only those of ``kind`` when given)."""
        where, params = ("session_id = %s", (session_id,)) if kind is None else (
            "session_id = %s AND kind = %s", (session_id, kind))
        with self._read() as conn:
            rows = conn.execute(f"SELECT ts, run_id, kind, data FROM feedback WHERE {where} "
                                f"ORDER BY pos", params).fetchall()
        return [FeedbackRecord(session_id=session_id, ts=_utc(r[0]), run_id=r[1], kind=r[2],
                               data=json.loads(r[3])) for r in rows]

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        row = (checkpoint.session_id, checkpoint.through, checkpoint.created_at,
               _dumps([m.to_dict() for m in checkpoint.history]), _dumps(checkpoint.memory))
        with self._tx() as conn:
            conn.execute("INSERT INTO checkpoints (session_id, through, created_at, history, memory) "
                         "VALUES (%s, %s, %s, %s, %s)", row)

    def append_messages(self, session_id: str, run_id: str, messages: list[Message]) -> None:
        if not messages:
            return
        with self._tx() as conn:
            # Two processes appending to one session at once: the lock (held to the commit) makes
            # the second read the first's last index, as SQLite's write lock does.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (session_id,))
            conn.execute(
                "INSERT INTO messages (session_id, idx, run_id, role, data) "
                "SELECT %(s)s, base.n + m.ord - 1, %(r)s, m.role, m.data FROM "
                "(SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM messages WHERE session_id = %(s)s) "
                "base, unnest(%(roles)s::text[], %(data)s::text[]) WITH ORDINALITY AS m(role, data, ord)",
                {"s": session_id, "r": run_id, "roles": [m.role for m in messages],
                 "data": [_dumps(m.to_dict()) for m in messages]})

    def append_events(self, events: list[RunEvent]) -> None:
        if not events:
            return
        rows = [(e.run_id, e.seq, e.session_id, e.parent_run_id, e.type, e.ts, _dumps(e.data))
                for e in events]
        with self._tx() as conn, conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
                               f"(%s, %s, %s, %s, %s, %s, %s)", rows)

    def save_run(self, record: RunRecord) -> None:
        row = _run_row(record)
        names = _RUN_COLUMNS.split(", ")
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names[1:])
        with self._tx() as conn:
            conn.execute(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join(['%s'] * len(row))}) "
                         f"ON CONFLICT (run_id) DO UPDATE SET {updates}", row)

    def claim_run(self, record: RunRecord, *, expected: str) -> bool:
        # One UPDATE whose WHERE holds the expected status: a second claimer blocks on the row
        # lock and, once the first commits, finds the status changed (READ COMMITTED re-checks
        # the WHERE on the new row version), so exactly one wins.
        row = _run_row(record)
        assignments = ", ".join(f"{name} = %s" for name in _RUN_COLUMNS.split(", ")[1:])
        with self._pool.connection() as conn:
            cursor = conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = %s AND status = %s",
                                  (*row[1:], record.run_id, expected))
            return cursor.rowcount == 1

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s",
                               (run_id,)).fetchone()
        return _run_from_row(row) if row else None

    def runs(self, session_id: str | None = None) -> list[RunRecord]:
        """The runs of a session (of every session when None), in the order they started."""
        where, args = ("WHERE session_id = %s", (session_id,)) if session_id is not None else ("", ())
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY started_at, pos",
                                args).fetchall()
        return [_run_from_row(r) for r in rows]

    def sessions(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM sessions ORDER BY created_at, pos")]

    def stored_messages(self, session_id: str) -> list[StoredMessage]:
        with self._read() as conn:
            rows = conn.execute("SELECT idx, run_id, data FROM messages WHERE session_id = %s "
                                "ORDER BY idx", (session_id,)).fetchall()
        return [StoredMessage(session_id, r[0], r[1], message_from_dict(json.loads(r[2]))) for r in rows]

    def events(self, *, session_id: str | None = None, run_id: str | None = None) -> list[RunEvent]:
        # pos is insertion order, which is the order the events happened in.
        args: tuple[str, ...]
        if run_id is not None:
            where, args, order = "WHERE run_id = %s", (run_id,), "seq"
        elif session_id is not None:
            where, args, order = "WHERE session_id = %s", (session_id,), "pos"
        else:
            where, args, order = "", (), "pos"
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events {where} ORDER BY {order}",
                                args).fetchall()
        return [RunEvent(run_id=r[0], seq=r[1], session_id=r[2], parent_run_id=r[3], type=r[4],
                         ts=_utc(r[5]), data=json.loads(r[6])) for r in rows]


def _returned(last_used: dict[int, float], conn: psycopg.Connection[Any]) -> None:
    last_used[id(conn)] = time.monotonic()


def _check(last_used: dict[int, float], conn: psycopg.Connection[Any]) -> None:
    """A connection idle for a while is pinged before use: after a server restart or a failover
    it is dead, and the pool replaces it instead of failing a run's write. Writes in quick
    succession (a run's) skip the round trip."""
    if time.monotonic() - last_used.get(id(conn), 0.0) > IDLE_CHECK_SECONDS:
        conn.execute("")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _network_limits(connect_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """libpq settings that make a dead server or network fail a call instead of hanging it."""
    probe = max(1, int(statement_timeout / 6))
    return {"connect_timeout": max(1, int(connect_timeout)), "keepalives": 1,
            "keepalives_idle": probe, "keepalives_interval": probe, "keepalives_count": 3,
            "tcp_user_timeout": _ms(statement_timeout)}


def _configure(conn: psycopg.Connection[Any], *, lock_ms: int, statement_ms: int) -> None:
    # Timestamps come back in UTC whatever the server's or the user's time zone.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute(f"SET lock_timeout = {lock_ms}")
    conn.execute(f"SET statement_timeout = {statement_ms}")


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


@overload
def _text(value: str) -> str: ...
@overload
def _text(value: None) -> None: ...
def _text(value: str | None) -> str | None:
    """A free-text value PostgreSQL can store: NUL becomes U+FFFD (see the module docstring)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def _run_row(record: RunRecord) -> tuple[Any, ...]:
    """A record as the values of _RUN_COLUMNS, as SQLite's with NUL-free text (PostgreSQL parses
    the ISO timestamps into its timestamptz columns)."""
    row = list(sqlite._run_row(record))
    for i in _FREE_TEXT:
        row[i] = _text(row[i])
    return tuple(row)


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    started, finished = row[9], row[10]
    return sqlite._run_from_row((*row[:9], started.isoformat(),
                                 finished.isoformat() if finished else None, *row[11:]))
