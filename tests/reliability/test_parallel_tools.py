"""The calls of one model turn run concurrently (issue 19): sync tools on worker threads, async
tools on the loop, delegates and best-of candidates at once, bounded, in a deterministic order.

Concurrency is proven without timings: the tools meet at a barrier (or wait for each other's
event) that only calls running at the same time can pass; run one after another, they time out
instead. Every test bounds itself (a barrier timeout, a thread join) so a regression fails rather
than hangs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Limits, Model, ModelRequest, Runtime, tool
from loom_nb.runtime import DelegationPolicy, GovernancePolicy, Harness

from .test_tool_execution import call_then_answer, in_thread, results


def meeting(n: int) -> tuple[Any, threading.Barrier]:
    """A sync tool ``meet(name)`` that returns only once ``n`` calls are inside it at once."""
    barrier = threading.Barrier(n, timeout=5)

    @tool
    def meet(name: str) -> str:
        """Wait for the others."""
        barrier.wait()  # BrokenBarrierError (an error result) when the calls run one by one
        return f"met {name}"

    return meet, barrier


class Peak:
    """How many calls were inside a tool at once, at most."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: Any) -> None:
        with self.lock:
            self.now -= 1


def calls(*names: str) -> list[dict[str, Any]]:
    return [{"tool": "meet", "args": {"name": n}} for n in names]


def test_sync_tools_of_one_turn_run_at_once_and_history_keeps_the_models_order() -> None:
    meet, _ = meeting(3)
    result = Agent(call_then_answer(*calls("a", "b", "c")), tools=[meet]).run_sync("go")
    assert result.status == "completed"
    assert [(c.args["name"], c.content, c.is_error) for c in result.tool_calls] == [
        ("a", "met a", False), ("b", "met b", False), ("c", "met c", False)]
    assert result.output == "met a | met b | met c"  # the tool message is in the model's order


def test_async_tools_run_on_the_loop_at_once_and_results_come_as_they_finish() -> None:
    second_done = asyncio.Event()

    @tool
    async def first() -> str:
        """Finishes after second."""
        await asyncio.wait_for(second_done.wait(), 5)
        return "first"

    @tool
    async def second() -> str:
        """Finishes at once."""
        second_done.set()
        return "second"

    session = Agent(call_then_answer({"tool": "first", "args": {}}, {"tool": "second", "args": {}}),
                    tools=[first, second]).session()
    result = session.run_sync("go")
    assert result.status == "completed" and result.output == "first | second"
    kinds = [(e.type, e.data.get("name")) for e in result.events
             if e.type in ("tool.call", "governance.decision", "tool.result")]
    # Calls and decisions in the model's order first; then the results as they finished.
    assert kinds == [("tool.call", "first"), ("governance.decision", "first"),
                     ("tool.call", "second"), ("governance.decision", "second"),
                     ("tool.result", "second"), ("tool.result", "first")]
    by_id = {e.data["call_id"]: e.data["name"] for e in result.events if e.type == "tool.result"}
    assert by_id == {c.call_id: c.name for c in result.tool_calls}  # each tied to its call
    assert [p.name for p in session.messages[2].parts] == ["first", "second"]


def test_parallel_tools_is_a_bound_and_false_runs_one_after_another() -> None:
    peak = Peak()

    @tool
    def work(name: str) -> str:
        """Take a moment."""
        with peak:
            time.sleep(0.05)
        return name

    turn = [{"tool": "work", "args": {"name": str(i)}} for i in range(5)]
    for setting, most in ((2, 2), (False, 1)):
        peak.most = 0
        result = Agent(call_then_answer(*turn), tools=[work],
                       runtime=Runtime.sdk(parallel_tools=setting)).run_sync("go")
        assert result.status == "completed" and result.output == "0 | 1 | 2 | 3 | 4"
        assert peak.most == most, setting


@pytest.mark.parametrize("setting", [0, -1, 2.5, "yes", None])
def test_a_wrong_parallel_tools_setting_is_a_config_error(setting: Any) -> None:
    with pytest.raises(ConfigError, match="parallel_tools"):
        Runtime(parallel_tools=setting)


def test_a_tool_raising_system_exit_or_hanging_affects_only_its_own_result() -> None:
    meet, _ = meeting(2)

    @tool
    def leave() -> str:
        """Exit the process."""
        raise SystemExit(3)

    @tool(timeout=0.3)
    async def hang() -> str:
        """Never finishes."""
        await asyncio.Event().wait()
        return "never"

    model = call_then_answer(*calls("a", "b"), {"tool": "leave", "args": {}}, {"tool": "hang", "args": {}})
    result = in_thread(lambda: Agent(model, tools=[meet, leave, hang]).run_sync("go"), 10)
    assert result.status == "completed"
    outcome = {c.name + c.args.get("name", ""): (c.is_error, c.error_type) for c in result.tool_calls}
    assert outcome == {"meeta": (False, None), "meetb": (False, None),
                       "leave": (True, "SystemExit"), "hang": (True, "ToolTimeout")}


