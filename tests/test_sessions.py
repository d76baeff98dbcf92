"""Sessions and stores: history across runs, restore in a new process, consistency on failure."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loom_nb import (Agent, InMemoryStore, Model, ModelRequest, SessionConfig, SQLiteStore,
                     StoreError, tool)
from loom_nb.store import open_store
from tests.backends import Backend


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_history_carries_across_runs() -> None:
    model = Model.scripted(["Hi Ana.", "Your name is Ana."])
    session = Agent(model).session()
    session.run_sync("My name is Ana.")
    session.run_sync("What is my name?")
    assert [m.text for m in model.requests[1].messages] == [
        "My name is Ana.", "Hi Ana.", "What is my name?"]
    assert [r.status for r in session.runs] == ["completed", "completed"]


def test_one_off_runs_have_no_history() -> None:
    model = Model.scripted(["a", "b"])
    agent = Agent(model)
    agent.run_sync("first")
    agent.run_sync("second")
    assert [m.text for m in model.requests[1].messages] == ["second"]


def test_same_id_same_store_restores() -> None:
    store = InMemoryStore()
    agent = Agent(Model.scripted(["noted", "blue"]))
    first = agent.session(SessionConfig(id="s1", store=store, metadata={"user": "ana"}))
    assert agent.session(SessionConfig(id="s1", store=store)) is first
    first.run_sync("My colour is blue.")
    other_agent = Agent(Model.scripted(["blue"]))
    again = other_agent.session(SessionConfig(id="s1", store=store, metadata={"topic": "colours"}))
    assert again is not first and again.restored
    assert [m.text for m in again.messages] == ["My colour is blue.", "noted"]
    assert again.metadata == {"user": "ana", "topic": "colours"}
    assert not agent.session(SessionConfig(id="s2", store=store)).restored


def test_session_restored_by_a_second_process(backend: Backend) -> None:
    path = backend.spec
    agent = Agent(Model.scripted([{"tool": "add", "args": {"a": 2, "b": 3}}, "It is 5."]),
                  tools=[add])
    session = agent.session(SessionConfig(id="math", store=path))
    result = session.run_sync("What is 2 + 3?")
    assert result.output == "It is 5."

    script = textwrap.dedent(f"""
        import json
        from loom_nb import Agent, Model, SessionConfig
        model = Model.scripted(["Still 5."])
        session = Agent(model).session(SessionConfig(id="math", store={path!r}))
        result = session.run_sync("And again?")
        print(json.dumps({{
            "restored": session.restored,
            "seen": [[m.role, m.text] for m in model.requests[0].messages],
            "runs": [r.status for r in session.runs],
            "output": result.output,
        }}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    child = json.loads(out.stdout)
    assert child["restored"] is True
    assert child["seen"] == [["user", "What is 2 + 3?"], ["assistant", ""], ["tool", ""],
                             ["assistant", "It is 5."], ["user", "And again?"]]
    assert child["runs"] == ["completed", "completed"] and child["output"] == "Still 5."
    # and this process sees what the child wrote
    assert [r.output for r in session.runs] == ["It is 5.", "Still 5."]
    assert len(session.events()) == len(result.events) + 4


def test_stored_events_and_messages_match_the_run(backend: Backend) -> None:
    store = backend.open()
    session = Agent(Model.scripted([{"tool": "add", "args": {"a": 1, "b": 1}}, "2"]),
                    tools=[add]).session(SessionConfig(store=store))
    result = session.run_sync("1+1?")
    stored = session.events(result.run_id)
    assert [(e.type, e.seq, e.data) for e in stored] == [(e.type, e.seq, e.data) for e in result.events]
    assert "model.delta" not in {e.type for e in stored}
    if backend.kind == "sqlite":
        assert backend.query("PRAGMA journal_mode")[0][0] == "wal"
    roles = [r[0] for r in backend.query("SELECT role FROM messages ORDER BY idx")]
    assert roles == ["user", "assistant", "tool", "assistant"]
    (record,) = session.runs
    assert (record.status, record.turns, record.usage) == ("completed", 2, result.usage)
    assert record.finished_at is not None and record.prompt == "1+1?"


# SQLite only: it counts the statements with sqlite3's trace callback, which psycopg has no
# equivalent of; PostgresStore's writes are the same appends (one INSERT each, see postgres.py).
def test_run_cost_does_not_grow_with_the_session(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "long.sqlite")
    agent = Agent(Model.scripted([{"tool": "add", "args": {"a": 1, "b": 2}}, "3"] * 40), tools=[add])
    session = agent.session(SessionConfig(store=store))
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    counts = []
    for _ in range(40):
        statements.clear()
        session.run_sync("1+2?")
        counts.append(len(statements))
    store._db.set_trace_callback(None)
    # the same statements for the 1st and the 40th run: appends only, nothing re-read or rewritten
    assert counts[0] == counts[-1] and len(set(counts)) == 1
    assert not any(s.lstrip().upper().startswith(("UPDATE", "DELETE")) for s in statements)
    # the only reads are the next message index: one SELECT could re-read the whole history
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads and all(s.lstrip().startswith("SELECT COALESCE(MAX(idx) + 1, 0)") for s in reads)


def test_store_errors_say_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "s.sqlite"
    with pytest.raises(StoreError, match=r"does not exist\. Create it first \(os\.makedirs"):
        Agent(Model.scripted([])).session(SessionConfig(store=missing))
    with pytest.raises(StoreError, match="is a folder"):
        open_store(tmp_path)
    not_db = tmp_path / "notes.txt"
    not_db.write_text("plain text, not a database " * 100)
    with pytest.raises(StoreError, match="cannot be used as a loom_nb session store"):
        SQLiteStore(not_db)
    with pytest.raises(StoreError, match="takes a file path"):
        open_store(42)  # type: ignore[arg-type]


def test_one_store_object_per_file(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    assert open_store(path) is open_store(str(path))
    assert isinstance(open_store(":memory:"), InMemoryStore)


def test_one_store_object_per_dsn(postgres_dsn: str) -> None:
    from loom_nb import PostgresStore

    store = open_store(postgres_dsn)
    assert isinstance(store, PostgresStore) and open_store(postgres_dsn) is store
    session = Agent(Model.scripted(["ok"])).session(SessionConfig(id="dsn", store=postgres_dsn))
    assert session.store is store and "t_" in repr(store) and "@127.0.0.1" in repr(store)
    store.close()  # a closed store is not handed out again
    assert open_store(postgres_dsn) is not store and not open_store(postgres_dsn).closed


def test_failed_run_leaves_history_consistent() -> None:
    calls = 0

    def flaky(request: ModelRequest) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"tool": "add", "args": {"a": 1, "b": 1}}
        if calls == 2:
            raise ConnectionError("provider went away")
        return "recovered"

    session = Agent(Model.function(flaky), tools=[add]).session()
    failed = session.run_sync("1+1")
    assert failed.status == "failed" and "provider went away" in (failed.error or "")
    assert [m.role for m in session.messages] == ["user", "assistant", "tool"]
    assert session.run_sync("try again").output == "recovered"
    assert [r.status for r in session.runs] == ["failed", "completed"]


def test_background_run_handle_wait_and_cancel() -> None:
    started = asyncio.Event()

    async def slow(request: ModelRequest) -> str:
        if request.messages[-1].text == "slow":
            started.set()
            await asyncio.sleep(30)
        return "quick answer"

    session = Agent(Model.function(slow)).session()
    run = session.start("quick")
    assert run.result(timeout=5).output == "quick answer" and run.status == "completed"

    slow_run = session.start("slow")
    assert slow_run.status == "running"
    import time
    deadline = time.monotonic() + 5
    while not started.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    slow_run.cancel()
    result = slow_run.result(timeout=5)
    assert (result.status, slow_run.status) == ("cancelled", "cancelled")
    assert session.runs[-1].status == "cancelled"
    interrupted = [e for e in result.events if e.type == "run.interrupted"]
    assert [e.data for e in interrupted] == [{"reason": "cancelled", "by": "CancelledError",
                                              "partial_text": False}]
    assert [m.role for m in session.messages] == ["user", "assistant", "user"]
    assert asyncio.run(session.start("quick").wait()).output == "quick answer"


def test_a_run_cancelled_before_its_first_step_ends_cancelled_and_stores_nothing() -> None:
    # The loop thread waits until start() has handed the run over, and cancel() is seen at once:
    # a quick run cannot finish before the cancel on the next line. Repeated, since it is a race.
    for _ in range(200):
        session = Agent(Model.scripted(["after"])).session()
        run = session.start("never runs")
        assert run.cancel() is True
        result = run.result(timeout=5)
        assert (result.status, result.error, run.status) == (
            "cancelled", "The run was cancelled before it started.", "cancelled")
        assert session.runs == [] and session.messages == ()
        assert session.run_sync("next").output == "after"


def test_runs_in_one_session_take_turns() -> None:
    order: list[str] = []

    async def model_fn(request: ModelRequest) -> str:
        prompt = request.messages[-1].text
        order.append(f"start {prompt}")
        await asyncio.sleep(0.02)
        order.append(f"end {prompt}")
        return f"answer {prompt}"

    session = Agent(Model.function(model_fn)).session()

    async def both() -> None:
        await asyncio.gather(session.run("a"), session.run("b"))

    asyncio.run(both())
    assert order == ["start a", "end a", "start b", "end b"]
    assert [m.text for m in session.messages] == ["a", "answer a", "b", "answer b"]


def test_closed_session_refuses_runs() -> None:
    from loom_nb import ConfigError

    session = Agent(Model.scripted(["x"])).session(SessionConfig(id="closing"))
    session.close()
    with pytest.raises(ConfigError, match="closed"):
        session.run_sync("x")


def test_runs_from_two_event_loops_take_turns_without_hanging() -> None:
    import threading

    holding, release = threading.Event(), threading.Event()

    async def model_fn(request: ModelRequest) -> str:
        if request.messages[-1].text == "background":
            holding.set()
            await asyncio.to_thread(release.wait, 30)
        return f"answer {request.messages[-1].text}"

    session = Agent(Model.function(model_fn)).session()
    background = session.start("background")  # on loom_nb's loop
    assert holding.wait(5)  # the background run holds the session's turn

    outputs: list[str] = []

    async def cell() -> None:  # on another loop, while the background run holds the turn
        asyncio.get_running_loop().call_later(0.05, release.set)
        outputs.append((await session.run("foreground")).output)

    # No timer is left on the cell's loop once `release` is set: if the end of the background run
    # did not wake it (a lock bound to one loop), the cell would wait forever.
    cell_thread = threading.Thread(target=asyncio.run, args=(cell(),), daemon=True)
    cell_thread.start()
    cell_thread.join(20)
    assert not cell_thread.is_alive(), "the foreground run never got its turn"
    assert outputs == ["answer foreground"]
    assert background.result(timeout=5).output == "answer background"
    assert [m.text for m in session.messages] == [
        "background", "answer background", "foreground", "answer foreground"]


def test_an_interrupt_inside_a_tool_is_recorded_and_propagates() -> None:
    @tool
    async def blocking() -> str:
        """Stands for a tool interrupted by Ctrl-C."""
        raise KeyboardInterrupt

    session = Agent(Model.scripted([{"tool": "blocking", "args": {}}]), tools=[blocking]).session()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(session.run("go"))
    (record,) = session.runs
    assert record.status == "cancelled"
    assert [e.type for e in session.events()][-2:] == ["run.interrupted", "run.finished"]
    assert [m.role for m in session.messages] == ["user"]
