"""The column path of events_df (engine="auto" on SQLite) against the row path (engine="rows"),
the reference: the same frame, the same problems, on a generated store with every event type,
evaluation identities, sub-runs and damaged rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import loom_nb
from loom_nb import Agent, Model, SessionConfig, tool
from loom_nb._export_columns import events_frame
from loom_nb._export_fast import Columns, _NotFast, sql_reader
from loom_nb._export_read import unique
from loom_nb.events import LIVE_ONLY, PAYLOADS
from loom_nb.export import ExportError, events_df, runs_df
from loom_nb.store import SQLiteStore

TS = "2026-01-02T03:04:05.123456+00:00"


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def _value(annotation: Any, depth: int = 0) -> Any:
    """A value of ``annotation`` with what JSON makes hard: escapes, separators in strings,
    floats that do not round-trip through 15 digits, nested containers."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.NotRequired or (origin in (typing.Union, types.UnionType)
                                        and type(None) in args):
        return _value(next(a for a in args if a is not type(None)), depth)
    if typing.is_typeddict(annotation):
        return {k: _value(v, depth + 1) for k, v in typing.get_type_hints(annotation).items()}
    if origin is typing.Literal:
        return args[0]
    if annotation is str:
        return 'é "q", a: b\n\u0001 😀'
    if annotation is bool:
        return True
    if annotation is int:
        return 2**53 + 1
    if annotation is float:
        return 0.1 + 0.2
    if origin is dict and typing.get_origin(args[0]) is typing.Literal:
        return {key: _value(args[1], depth + 1) for key in typing.get_args(args[0])}
    if origin is list or annotation is list:
        return [1, {"b": [2.5, None, "x, y"]}]
    return {"k": [1, 2.5e-300, None, True], "é": {"": "q\"uote"}}


def full_payload(event_type: str) -> dict[str, Any]:
    hints = typing.get_type_hints(PAYLOADS[event_type])  # type: ignore[index]
    return {key: _value(annotation) for key, annotation in hints.items()}


def kernel_store(path: Path) -> None:
    """Real runs: an evaluation (identity columns) with tool calls, and a plain session."""
    def answer(request: Any) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            return f"The answer is {last.parts[0].content}."
        return {"tool": "lookup", "args": {"key": last.text}}

    agent = Agent(Model.function(answer), tools=[lookup], name="gen")
    tasks = [{"id": f"t{i}", "input": f"k{i}", "target": "x"} for i in range(3)]
    loom_nb.evaluate(agent, tasks, epochs=2, store=str(path), progress=False, concurrency=1,
                     name="ev")
    session = agent.session(SessionConfig(id="plain", store=str(path)))
    session.run_sync("q1")
    session.run_sync("q2")


