"""Reading runs, events and messages for :mod:`loom_nb.export`, from any kind of source.

An SQLite store is read with SQL on its own read-only connection (WAL lets it read while another
process writes), row by row, so exporting a large store does not build every kernel object first.
Results, sessions on an in-memory store and in-memory stores are read from their objects. Every
source yields the same plain rows; malformed rows are reported to :class:`Problems`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from ._words import a_type
from .errors import ExportError
from .events import RunStartedData, payload

__all__ = ["EventRow", "ExportError", "MessageRow", "Problems", "RecordError", "RunRow",
           "FeedbackRow", "SignalRow", "event_counts", "feedback", "events", "messages", "parse_time", "runs", "signals"]


@dataclass(frozen=True)
class RecordError:
    """One malformed record found with ``strict=False``: where it is and what is wrong."""

    table: str  #: "events", "runs" or "messages"
    record: str  #: which record: an event id with its type, a run id, or a message id
    problem: str

    def __str__(self) -> str:
        return f"{self.table} record {self.record}: {self.problem}"


class Problems:
    """Collects malformed records, or raises at the first one when strict."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.errors: list[RecordError] = []

    def report(self, table: str, record: str, problem: str) -> None:
        error = RecordError(table, record, problem)
        if self.strict:
            raise ExportError(f"Malformed {error}. Repair or delete that record, or pass "
                              f"strict=False to get the frame and a list of the problems.")
        self.errors.append(error)

    def reporter(self, table: str, record: str) -> Callable[[str], None]:
        return lambda problem: self.report(table, record, problem)

    def result(self, frame: Any) -> Any:
        return frame if self.strict else (frame, self.errors)


@dataclass(slots=True)
class EventRow:
    run_id: str
    seq: int
    session_id: str
    parent_run_id: str | None
    type: str
    ts: datetime | None
    data: dict[str, Any]
    raw: str | None  # the data's JSON text as stored, when read from SQLite
    data_ok: bool = True
    #: Its position in its session, when a reader of part of a session knows it (else counted).
    position: int | None = None

    @property
    def event_id(self) -> str:
        return f"{self.run_id}:{self.seq}"

    @property
    def label(self) -> str:
        return f"{self.event_id} ({self.type})"

    @property
    def data_json(self) -> str | None:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.data, ensure_ascii=False, default=str) if self.data_ok else None


@dataclass(slots=True)
class RunRow:
    run_id: str
    session_id: str
    parent_run_id: str | None
    agent: str | None
    model: str | None
    prompt: str | None
    status: str | None
    output: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    usage: dict[str, Any]
    turns: int | None


@dataclass(slots=True)
class MessageRow:
    session_id: str
    idx: int
    run_id: str | None
    parent_run_id: str | None
    data: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.session_id}:{self.idx}"


@dataclass(slots=True)
class SignalRow:
    session_id: str
    seq: int
    ts: datetime | None
    run_id: str | None
    action: str | None
    reason: str | None
    signal: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.session_id}:signal:{self.seq}"


@dataclass(slots=True)
class FeedbackRow:
    session_id: str
    ts: datetime | None
    run_id: str | None
    kind: str | None
    data: dict[str, Any]
    label: str
    position: int  #: in its session, as stored: the same whichever way the rows are read


