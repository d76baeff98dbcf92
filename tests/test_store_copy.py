"""loom_nb.store.copy: sessions move between SQLite, PostgreSQL and memory with every record, and
the export frames of the copy equal the original's exactly; a copy run again changes nothing, a
target that holds other records under the same ids is refused before anything is written, and a
session whose write fails midway is not left half there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loom_nb import (Agent, InMemoryStore, Model, RunContext, Runtime, RuntimeSignal, RuntimeTask,
                     SessionConfig, StoreError, tool)
from loom_nb.export import events_df, feedback_df, messages_df, runs_df, signals_df, tool_calls_df
from loom_nb.governance import GovernancePolicy
from loom_nb.messages import Message
from loom_nb.store import Checkpoint, CopyResult, PostgresStore, SQLiteStore, copy
from tests.test_export import add, wipe

FRAMES = {"runs": runs_df, "events": events_df, "messages": messages_df,
          "tool_calls": tool_calls_df, "signals": signals_df, "feedback": feedback_df}


def _fill(store: object) -> list[str]:
    """Sessions with every kind of record: tool calls (one denied), a task with metadata, a
    paused run, a signal, feedback, a checkpoint. Their ids."""
    turns = [[{"tool": "add", "args": {"a": 1, "b": 2}, "id": "c1"},
              {"tool": "wipe", "args": {"path": "/"}, "id": "c2"}], "The sum is 3.", "Later.",
             "ok", "signal seen"]
    agent = Agent(Model.scripted(turns), tools=[add, wipe], name="calc",
                  runtime=Runtime.sdk(governance=GovernancePolicy(deny=["wipe"])))
    session = agent.session(SessionConfig(id="s1", store=store, metadata={"team": "ml"}))
    first = session.run_sync(RuntimeTask("Add 1 and 2", inputs={"x": 1}, criteria=["says 3"]),
                             RunContext(metadata={"seed": 7}))
    session.run_sync("And now?")
    session.feedback(first.run_id, 4, "good")
    session.receive_sync(RuntimeSignal(source="cron", type="tick", summary="tock", payload={"n": 1}))
    session.wait_idle(10)
    session.store.save_checkpoint(Checkpoint(session_id="s1", through=2,
                                             history=[Message.user("summary so far")],
                                             memory=["likes sums"]))

    @tool(requires_approval=True)
    def deploy(target: str) -> str:
        """Deploy."""
        return "deployed"

    paused = Agent(Model.scripted([{"tool": "deploy", "args": {"target": "prod"}}]),
                   tools=[deploy]).session(SessionConfig(id="s2", store=store)).run_sync("Deploy")
    assert paused.status == "needs_approval"
    return ["s1", "s2"]


def _frames(source: object) -> dict[str, pd.DataFrame]:
    return {name: frame(source) for name, frame in FRAMES.items()}


def _assert_same_frames(a: object, b: object) -> None:
    left, right = _frames(a), _frames(b)
    for name in FRAMES:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)


def test_sqlite_to_postgres_and_back_keeps_every_record(tmp_path: Path, postgres_dsn: str) -> None:
    sqlite_path = str(tmp_path / "a.sqlite")
    ids = _fill(sqlite_path)
    assert copy(sqlite_path, postgres_dsn) == CopyResult(copied=ids)
    # The export frames read with SQL from PostgreSQL equal those read from the SQLite file.
    _assert_same_frames(sqlite_path, postgres_dsn)
    back = str(tmp_path / "back.sqlite")
    assert copy(postgres_dsn, back).copied == ids
    _assert_same_frames(sqlite_path, back)

    original, moved = SQLiteStore(sqlite_path), PostgresStore(postgres_dsn)
    for session_id in ids:
        a, b = original.open_session(session_id, {}), moved.open_session(session_id, {})
        assert (a.created_at, a.metadata, a.messages, a.memory, a.message_count) == (
            b.created_at, b.metadata, b.messages, b.memory, b.message_count)
        assert original.runs(session_id) == moved.runs(session_id)
    assert "summary so far" in [m.text for m in moved.open_session("s1", {}).messages]

    # The copied sessions go on in the new store: the paused run resumes there, once.
    session = Agent(Model.scripted(["Deployed."]), tools=[]).session(
        SessionConfig(id="s2", store=postgres_dsn))
    assert [r.status for r in session.runs] == ["needs_approval"]
    assert session.waiting and session.waiting[0].run_id == original.runs("s2")[0].run_id


def test_a_nul_in_a_prompt_is_kept_in_the_history_and_replaced_in_the_run_record(
        tmp_path: Path, postgres_dsn: str) -> None:
    path = str(tmp_path / "a.sqlite")
    Agent(Model.scripted(["fine"])).session(SessionConfig(id="nul", store=path)).run_sync("a\x00b")
    assert copy(path, postgres_dsn).copied == ["nul"]
    (record,) = PostgresStore(postgres_dsn).runs("nul")
    assert record.prompt == "a\ufffdb"  # PostgreSQL's text cannot hold NUL (postgres.py)
    assert PostgresStore(postgres_dsn).stored_messages("nul")[0].message.text == "a\x00b"
    assert copy(path, postgres_dsn) == CopyResult(unchanged=["nul"])  # still the same session
    pd.testing.assert_frame_equal(messages_df(path), messages_df(postgres_dsn))


def test_postgres_to_sqlite_and_memory(tmp_path: Path, postgres_dsn: str) -> None:
    ids = _fill(postgres_dsn)
    memory = InMemoryStore()
    assert copy(postgres_dsn, memory).copied == ids
    target = str(tmp_path / "from_pg.sqlite")
    assert copy(postgres_dsn, target).copied == ids
    _assert_same_frames(postgres_dsn, target)
    pd.testing.assert_frame_equal(runs_df(memory), runs_df(target))
    pd.testing.assert_frame_equal(messages_df(memory), messages_df(target))
    # memory back to a second database: the record survives two hops
    again = str(tmp_path / "via_memory.sqlite")
    assert copy(memory, again).copied == ids
    pd.testing.assert_frame_equal(events_df(again), events_df(target))


def test_copying_again_changes_nothing(tmp_path: Path, postgres_dsn: str) -> None:
    path = str(tmp_path / "a.sqlite")
    ids = _fill(path)
    copy(path, postgres_dsn, sessions=["s1"])
    assert copy(path, postgres_dsn) == CopyResult(copied=["s2"], unchanged=["s1"])
    assert copy(path, postgres_dsn) == CopyResult(unchanged=ids)
    assert len(runs_df(postgres_dsn)) == len(runs_df(path))


def test_a_target_with_other_records_is_refused_before_anything_is_written(
        tmp_path: Path, postgres_dsn: str) -> None:
    path = str(tmp_path / "a.sqlite")
    _fill(path)
    Agent(Model.scripted(["other"])).session(SessionConfig(id="s2", store=postgres_dsn)).run_sync("x")
    with pytest.raises(StoreError, match=r"already holds 1 of these sessions.*'s2'.*nothing was "
                                         r"copied.*existing='skip'"):
        copy(path, postgres_dsn)
    assert PostgresStore(postgres_dsn).sessions() == ["s2"]  # s1 was not written either
    assert copy(path, postgres_dsn, existing="skip") == CopyResult(copied=["s1"], left=["s2"])
    assert [r.output for r in PostgresStore(postgres_dsn).runs("s2")] == ["other"]  # left as it was


def test_colliding_run_ids_and_bad_arguments(tmp_path: Path, postgres_dsn: str) -> None:
    path = str(tmp_path / "a.sqlite")
    _fill(path)
    run = SQLiteStore(path).runs("s1")[0]
    store = PostgresStore(postgres_dsn)
    store.save_run(type(run)(**{**run.__dict__, "session_id": "elsewhere"}))
    with pytest.raises(StoreError, match=rf"Run {run.run_id!r} of session 's1' is already in .*"
                                         r"session 'elsewhere'; nothing was copied"):
        copy(path, postgres_dsn)
    assert store.sessions() == []
    with pytest.raises(StoreError, match="has no session 'nope'"):
        copy(path, postgres_dsn, sessions=["nope"])
    with pytest.raises(ValueError, match="takes 'error' or 'skip'"):
        copy(path, postgres_dsn, existing="overwrite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same store twice"):
        copy(path, path)


def test_a_write_that_fails_midway_leaves_no_half_session(tmp_path: Path, postgres_dsn: str) -> None:
    import psycopg

    path = str(tmp_path / "a.sqlite")
    _fill(path)
    PostgresStore(postgres_dsn)  # the tables
    with psycopg.connect(postgres_dsn, autocommit=True) as db:  # the server fails the events' insert
        db.execute("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'no events today'; END $$ LANGUAGE plpgsql")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
    with pytest.raises(StoreError, match="no events today"):
        copy(path, postgres_dsn)
    store = PostgresStore(postgres_dsn)
    assert store.sessions() == [] and store.runs() == [] and store.stored_messages("s1") == []
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("DROP TRIGGER refuse ON events")
    assert copy(path, postgres_dsn).copied == ["s1", "s2"]  # and the copy goes through afterwards
    _assert_same_frames(path, postgres_dsn)


_COPIER = """
import sys
from loom_nb.store import copy
copy(sys.argv[1], sys.argv[2])
"""


def test_a_copy_killed_midway_leaves_whole_sessions_and_copying_again_finishes(
        tmp_path: Path, postgres_dsn: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psycopg

    path = str(tmp_path / "a.sqlite")
    _fill(path)  # s1, then s2
    PostgresStore(postgres_dsn).close()  # the tables
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        # s2's events wait on the server, so the copier can be killed inside s2's transaction;
        # the server then notices the dead client within 100 ms and rolls the transaction back.
        db.execute("CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN "
                   "IF NEW.session_id = 's2' THEN PERFORM pg_sleep(0.5); END IF; RETURN NEW; END $$ "
                   "LANGUAGE plpgsql")
        db.execute("CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION slow()")
        db.execute(f"ALTER DATABASE {postgres_dsn.rsplit('/', 1)[1]} "
                   "SET client_connection_check_interval = 100")
    child = subprocess.Popen([sys.executable, "-c", _COPIER, path, postgres_dsn])
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            deadline = time.monotonic() + 60
            while not db.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                                 "AND datname = current_database()").fetchone():
                assert child.poll() is None and time.monotonic() < deadline, "no copy in s2"
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            while db.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                             "AND datname = current_database()").fetchone():
                assert time.monotonic() < deadline, "the server kept the dead copy's transaction"
                time.sleep(0.05)
            db.execute("DROP TRIGGER slow ON events")
    finally:
        if child.poll() is None:
            child.kill()
    store = PostgresStore(postgres_dsn)
    assert store.sessions() == ["s1"]  # s1 whole, s2 not at all
    assert store.runs("s2") == [] and store.stored_messages("s2") == [] and store.signals("s2") == []
    assert copy(path, postgres_dsn) == CopyResult(copied=["s2"], unchanged=["s1"])
    _assert_same_frames(path, postgres_dsn)
