"""Tools that hang, freeze the loop, raise BaseException, recurse or outlive a cancel.

Each test bounds itself in time (a thread join, a result timeout): on the code before these
fixes, most of them hung instead of failing, so the bound is what turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from loom_nb import Agent, Limits, Model, ModelRequest, Runtime, SessionConfig, tool
from loom_nb.result import RunResult
from loom_nb.run import RunLoop
from loom_nb.store import SQLiteStore


def call_then_answer(*calls: dict[str, Any]) -> Model:
    """A model that makes ``calls`` in one turn, then answers with what the tools said."""
    def turn(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            return " | ".join(part.content for part in last.parts)
        return list(calls) if len(calls) > 1 else calls[0]
    return Model.function(turn)


def results(result: RunResult) -> list[dict[str, Any]]:
    return [e.data for e in result.events if e.type == "tool.result"]


def in_thread(fn: Callable[[], Any], seconds: float) -> Any:
    """``fn()`` on a thread, failing (not hanging) when it takes longer than ``seconds``."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: hung"
    return box[0]


# -- timeouts --------------------------------------------------------------------------------------


def test_a_tool_that_hangs_ends_as_a_timeout_error_and_the_session_goes_on() -> None:
    @tool(timeout=0.2)
    async def hangs_async() -> str:
        await asyncio.sleep(30)
        return "never"

    @tool(timeout=0.2)
    def hangs_sync() -> str:
        time.sleep(2)
        return "late"

    agent = Agent(call_then_answer({"tool": "hangs_async", "args": {}},
                                   {"tool": "hangs_sync", "args": {}}),
                  tools=[hangs_async, hangs_sync])
    session = agent.session()
    started = time.monotonic()
    result = in_thread(lambda: session.run_sync("go"), 10)
    assert time.monotonic() - started < 1.5
    assert result.status == "completed"
    first, second = results(result)
    assert first["error_type"] == second["error_type"] == "ToolTimeout"
    assert "was stopped" in first["content"]
    assert "may still complete" in second["content"]  # a thread cannot be stopped: say so
    assert in_thread(lambda: session.run_sync("again"), 10).status == "completed"


def test_the_runtime_default_bounds_every_tool_and_a_tool_timeout_overrides_it() -> None:
    @tool
    async def default_bound() -> str:
        await asyncio.sleep(5)
        return "never"

    @tool(timeout=2)
    async def own_bound() -> str:
        await asyncio.sleep(0.3)
        return "in time"

    agent = Agent(call_then_answer({"tool": "default_bound", "args": {}},
                                   {"tool": "own_bound", "args": {}}),
                  tools=[default_bound, own_bound],
                  runtime=Runtime.sdk(limits=Limits(tool_seconds=0.1)))
    result = in_thread(lambda: agent.run_sync("go"), 10)
    first, second = results(result)
    assert first["error_type"] == "ToolTimeout" and first["timeout"] == 0.1
    assert not second["is_error"] and second["content"] == "in time"
    assert Limits().tool_seconds == 600.0  # a default exists: no call waits forever


def test_max_seconds_bounds_a_run_while_a_tool_runs() -> None:
    ran: list[str] = []

    @tool
    def slow() -> str:
        time.sleep(3)
        return "late"

    @tool
    def after() -> str:
        ran.append("after")
        return "ran"

    agent = Agent(call_then_answer({"tool": "slow", "args": {}}, {"tool": "after", "args": {}}),
                  tools=[slow, after],
                  # One call after the other (parallel calls: tests/reliability/test_parallel_tools.py).
                  runtime=Runtime.sdk(limits=Limits(max_seconds=0.4, tool_seconds=None),
                                      parallel_tools=False))
    session = agent.session()
    started = time.monotonic()
    result = in_thread(lambda: session.run_sync("go"), 10)
    assert time.monotonic() - started < 2
    assert (result.status, result.limit) == ("limit", "max_seconds")
    slow_result, after_result = results(result)
    assert slow_result["limit"] == "max_seconds" and "max_seconds=0.4" in slow_result["content"]
    assert after_result["error_type"] == "ToolTimeout" and after_result["content"].startswith("Not run")
    assert ran == []
    # The turn is committed whole: the conversation can go on.
    assert [m.role for m in session.messages] == ["user", "assistant", "tool"]


def test_tool_seconds_is_kept_with_a_paused_run(tmp_path: Any) -> None:
    @tool(requires_approval=True)
    def send() -> str:
        return "sent"

    store = SQLiteStore(tmp_path / "s.db")
    agent = Agent(call_then_answer({"tool": "send", "args": {}}), tools=[send],
                  runtime=Runtime.sdk(limits=Limits(tool_seconds=7)))
    session = agent.session(SessionConfig(store=store))
    paused = session.run_sync("go")
    assert paused.status == "needs_approval"
    record = store.get_run(paused.run_id)
    assert RunLoop.restore(session, record).limits.tool_seconds == 7


# -- the event loop stays free ---------------------------------------------------------------------