def test_max_seconds_bounds_every_call_in_flight_and_the_run_stops_at_it() -> None:
    @tool
    def slow() -> str:
        """Too slow."""
        time.sleep(3)
        return "late"

    @tool
    def quick() -> str:
        """At once."""
        return "quick"

    agent = Agent(call_then_answer({"tool": "slow", "args": {}}, {"tool": "quick", "args": {}}),
                  tools=[slow, quick], runtime=Runtime.sdk(limits=Limits(max_seconds=0.4, tool_seconds=None)))
    session = agent.session()
    result = in_thread(lambda: session.run_sync("go"), 10)
    assert (result.status, result.limit) == ("limit", "max_seconds")
    quick_result, slow_result = results(result)  # as they finished
    assert slow_result["limit"] == "max_seconds" and slow_result["error_type"] == "ToolTimeout"
    assert quick_result["content"] == "quick" and not quick_result["is_error"]
    assert [m.role for m in session.messages] == ["user", "assistant", "tool"]  # committed whole


def test_an_approval_pauses_the_whole_turn_while_the_allowed_calls_run_at_once() -> None:
    meet, _ = meeting(2)
    wiped: list[str] = []

    @tool(requires_approval=True)
    def wipe(path: str) -> str:
        """Delete path."""
        wiped.append(path)
        return f"wiped {path}"

    model = call_then_answer({"tool": "meet", "args": {"name": "a"}}, {"tool": "wipe", "args": {"path": "/x"}},
                             {"tool": "meet", "args": {"name": "b"}})
    session = Agent(model, tools=[meet, wipe]).session()
    paused = session.run_sync("go")
    assert paused.status == "needs_approval" and wiped == []
    assert [p.name for p in paused.pending] == ["wipe"]
    assert sorted(r["content"] for r in results(paused)) == ["met a", "met b"]  # they met: at once
    done = paused.approve().resume_sync()
    assert done.status == "completed" and wiped == ["/x"]
    assert done.output == "met a | wiped /x | met b"  # the model's order, across the pause


def test_cancelling_a_run_cancels_every_call_in_flight_and_records_each() -> None:
    inside = threading.Barrier(3, timeout=5)  # the two calls and the test

    @tool
    async def wait_async() -> str:
        """Wait long."""
        await asyncio.to_thread(inside.wait)
        await asyncio.sleep(30)
        return "done"

    @tool
    def wait_sync() -> str:
        """Wait long (finishes after the cancel grace)."""
        inside.wait()
        time.sleep(5)
        return "done"

    session = Agent(call_then_answer({"tool": "wait_async", "args": {}}, {"tool": "wait_sync", "args": {}}),
                    tools=[wait_async, wait_sync]).session()
    run = session.start("go")
    inside.wait()
    assert run.cancel()
    result = run.result(timeout=10)
    assert result.status == "cancelled"
    outcomes = {r["name"]: r for r in results(result)}
    assert set(outcomes) == {"wait_async", "wait_sync"}
    assert all(r["cancelled"] and r["error_type"] == "ToolCancelled" for r in outcomes.values())
    stored = {e.data["name"] for e in session.events(result.run_id) if e.type == "tool.result"}
    assert stored == {"wait_async", "wait_sync"}


