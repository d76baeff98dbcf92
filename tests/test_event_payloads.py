"""The payload TypedDicts in loom_nb.events say what the kernel really writes, and tool_calls()
pairs each call with its result and decisions."""

from __future__ import annotations

import asyncio
from typing import Any, get_type_hints

from loom_nb import Agent, Model, RuntimeSignal, tool
from loom_nb.events import (PAYLOADS, GovernanceDecisionData, RunEvent, ToolResultData, payload,
                            tool_calls)
from loom_nb.export import REQUIRED
from loom_nb.models import ModelRequest
from loom_nb.runtime import (ContextProtocol, DelegationPolicy, GovernancePolicy, Harness,
                             QualityGate, Runtime)


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}" * (130 if key == "long" else 1)


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


def _keys(kind: str) -> tuple[frozenset[str], frozenset[str]]:
    declared = next(typed for name, typed in PAYLOADS.items() if name == kind)
    return getattr(declared, "__required_keys__"), getattr(declared, "__optional_keys__")


def _check(event: RunEvent) -> None:
    """The event's keys are the declared ones: all required keys, and no undeclared key."""
    required, optional = _keys(event.type)
    keys = set(event.data)
    assert required <= keys, (event.type, required - keys)
    assert keys <= required | optional, (event.type, keys - required - optional)


def _runs() -> list[RunEvent]:
    events: list[RunEvent] = []
    # tool calls, one denied, with a retrying quality gate
    gate = QualityGate.check(lambda out: (len(out) > 5, "Longer, please."))
    agent = Agent(Model.scripted([
        [{"tool": "lookup", "args": {"key": "a"}}, {"tool": "wipe", "args": {"path": "/"}}],
        "Short", "Long enough now."]), tools=[lookup, wipe],
        runtime=Runtime.sdk(harness=Harness.retry(2), quality=gate,
                            governance=GovernancePolicy(deny=["wipe"])))
    events += agent.run_sync("Look a up.").events
    # delegation
    sub = Agent(Model.scripted(["The answer is 42."]), name="researcher")
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "researcher", "task": "Find it."}},
                                 "It is 42."]),
                 runtime=Runtime.sdk(delegation=DelegationPolicy.subagents({"researcher": sub})))
    events += lead.run_sync("What is it?").events
    # a pause for approval, then the resume
    paused = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped."]),
                   tools=[wipe]).run_sync("Wipe /x.")
    events += paused.approve().resume_sync().events
    # compaction, with a result cut to the budget
    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=500, shrink_over=50,
                                                  summarizer=lambda messages, instructions: "s",
                                                  compact_to=0.6))

    def model_fn(request: ModelRequest) -> object:
        return ({"tool": "lookup", "args": {"key": "long"}}
                if request.messages[-1].role == "user" else "ok")

    session = Agent(Model.function(model_fn, context_window=3_000), tools=[lookup],
                    runtime=runtime).session()
    for i in range(6):
        events += session.run_sync(f"page {i}").events
    return events


def test_every_event_the_kernel_writes_has_the_keys_its_typeddict_declares() -> None:
    events = _runs()
    for event in events:
        _check(event)
    seen = {e.type for e in events}
    assert {"run.started", "run.finished", "run.resumed", "model.request", "model.response",
            "tool.call", "tool.result", "governance.decision", "quality.verdict",
            "harness.attempt", "delegation.started", "delegation.finished",
            "context.compacted"} <= seen


def test_live_deltas_signal_decisions_and_interruptions_match_their_typeddicts() -> None:
    agent = Agent(Model.scripted(["Hello there.", {"tool": "lookup", "args": {"key": "a"}},
                                  "Done."]), tools=[lookup])
    session = agent.session()
    live: list[RunEvent] = []
    session.subscribe(live.append)
    session.receive_sync(RuntimeSignal(source="app", type="note", summary="FYI", urgency="low"))

    async def stream_then_cancel() -> Any:
        async for _ in session.stream("Hi"):
            pass
        async with session.stream("Look a up.") as stream:
            async for event in stream:
                if event.type == "tool.call":
                    break
        return stream.result

    result = asyncio.run(stream_then_cancel())
    assert result.status == "cancelled"
    kinds = {e.type for e in live}
    assert {"signal.decision", "model.delta", "run.interrupted"} <= kinds
    for event in live:
        _check(event)


def test_the_keys_export_requires_are_required_by_the_typeddicts() -> None:
    for kind, keys in REQUIRED.items():
        assert set(keys) <= _keys(kind)[0], kind


def test_every_event_type_has_a_typeddict() -> None:
    from typing import get_args

    from loom_nb.events import EventType

    assert set(PAYLOADS) == set(get_args(EventType))
    assert get_type_hints(ToolResultData)["content"] is str


def test_tool_calls_pairs_calls_with_results_and_decisions_in_call_order() -> None:
    agent = Agent(Model.scripted([
        [{"tool": "lookup", "args": {"key": "a"}}, {"tool": "wipe", "args": {"path": "/"}}],
        {"tool": "nope", "args": {}}, "Done."]), tools=[lookup, wipe],
        runtime=Runtime.sdk(governance=GovernancePolicy(deny=["wipe"])))
    result = agent.run_sync("Go.")
    first, second, unknown = tool_calls(result.events)
    assert (first.name, first.args, first.content, first.is_error, first.turn) == (
        "lookup", {"key": "a"}, "value of a", False, 1)
    assert [payload(d, GovernanceDecisionData)["action"] for d in first.decisions] == ["allow"]
    assert (second.name, second.is_error, second.error_type, second.turn) == ("wipe", True, "Denied", 1)
    assert [d.data["action"] for d in second.decisions] == ["deny"]
    assert (unknown.name, unknown.is_error, unknown.decisions, unknown.turn) == ("nope", True, (), 2)
    assert first.call is not None and first.result is not None
    assert (first.call_seq, first.result_seq) == (first.call.seq, first.result.seq)
    # Governance decides every call of the turn first (the denied one's result comes with its
    # decision); the allowed calls run after that.
    assert first.call_seq < second.call_seq < second.result_seq < first.result_seq
    assert result.tool_calls == [first, second, unknown]


def test_a_call_still_waiting_has_no_result() -> None:
    paused = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped."]),
                   tools=[wipe]).run_sync("Wipe /x.")
    (waiting,) = tool_calls(paused.events)
    assert (waiting.name, waiting.content, waiting.result, waiting.result_seq) == ("wipe", None, None, None)
    assert [d.data["action"] for d in waiting.decisions] == ["ask"]