def test_a_sync_tool_never_runs_on_the_loop_even_after_quick_calls() -> None:
    delay = [0.0]

    @tool
    def sometimes_slow() -> str:
        time.sleep(delay[0])
        return "ok"

    async def main() -> float:
        for _ in range(5):  # quick calls: they once moved the tool onto the loop
            assert not (await sometimes_slow.invoke({})).is_error
        delay[0] = 0.6
        gaps: list[float] = []

        async def heartbeat() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        await sometimes_slow.invoke({})
        await asyncio.sleep(0.05)  # the heartbeat wakes and records the gap the call made
        beat.cancel()
        return max(gaps)

    assert asyncio.run(main()) < 0.3  # the loop went on while the slow call ran


# -- BaseException from a tool ---------------------------------------------------------------------


def _raising(kind: type[BaseException], is_async: bool) -> Any:
    if is_async:
        async def raises() -> str:
            raise kind()
    else:
        def raises() -> str:
            raise kind()
    return tool(name=f"{kind.__name__}_{'async' if is_async else 'sync'}")(raises)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit, asyncio.CancelledError])
def test_a_tool_raising_a_base_exception_is_an_error_result_and_the_loop_lives(
        kind: type[BaseException], is_async: bool) -> None:
    bad = _raising(kind, is_async)
    agent = Agent(call_then_answer({"tool": bad.name, "args": {}}), tools=[bad])
    session = agent.session()
    result = in_thread(lambda: session.run_sync("go"), 10)  # run_sync: on the background loop
    assert result.status == "completed", result.error
    (outcome,) = results(result)
    assert outcome["is_error"] and outcome["error_type"] == kind.__name__
    assert in_thread(lambda: session.run_sync("again"), 10).status == "completed"


def test_the_background_loop_survives_a_task_that_raises_system_exit() -> None:
    from loom_nb import _bridge

    async def slow() -> str:
        await asyncio.sleep(0.5)
        return "still served"

    async def exits() -> None:
        raise SystemExit(3)

    box: list[Any] = []
    waiter = threading.Thread(target=lambda: box.append(_bridge.run_sync(slow())), daemon=True)
    waiter.start()
    time.sleep(0.1)
    with pytest.raises(SystemExit):
        _bridge.submit(exits()).result(timeout=5)
    waiter.join(5)
    assert box == ["still served"]  # the loop that ran both went on


# -- runs started from inside tools ----------------------------------------------------------------


def test_a_tool_running_its_own_session_gets_an_error_instead_of_a_deadlock() -> None:
    holder: dict[str, Any] = {}

    @tool
    def sync_reentry() -> str:
        return holder["session"].run_sync("inner").output

    @tool
    async def async_reentry() -> str:
        return (await holder["session"].run("inner")).output

    for reentering in (sync_reentry, async_reentry):
        agent = Agent(call_then_answer({"tool": reentering.name, "args": {}}), tools=[reentering])
        holder["session"] = session = agent.session()
        result = in_thread(lambda: session.run_sync("outer"), 10)
        (outcome,) = results(result)
        assert outcome["error_type"] == "ConfigError", outcome
        assert "would wait for its turn forever" in outcome["content"]
        assert in_thread(lambda: session.run_sync("again"), 10).status == "completed"


def test_a_tool_calling_its_own_agent_recursively_stops_at_a_bounded_depth(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from loom_nb import _workers
    from loom_nb.engine.tool_call import MAX_NESTED_RUNS

    # Fewer workers than nested runs: each level's tool holds a worker while its nested run's
    # tool needs another, which once waited forever at the pool's limit.
    monkeypatch.setattr(_workers, "MAX_WORKERS", 2)
    depths: list[int] = []
    holder: dict[str, Agent] = {}

    @tool
    def recurse() -> str:
        depths.append(len(depths))
        return holder["agent"].run_sync("deeper").output

    holder["agent"] = agent = Agent(call_then_answer({"tool": "recurse", "args": {}}),
                                    tools=[recurse])
    result = in_thread(lambda: agent.run_sync("start"), 30)
    assert result.status == "completed"
    assert len(depths) == MAX_NESTED_RUNS + 1  # the top run and each nested one called it once
    assert f"at most {MAX_NESTED_RUNS} are allowed" in result.output


# -- cancel while a tool runs ----------------------------------------------------------------------


@pytest.mark.parametrize(("sleep", "is_async", "expected"), [
    (0.3, False, "completed within the grace"),
    (5.0, False, "may still complete"),
    (5.0, True, "the call was stopped"),
], ids=["sync-finishes-in-grace", "sync-outlives-grace", "async"])
def test_a_cancelled_run_records_what_became_of_its_tool_call(
        sleep: float, is_async: bool, expected: str) -> None:
    started = threading.Event()

    if is_async:
        @tool(name="work")
        async def work_async() -> str:
            started.set()
            await asyncio.sleep(sleep)
            return "done"
        work = work_async
    else:
        @tool(name="work")
        def work_sync() -> str:
            started.set()
            time.sleep(sleep)
            return "done"
        work = work_sync

    session = Agent(call_then_answer({"tool": "work", "args": {}}), tools=[work]).session()
    run = session.start("go")
    assert started.wait(5)
    assert run.cancel()
    result = run.result(timeout=10)
    assert result.status == "cancelled"
    (outcome,) = results(result)
    assert outcome["cancelled"] and outcome["error_type"] == "ToolCancelled"
    assert expected in outcome["content"]
    stored = [e.data for e in session.events(result.run_id) if e.type == "tool.result"]
    assert stored == [outcome]  # recorded in the store too, not only in memory
