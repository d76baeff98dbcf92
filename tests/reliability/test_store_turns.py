"""SQLite session turns (issues 21 and 25): a turn's messages and events in one transaction, a
kill -9 between turns leaves whole turns, and reopening a long session reads what the next run
needs (the history and the open runs), not every run and signal record."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, Model, RuntimeSignal, SessionConfig, StoreError, tool
from loom_nb.events import RunEvent
from loom_nb.messages import Message
from loom_nb.store import InMemoryStore, RunRecord, SQLiteStore


@tool
def log(line: str) -> str:
    """Log a line."""
    return "logged"


def _session_of(path: Path, runs: int, sid: str = "long") -> None:
    turns: list[object] = []
    for i in range(runs):
        turns += [{"tool": "log", "args": {"line": f"run {i}"}}, f"Run {i} logged."]
    session = Agent(Model.scripted(turns), tools=[log]).session(
        SessionConfig(id=sid, store=SQLiteStore(path)))
    for i in range(runs):
        assert session.run_sync(f"task {i}").status == "completed"


class _Reads:
    """Counts the rows an SQLite connection hands back, and the statements it runs."""

    def __init__(self, store: SQLiteStore) -> None:
        self.rows = 0
        self.statements: list[str] = []
        store._db.row_factory = self._row
        store._db.set_trace_callback(self.statements.append)

    def _row(self, cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> tuple[Any, ...]:
        self.rows += 1
        return row


def _reopen(path: Path, sid: str = "long") -> tuple[_Reads, int]:
    store = SQLiteStore(path)
    reads = _Reads(store)
    session = Agent(Model.scripted([])).session(SessionConfig(id=sid, store=store))
    return reads, len(session.history)


def test_reopening_a_long_session_reads_the_history_and_the_open_runs_only(tmp_path: Path) -> None:
    short, long = tmp_path / "short.sqlite", tmp_path / "long.sqlite"
    _session_of(short, 10)
    _session_of(long, 200)
    short_reads, short_history = _reopen(short)
    long_reads, long_history = _reopen(long)
    assert (short_history, long_history) == (40, 800)
    # Beyond the history (one row per message), a constant: no row per finished run.
    assert long_reads.rows - long_history == short_reads.rows - short_history <= 8
    assert len(long_reads.statements) == len(short_reads.statements)
    run_reads = [s for s in long_reads.statements if "FROM runs" in s]
    assert run_reads and all("status IN" in s for s in run_reads)


def test_a_paused_run_is_still_found_when_a_long_session_reopens(tmp_path: Path) -> None:
    @tool(requires_approval=True)
    def deploy(target: str) -> str:
        """Deploy."""
        return "deployed"

    path = tmp_path / "s.sqlite"
    _session_of(path, 30, sid="s")
    agent = Agent(Model.scripted([{"tool": "deploy", "args": {"target": "prod"}}, "Deployed."]),
                  tools=[deploy])
    session = agent.session(SessionConfig(id="s", store=SQLiteStore(path)))
    assert session.run_sync("deploy").status == "needs_approval"
    reopened = agent.session(SessionConfig(id="s", store=SQLiteStore(path)))
    (waiting,) = reopened.waiting
    assert waiting.approve().resume_sync().output == "Deployed."


def test_the_signal_count_continues_the_sequence_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    session = Agent(Model.scripted(["ok"] * 4)).session(SessionConfig(id="s", store=path))
    for i in range(3):
        session.receive_sync(RuntimeSignal(source="cron", type="tick", summary=f"t{i}", urgency="low"))
    store = SQLiteStore(path)
    assert store.signal_count("s") == len(store.signals("s")) == 3
    reopened = Agent(Model.scripted(["ok"] * 4)).session(SessionConfig(id="s", store=store))
    reopened.receive_sync(RuntimeSignal(source="cron", type="tick", summary="t3", urgency="low"))
    assert [r.seq for r in store.signals("s")] == [0, 1, 2, 3]


def test_a_turns_messages_and_events_are_stored_together_or_not_at_all(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.open_session("s", {})
    event = RunEvent(type="run.started", run_id="r", session_id="s", seq=0)
    store.append_turn("s", "r", [Message.user("one")], [event])
    with pytest.raises(StoreError):  # the same (run_id, seq) again: the events' insert fails
        store.append_turn("s", "r", [Message.user("two")], [event])
    assert [m.message.text for m in store.stored_messages("s")] == ["one"]
    assert len(store.events(run_id="r")) == 1


_KILLED_MID_RUN = textwrap.dedent("""
    import asyncio, os, signal, sys, threading
    from loom_nb import Agent, Model, SessionConfig, tool
    from loom_nb.store import open_store

    batched = sys.argv[2] == "batched"

    @tool
    def step(n: int) -> str:
        \"\"\"A step; the third one kills the process (kill -9) while it runs.\"\"\"
        if n == 3:
            writer = open_store(sys.argv[1])._writer._thread is not None
            print(f"writer thread: {writer}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return f"step {n} done"

    going = threading.Event()

    async def waiting(request):
        going.set()
        await asyncio.sleep(60)
        return "never"

    if batched:  # a second run on the same file: turns go through the writer thread
        other = Agent(Model.function(waiting)).session(
            SessionConfig(id="other", store=sys.argv[1])).start("wait")
        assert going.wait(30)
    turns = [{"tool": "step", "args": {"n": n}} for n in (1, 2, 3)] + ["never"]
    session = Agent(Model.scripted(turns), tools=[step]).session(
        SessionConfig(id="k", store=sys.argv[1]))
    session.run_sync("three steps")
""")


@pytest.mark.parametrize("path_taken", ["inline", "batched"])
def test_a_kill_during_a_turn_leaves_every_committed_turn_whole(tmp_path: Path,
                                                                path_taken: str) -> None:
    path = tmp_path / "k.sqlite"
    child = subprocess.run([sys.executable, "-c", _KILLED_MID_RUN, str(path), path_taken],
                           capture_output=True, timeout=60, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert f"writer thread: {path_taken == 'batched'}" in child.stdout
    store = SQLiteStore(path)
    messages = [m.message for m in store.stored_messages("k")]
    # The prompt and two whole turns (call + result); nothing of the third, which was running.
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert ["step 1 done" in m.tool_results[0].content for m in messages if m.role == "tool"] \
        == [True, False]
    (record,) = store.runs("k")
    assert record.status == "running"  # what the killed process left
    events = store.events(run_id=record.run_id)
    types = [e.type for e in events]
    # Every committed turn's result event is stored with its messages; the third call's
    # request was stored before the tool could act, and nothing after it.
    assert types.count("tool.result") == 2 and types.count("tool.call") == 3
    assert types[-1] in ("tool.call", "governance.decision", "tool.started")
    assert [e.seq for e in events] == list(range(len(events)))
    reopened = Agent(Model.scripted(["fresh"])).session(SessionConfig(id="k", store=path))
    (run,) = reopened.runs
    assert run.status == "interrupted" and "'step'" in str(run.error)
    assert reopened.run_sync("go on").output == "fresh"
    assert len(reopened.history) == 7


def test_the_writer_thread_keeps_the_loop_free_while_sqlite_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    called, locked, release = threading.Event(), threading.Event(), threading.Event()

    async def waiting(request: object) -> str:  # keeps a second run going on the same store
        while not release.is_set():
            await asyncio.sleep(0.01)
        return "released"

    def answer(request: object) -> str:
        called.set()
        assert locked.wait(10)  # the test holds the store's lock from here on: a write "hangs"
        return "written late"

    other_run = Agent(Model.function(waiting)).session(
        SessionConfig(id="other", store=store)).start("wait")
    slow = Agent(Model.function(answer)).session(SessionConfig(id="slow", store=store))
    run = slow.start("write")
    assert called.wait(10)
    meanwhile: list[str] = []
    with store._lock:
        locked.set()
        # The slow run's turn now waits for the writer thread, which waits for the lock; the
        # loop goes on with other runs (in a helper thread, so a blocked loop fails, not hangs).
        helper = threading.Thread(target=lambda: meanwhile.append(
            Agent(Model.scripted(["meanwhile"])).session().run_sync("hi").output))
        helper.start()
        helper.join(10)
        assert meanwhile == ["meanwhile"] and not run.done()
    assert run.result(10).output == "written late"
    release.set()
    assert other_run.result(10).output == "released"
    helper.join(10)
    assert [m.message.text for m in store.stored_messages("slow")] == ["write", "written late"]


def test_turns_queued_together_are_one_transaction_and_fail_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.open_session("s", {})
    for run_id in ("r", "r2"):  # two runs going: turns take the writer thread
        store.save_run(RunRecord(run_id=run_id, session_id="s", agent="a", model="m", prompt="p"))
    begins: list[str] = []
    store._db.set_trace_callback(
        lambda s: begins.append(s) if s.startswith("BEGIN") else None)
    first = RunEvent(type="run.started", run_id="r", session_id="s", seq=0)
    # The writer can take the queue only once all three are in (holding its condition), and
    # then waits on the store's lock: the three are one batch however the threads are scheduled.
    with store._lock, store._writer._wake:
        futures = [store.submit_turn("s", "r", [Message.user("a")], [first]),
                   store.submit_turn("s", "r", [Message.user("b")], [first]),  # seq 0 again
                   store.submit_turn("s", "r", [Message.user("c")], [])]
    for future in (futures[0], futures[2]):
        assert future.result(10) is None
    with pytest.raises(StoreError, match="could not append a turn"):
        futures[1].result(10)
    assert len(begins) == 1
    assert [m.message.text for m in store.stored_messages("s")] == ["a", "c"]
    store.close()  # stops the writer after what was queued
    assert store._writer._thread is None


def test_one_run_at_a_time_writes_inline_without_the_writer_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    session = Agent(Model.scripted([{"tool": "log", "args": {"line": "x"}}, "ok"]),
                    tools=[log]).session(SessionConfig(id="s", store=store))
    assert session.run_sync("go").output == "ok"
    assert store._writer._thread is None  # the quickest path: no hand-off to a thread
    assert len(store.stored_messages("s")) == 4


class _PlainStore(InMemoryStore):
    """A store with the protocol's methods only (as a third-party store may be)."""

    append_turn = None  # type: ignore[assignment]


def test_a_store_without_turn_writes_still_has_the_call_stored_before_the_tool_acts() -> None:
    store = _PlainStore()
    seen: list[list[str]] = []

    @tool
    def act(what: str) -> str:
        """Act."""
        seen.append([e.type for e in store.events(session_id="plain")])
        return "acted"

    session = Agent(Model.scripted([{"tool": "act", "args": {"what": "x"}}, "done"]),
                    tools=[act]).session(SessionConfig(id="plain", store=store))
    assert session.run_sync("go").output == "done"
    assert seen and seen[0][-2:] == ["tool.call", "governance.decision"]
    assert [m.role for m in session.history] == ["user", "assistant", "tool", "assistant"]
    assert [m.message.role for m in store.stored_messages("plain")] == [
        "user", "assistant", "tool", "assistant"]


class _SlowWriter(SQLiteStore):
    """Every turn write takes 0.3 s on a thread of its own before SQLite sees it."""

    def submit_turn(self, *args: Any) -> Any:
        from concurrent.futures import Future

        delayed: Future[None] = Future()

        def write() -> None:
            import time
            time.sleep(0.3)
            try:
                inner = super(_SlowWriter, self).submit_turn(*args)
                if inner is not None:
                    inner.result(10)
                delayed.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the run
                delayed.set_exception(exc)

        threading.Thread(target=write, daemon=True).start()
        return delayed


def test_parallel_calls_of_a_turn_act_only_once_the_turns_write_is_committed(
        tmp_path: Path) -> None:
    """Calls that run at once all have their tool.call events stored before any of them acts
    (here with a store whose turn writes are slow), so a kill -9 while they act keeps them."""
    path = tmp_path / "s.sqlite"
    stored_when_acting: dict[int, bool] = {}

    @tool
    async def probe(n: int) -> str:
        """Look at the store."""
        with sqlite3.connect(path) as db:
            calls = db.execute("SELECT data FROM events WHERE type = 'tool.call'").fetchall()
        stored_when_acting[n] = any(f'"n": {n}' in data for (data,) in calls)
        return "seen"

    turn = [{"tool": "probe", "args": {"n": n}} for n in (1, 2, 3)]
    session = Agent(Model.scripted([turn, "done"]), tools=[probe]).session(
        SessionConfig(id="s", store=_SlowWriter(path)))
    assert session.run_sync("go").output == "done"
    assert stored_when_acting == {1: True, 2: True, 3: True}