def sub_agent(name: str, meet: Any) -> Agent:
    def turn(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            return f"{name}: {last.parts[0].content}"
        return {"tool": "meet", "args": {"name": name}}
    return Agent(Model.function(turn), f"Sub-agent {name}.", tools=[meet], name=name)


def delegating(meet: Any, max_parallel: int) -> Agent:
    subs = {n: sub_agent(n, meet) for n in ("one", "two")}
    model = call_then_answer(*[{"tool": "delegate", "args": {"agent": n, "task": "meet"}} for n in subs])
    return Agent(model, tools=[], runtime=Runtime.sdk(
        delegation=DelegationPolicy.subagents(subs, max_parallel=max_parallel)))


def test_delegate_calls_of_one_turn_run_at_once_within_max_parallel() -> None:
    meet, _ = meeting(2)
    result = in_thread(lambda: delegating(meet, max_parallel=2).run_sync("go"), 20)
    assert result.status == "completed" and result.output == "one: met one | two: met two"
    assert [e.data["status"] for e in result.events if e.type == "delegation.finished"] == [
        "completed", "completed"]
    # max_parallel=1: the sub-runs take turns, so the two meetings never meet.
    meet, _ = meeting(2)
    one_by_one = in_thread(lambda: delegating(meet, max_parallel=1).run_sync("go"), 30)
    assert "BrokenBarrierError" in one_by_one.output


def test_best_of_candidates_run_at_once_and_keep_their_numbers() -> None:
    meet, _ = meeting(3)

    def turn(request: ModelRequest) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            return last.parts[0].content
        return {"tool": "meet", "args": {"name": "x"}}

    agent = Agent(Model.function(turn), tools=[meet], runtime=Runtime.sdk(harness=Harness.best_of(3)))
    result = in_thread(lambda: agent.run_sync("go"), 20)
    assert result.status == "completed" and result.output == "met x"
    attempts = [e.data["attempt"] for e in result.events if e.type == "harness.attempt"]
    assert attempts == [1, 2, 3]
    meet, _ = meeting(3)
    sequential = Agent(Model.function(turn), tools=[meet],
                       runtime=Runtime.sdk(harness=Harness.best_of(3, parallel=False)))
    assert "BrokenBarrierError" in in_thread(lambda: sequential.run_sync("go"), 30).output


def test_governance_decides_every_call_first_in_the_models_order() -> None:
    seen: list[str] = []

    def veto(request: Any) -> None:
        seen.append(request.args["name"])

    meet, _ = meeting(2)
    result = Agent(call_then_answer(*calls("a", "b")), tools=[meet],
                   runtime=Runtime.sdk(governance=GovernancePolicy(vetoes=[veto]))).run_sync("go")
    assert seen == ["a", "b"] and result.status == "completed"
    decisions = [e.seq for e in result.events if e.type == "governance.decision"]
    assert max(decisions) < min(e.seq for e in result.events if e.type == "tool.result")


def test_cancelling_a_best_of_run_cancels_every_candidate() -> None:
    inside = threading.Barrier(3, timeout=5)  # two candidates and the test
    stopped: list[str] = []

    @tool
    async def work() -> str:
        """Work long."""
        try:  # the cancel may land before this coroutine resumes from the barrier
            await asyncio.to_thread(inside.wait)
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise
        return "done"

    def turn(request: ModelRequest) -> Any:
        return "never" if request.messages[-1].role == "tool" else {"tool": "work", "args": {}}

    session = Agent(Model.function(turn), tools=[work],
                    runtime=Runtime.sdk(harness=Harness.best_of(2))).session()
    run = session.start("go")
    inside.wait()
    assert run.cancel()
    result = run.result(timeout=10)
    assert result.status == "cancelled" and stopped == ["cancelled", "cancelled"]


def test_a_delegate_cancelled_while_waiting_for_a_slot_gives_it_back() -> None:
    entered = threading.Event()
    release = threading.Event()

    @tool
    def hold(name: str) -> str:
        """Hold the slot."""
        entered.set()
        release.wait(10)
        return name

    def sub_turn(request: ModelRequest) -> Any:
        last = request.messages[-1]
        return "held" if last.role == "tool" else {"tool": "hold", "args": {"name": "x"}}

    sub = Agent(Model.function(sub_turn), "Holds.", tools=[hold], name="holder")
    policy = DelegationPolicy.subagents({"holder": sub}, max_parallel=1)
    lead = Agent(call_then_answer(*[{"tool": "delegate", "args": {"agent": "holder", "task": "t"}}] * 2),
                 runtime=Runtime.sdk(delegation=policy))
    run = lead.session().start("go")
    assert entered.wait(5)  # one delegate holds the only slot, the other waits for it
    assert run.cancel()
    release.set()
    assert run.result(timeout=10).status == "cancelled"
    # Both slots' holders are gone: a new delegation gets the slot (it would hang otherwise).
    again = Agent(call_then_answer({"tool": "delegate", "args": {"agent": "holder", "task": "t"}}),
                  runtime=Runtime.sdk(delegation=policy))
    assert in_thread(lambda: again.run_sync("go"), 10).output == "held"


def test_the_calls_a_person_approves_run_at_once_at_the_resume() -> None:
    meet, _ = meeting(2)
    session = Agent(call_then_answer(*calls("a", "b")), tools=[meet],
                    runtime=Runtime.supervised()).session()
    paused = session.run_sync("go")
    assert [p.args["name"] for p in paused.pending] == ["a", "b"]
    done = in_thread(lambda: paused.approve().resume_sync(), 10)
    assert done.status == "completed" and done.output == "met a | met b"  # they met: at once
    resumed = done.events[[e.type for e in done.events].index("run.resumed"):]
    kinds = [e.type for e in resumed if e.type in ("governance.decision", "tool.started", "tool.result")]
    assert kinds == ["governance.decision", "governance.decision", "tool.started", "tool.started",
                     "tool.result", "tool.result"]


def test_an_approved_delegate_whose_sub_agent_asks_in_turn_keeps_the_run_waiting() -> None:
    from loom_nb.runtime import GovernanceDecision

    wiped: list[str] = []

    @tool(requires_approval=True)
    def wipe(path: str) -> str:
        """Delete path."""
        wiped.append(path)
        return f"wiped {path}"

    sub = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped /x."]),
                "You clean up.", tools=[wipe], name="cleaner")

    def ask_delegate(request: Any) -> Any:
        return GovernanceDecision.ask("delegation is checked") if request.name == "delegate" else None

    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "cleaner", "task": "wipe /x"}},
                                 "Done."]),
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"cleaner": sub}),
                                     governance=GovernancePolicy(vetoes=[ask_delegate])))
    first = lead.session().run_sync("Clean up.")
    assert [p.name for p in first.pending] == ["delegate"]
    second = first.approve().resume_sync()
    assert second.status == "needs_approval" and wiped == []
    assert [(p.name, p.via) for p in second.pending] == [("wipe", "call_1")]
    done = second.approve().resume_sync()
    assert done.status == "completed" and done.output == "Done." and wiped == ["/x"]
