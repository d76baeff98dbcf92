"""The frame of :func:`loom_nb.export.events_df` built column by column from the SQL reads of
:mod:`loom_nb._export_fast`: each event type's values become typed NumPy or Arrow pieces as
soon as they are read (so the Python objects of one type at a time are alive, not a store's),
and each column is assembled once, with the dtype the row path gives it."""

from __future__ import annotations

import json
from typing import Any

from ._export_eval import IDENTITY_COLUMNS
from ._export_fast import _BASE, _IDS, Columns, TypeRows, _NotFast, identities_by_row
from ._export_read import _SQLReader

__all__ = ["events_frame"]

#: The Python types (as json.loads makes them) a column kind takes without a problem.
_ALLOWED: dict[str, set[type]] = {"boolean": {bool}, "Int64": {int}, "float64": {int, float},
                                  "str": {str}}
_NUMPY: dict[str, str] = {"Int64": "int64", "float64": "float64", "boolean": "bool"}


def _compact(values: Any, kind: str) -> Any:
    """The non-null values of one piece in the form the column is assembled from."""
    import numpy as np
    import pyarrow as pa

    if kind == "json":
        encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
        return pa.array(map(encode, values), type=pa.large_string(), size=len(values))
    if kind == "str":
        return pa.array(values, type=pa.large_string())
    try:
        return np.asarray(values.tolist(), dtype=_NUMPY[kind])
    except OverflowError:  # beyond 64 bits: the row path fails on it as it always has
        raise _NotFast("an integer beyond 64 bits") from None


class _Column:
    """One column's pieces: (positions in the frame, compact values)."""

    def __init__(self, name: str, kind: str | None) -> None:
        self.name, self.kind = name, kind
        self.seen: set[type] = set()
        self.pieces: list[tuple[Any, Any]] = []

    def add(self, positions: Any, values: list[Any]) -> None:
        import numpy as np

        array = np.fromiter(values, dtype=object, count=len(values))
        keep = array != None  # noqa: E711 - elementwise, on an object array
        if not keep.any():
            return
        present = array[keep]
        types = set(map(type, present))
        self.seen |= types
        if self.kind is None:  # undocumented: its kind is known once every piece is in
            self.pieces.append((positions[keep], present))
            return
        allowed = _ALLOWED.get(self.kind)
        if allowed is not None and not types <= allowed:
            raise _NotFast(f"{self.name} holds a value of type {sorted(t.__name__ for t in types)}")
        self.pieces.append((positions[keep], _compact(present, self.kind)))

    def build(self, n: int) -> Any:
        kind = self.kind
        if kind is None:  # as the row path's _infer: the narrowest kind that holds every value
            kind = next((k for k, types in _ALLOWED.items() if self.seen <= types), "json")
            kind = kind if self.seen else "str"
            self.pieces = [(p, _compact(v, kind)) for p, v in self.pieces]
        return _assemble(n, self.pieces, kind)


def _assemble(n: int, pieces: list[tuple[Any, Any]], kind: str) -> Any:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if kind in ("str", "json"):
        if not pieces:
            return pd.array(pa.nulls(n, type=pa.large_string()), dtype="str")
        index = np.full(n, -1, dtype="int64")
        start = 0
        for positions, values in pieces:
            index[positions] = np.arange(start, start + len(values))
            start += len(values)
        values = pa.concat_arrays([v for _, v in pieces])
        taken = values.take(pa.array(index, mask=index < 0))
        return pd.array(taken, dtype="str")
    if kind == "float64":
        floats = np.full(n, np.nan)
        for positions, values in pieces:
            floats[positions] = values
        return floats
    data = np.zeros(n, dtype=_NUMPY[kind])
    mask = np.ones(n, dtype=bool)
    for positions, values in pieces:
        data[positions], mask[positions] = values, False
    return (pd.arrays.BooleanArray(data, mask) if kind == "boolean"
            else pd.arrays.IntegerArray(data, mask))


