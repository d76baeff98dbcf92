"""A run whose process dies (kill -9) is not left "running" forever, and its approval is not lost.

The kill is real: a child process pauses a run, approves it, and its approved tool blocks; the
test SIGKILLs it once the tool has started. Reopening the session marks that run interrupted
with the usage its stored events account for. Runs whose owner may be alive (a live process,
another host, no owner recorded) are never touched. Version 1 store files gain the owner column.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from loom_nb import Agent, Model, SessionConfig
from loom_nb._owner import RunOwner, _start_time, current_owner, liveness
from loom_nb.events import RunEvent
from loom_nb.messages import Usage
from loom_nb.store import RunRecord, SessionStore, SQLiteStore
from tests.backends import Backend

_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from loom_nb import Agent, Model, SessionConfig, tool

    marker = Path(sys.argv[2])

    @tool(requires_approval=True)
    def deploy(target: str) -> str:
        \"\"\"Deploy the service.\"\"\"
        marker.write_text(str(os.getpid()))
        time.sleep(120)
        return "deployed"

    agent = Agent(Model.scripted([{"tool": "deploy", "args": {"target": "prod"}}, "Deployed."]),
                  tools=[deploy])
    session = agent.session(SessionConfig(id="killed", store=sys.argv[1]))
    paused = session.run_sync("Deploy to prod")
    assert paused.status == "needs_approval", paused.status
    paused.approve().resume_sync()
""")


def test_a_run_killed_during_an_approved_call_reopens_interrupted(backend: Backend,
                                                                 tmp_path: Path) -> None:
    path, marker = backend.spec, tmp_path / "started"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, path, str(marker)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the approved tool never started"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    (record,) = backend.open().runs("killed")
    assert record.status == "running"  # what the dead process left
    assert record.owner is not None and record.owner.pid == child.pid

    agent = Agent(Model.scripted(["A fresh answer."]))
    session = agent.session(SessionConfig(id="killed", store=path))
    (run,) = session.runs
    assert run.status == "interrupted"
    assert run.usage.input_tokens > 0 and run.usage.output_tokens > 0 and run.turns == 1
    assert f"process {child.pid}" in run.error  # type: ignore[operator]
    assert "'deploy' (approved by a person) started" in run.error  # type: ignore[operator]
    assert "may or may not have completed" in str(run.error) and "Start a new run" in str(run.error)
    events = session.events(run.run_id)
    types = [e.type for e in events]
    approval = [e.data for e in events if e.type == "governance.decision"][-1]
    assert (approval["action"], approval["check"]) == ("allow", "approval")
    assert types.index("tool.started") > types.index("run.resumed")
    assert "tool.result" not in types[types.index("tool.started"):]
    assert types[-1] == "run.finished" and events[-1].data["status"] == "interrupted"
    assert [e.seq for e in events] == list(range(len(events)))
    assert session.result(run.run_id).status == "interrupted"
    assert session.waiting == []

    fresh = session.run_sync("What now?")
    assert (fresh.status, fresh.output) == ("completed", "A fresh answer.")
    reopened = Agent(Model.scripted([])).session(
        SessionConfig(id="killed", store=backend.open()))
    assert [r.status for r in reopened.runs] == ["interrupted", "completed"]
    assert [e.type for e in reopened.events(run.run_id)].count("run.finished") == 2  # pause + end


def _left_running(store: SessionStore, session_id: str, owner: RunOwner | None) -> RunRecord:
    """A run as a process would leave it mid-turn: a record "running" and one stored turn."""
    record = RunRecord(run_id=f"run_{session_id}", session_id=session_id, agent="a",
                       model="scripted:x", prompt="p", owner=owner)
    store.save_run(record)
    store.append_events([
        RunEvent(type="run.started", run_id=record.run_id, session_id=session_id, seq=0),
        RunEvent(type="model.response", run_id=record.run_id, session_id=session_id, seq=1,
                 data={"usage": Usage(input_tokens=30, output_tokens=7, requests=1).to_dict()}),
    ])
    return record


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_only_runs_whose_owner_is_certainly_dead_become_interrupted(
        backend: Backend, live_child: subprocess.Popen[bytes]) -> None:
    me = current_owner()
    child = replace(me, pid=live_child.pid, start=_start_time(live_child.pid))
    owners = {
        "mine": me,  # this process: alive
        "live": child,  # a live process with its start time
        "elsewhere": replace(me, host="another-host"),
        "unowned": None,  # written by a loom_nb that kept no owner: it may still run
        "dead": replace(me, pid=_dead_pid()),
        "reused": replace(child, start="proc:1"),  # the pid is alive, but it is another process
        "rebooted": (replace(me, boot="an-earlier-boot") if me.boot
                     else replace(me, pid=_dead_pid())),
    }
    assert liveness(child) == "alive"
    assert liveness(replace(child, start="proc:1")) == "dead"
    store = backend.open()
    for name, owner in owners.items():
        _left_running(store, name, owner)
    statuses = {}
    for name in owners:
        (run,) = Agent(Model.scripted([])).session(SessionConfig(id=name, store=store)).runs
        statuses[name] = run.status
        if run.status == "interrupted":
            assert (run.usage.input_tokens, run.usage.output_tokens, run.turns) == (30, 7, 1)
            assert "Start a new run" in (run.error or "") and run.finished_at is not None
    assert statuses == {"mine": "running", "live": "running", "elsewhere": "running",
                        "unowned": "running", "dead": "interrupted", "reused": "interrupted",
                        "rebooted": "interrupted"}


