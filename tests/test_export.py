"""loom_nb.export: every frame's columns, dtypes and values against runs with known events."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from loom_nb import (Agent, InMemoryStore, Model, RunContext, Runtime, RuntimeSignal, RuntimeTask,
                     SessionConfig, tool)
from loom_nb.export import (ExportError, RecordError, events_df, feedback_df, messages_df,
                            read_parquet, runs_df, signals_df, to_parquet, tool_calls_df)
from loom_nb.governance import GovernancePolicy
from tests.backends import Backend

STR = pd.StringDtype(na_value=float("nan"))
UTC = "datetime64[us, UTC]"


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def wipe(path: str) -> str:
    """Delete a path."""
    return "gone"


def make_agent() -> Agent:
    turns = [[{"tool": "add", "args": {"a": 1, "b": 2}, "id": "c1"},
              {"tool": "wipe", "args": {"path": "/"}, "id": "c2"}],
             "The sum is 3.", "Second answer."]
    return Agent(Model.scripted(turns), tools=[add, wipe], name="calc",
                 runtime=Runtime.sdk(governance=GovernancePolicy(deny=["wipe"])))


def run_two(store: object, session_id: str = "s1"):
    session = make_agent().session(SessionConfig(id=session_id, store=store))
    task = RuntimeTask("Add 1 and 2", inputs={"x": 1}, criteria=["says 3"], metadata={"suite": "a"})
    first = session.run_sync(task, RunContext(metadata={"seed": 7}))
    second = session.run_sync("And now?")
    return session, first, second


@pytest.fixture
def stored(backend: Backend):
    """Two runs in a store: an SQLite file, then a PostgreSQL database (its DSN is the source)."""
    session, first, second = run_two(backend.spec)
    return backend.spec, session, first, second


@pytest.fixture
def sqlite_stored(tmp_path: Path):
    # SQLite only, for the tests that damage records: PostgreSQL's typed columns cannot hold a
    # malformed timestamp or usage; its malformed JSON is test_a_malformed_postgres_record_*.
    path = tmp_path / "store.sqlite"
    session, first, second = run_two(str(path))
    return path, session, first, second


def test_runs_df_columns_dtypes_and_values(stored) -> None:
    path, session, first, second = stored
    df = runs_df(path)
    assert list(df.columns[:38]) == [
        "session_id", "run_id", "parent_run_id", "order", "evaluation", "variant", "task_id",
        "epoch", "attempt", "superseded", "target", "agent", "model", "status", "prompt",
        "output", "error", "error_type", "limit", "started_at", "finished_at", "duration_ms",
        "turns", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "total_tokens", "model_requests", "cost_usd", "tool_calls", "tool_errors", "event_count",
        "quality_verdict", "quality_critique", "task_inputs", "task_criteria", "turn_models"]
    assert list(df.columns[38:]) == ["metadata_seed", "metadata_suite"]
    assert df["cost_usd"].dtype == "float64" and df["cost_usd"].isna().all()  # scripted: unknown
    assert df["status"].dtype == STR and df["order"].dtype == "int64"
    assert str(df["started_at"].dtype) == UTC and df["duration_ms"].dtype == "float64"
    assert df["input_tokens"].dtype == "Int64" and df["metadata_seed"].dtype == "Int64"
    row = df.iloc[0]
    assert (row.session_id, row.run_id, row.order, row.agent, row.model) == (
        "s1", first.run_id, 0, "calc", "scripted:scripted")
    assert (row.status, row.prompt, row.output, row.turns) == ("completed", "Add 1 and 2",
                                                               "The sum is 3.", 2)
    assert (row.input_tokens, row.output_tokens) == (first.usage.input_tokens,
                                                     first.usage.output_tokens)
    assert row.total_tokens == first.usage.total_tokens and row.model_requests == 2
    assert (row.tool_calls, row.tool_errors, row.event_count) == (2, 1, len(first.events))
    assert json.loads(row.task_inputs) == {"x": 1} and json.loads(row.task_criteria) == ["says 3"]
    assert (row.metadata_suite, row.metadata_seed) == ("a", 7)
    assert row.started_at == pd.Timestamp(first.started_at)
    assert row.duration_ms == pytest.approx(first.duration_ms)
    assert pd.isna(row.error) and pd.isna(row.parent_run_id) and pd.isna(row.quality_verdict)
    later = df.iloc[1]
    assert (later.run_id, later.order, later.prompt, later.tool_calls) == (second.run_id, 1,
                                                                           "And now?", 0)
    assert pd.isna(later.metadata_suite)


def test_events_df_flattens_every_event(stored) -> None:
    path, session, first, _ = stored
    df = events_df(path)
    mine = df[df.run_id == first.run_id].reset_index(drop=True)
    # The kernel's own record of the run is the expectation (policies may add event types).
    assert list(mine.type) == [e.type for e in first.events]
    core = [t for t in mine.type if t.split(".")[0] in ("run", "model", "tool", "governance")]
    assert core == ["run.started", "model.request", "model.response", "tool.call",
                    "governance.decision", "tool.call", "governance.decision", "tool.result",
                    "tool.result", "model.request", "model.response", "run.finished"]
    assert list(mine.event_id) == [e.event_id for e in first.events]
    assert list(mine.seq) == list(range(len(first.events)))
    assert list(df.order) == list(range(len(df)))
    assert str(df["ts"].dtype) == UTC and df["seq"].dtype == "int64"
    assert list(mine.ts) == [pd.Timestamp(e.ts) for e in first.events]
    for column, dtype in {"tool_is_error": "boolean", "context_history_tokens": "Int64",
                          "model_input_tokens": "Int64", "tool_duration_ms": "float64",
                          "context_used": "float64", "policy_action": STR}.items():
        assert df[column].dtype == dtype, column
    assert [json.loads(d) for d in mine.data] == [e.data for e in first.events]

    def nth(event_type: str, n: int = 0) -> tuple[pd.Series, dict]:
        index = [i for i, e in enumerate(first.events) if e.type == event_type][n]
        return mine.iloc[index], first.events[index].data

    started, _ = nth("run.started")
    assert (started.run_prompt, started.run_agent, started.model_name) == (
        "Add 1 and 2", "calc", "scripted:scripted")
    assert json.loads(started.task_inputs) == {"x": 1}
    request, data = nth("model.request")
    assert request.context_system_tokens == data["context"]["partitions"]["system"]
    assert request.context_history_tokens == data["context"]["partitions"]["history"]
    assert request.context_total_tokens == data["context"]["total_tokens"]
    assert request.model_turn == 1 and json.loads(request.model_tools) == ["add", "wipe"]
    response, data = nth("model.response")
    assert response.model_input_tokens == data["usage"]["input_tokens"]
    assert (response.model_stop_reason, response.model_turn) == ("tool_use", 1)
    call, _ = nth("tool.call")
    assert (call.tool_call_id, call.tool_name, json.loads(call.tool_args)) == ("c1", "add",
                                                                               {"a": 1, "b": 2})
    decision, _ = nth("governance.decision")
    assert (decision.tool_call_id, decision.tool_name, decision.policy_action,
            decision.policy_check) == ("c1", "add", "allow", "default")
    # The denied call's result comes with its decision, before the allowed call runs.
    result, _ = nth("tool.result", 1)
    assert (result.tool_content, result.tool_is_error) == ("3", False)
    denied, _ = nth("tool.result")
    assert (denied.tool_call_id, denied.tool_is_error, denied.tool_error_type) == ("c2", True,
                                                                                  "Denied")
    finished, _ = nth("run.finished")
    assert (finished.run_status, finished.run_output, finished.run_turns) == (
        "completed", "The sum is 3.", 2)
    assert finished.run_input_tokens == first.usage.input_tokens


def test_messages_df_one_row_per_part(stored) -> None:
    path, session, first, second = stored
    df = messages_df(path)
    assert list(df.columns) == ["session_id", "run_id", "parent_run_id", "message_id", "order",
                                "task_id", "epoch", "variant", "part", "role", "kind", "text",
                                "tool_name", "tool_call_id", "tool_args", "tool_is_error",
                                "output", "media_type", "media_ref", "media_size"]
    assert df["order"].dtype == "int64" and df["tool_is_error"].dtype == "boolean"
    rows = [tuple(None if pd.isna(v) else v for v in r) for r in
            df[["order", "part", "role", "kind", "text", "tool_name", "tool_call_id",
                "tool_is_error"]].itertuples(index=False)]
    assert rows == [
        (0, 0, "user", "text", "Add 1 and 2", None, None, None),
        (1, 0, "assistant", "tool_call", None, "add", "c1", None),
        (1, 1, "assistant", "tool_call", None, "wipe", "c2", None),
        (2, 0, "tool", "tool_result", "3", "add", "c1", False),
        (2, 1, "tool", "tool_result", "Denied by the governance policy: "
         + denial_reason(first), "wipe", "c2", True),
        (3, 0, "assistant", "text", "The sum is 3.", None, None, None),
        (4, 0, "user", "text", "And now?", None, None, None),
        (5, 0, "assistant", "text", "Second answer.", None, None, None),
    ]
    assert list(df.run_id) == [first.run_id] * 6 + [second.run_id] * 2
    assert df.message_id.iloc[-1] == "s1:5"


def denial_reason(result) -> str:
    return next(e.data["reason"] for e in result.events
                if e.type == "governance.decision" and e.data["action"] == "deny")


def test_tool_calls_df_joins_result_and_decision(stored) -> None:
    path, session, first, _ = stored
    df = tool_calls_df(path)
    assert list(df.columns) == ["session_id", "run_id", "event_id", "parent_run_id", "order",
                                "task_id", "epoch", "variant", "ts", "result_ts", "model_turn", "tool_call_id", "tool_name",
                                "tool_args", "tool_content", "tool_is_error", "tool_error_type",
                                "tool_duration_ms", "tool_truncated_from", "policy_action",
                                "policy_reason", "policy_check", "policy_decisions"]
    ok, denied = df.iloc[0], df.iloc[1]
    call_seq = next(e.seq for e in first.events if e.type == "tool.call")
    assert (ok.event_id, ok.order, ok.model_turn, ok.tool_name, ok.tool_content) == (
        f"{first.run_id}:{call_seq}", 0, 1, "add", "3")
    assert (ok.tool_is_error, ok.policy_action, ok.policy_decisions) == (False, "allow", 1)
    assert ok.tool_duration_ms >= 0 and ok.result_ts >= ok.ts
    assert (denied.tool_name, denied.tool_is_error, denied.tool_error_type) == ("wipe", True,
                                                                                "Denied")
    assert (denied.policy_action, denied.policy_check, denied.tool_duration_ms) == (
        "deny", "deny_list", 0.0)
    assert json.loads(denied.tool_args) == {"path": "/"}
    assert str(df["ts"].dtype) == UTC and df["policy_decisions"].dtype == "Int64"


def test_signals_and_feedback_frames(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    session = Agent(Model.function(lambda r: "ok")).session(SessionConfig(id="sig", store=str(path)))
    session.run_sync("hello")
    decision = session.receive_sync(RuntimeSignal(source="cron", type="tick", summary="tock",
                                                  urgency="low", payload={"n": 1}))
    df = signals_df(path)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row.session_id, row.event_id, row.order, row.signal_action, row.signal_source) == (
        "sig", "sig:signal:0", 0, decision.action, "cron")
    assert (row.signal_type, row.signal_urgency, row.signal_summary) == ("tick", "low", "tock")
    assert json.loads(row.signal_payload) == {"n": 1} and row.signal_reason == decision.reason
    assert str(df["signal_observed_at"].dtype) == UTC and df["signal_seq"].dtype == "Int64"

    empty = feedback_df(InMemoryStore())
    assert empty.empty and list(empty.columns) == ["session_id", "run_id", "event_id",
                                                   "parent_run_id", "order", "task_id",
                                                   "epoch", "variant", "ts",
                                                   "feedback_kind", "feedback_score",
                                                   "feedback_comment"]
    assert empty["feedback_score"].dtype == "float64" and str(empty["ts"].dtype) == UTC


def test_feedback_df_reads_ratings_and_feedback_events(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    session = Agent(Model.function(lambda r: "ok")).session(SessionConfig(id="fb", store=str(path)))
    run_id = session.run_sync("hello").run_id
    session.feedback(run_id, 4, "good")
    ratings = feedback_df(path)
    ratings = ratings[ratings.feedback_kind == "rating"].reset_index(drop=True)
    assert len(ratings) == 1
    assert (ratings.run_id[0], ratings.feedback_score[0], ratings.feedback_comment[0]) == (
        run_id, 4.0, "good")
    assert ratings.event_id[0].startswith("fb:feedback:")
    # A feedback.recorded event (no kernel writes one yet) is read generically too.
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO events VALUES (?, 99, 'fb', NULL, 'feedback.recorded', "
                   "'2026-01-02T03:04:05.123456+00:00', ?)",
                   (run_id, json.dumps({"score": 2, "comment": "meh", "rater": "ana"})))
    df = feedback_df(path)
    event = df[df.event_id == f"{run_id}:99"].iloc[0]
    assert (event.feedback_score, event.feedback_comment, event.feedback_rater) == (2.0, "meh",
                                                                                    "ana")
    assert event.ts == pd.Timestamp("2026-01-02T03:04:05.123456Z")
    assert df["feedback_rater"].dtype == STR


def test_every_kind_of_source_gives_the_same_rows(stored) -> None:
    path, session, first, second = stored
    by_path = events_df(path)
    pd.testing.assert_frame_equal(events_df(session), by_path)
    pd.testing.assert_frame_equal(events_df([first, second]), by_path)
    pd.testing.assert_frame_equal(events_df([session, first, path]), by_path)  # no duplicates
    memory = InMemoryStore()
    _, m_first, m_second = run_two(memory)
    from_memory = events_df(memory)
    assert list(from_memory.type) == list(by_path.type)
    pd.testing.assert_frame_equal(messages_df(memory).drop(columns="run_id"),
                                  messages_df(path).drop(columns="run_id"))
    assert list(messages_df(memory).run_id) == [m_first.run_id] * 6 + [m_second.run_id] * 2
    assert list(messages_df(m_second).order) == [4, 5]
    strip = ["run_id", "started_at", "finished_at", "duration_ms"]
    pd.testing.assert_frame_equal(runs_df(memory).drop(columns=strip),
                                  runs_df(path).drop(columns=strip))
    pd.testing.assert_frame_equal(runs_df(first).drop(columns="event_count"),
                                  runs_df(path).iloc[:1].drop(columns="event_count"))


def test_read_a_store_written_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    code = textwrap.dedent(f"""
        from loom_nb import Agent, Model, SessionConfig
        agent = Agent(Model.function(lambda r: "answer " + r.messages[-1].text))
        for i in range(3):
            agent.session(SessionConfig(id=f"s{{i}}", store={str(path)!r})).run_sync(f"q{{i}}")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    runs = runs_df(path)
    assert list(runs.session_id) == ["s0", "s1", "s2"]
    assert list(runs.output) == ["answer q0", "answer q1", "answer q2"]
    assert list(events_df(str(path)).groupby("session_id").size()) == [4, 4, 4]