def parse_time(value: Any) -> datetime | None:
    """A UTC-aware datetime from a stored ISO string or a datetime; ValueError if neither."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a timestamp")
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _time(value: Any, report: Callable[[str], None], name: str) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        report(f"{name} {value!r} is not an ISO 8601 timestamp")
        return None


def _json_object(text: Any, report: Callable[[str], None], name: str) -> tuple[dict[str, Any], bool]:
    if isinstance(text, dict):
        return text, True
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        report(f"{name} is not valid JSON ({exc}): {str(text)[:80]!r}")
        return {}, False
    if not isinstance(value, dict):
        report(f"{name} is not a JSON object: {str(text)[:80]!r}")
        return {}, False
    return value, True


def make_event(row: tuple[Any, ...], problems: Problems) -> EventRow | None:
    """An EventRow from (run_id, seq, session_id, parent_run_id, type, ts, data), or None when
    the row lacks what identifies an event."""
    run_id, seq, session_id, parent, type_, ts, data = row
    label = f"{run_id}:{seq} ({type_})"
    if not (isinstance(run_id, str) and isinstance(session_id, str) and isinstance(type_, str)
            and isinstance(seq, int) and not isinstance(seq, bool)):
        problems.report("events", label, "run_id, session_id, type or seq is missing or mistyped; "
                        "the event is left out")
        return None
    report = problems.reporter("events", label)
    parsed, ok = _json_object(data, report, "data")
    raw = data if isinstance(data, str) and ok else None
    return EventRow(run_id, seq, session_id, parent, type_, _time(ts, report, "ts"), parsed, raw, ok)


# -- readers: one per kind of source -----------------------------------------------------------------

_RUN_COLUMNS = ("run_id, session_id, parent_run_id, agent, model, prompt, status, output, error, "
                "started_at, finished_at, usage, turns")


class _SQLReader:
    """An SQLite store file, read with SQL (optionally one session's or one run's rows).

    The PostgreSQL reader (:mod:`loom_nb._export_pg`) is this class on another connection: the
    tables are the same, only the insertion-order column and the placeholder differ."""

    _POS = "rowid"  #: the column that holds insertion order
    _MARK = "?"  #: the driver's placeholder

    def __init__(self, path: str | os.PathLike[str], *, session_id: str | None = None,
                 run_id: str | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self.key = ("sql", str(self.path), session_id, run_id)
        self.filters = [(c, v) for c, v in (("session_id", session_id), ("run_id", run_id)) if v]
        self.run_id = run_id

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise ExportError(f"There is no loom_nb store at {str(self.path)!r}. Pass the path of "
                              f"the SQLite file given as SessionConfig(store=...).")
        try:
            db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            db.execute("PRAGMA busy_timeout = 10000")
            tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise ExportError(f"{str(self.path)!r} cannot be read as a loom_nb store ({exc}).") from None
        if not {"runs", "events", "messages"} <= tables:
            db.close()
            raise ExportError(f"{str(self.path)!r} is an SQLite file but not a loom_nb session "
                              f"store (it has no runs, events and messages tables).")
        return db

    def _select(self, sql: str, alias: str = "", extra: str = "",
                args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        where = [f"{alias}{c} = {self._MARK}" for c, _ in self.filters] + ([extra] if extra else [])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        db = self._connect()
        try:
            yield from self._rows(db, sql.format(where=clause), (*[v for _, v in self.filters], *args))
        finally:
            db.close()

    def _rows(self, db: Any, sql: str, args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        # Rows are streamed from the cursor, so a large store is never all in memory at once.
        yield from db.execute(sql, args)

    def runs(self, problems: Problems) -> Iterator[RunRow]:
        sql = f"SELECT {_RUN_COLUMNS} FROM runs{{where}} ORDER BY started_at, run_id"
        for row in self._select(sql):
            yield _run_row(row, problems)

    def events(self, problems: Problems, types: set[str] | None) -> Iterator[EventRow]:
        if self.run_id is not None and types is None:
            yield from self._run_events(problems)
            return
        order = "seq" if any(c == "run_id" for c, _ in self.filters) else self._POS
        extra = f"type IN ({', '.join([self._MARK] * len(types))})" if types else ""
        sql = ("SELECT run_id, seq, session_id, parent_run_id, type, ts, data FROM events"
               f"{{where}} ORDER BY {order}")
        for row in self._select(sql, extra=extra, args=tuple(sorted(types or ()))):
            event = make_event(row, problems)
            if event is not None:
                yield event

    def _run_events(self, problems: Problems) -> Iterator[EventRow]:
        """One run's events with their positions in the session, so that ``order`` is the same
        as when the whole session or store is read."""
        pos, mark = self._POS, self._MARK
        sql = ("SELECT run_id, seq, session_id, parent_run_id, type, ts, data, n FROM ("
               f"SELECT run_id, seq, session_id, parent_run_id, type, ts, data, {pos} AS rid, "
               f"ROW_NUMBER() OVER (ORDER BY {pos}) - 1 AS n FROM events WHERE session_id = "
               f"(SELECT session_id FROM events WHERE run_id = {mark} LIMIT 1)) AS t "
               f"WHERE run_id = {mark} ORDER BY rid")
        db = self._connect()
        try:
            for row in self._rows(db, sql, (self.run_id, self.run_id)):
                event = make_event(row[:7], problems)
                if event is not None:
                    event.position = row[7]
                    yield event
        finally:
            db.close()

    def messages(self, problems: Problems) -> Iterator[MessageRow]:
        sql = ("SELECT m.session_id, m.idx, m.run_id, r.parent_run_id, m.data FROM messages m "
               "LEFT JOIN runs r ON r.run_id = m.run_id LEFT JOIN sessions s ON s.id = m.session_id"
               "{where} ORDER BY s.created_at, m.session_id, m.idx")
        for session_id, idx, run_id, parent, data in self._select(sql, alias="m."):
            report = problems.reporter("messages", f"{session_id}:{idx}")
            parsed, ok = _json_object(data, report, "data")
            if ok:
                yield MessageRow(session_id, idx, run_id, parent, parsed)

    def event_counts(self) -> dict[str, int]:
        return dict(self._select("SELECT run_id, COUNT(*) FROM events{where} GROUP BY run_id"))

    def samples(self) -> Iterator[tuple[str, str, str | None, Any]]:
        """(run_id, session_id, parent_run_id, loom_eval labels) of each run.started, the labels
        picked out by SQLite's JSON functions: the rest of the data is never parsed here."""
        sql = ("SELECT run_id, session_id, parent_run_id, CASE WHEN json_valid(data) THEN "
               "json_extract(data, '$.context.metadata.loom_eval') END FROM events{where} "
               f"ORDER BY {self._POS}")
        for run_id, session_id, parent, labels in self._select(sql, extra="type = 'run.started'"):
            try:
                found = json.loads(labels) if isinstance(labels, str) else None
            except ValueError:
                found = None
            yield run_id, session_id, parent, found

    def _has(self, table: str) -> bool:
        db = self._connect()
        try:
            return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name = ?",
                              (table,)).fetchone() is not None
        finally:
            db.close()

    def feedback(self, problems: Problems) -> Iterator[FeedbackRow]:
        if not self._has("feedback"):  # a store written before loom_nb kept feedback
            return
        # The position counts the session's rows before any filter, so a run's feedback has the
        # same id whether the run, its session or the whole store is read.
        sql = (f"SELECT session_id, ts, run_id, kind, data, rid, n FROM (SELECT session_id, ts, "
               f"run_id, kind, data, {self._POS} AS rid, ROW_NUMBER() OVER (PARTITION BY "
               f"session_id ORDER BY {self._POS}) - 1 AS n FROM feedback) AS t{{where}} "
               f"ORDER BY rid")
        for session_id, ts, run_id, kind, data, rowid, pos in self._select(sql):
            label = f"{session_id}:feedback:{rowid}"
            report = problems.reporter("feedback", label)
            parsed, _ = _json_object(data, report, "data")
            yield FeedbackRow(session_id, _time(ts, report, "ts"), run_id, kind, parsed, label, pos)

    def signals(self, problems: Problems) -> Iterator[SignalRow]:
        if not self._has("signals"):  # a store written before loom_nb kept signals
            return
        sql = ("SELECT session_id, seq, ts, run_id, action, reason, data FROM signals{where} "
               f"ORDER BY {self._POS}")
        for session_id, seq, ts, run_id, action, reason, data in self._select(sql):
            report = problems.reporter("signals", f"{session_id}:signal:{seq}")
            parsed, _ = _json_object(data, report, "data")
            yield SignalRow(session_id, seq, _time(ts, report, "ts"), run_id, action, reason, parsed)


