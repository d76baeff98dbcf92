"""``events_df`` column by column from an SQLite store: the fast path of :mod:`loom_nb.export`.

The row path (``engine="rows"``) parses every event's JSON in Python and adds each value to a
sparse table: about 90 s per million events. Here SQLite does the work: for each event type,
one query returns every column of that type as one JSON array (``json_group_array`` over
``data -> '$.key'``, which keeps each value's JSON text as stored), so Python parses one string
per column instead of one object per event, and numbers and strings are decoded by Python's own
parser, exactly as the row path decodes them.

The fast path takes only stores it can render exactly as the row path does: every event of a
type the kernel writes, with the keys of its payload (docs/events.md) and values of their
documented types, canonical UTC timestamps, and no problem the row path would report. Anything
else (a damaged row, a custom event type, an undocumented key) raises :class:`_NotFast` from the
checks, before any frame is built, and ``events_df`` takes the row path: it reports the problems
in the store's order, as it always has. The checks are SQL over the same scan.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._export_eval import IDENTITY_COLUMNS, Identities
from ._export_read import _SQLReader
from .errors import ExportError
from .events import LIVE_ONLY, PAYLOADS, PartitionName

__all__ = ["Columns", "fast", "TypeColumns", "TypeRows", "event_columns", "has_arrow",
           "identities_by_row", "sql_reader"]


class _NotFast(Exception):
    """The store holds something only the row path renders exactly (internal: never raised
    to the caller, who gets the row path's frame instead)."""


#: Columns every event row has: data keys whose flattened name is one of these would override
#: them (a row-path subtlety the fast path does not copy: such a type is left to the row path).
_BASE = frozenset(("session_id", "run_id", "event_id", "parent_run_id", "order", "seq", "type",
                   "ts", "data", *IDENTITY_COLUMNS))
#: ISO 8601 as the store writes it (``datetime.isoformat()`` of a UTC time): with or without
#: microseconds. Anything else is parsed by the row path, which knows every form Python reads.
_DIGITS = "[0-9]"
_TS_GLOB = (f"{_DIGITS * 4}-{_DIGITS * 2}-{_DIGITS * 2}T{_DIGITS * 2}:{_DIGITS * 2}:"
            f"{_DIGITS * 2}")
_TS_OK = (f"(typeof(ts) = 'text' AND ((length(ts) = 25 AND ts GLOB '{_TS_GLOB}+00:00') OR "
          f"(length(ts) = 32 AND ts GLOB '{_TS_GLOB}.{_DIGITS * 6}+00:00')) AND "
          # a real date and time (through the Julian day 2026-02-31 becomes March: they differ)
          f"date(julianday(substr(ts, 1, 10))) IS substr(ts, 1, 10) AND substr(ts, 1, 4) > '0000' AND "
          f"time(substr(ts, 12, 8)) IS substr(ts, 12, 8))")


@dataclass(frozen=True)
class TypeColumns:
    """One event type's fast path: the JSON paths read from each row, each with its column
    name (or ``.required`` / ``.labels``: read to check, not a column), the paths removed to
    check the rest, and what may remain of the data after that removal."""

    columns: tuple[tuple[str, str], ...]
    leaves: tuple[str, ...]
    residues: frozenset[str]

    def bad(self) -> str:
        """SQL true for a row the fast path cannot render: one parse of its data."""
        removed = ", ".join(repr(p) for p in self.leaves)
        allowed = ", ".join(repr(r) for r in sorted(self.residues))
        return f"json_remove(data, {removed}) NOT IN ({allowed})"


def _path(*keys: str) -> str:
    for key in keys:
        if not key.replace("_", "").isalnum():
            raise AssertionError(key)  # payload keys are identifiers; no quoting needed
    return "$." + ".".join(f'"{k}"' for k in keys)


def _typed_dict(annotation: Any) -> Any:
    """The TypedDict inside ``X``, ``X | None`` or ``NotRequired[X]``, else None."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and typing.is_typeddict(arg):
            return arg
        if typing.get_args(arg):
            found = _typed_dict(arg)
            if found is not None:
                return found
    return None


def _keys(payload: Any) -> list[str]:
    return [*payload.__required_keys__, *sorted(payload.__optional_keys__)]


def _residues(containers: dict[str, list[str]], required: set[str]) -> frozenset[str]:
    """Every minified text ``json_remove`` can leave of a good row: each container (a nested
    object whose leaves were removed) absent, null or emptied, in any order."""
    states = [[None, "null", *emptied] if key not in required else ["null", *emptied]
              for key, emptied in containers.items()]
    found = set()
    for chosen in itertools.product(*states):
        present = [(k, v) for k, v in zip(containers, chosen, strict=True) if v is not None]
        for order in itertools.permutations(present):
            found.add("{" + ",".join(f'"{k}":{v}' for k, v in order) + "}")
    return frozenset(found)


def _one_type(event_type: str) -> TypeColumns | None:
    """The fast path of ``event_type`` from its payload TypedDict, or None when the flattening
    would need what only the row path does (two keys with one column, a key over an id)."""
    from .export import _NESTED, REQUIRED, flatten

    payload = PAYLOADS[event_type]  # type: ignore[index]
    hints = typing.get_type_hints(payload)
    required = set(REQUIRED.get(event_type, ()))
    columns: list[tuple[str, str]] = []
    leaves: list[str] = []
    containers: dict[str, list[str]] = {}
    for key in _keys(payload):
        inner = _typed_dict(hints[key]) if _NESTED.get((event_type, key)) else None
        if inner is None:
            leaves.append(_path(key))
            names = list(flatten(event_type, {key: 0}))
            columns += [(name, _path(key)) for name in names]
            if key in required:
                columns.append((".required", _path(key)))
            continue
        containers[key] = ["{}"]
        for sub in _keys(inner):
            if sub == "partitions":
                parts = typing.get_args(PartitionName)
                leaves += [_path(key, sub, p) for p in parts]
                columns += [(f"context_{p}_tokens", _path(key, sub, p)) for p in parts]
                containers[key] += ['{"partitions":{}}', '{"partitions":null}']
                continue
            leaves.append(_path(key, sub))
            if (event_type, key, sub) == ("run.started", "task", "goal"):
                continue  # left out by the row path, as the data has a prompt (required)
            columns += [(name, _path(key, sub)) for name in flatten(event_type, {key: {sub: 0}})]
    if event_type == "run.started":
        columns.append((".labels", "$.context.metadata.loom_eval"))
    names = [name for name, _ in columns if not name.startswith(".")]
    if len(set(names)) != len(names) or _BASE & set(names):
        return None
    return TypeColumns(tuple(columns), tuple(leaves), _residues(containers, required))


@functools.cache
def event_columns() -> dict[str, TypeColumns]:
    """The event types the fast path renders, with their columns."""
    found = {t: _one_type(t) for t in PAYLOADS if t not in LIVE_ONLY}
    return {t: spec for t, spec in found.items() if spec is not None}


def has_arrow() -> bool:
    """Whether pyarrow can be imported: the columns are built as Arrow arrays (pandas' own
    ``str`` dtype is Arrow-backed when it is installed). Without it, the row path."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def fast(source: Any, engine: str, build: Callable[[_SQLReader], Any]) -> Any:
    """What ``build`` makes with SQL from ``source``'s one SQLite reader, or None when the row
    path must make it (another source, ``engine="rows"``, no pyarrow, or a store with something
    only the row path reports or renders exactly)."""
    from ._export_read import unique

    if engine not in ("auto", "rows"):
        raise ExportError(f"engine={engine!r} is not an export engine; use 'auto' or 'rows'.")
    reader = sql_reader(unique(source)) if engine == "auto" else None
    if reader is None or not has_arrow():
        return None
    try:
        return build(reader)
    except _NotFast:
        return None


def sql_reader(readers: list[Any]) -> _SQLReader | None:
    """The one SQLite reader of a whole store or session, or None (another kind of source)."""
    if len(readers) != 1 or type(readers[0]) is not _SQLReader or readers[0].run_id is not None:
        return None
    return readers[0]


#: The id columns read for every event, beside its type's data columns.
_IDS = {"rowid": "rowid", "run_id": "run_id", "seq": "seq", "session_id": "session_id",
        "parent_run_id": "parent_run_id", "ts": "ts"}
#: True for a row whose ids or time the row path would report or read differently.
_BAD_IDS = (f"typeof(run_id) != 'text' OR typeof(session_id) != 'text' OR typeof(seq) != "
            f"'integer' OR typeof(parent_run_id) NOT IN ('text', 'null') OR typeof(data) != "
            f"'text' OR NOT {_TS_OK}")


@dataclass
class TypeRows:
    """One event type's rows (in store order): their ids and their data columns' values."""

    ids: dict[str, list[Any]]
    values: dict[str, list[Any]]


class Columns:
    """The values of one store's events, column by column (a connection: close it)."""

    def __init__(self, reader: _SQLReader) -> None:
        self.db: sqlite3.Connection = reader._connect()
        # One read transaction: every query sees the same snapshot while another process
        # appends (WAL), so the columns of one frame always agree.
        self.db.execute("BEGIN")
        self.filters = reader.filters
        self.where = " AND ".join(f"{c} = ?" for c, _ in reader.filters) or "1"
        self.args = tuple(v for _, v in reader.filters)

    def close(self) -> None:
        self.db.close()

    @classmethod
    def read(cls, reader: _SQLReader, what: Callable[[Columns], Any]) -> Any:
        """``what`` of a new connection to ``reader``'s store, closed after."""
        db = cls(reader)
        try:
            return what(db)
        finally:
            db.close()

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        try:
            return tuple(self.db.execute(sql, (*self.args, *args)).fetchone())
        except sqlite3.Error as exc:  # malformed JSON, a BLOB: the row path reports the row
            raise _NotFast(str(exc)) from None

    def types(self) -> list[str]:
        """The event types in the store; _NotFast if one is not a type the fast path knows (a
        custom event type, a type that is not text)."""
        rows = self.db.execute(f"SELECT DISTINCT type FROM events WHERE {self.where}", self.args)
        found, known = [t for (t,) in rows], event_columns()
        if any(not isinstance(t, str) or t not in known for t in found):
            raise _NotFast("an event type the fast path does not know")
        return sorted(found)

    def scan(self, types: list[str]) -> dict[str, tuple[Any, ...]]:
        """Every type's ids and columns as JSON texts, from one scan of the table (an aggregate
        per type and column, each with a FILTER on the type); _NotFast if a row needs the row
        path."""
        if not types:
            return {}
        parts = []
        for n, event_type in enumerate(types):
            spec, only = event_columns()[event_type], f"FILTER (WHERE type = ?{n + 1})"
            paths = ", ".join(repr(path) for _, path in spec.columns)
            parts += [f"json_group_array({sql}) {only}" for sql in _IDS.values()]
            parts += [f"SUM(({_BAD_IDS}) OR {spec.bad()}) {only}",
                      f"json_group_array(json_extract(data, {paths}, '$.\"\"')) {only}"]
        where = " AND ".join(f"{c} = ?{len(types) + i + 1}" for i, (c, _) in
                             enumerate(self.filters)) or "1"
        try:
            row = self.db.execute(f"SELECT {', '.join(parts)} FROM events WHERE {where}",
                                  (*types, *self.args)).fetchone()
        except sqlite3.Error as exc:  # malformed JSON, a BLOB: the row path reports the row
            raise _NotFast(str(exc)) from None
        width = len(_IDS) + 2
        found = {t: tuple(row[i * width:(i + 1) * width]) for i, t in enumerate(types)}
        for event_type, texts in found.items():
            if texts[len(_IDS)]:
                raise _NotFast(f"{texts[len(_IDS)]} {event_type} events need the row path")
        return found

    @staticmethod
    def decode(event_type: str, texts: tuple[Any, ...]) -> TypeRows:
        """The ids and data columns of one type's events, from :meth:`scan`'s texts."""
        spec = event_columns()[event_type]
        ids = {name: json.loads(text) for name, text in zip(_IDS, texts, strict=False)}
        found = json.loads(texts[-1])
        columns = list(zip(*found, strict=True)) if found else [()] * (len(spec.columns) + 1)
        values: dict[str, Any] = {}
        for (name, _), column in zip(spec.columns, columns, strict=False):
            if name == ".required" and any(v is None for v in column):
                raise _NotFast(f"a {event_type} event lacks a key it needs")
            values[name] = column
        return TypeRows(ids, values)

    def tool_counts(self) -> dict[str, tuple[int, int]]:
        """run id -> (tool calls, tool results with ``is_error`` true), counted by SQL; NotFast
        unless every tool.call and tool.result is one the row path would read without a
        problem and to the same values."""
        from .export import REQUIRED

        specs = event_columns()
        bad = " OR ".join(
            f"(type = '{t}' AND ({specs[t].bad()} OR "
            + " OR ".join(f"json_type(data, '{_path(k)}') IS NULL" for k in REQUIRED[t]) + "))"
            for t in ("tool.call", "tool.result"))
        (bad_rows, counts) = self._one(
            "SELECT SUM(bad), json_group_array(json_array(run_id, calls, errors)) FROM ("
            f"SELECT run_id, SUM(({_BAD_IDS}) OR {bad}) AS bad, SUM(type = 'tool.call') AS calls, "
            "SUM(type = 'tool.result' AND json_type(data, '$.is_error') = 'true') AS errors "
            f"FROM events WHERE {self.where} AND type IN ('tool.call', 'tool.result') "
            "GROUP BY run_id)")
        if bad_rows:
            raise _NotFast(f"{bad_rows} tool events need the row path")
        return {run_id: (calls, errors) for run_id, calls, errors in json.loads(counts)}

    def data(self) -> tuple[bytes, list[int], list[int]]:
        """The stored JSON text of every event as one UTF-8 string, with each row's byte
        length and rowid (in the order of the concatenation): an Arrow array is made of it
        without a Python object per row."""
        self.db.text_factory = bytes
        try:
            text, lengths, rowids = self.db.execute(
                "SELECT group_concat(data, ''), json_group_array(length(CAST(data AS BLOB))), "
                f"json_group_array(rowid) FROM (SELECT rowid, data FROM events WHERE {self.where} "
                "ORDER BY rowid)", self.args).fetchone()
        finally:
            self.db.text_factory = str
        return text or b"", json.loads(lengths), json.loads(rowids)


def identities_by_row(base: dict[str, list[Any]], labels: dict[int, Any]) -> list[dict[str, Any]]:
    """task_id / epoch / variant of each event, as the row path finds them: its run's (or its
    parent's) labels once that run.started has been read, else its session's first."""
    samples = Identities()
    out: list[dict[str, Any]] = []
    last: tuple[Any, ...] | None = None
    found: dict[str, Any] = {}
    for rowid, run_id, session_id, parent, event_type in zip(
            base["rowid"], base["run_id"], base["session_id"], base["parent_run_id"],
            base["type"], strict=True):
        if event_type == "run.started":
            samples.add_labels(run_id, session_id, parent, labels.get(rowid))
            last = None
        if last != (run_id, session_id):  # a run's events are together: one lookup per run
            found, last = samples.of(run_id, session_id), (run_id, session_id)
        out.append(found)
    return out


# -- the frame ---------------------------------------------------------------------------------
