"""Exactly-once resume: of two resumes of one paused run at once (two threads, two processes, a
double click), one goes on and its approved call runs once; the other raises
RunAlreadyResumedError, which says where to see the result, and stores nothing.

The races are real: threads on their own event loops (asyncio.run) released together by a
barrier, each with its own Session (and, in half the trials, its own SQLite connection), and
two worker processes released together by a multiprocessing barrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loom_nb import (Agent, ConfigError, InMemoryStore, Model, RunAlreadyResumedError, RunResult,
                     SessionConfig, StoreError, tool)
from loom_nb.store import SessionStore

from tests.backends import Backend

from ._claim_worker import serve

THREAD_TRIALS = 150
PROCESS_TRIALS = 30


def _agent(sent: list[str], turns: list[Any]) -> Agent:
    @tool(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return f"sent to {to}"

    return Agent(Model.scripted(turns), tools=[send_email])


def _pause(store: SessionStore | Path | str, session_id: str) -> RunResult:
    agent = _agent([], [{"tool": "send_email", "args": {"to": "ana@example.org"}}])
    paused = agent.session(SessionConfig(id=session_id, store=store)).run_sync("Email Ana")
    assert paused.status == "needs_approval"
    return paused


def _check_once(store: SessionStore, paused: RunResult, outcomes: list[Any],
                sent: list[str]) -> None:
    """One resume won and ran the call once; the other was refused; nothing is doubled."""
    results = [o for o in outcomes if isinstance(o, RunResult)]
    refused = [o for o in outcomes if isinstance(o, RunAlreadyResumedError)]
    assert len(results) == 1 and len(refused) == 1, outcomes
    assert results[0].status == "completed", results[0].error
    assert sent == ["ana@example.org"]
    assert f"session.result({paused.run_id!r})" in str(refused[0])
    roles = [m.message.role for m in store.stored_messages(paused.session_id)]
    assert roles == ["user", "assistant", "tool", "assistant"]  # no duplicated turn
    events = store.events(run_id=paused.run_id)
    assert [e.seq for e in events] == list(range(len(events)))
    assert Counter(e.type for e in events)["run.resumed"] == 1
    assert store.get_run(paused.run_id).status == "completed"  # type: ignore[union-attr]


def _race(resumers: list[Any]) -> list[Any]:
    """Run each ``resumer()`` in its own thread, released at once; their results or errors."""
    barrier = threading.Barrier(len(resumers))
    outcomes: list[Any] = [None] * len(resumers)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = resumers[i]()
        except Exception as exc:  # noqa: BLE001 - the check says what came out
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(resumers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def _resumer(agent: Agent, store: SessionStore | Path | str, session_id: str) -> Any:
    # Opened before the race, as two notebooks would have it open: each sees the run waiting.
    session = agent.session(SessionConfig(id=session_id, store=store))
    (waiting,) = session.waiting
    return lambda: asyncio.run(waiting.approve().resume())  # its own event loop: a real race


def test_two_threads_resuming_one_run_from_two_sessions_resume_it_once(backend: Backend) -> None:
    shared = backend.open()
    for trial in range(THREAD_TRIALS):
        # Even trials share one store object (two sessions of one process); odd ones each have
        # their own, as two processes do: the database itself then has to keep the claim atomic.
        own = trial % 2 == 1
        stores = [backend.open(), backend.open()] if own else [shared, shared]
        session_id = f"t{trial}"
        paused = _pause(shared, session_id)
        sent: list[str] = []
        outcomes = _race([_resumer(_agent(sent, ["Sent."]), s, session_id) for s in stores])
        _check_once(shared, paused, outcomes, sent)
        if own:
            for store in stores:
                store.close()


def test_two_threads_resuming_one_run_in_an_in_memory_store_resume_it_once() -> None:
    store = InMemoryStore()
    for trial in range(THREAD_TRIALS):
        session_id = f"m{trial}"
        paused = _pause(store, session_id)
        sent: list[str] = []
        outcomes = _race([_resumer(_agent(sent, ["Sent."]), store, session_id) for _ in range(2)])
        _check_once(store, paused, outcomes, sent)


def test_a_double_click_resumes_once(backend: Backend) -> None:
    store = backend.open()
    for trial in range(50):
        sent: list[str] = []
        agent = _agent(sent, [{"tool": "send_email", "args": {"to": "ana@example.org"}}, "Sent."])
        paused = agent.session(SessionConfig(id=f"d{trial}", store=store)).run_sync("Email Ana")
        paused.approve()
        # Two clicks at once on the same RunResult (both go through loom_nb's loop thread).
        _check_once(store, paused, _race([paused.resume_sync, paused.resume_sync]), sent)
        with pytest.raises(RunAlreadyResumedError, match="already resumed") as caught:
            paused.resume_sync()  # a third click, after the run has ended
        assert (caught.value.run_id, caught.value.status) == (paused.run_id, "completed")
        assert isinstance(caught.value, ConfigError)
        assert sent == ["ana@example.org"]


def test_two_processes_resuming_one_run_resume_it_once(backend: Backend, tmp_path: Path) -> None:
    path, log = backend.spec, tmp_path / "calls.log"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    pipes = [context.Pipe() for _ in range(2)]
    workers = [context.Process(target=serve, args=(child, barrier, str(log)), daemon=True)
               for _, child in pipes]
    for worker in workers:
        worker.start()
    store = backend.open()
    try:
        for trial in range(PROCESS_TRIALS):
            paused = _pause(store, f"p{trial}")
            for parent, _ in pipes:
                parent.send((str(path), paused.session_id))
            outcomes = sorted(parent.recv() for parent, _ in pipes)
            assert [o[0] for o in outcomes] == ["refused", "resumed"], outcomes
            assert outcomes[1][1] == "completed"
            assert "was already resumed" in outcomes[0][1]
            assert len(log.read_text().splitlines()) == trial + 1  # the call ran once, this trial
            roles = [m.message.role for m in store.stored_messages(paused.session_id)]
            assert roles == ["user", "assistant", "tool", "assistant"]
            assert store.get_run(paused.run_id).status == "completed"  # type: ignore[union-attr]
    finally:
        for parent, _ in pipes:
            parent.send(None)
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()


def test_a_session_with_a_stale_waiting_run_neither_blocks_nor_resumes_it(backend: Backend) -> None:
    path = backend.spec
    paused = _pause(path, "stale")
    sent: list[str] = []
    here = _agent(sent, ["Sent."]).session(SessionConfig(id="stale", store=path))
    there = _agent(sent, ["Next answer."]).session(
        SessionConfig(id="stale", store=backend.open()))
    assert there.waiting[0].run_id == paused.run_id
    stale = there.waiting[0].approve()
    assert here.waiting[0].approve().resume_sync().status == "completed"

    assert there.waiting == []  # re-read from the store: nothing waits any more
    with pytest.raises(RunAlreadyResumedError, match=r"now 'completed'; session.result"):
        stale.resume_sync()
    with pytest.raises(RunAlreadyResumedError):
        asyncio.run(there.resume(paused.run_id, {paused.pending[0].call_id: None}))
    assert there.run_sync("And now?").status == "completed"  # not blocked by the old pause
    assert sent == ["ana@example.org"]


@contextlib.contextmanager
def _lock_held_elsewhere(backend: Backend, run_id: str) -> Iterator[str]:
    """Another process holds the lock a claim needs (SQLite: the file's write lock; PostgreSQL:
    the run's row, in a transaction left open); what the StoreError then says."""
    if backend.kind == "sqlite":
        blocker = sqlite3.connect(backend.spec, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield "locked"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    import psycopg
    with psycopg.connect(backend.spec) as held:
        held.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
        yield r"held a lock for more than 0.05 s.*idle in transaction"
        held.rollback()


def test_a_store_failure_in_the_claim_raises_and_leaves_the_run_waiting(backend: Backend) -> None:
    paused = _pause(backend.spec, "locked")
    sent: list[str] = []
    if backend.kind == "sqlite":
        store = backend.open()
        store._db.execute("PRAGMA busy_timeout = 50")
    else:
        store = backend.open(lock_timeout=0.05)
    session = _agent(sent, ["Sent."]).session(SessionConfig(id="locked", store=store))
    with _lock_held_elsewhere(backend, paused.run_id) as says, pytest.raises(StoreError, match=says):
        session.waiting[0].approve().resume_sync()
    assert sent == []
    record = store.get_run(paused.run_id)
    assert record is not None and record.status == "needs_approval" and record.state
    # Nothing half-resumed: the last stored event is still the pause's end.
    assert [e.type for e in store.events(run_id=paused.run_id)][-1] == "run.finished"
    assert session.waiting[0].approve().resume_sync().status == "completed"
    assert sent == ["ana@example.org"]


def test_resuming_a_run_that_never_paused_is_a_plain_config_error() -> None:
    session = Agent(Model.scripted(["Hi."])).session()
    done = session.run_sync("Hello")
    with pytest.raises(ConfigError, match="not waiting for approval") as caught:
        asyncio.run(session.resume(done.run_id, {}))
    assert not isinstance(caught.value, RunAlreadyResumedError)