def _run_row(row: tuple[Any, ...], problems: Problems) -> RunRow:
    (run_id, session_id, parent, agent, model, prompt, status, output, error, started, finished,
     usage, turns) = row
    report = problems.reporter("runs", str(run_id))
    parsed, _ = _json_object(usage, report, "usage")
    return RunRow(run_id, session_id, parent, agent, model, prompt, status, output, error,
                  _time(started, report, "started_at"), _time(finished, report, "finished_at"),
                  parsed, turns)


class _MemoryReader:
    """Any store other than SQLite (an :class:`~loom_nb.InMemoryStore`, or a store of your own),
    or one of its sessions or runs, through the reading methods of the store protocols."""

    def __init__(self, store: Any, *, session_id: str | None = None, run_id: str | None = None) -> None:
        self.store, self.session_id, self.run_id = store, session_id, run_id
        self.key = ("memory", id(store), session_id, run_id)

    def _records(self, *, every_run: bool = False) -> list[Any]:
        records = self.store.runs(None)
        return sorted((r for r in records
                       if (self.session_id is None or r.session_id == self.session_id)
                       and (every_run or self.run_id is None or r.run_id == self.run_id)),
                      key=lambda r: r.started_at)

    def _wanted(self, session_id: str | None, run_id: str | None) -> bool:
        return ((self.session_id is None or session_id == self.session_id)
                and (self.run_id is None or run_id == self.run_id))

    def runs(self, problems: Problems) -> Iterator[RunRow]:
        for r in self._records():
            yield RunRow(r.run_id, r.session_id, r.parent_run_id, r.agent, r.model, r.prompt,
                         r.status, r.output, r.error, r.started_at, r.finished_at,
                         r.usage.to_dict(), r.turns)

    def events(self, problems: Problems, types: set[str] | None) -> Iterator[EventRow]:
        if self.run_id is None:
            found = self.store.events(session_id=self.session_id, run_id=None)
            yield from _object_events(found, problems, types, self._wanted)
            return
        mine = self.store.events(run_id=self.run_id)
        session = self.session_id or (mine[0].session_id if mine else None)
        everything = self.store.events(session_id=session) if session is not None else []
        positions = {(e.run_id, e.seq): n for n, e in enumerate(everything)}
        for row in _object_events(mine, problems, types, self._wanted):
            row.position = positions.get((row.run_id, row.seq))
            yield row

    def messages(self, problems: Problems) -> Iterator[MessageRow]:
        sessions = [self.session_id] if self.session_id is not None else self.store.sessions()
        parents = {r.run_id: r.parent_run_id for r in self._records(every_run=True)}
        for session_id in sessions:
            for stored in self.store.stored_messages(session_id):
                if self.run_id is None or stored.run_id == self.run_id:
                    yield MessageRow(session_id, stored.idx, stored.run_id,
                                     parents.get(stored.run_id), stored.message.to_dict({}))

    def signals(self, problems: Problems) -> Iterator[SignalRow]:
        sessions = [self.session_id] if self.session_id is not None else self.store.sessions()
        stored = [r for s in sessions for r in self.store.signals(s)]
        for r in stored:
            if (self.session_id in (None, r.session_id)) and (self.run_id in (None, r.run_id)):
                yield SignalRow(r.session_id, r.seq, r.ts, r.run_id, r.action, r.reason, r.signal)

    def feedback(self, problems: Problems) -> Iterator[FeedbackRow]:
        sessions = [self.session_id] if self.session_id is not None else self.store.sessions()
        for session_id in sessions:
            # The position within the session is a stable id, as the rowid is for SQLite.
            for n, r in enumerate(self.store.feedback(session_id)):
                if self.run_id in (None, r.run_id):
                    yield FeedbackRow(r.session_id, r.ts, r.run_id, r.kind, dict(r.data),
                                      f"{r.session_id}:feedback:{n}", n)

    def event_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.store.events(session_id=self.session_id, run_id=self.run_id):
            counts[event.run_id] = counts.get(event.run_id, 0) + 1
        return counts


