"""Races between a run's end and what other threads ask of it: cancel() and interrupting signals.

Each test repeats its race enough times to catch a 2 % failure, and stays within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator

from loom_nb import Agent, Model, ModelRequest, RuntimeSignal, tool
from loom_nb.events import RunEvent


@contextlib.contextmanager
def frequent_thread_switches(seconds: float = 1e-5) -> Iterator[None]:
    """Make the interpreter switch threads every few bytecodes, so that narrow windows between
    two threads are hit within a few hundred tries instead of a few hundred thousand."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


# -- cancel ----------------------------------------------------------------------------------------


def test_start_then_cancel_always_ends_cancelled_before_the_run_starts() -> None:
    outcomes = []
    with frequent_thread_switches(1e-4):
        for _ in range(300):
            session = Agent(Model.scripted(["never said"])).session()
            run = session.start("a quick run")  # a scripted run ends within one loop step
            accepted = run.cancel()
            result = run.result(timeout=5)
            outcomes.append((accepted, result.status, result.error, len(session.runs)))
    # The contract: an accepted cancel always wins, a refused one found the run ended.
    cancelled = (True, "cancelled", "The run was cancelled before it started.", 0)
    assert set(outcomes) <= {cancelled, (False, "completed", None, 1)}
    # And right after start() the run has not started: the cancel wins, bar a caller thread
    # that the OS stops for longer than the start delay on a loaded machine.
    assert outcomes.count(cancelled) >= 0.98 * len(outcomes), outcomes.count(cancelled)


def test_a_cancel_between_two_awaits_still_wins() -> None:
    # cancel() from inside the run (a subscriber on the loop's thread): task.cancel() has no await
    # left to land on, since a scripted run finishes without one. The run must end cancelled.
    for _ in range(200):
        session = Agent(Model.scripted(["an answer"])).session()
        handle: list = []

        def on_event(event: RunEvent) -> None:
            if event.type == "model.response" and handle:
                assert handle[0].cancel() is True

        session.subscribe(on_event)
        gate = threading.Event()

        async def hold() -> None:  # keep the loop busy until the handle exists
            gate.wait(5)

        from loom_nb import _bridge
        blocker = _bridge.submit(hold())
        handle.append(session.start("answer, then be cancelled"))
        gate.set()
        blocker.result(5)
        result = handle[0].result(timeout=5)
        assert (result.status, result.error_type) == ("cancelled", "CancelledError")
        assert result.output == "an answer"  # what the run had said is kept
        (record,) = session.runs
        assert record.status == "cancelled"
        interrupted = [e.data for e in result.events if e.type == "run.interrupted"]
        assert interrupted == [{"reason": "cancelled", "by": "cancel", "partial_text": False}]
        assert handle[0].cancel() is False  # it has ended: nothing changes any more
        assert handle[0].status == "cancelled"


def test_cancel_after_the_end_changes_nothing() -> None:
    session = Agent(Model.scripted(["done"])).session()
    run = session.start("quick")
    assert run.result(timeout=5).status == "completed"
    assert run.cancel() is False
    assert run.result().status == "completed" and session.runs[0].status == "completed"


# -- interrupting signals --------------------------------------------------------------------------


def _sig(summary: str, urgency: str = "normal") -> RuntimeSignal:
    return RuntimeSignal(source="app", type="event", summary=summary, urgency=urgency)  # type: ignore[arg-type]


def _echo(request: ModelRequest) -> object:
    last = request.messages[-1]
    if last.role == "user" and last.text.startswith("work"):
        return {"tool": "step", "args": {}}
    return f"seen: {last.text if last.role == 'user' else 'tool result'}"


def _one_race(spin: float) -> str:
    """A run in a tool call with a normal signal queued behind it; the tool returns and, from
    another thread and event loop, a high signal (an interrupt) arrives around the run's end."""
    import time
    entered, opened = threading.Event(), threading.Event()

    @tool
    def step() -> str:
        """One step of work."""
        entered.set()
        opened.wait(10)
        return "step done"

    session = Agent(Model.function(_echo), tools=[step]).session()
    run = session.start("work")
    assert entered.wait(10)
    assert session.receive_sync(_sig("normal")).action == "queue"
    loop = asyncio.new_event_loop()
    try:
        opened.set()
        until = time.perf_counter() + spin
        while time.perf_counter() < until:
            pass
        assert loop.run_until_complete(session.receive(_sig("urgent", "high"))).action == "interrupt"
    finally:
        loop.close()
    run.result(10)
    session.wait_idle(10)
    records = {s.signal["summary"]: s for s in session.signals}
    runs = session.runs
    normal = next(r for r in runs if r.run_id == records["normal"].run_id)
    normal_left_queue_first = normal.started_at < records["urgent"].ts
    taken_by = [r for r in runs if any(
        e.type == "run.interrupted" and e.data.get("signal", {}).get("summary") == "urgent"
        for e in session.events(r.run_id))]
    own = [r for r in runs if r.prompt.endswith("urgent")]
    if taken_by == [runs[0]]:
        return "ok"  # the run it interrupted took it at a safe point
    if taken_by == [normal]:
        return "ok" if normal_left_queue_first else "interrupted a run that was still queued"
    if len(own) != 1 or taken_by:
        return "lost" if not own else "handled twice"
    if normal_left_queue_first or own[0].started_at < normal.started_at:
        return "ok"
    return "ran after the queued normal one"


def test_an_interrupt_always_runs_before_an_already_queued_normal_signal() -> None:
    with frequent_thread_switches():
        outcomes = [_one_race(spin=(i % 50) * 40e-6) for i in range(250)]
    broken = [o for o in outcomes if o != "ok"]
    assert broken == [], f"{len(broken)} of {len(outcomes)}: {sorted(set(broken))}"