def test_another_process_reads_a_store_written_here(stored) -> None:
    path, session, first, _ = stored
    code = textwrap.dedent(f"""
        import json
        from loom_nb.export import events_df, tool_calls_df
        events = events_df({str(path)!r})
        calls = tool_calls_df({str(path)!r})
        print(json.dumps([list(events.event_id), list(calls.policy_action)]))
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60)
    event_ids, actions = json.loads(out.stdout)
    assert event_ids == list(events_df(path).event_id) and actions == ["allow", "deny"]


def seq_of(result, event_type: str) -> int:
    return next(e.seq for e in result.events if e.type == event_type)


def corrupt(path: Path, result) -> None:
    run_id = result.run_id
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET data = '{not json' WHERE run_id = ? AND seq = ?",
                   (run_id, seq_of(result, "model.response")))
        db.execute("UPDATE events SET data = ? WHERE run_id = ? AND seq = ?",
                   (json.dumps({"name": "add", "is_error": "no"}), run_id,
                    seq_of(result, "tool.result")))
        db.execute("UPDATE events SET ts = 'yesterday' WHERE run_id = ? AND seq = 0", (run_id,))
        db.execute("UPDATE runs SET usage = '[1' WHERE run_id = ?", (run_id,))
        db.execute("UPDATE messages SET data = 'oops' WHERE session_id = 's1' AND idx = 3")


def test_strict_raises_on_a_malformed_record(sqlite_stored) -> None:
    path, session, first, _ = sqlite_stored
    corrupt(path, first)
    with pytest.raises(ExportError, match=rf"events record {first.run_id}:0 \(run.started\): ts "
                                          r"'yesterday' is not an ISO 8601 timestamp.*strict=False"):
        events_df(path)
    with pytest.raises(ExportError, match="messages record s1:3: data is not valid JSON"):
        messages_df(path)


def test_strict_false_returns_the_frame_and_the_problems(sqlite_stored) -> None:
    path, session, first, second = sqlite_stored
    corrupt(path, first)
    df, errors = events_df(path, strict=False)
    assert len(df) == len(first.events) + len(second.events)
    assert all(isinstance(e, RecordError) for e in errors)
    problems = [str(e) for e in errors]
    rid, response, result = first.run_id, seq_of(first, "model.response"), seq_of(first, "tool.result")
    assert problems[0] == f"events record {rid}:0 (run.started): ts 'yesterday' is not an ISO 8601 timestamp"
    assert problems[1].startswith(f"events record {rid}:{response} (model.response): data is not "
                                  f"valid JSON")
    assert problems[2:] == [
        f"events record {rid}:{result} (tool.result): data lacks the key(s) call_id, content",
        f"events record {rid}:{result} (tool.result): tool_is_error should be true or false, got 'no'"]
    assert pd.isna(df.ts[0]) and pd.isna(df.data[response]) and df.type[response] == "model.response"
    assert df.tool_name[result] == "add" and pd.isna(df.tool_is_error[result])

    runs, run_errors = runs_df(path, strict=False)
    assert len(runs) == 2 and pd.isna(runs.input_tokens[0]) and runs.input_tokens[1] > 0
    assert str(run_errors[0]).startswith(f"runs record {rid}: usage is not valid JSON")
    messages, message_errors = messages_df(path, strict=False)
    assert list(messages.order.unique()) == [0, 1, 2, 4, 5]
    assert [e.record for e in message_errors] == ["s1:3"]


def test_parquet_round_trip(stored, tmp_path: Path) -> None:
    path, session, first, _ = stored
    frames = {"runs": runs_df(path), "events": events_df(path), "messages": messages_df(path),
              "tool_calls": tool_calls_df(path), "signals": signals_df(path),
              "feedback": feedback_df(path)}
    for name, frame in frames.items():
        to_parquet(frame, tmp_path / f"{name}.parquet")
        pd.testing.assert_frame_equal(read_parquet(tmp_path / f"{name}.parquet"), frame)
    to_parquet(frames, tmp_path / "all")
    back = read_parquet(tmp_path / "all")
    assert sorted(back) == sorted(frames)
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(back[name], frame)
    assert str(back["runs"]["started_at"].dtype) == UTC
    assert back["runs"]["quality_verdict"].isna().all()


def test_parquet_without_pyarrow_says_how_to_install(stored, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ExportError, match=r"pip install 'loom-nb\[parquet\]'"):
        to_parquet(runs_df(stored[0]), tmp_path / "x.parquet")


def test_a_malformed_postgres_record_is_reported_as_from_sqlite(postgres_dsn: str) -> None:
    import psycopg

    session, first, second = run_two(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE messages SET data = 'oops' WHERE session_id = 's1' AND idx = 3")
        db.execute("UPDATE events SET data = '{not json' WHERE run_id = %s AND seq = %s",
                   (first.run_id, seq_of(first, "model.response")))
    with pytest.raises(ExportError, match="messages record s1:3: data is not valid JSON"):
        messages_df(postgres_dsn)
    messages, errors = messages_df(postgres_dsn, strict=False)
    assert list(messages.order.unique()) == [0, 1, 2, 4, 5] and [e.record for e in errors] == ["s1:3"]
    events, errors = events_df(postgres_dsn, strict=False)
    assert len(events) == len(first.events) + len(second.events)
    assert str(errors[0]).startswith(f"events record {first.run_id}:{seq_of(first, 'model.response')} "
                                     f"(model.response): data is not valid JSON")


def test_bad_postgres_sources_get_clear_errors(postgres_dsn: str) -> None:
    with pytest.raises(ExportError, match="is a PostgreSQL database but not a loom_nb session store"):
        runs_df(postgres_dsn)  # an empty database: no store was ever opened on it
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(ExportError, match="cannot be read .*Check that the server is running"):
        runs_df(unreachable)


def test_bad_sources_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="There is no loom_nb store at"):
        events_df(tmp_path / "missing.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ExportError, match="not a loom_nb session store"):
        runs_df(other)
    with pytest.raises(ExportError, match="Cannot export an int"):
        runs_df(3)


def test_importing_export_does_not_import_pandas() -> None:
    code = "import sys, loom_nb.export; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_store_of_ones_own_exports_through_the_store_protocols() -> None:
    # Not a subclass of a built-in store: only the protocols' methods (issue 16).

    class OwnStore:
        def __init__(self) -> None:
            self._inner = InMemoryStore()

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    store = OwnStore()
    result = Agent(Model.scripted(["hello"])).session(SessionConfig(store=store)).run_sync("hi")
    assert list(runs_df(store)["run_id"]) == [result.run_id]
    assert "run.finished" in set(events_df(store)["type"])