def test_sessions_opening_at_once_settle_a_dead_run_once(backend: Backend) -> None:
    import threading

    dead = replace(current_owner(), pid=_dead_pid())
    for trial in range(20):
        _left_running(backend.open(), f"s{trial}", dead)
        barrier = threading.Barrier(4)

        def open_it(session_id: str = f"s{trial}") -> None:
            barrier.wait()
            store = backend.open()  # four store objects: four connections, as four kernels
            Agent(Model.scripted([])).session(SessionConfig(id=session_id, store=store))
            store.close()

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        check = backend.open()
        events = check.events(run_id=f"run_s{trial}")
        assert [e.type for e in events] == ["run.started", "model.response", "run.finished"]
        record = check.get_run(f"run_s{trial}")
        assert record is not None and record.status == "interrupted"


_V1_SCHEMA = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, parent_run_id TEXT, agent TEXT, model TEXT,
    prompt TEXT, status TEXT NOT NULL, output TEXT, error TEXT, started_at TEXT NOT NULL,
    finished_at TEXT, usage TEXT NOT NULL, turns INTEGER NOT NULL, state TEXT);
CREATE INDEX runs_by_session ON runs (session_id, started_at);
CREATE TABLE messages (
    session_id TEXT NOT NULL, idx INTEGER NOT NULL, run_id TEXT NOT NULL, role TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (session_id, idx)) WITHOUT ROWID;
CREATE TABLE events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, session_id TEXT NOT NULL, parent_run_id TEXT,
    type TEXT NOT NULL, ts TEXT NOT NULL, data TEXT NOT NULL, UNIQUE (run_id, seq));
PRAGMA user_version = 1;
"""


# SQLite only: version 1 was never written to PostgreSQL (its schema starts at version 2); the
# newer-schema refusal on PostgreSQL is in test_postgres_store.py.
def test_a_version_1_store_file_gains_the_owner_column(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA)
    usage = json.dumps(Usage(input_tokens=5, output_tokens=2).to_dict())
    db.execute("INSERT INTO sessions VALUES ('old', '2024-01-01T00:00:00+00:00', '{}')")
    db.executemany("INSERT INTO runs VALUES (?, 'old', NULL, 'a', 'm', 'p', ?, 'out', NULL, "
                   "'2024-01-01T00:00:00+00:00', NULL, ?, 1, NULL)",
                   [("run_done", "completed", usage), ("run_left", "running", usage)])
    db.commit()
    db.close()

    session = Agent(Model.scripted(["New."])).session(SessionConfig(id="old", store=path))
    assert [(r.run_id, r.status, r.owner) for r in session.runs] == [
        ("run_done", "completed", None), ("run_left", "running", None)]  # no owner: left alone
    assert session.run_sync("again").status == "completed"
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone() == (3,)  # 3: the blobs table
    assert check.execute("SELECT COUNT(*) FROM blobs").fetchone() == (0,)
    assert "owner" in {row[1] for row in check.execute("PRAGMA table_info(runs)")}
    (owner,) = check.execute("SELECT owner FROM runs WHERE status = 'completed' AND run_id NOT IN "
                             "('run_done')").fetchone()
    assert json.loads(owner)["pid"] == os.getpid()
    SQLiteStore(path)  # opening a migrated file again changes nothing
    assert len([r for r in check.execute("PRAGMA table_info(runs)")]) == 15