class _Calls:
    """What the row path's CallTracker reports: a tool.result without an earlier tool.call of
    its run, a negative token count in a model.response."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str, str, Any]] = []

    def see(self, event_type: str, rows: TypeRows) -> None:
        from ._export_checks import _TOKENS

        if event_type in ("tool.call", "tool.result"):
            ids = rows.ids
            self.steps += zip(ids["rowid"], [event_type] * len(ids["rowid"]), ids["run_id"],
                              rows.values["tool_call_id"], strict=True)
        if event_type == "model.response":
            for key in _TOKENS:
                name = "model_requests" if key == "requests" else f"model_{key}"
                if any(isinstance(v, int | float) and not isinstance(v, bool) and v < 0
                       for v in rows.values[name]):
                    raise _NotFast(f"a negative {key}")

    def check(self) -> None:
        first: dict[tuple[str, Any], int] = {}
        for rowid, event_type, run_id, call_id in self.steps:
            if event_type == "tool.call":
                first[(run_id, call_id)] = min(rowid, first.get((run_id, call_id), rowid))
        for rowid, event_type, run_id, call_id in self.steps:
            if event_type == "tool.result" and call_id is not None and not (
                    first.get((run_id, call_id), rowid) < rowid):
                raise _NotFast("a tool.result without an earlier call")


def _base_columns(base: dict[str, Any], data: Any) -> dict[str, Any]:
    """The id, type, order, seq, ts and data columns."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    def strings(values: Any) -> Any:
        return pd.array(pa.array(values, type=pa.large_string(), from_pandas=True), dtype="str")

    out = {name: strings(base[name]) for name in ("session_id", "run_id", "parent_run_id", "type")}
    seqs = base["seq"].astype("int64")
    numbers = pc.cast(pa.array(seqs), pa.large_string())
    out["event_id"] = pd.array(pc.binary_join_element_wise(
        pa.array(base["run_id"], type=pa.large_string()), numbers,
        pa.scalar(":", pa.large_string())), dtype="str")
    codes, _ = pd.factorize(base["session_id"])  # order: the position in its session
    out["order"] = pd.Series(codes).groupby(codes).cumcount().to_numpy(dtype="int64")
    try:
        times = pd.to_datetime(base["ts"], format="ISO8601", utc=True)
    except ValueError:  # a date like 2026-13-45, in the canonical shape: the row path says so
        raise _NotFast("a timestamp that is not a date") from None
    out.update(seq=seqs, ts=pd.DatetimeIndex(times).as_unit("us").array, data=data)
    return out


def _text(db: Columns, rowids: Any) -> Any:
    """The ``data`` column: the stored JSON texts as one Arrow string array, built from one
    concatenated buffer and the rows' byte lengths."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    text, lengths, order = db.data()
    if not np.array_equal(np.asarray(order, dtype="int64"), rowids):
        raise _NotFast("the concatenation is not in the store's order")
    offsets = np.zeros(len(lengths) + 1, dtype="int64")
    np.cumsum(np.asarray(lengths, dtype="int64"), out=offsets[1:])
    array = pa.LargeStringArray.from_buffers(len(lengths), pa.py_buffer(offsets),
                                             pa.py_buffer(text))
    array.validate(full=True)  # UTF-8 checked, as pyarrow checks the row path's strings
    return pd.array(array, dtype="str")


def events_frame(reader: _SQLReader) -> Any:
    """events_df of one SQLite reader, column by column; _NotFast when only the row path can."""
    import numpy as np
    import pandas as pd

    from .export import EVENT_COLUMNS

    db = Columns(reader)
    columns: dict[str, _Column] = {}
    calls, labels = _Calls(), dict[int, Any]()
    try:
        types = db.types()
        texts = db.scan(types)
        rowids = np.sort(np.concatenate([np.asarray(json.loads(texts[t][0]), dtype="int64")
                                         for t in types] or [np.empty(0, dtype="int64")]))
        n = len(rowids)
        base = {name: np.empty(n, dtype=object) for name in _IDS}
        base["type"] = np.empty(n, dtype=object)
        for event_type in types:
            rows = db.decode(event_type, texts.pop(event_type))
            positions = np.searchsorted(rowids, np.asarray(rows.ids["rowid"], dtype="int64"))
            base["type"][positions] = event_type
            for name, values in rows.ids.items():
                base[name][positions] = np.fromiter(values, dtype=object, count=len(values))
            calls.see(event_type, rows)
            if event_type == "run.started":
                labels.update(zip(rows.ids["rowid"], rows.values[".labels"], strict=True))
            for name, values in rows.values.items():
                if not name.startswith("."):
                    if name not in columns:
                        columns[name] = _Column(name, EVENT_COLUMNS.get(name))
                    columns[name].add(positions, values)
            del rows
        calls.check()
        data = _text(db, rowids)
    finally:
        db.close()
    samples = identities_by_row({k: base[k].tolist() for k in ("rowid", "run_id", "session_id",
                                                               "parent_run_id", "type")}, labels)
    every = np.arange(n)
    for name, kind in IDENTITY_COLUMNS.items():
        columns[name] = _Column(name, kind)
        columns[name].add(every, [s.get(name) for s in samples])
    extras = sorted(name for name, column in columns.items()
                    if name not in EVENT_COLUMNS and column.pieces)
    out = _base_columns(base, data)
    for name in [*EVENT_COLUMNS, *extras]:
        if name not in _BASE or name in IDENTITY_COLUMNS:
            out[name] = (columns[name] if name in columns
                         else _Column(name, EVENT_COLUMNS[name])).build(n)
    return pd.DataFrame({name: out[name] for name in [*EVENT_COLUMNS, *extras]},
                        index=pd.RangeIndex(n))