def add_events(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """Insert (run_id, seq, session_id, parent_run_id, type, ts, data) rows as they are."""
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO events (run_id, seq, session_id, parent_run_id, type, ts, data)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def every_type_rows(session: str = "synthetic") -> list[tuple[Any, ...]]:
    """One event of every stored type with all its keys, in a run and in a sub-run of it."""
    rows = []
    for run, parent in (("syn-run", None), ("syn-sub", "syn-run")):
        for seq, event_type in enumerate(t for t in PAYLOADS if t not in LIVE_ONLY):
            data = full_payload(event_type)
            if event_type == "run.started":
                data["context"] = {"inputs": {}, "metadata": {"loom_eval": {
                    "task_id": "syn", "epoch": 3, "variant": "v"}}}
            if event_type == "tool.result":
                data["call_id"] = full_payload("tool.call")["call_id"]
            rows.append((run, seq, session, parent, event_type, TS.replace("05.", f"{seq:02}."),
                         json.dumps(data, ensure_ascii=False, default=str)))
    return rows


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "gen.sqlite"
    kernel_store(path)
    add_events(path, every_type_rows())
    return path


def fast(source: Any) -> pd.DataFrame:
    reader = sql_reader(unique(source))
    assert reader is not None
    return events_frame(reader)


def assert_same(source: Any) -> None:
    """The column path is taken and gives the row path's frame, exactly."""
    rows = events_df(source, engine="rows")
    pd.testing.assert_frame_equal(fast(source), rows, check_exact=True)
    pd.testing.assert_frame_equal(events_df(source), rows, check_exact=True)
    frame, errors = events_df(source, strict=False)
    assert errors == [] and frame.equals(rows)
    reader = sql_reader(unique(source))
    assert Columns.read(reader, Columns.tool_counts) is not None  # runs_df's SQL counts
    pd.testing.assert_frame_equal(runs_df(source), runs_df(source, engine="rows"),
                                  check_exact=True)


def test_the_column_path_equals_the_row_path_on_every_event_type(store: Path) -> None:
    assert_same(store)
    frame = events_df(store)
    assert set(frame.type) == {t for t in PAYLOADS if t not in LIVE_ONLY} | {"run.started"}
    sub = frame[frame.run_id == "syn-sub"]
    assert set(sub.task_id) == {"syn"} and set(sub.epoch) == {3}  # a sub-run's own labels
    assert frame.task_id.notna().sum() > 0 and frame.epoch.dtype == "Int64"
    assert frame.context_used.dtype == "float64" and frame.run_prompt.dtype == "str"


def test_a_session_of_the_store_and_the_store_object(store: Path) -> None:
    assert_same(SQLiteStore(str(store)))
    agent = Agent(Model.scripted(["again"]), name="gen")
    session = agent.session(SessionConfig(id="plain", store=str(store)))
    assert_same(session)
    assert sql_reader(unique([session, str(store)])) is None  # two readers: the row path


def test_a_sub_run_and_a_labelless_run_take_the_labels_the_row_path_gives(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    kernel_store(path)
    labelled = {"prompt": "p", "context": {"inputs": {}, "metadata": {"loom_eval": {
        "task_id": "a", "epoch": 1, "variant": "v"}}}}
    add_events(path, [
        ("sub-early", 0, "mix", "parent", "tool.call", TS, json.dumps({"call_id": "c", "name": "n", "args": {}})),
        ("parent", 0, "mix", None, "run.started", TS, json.dumps(labelled)),
        ("sub-early", 1, "mix", "parent", "run.started", TS, json.dumps({"prompt": "s"})),
        ("sub-early", 2, "mix", "parent", "tool.call", TS, json.dumps({"call_id": "d", "name": "n", "args": {}})),
        ("nolabel", 0, "mix", None, "run.started", TS, json.dumps({"prompt": "x", "task": {"goal": "g"}})),
        ("nolabel", 1, "mix", None, "quality.verdict", TS, json.dumps({"passed": False})),
    ])
    assert_same(path)


DAMAGES: dict[str, tuple[Any, ...]] = {
    "not JSON": ("r", 0, "d", None, "run.started", TS, "{oops"),
    "not an object": ("r", 0, "d", None, "run.started", TS, "[1, 2]"),
    "a BLOB": ("r", 0, "d", None, "run.started", TS, b"{}"),
    "a required key missing": ("r", 0, "d", None, "tool.call", TS, json.dumps({"name": "x", "args": {}})),
    "a required key null": ("r", 0, "d", None, "run.started", TS, json.dumps({"prompt": None, "task": {"goal": "g"}})),
    "a mistyped value": ("r", 0, "d", None, "model.request", TS, json.dumps({"turn": "one"})),
    "a bool for a number": ("r", 0, "d", None, "tool.result", TS, json.dumps(
        {"call_id": None, "name": "n", "content": "c", "is_error": False, "duration_ms": True})),
    "an undocumented key": ("r", 0, "d", None, "tool.call", TS, json.dumps(
        {"call_id": "c", "name": "n", "args": {}, "extra": [1]})),
    "an undocumented nested key": ("r", 0, "d", None, "model.response", TS, json.dumps(
        {"turn": 1, "usage": {"input_tokens": 1, "other": 2}})),
    "a nested key not an object": ("r", 0, "d", None, "model.response", TS, json.dumps({"turn": 1, "usage": 5})),
    "a duplicated key": ("r", 0, "d", None, "tool.call", TS, '{"call_id": "a", "name": "n", "args": {}, "name": "m"}'),
    "a custom event type": ("r", 0, "d", None, "my.event", TS, json.dumps({"x": 1})),
    "a bad timestamp": ("r", 0, "d", None, "run.started", "yesterday", json.dumps({"prompt": "p"})),
    "another offset": ("r", 0, "d", None, "run.started", "2026-01-02T05:04:05+02:00", json.dumps({"prompt": "p"})),
    "a naive timestamp": ("r", 0, "d", None, "run.started", "2026-01-02T03:04:05", json.dumps({"prompt": "p"})),
    "a seq as text": ("r", "zero", "d", None, "run.started", TS, json.dumps({"prompt": "p"})),
    "a BLOB for an id": ("r", 0, "d", b"p", "run.started", TS, json.dumps({"prompt": "p"})),
    "a result without a call": ("r", 0, "d", None, "tool.result", TS, json.dumps(
        {"call_id": "nope", "name": "n", "content": "c", "is_error": False})),
    "a negative count": ("r", 0, "d", None, "model.response", TS, json.dumps(
        {"turn": 1, "usage": {"input_tokens": -1}})),
    "a 70-bit integer": ("r", 0, "d", None, "model.request", TS, json.dumps({"turn": 2**70})),
    "an invalid date": ("r", 0, "d", None, "run.started", "2026-13-45T03:04:05+00:00", json.dumps({"prompt": "p"})),
    "the 31st of February": ("r", 0, "d", None, "tool.call", "2026-02-31T03:04:05+00:00", json.dumps(
        {"call_id": "c", "name": "n", "args": {}})),
    "a second 60": ("r", 0, "d", None, "tool.call", "2026-02-03T03:04:60+00:00", json.dumps(
        {"call_id": "c", "name": "n", "args": {}})),
    "the year 0": ("r", 0, "d", None, "tool.call", "0000-02-03T03:04:05+00:00", json.dumps(
        {"call_id": "c", "name": "n", "args": {}})),
    "a tool row not JSON": ("r", 0, "d", None, "tool.result", TS, "{oops"),
    "an error flag twice": ("r", 0, "d", None, "tool.result", TS,
                            '{"call_id": null, "name": "n", "content": "c", "is_error": false, "is_error": true}'),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_row_gets_the_row_path_and_its_report(store: Path, damage: str) -> None:
    add_events(store, [DAMAGES[damage]])
    with pytest.raises(_NotFast):
        fast(store)
    if damage == "a 70-bit integer":  # the row path fails on it (a known limit), as before
        for engine in ("rows", "auto"):
            with pytest.raises(OverflowError):
                events_df(store, strict=False, engine=engine)  # type: ignore[arg-type]
        return
    reference, reported = events_df(store, strict=False, engine="rows")
    frame, errors = events_df(store, strict=False)
    pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    assert errors == reported
    runs, run_errors = runs_df(store, strict=False)
    runs_reference, run_reported = runs_df(store, strict=False, engine="rows")
    pd.testing.assert_frame_equal(runs, runs_reference, check_exact=True)
    assert run_errors == run_reported
    if reported:
        with pytest.raises(ExportError) as raised:
            events_df(store)
        with pytest.raises(ExportError) as expected:
            events_df(store, engine="rows")
        assert str(raised.value) == str(expected.value)


def test_an_empty_store_and_an_unknown_engine(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    SQLiteStore(str(path)).close()
    pd.testing.assert_frame_equal(fast(path), events_df(path, engine="rows"), check_exact=True)
    with pytest.raises(ExportError, match="engine='duckdb' is not an export engine"):
        events_df(path, engine="duckdb")  # type: ignore[arg-type]


def test_the_column_path_modules_import_no_pandas_numpy_or_pyarrow() -> None:
    code = ("import sys, loom_nb.export, loom_nb._export_fast, loom_nb._export_columns; "
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