def _object_events(found: Iterable[Any], problems: Problems, types: set[str] | None,
                   wanted: Callable[[str, str], bool]) -> Iterator[EventRow]:
    for e in found:
        if (types is None or e.type in types) and wanted(e.session_id, e.run_id):
            row = make_event((e.run_id, e.seq, e.session_id, e.parent_run_id, e.type, e.ts, e.data),
                             problems)
            if row is not None:
                yield row


class _ResultReader:
    """One RunResult: its own events; its messages from its session's store."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.key = ("result", result.run_id)

    def runs(self, problems: Problems) -> Iterator[RunRow]:
        r = self.result
        started = next((e for e in r.events if e.type == "run.started"), None)
        prompt = payload(started, RunStartedData).get("prompt") if started else None
        parent = r.events[0].parent_run_id if r.events else None
        yield RunRow(r.run_id, r.session_id, parent, r.agent, r.model, prompt, r.status, r.output,
                     r.error, r.started_at, r.finished_at, r.usage.to_dict(), r.turns)

    def events(self, problems: Problems, types: set[str] | None) -> Iterator[EventRow]:
        session = self.result.session
        if session is not None and types is None:  # the store knows the session-wide positions
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            stored = list(_store_reader(session.store, **only).events(problems, None))
            if len(stored) >= len(self.result.events):
                yield from stored
                return
        yield from _object_events(self.result.events, problems, types, lambda s, r: True)

    def messages(self, problems: Problems) -> Iterator[MessageRow]:
        session = self.result.session
        if session is not None:
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            yield from _store_reader(session.store, **only).messages(problems)
            return
        for idx, message in enumerate(self.result.messages):  # no session: positions in the run
            yield MessageRow(self.result.session_id, idx, self.result.run_id, None, message.to_dict({}))

    def event_counts(self) -> dict[str, int]:
        return {self.result.run_id: len(self.result.events)}

    def feedback(self, problems: Problems) -> Iterator[FeedbackRow]:
        if self.result.session is not None:
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            yield from _store_reader(self.result.session.store, **only).feedback(problems)

    def signals(self, problems: Problems) -> Iterator[SignalRow]:
        if self.result.session is not None:
            only = {"session_id": self.result.session_id, "run_id": self.result.run_id}
            yield from _store_reader(self.result.session.store, **only).signals(problems)


Reader = _SQLReader | _MemoryReader | _ResultReader


def _store_reader(store: Any, **only: str) -> Reader:
    from ._export_pg import postgres_reader
    from .store import PostgresStore, SessionStore, SQLiteStore

    if isinstance(store, SQLiteStore):  # read with SQL: much faster than through the objects
        return _SQLReader(store.path, **only)
    if isinstance(store, PostgresStore):
        return postgres_reader(store.dsn, **only)
    if isinstance(store, SessionStore):
        return _MemoryReader(store, **only)
    raise ExportError(f"{type(store).__name__} cannot be exported: it lacks the reading methods "
                      f"of loom_nb.store.SessionStore (runs, events, sessions, stored_messages, "
                      f"signals, feedback).")


def readers(source: Any) -> Iterator[Reader]:
    """A reader for each source in ``source`` (flattening iterables)."""
    from .result import RunResult
    from .session import Session
    from .store import SessionStore, is_postgres_dsn

    if isinstance(source, RunResult):
        yield _ResultReader(source)
    elif isinstance(source, Session):
        yield _store_reader(source.store, session_id=source.id)
    elif is_postgres_dsn(source):
        from ._export_pg import postgres_reader
        yield postgres_reader(source)
    elif isinstance(source, str | os.PathLike):
        yield _SQLReader(source)
    elif isinstance(source, SessionStore):
        yield _store_reader(source)
    elif isinstance(source, Iterable) and not isinstance(source, bytes | dict):
        for item in source:
            yield from readers(item)
    else:
        raise ExportError(
            f"Cannot export {a_type(source)}. Pass a RunResult, a Session, the path of "
            f"an SQLite session store, a PostgreSQL store's DSN, a store object, or a list of "
            f"these.")


def _unique(source: Any) -> list[Reader]:
    found: dict[Any, Reader] = {}
    for reader in readers(source):
        found.setdefault(reader.key, reader)
    return list(found.values())


R = TypeVar("R")


def _once(source: Any, read: Callable[[Reader], Iterable[R]], key: Callable[[R], Hashable], *,
          within: bool = True) -> Iterator[R]:
    """The rows ``read`` gives for each reader of ``source``, each once by ``key``: a record
    reached twice (a session and one of its results) counts once. ``within=False`` trusts one
    reader's rows to be unique and checks nothing when there is one reader (events: the large
    case, where the check would cost a set of every event)."""
    all_readers = _unique(source)
    seen: set[Hashable] | None = set() if within or len(all_readers) > 1 else None
    for reader in all_readers:
        for row in read(reader):
            if seen is not None:
                found = key(row)
                if found in seen:
                    continue
                seen.add(found)
            yield row


def runs(source: Any, problems: Problems) -> Iterator[RunRow]:
    return _once(source, lambda r: r.runs(problems), lambda row: row.run_id)


def events(source: Any, problems: Problems, types: set[str] | None = None) -> Iterator[EventRow]:
    return _once(source, lambda r: r.events(problems, types), lambda row: (row.run_id, row.seq),
                 within=False)


def messages(source: Any, problems: Problems) -> Iterator[MessageRow]:
    return _once(source, lambda r: r.messages(problems), lambda row: (row.session_id, row.idx))


def structured_outputs(source: Any, problems: Problems) -> dict[str, Any]:
    """Run id -> the validated output (as JSON) of each run made with ``output_type=``."""
    return {e.run_id: e.data.get("parsed") for e in events(source, problems, {"run.finished"})
            if e.data.get("output_type") is not None and e.data.get("status") == "completed"}


def signals(source: Any, problems: Problems) -> Iterator[SignalRow]:
    return _once(source, lambda r: r.signals(problems), lambda row: (row.session_id, row.seq))


def feedback(source: Any, problems: Problems) -> Iterator[FeedbackRow]:
    return _once(source, lambda r: r.feedback(problems),
                 lambda row: (row.session_id, row.run_id, row.kind, row.ts,
                              json.dumps(row.data, default=str)))


def samples(source: Any) -> Iterator[tuple[str, str, str | None, Any]]:
    """(run_id, session_id, parent_run_id, loom_eval labels or None) of every run in ``source``."""
    for reader in _unique(source):
        if isinstance(reader, _SQLReader):
            yield from reader.samples()
            continue
        for event in reader.events(Problems(strict=False), {"run.started"}):
            context = event.data.get("context")
            metadata = context.get("metadata") if isinstance(context, dict) else None
            yield (event.run_id, event.session_id, event.parent_run_id,
                   metadata.get("loom_eval") if isinstance(metadata, dict) else None)


def event_counts(source: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reader in _unique(source):
        for run_id, n in reader.event_counts().items():
            counts[run_id] = max(counts.get(run_id, 0), n)
    return counts
