"""RunContext in tools: left out of the schema, bound to the run (deps, session, run id, usage),
deps_type checked, deps kept across a pause for approval in the same process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from loom_nb import Agent, ConfigError, Model, RunContext, SessionConfig, tool


@dataclass
class Deps:
    user: str
    seen: list[str]


@tool
def whoami(ctx: RunContext[Deps], greeting: str = "hi") -> str:
    """Say who the user is.

    Args:
        greeting: how to greet.
    """
    ctx.deps.seen.append(ctx.run_id)
    return (f"{greeting} {ctx.deps.user} (turn {ctx.turn}, {ctx.usage.requests} requests, "
            f"call {ctx.tool_call_id}, session {ctx.session.id == ctx.session.id})")


def test_the_context_parameter_is_not_in_the_schema() -> None:
    assert whoami.context_param == "ctx"
    assert whoami.parameters == {"type": "object", "additionalProperties": False, "properties": {
        "greeting": {"type": "string", "default": "hi", "description": "how to greet."}}}

    @tool
    def optional(city: str, context: Annotated[RunContext | None, "the run"] = None) -> str:
        return city

    assert optional.context_param == "context" and list(optional.parameters["properties"]) == ["city"]
    def two(a: RunContext, b: RunContext) -> str:
        return ""

    with pytest.raises(ConfigError, match="has 2 RunContext parameters"):
        tool(two)


def test_a_tool_gets_the_bound_context_with_deps() -> None:
    deps = Deps("ada", [])
    agent = Agent(Model.scripted([{"tool": "whoami", "args": {"greeting": "hello"}}, "done"]),
                  tools=[whoami], deps_type=Deps)
    result = agent.run_sync("who am I?", deps=deps)
    assert result.status == "completed"
    assert result.tool_calls[0].content == (
        "hello ada (turn 1, 1 requests, call call_1, session True)")
    assert deps.seen == [result.run_id]


def test_deps_type_is_checked_when_the_run_starts() -> None:
    agent = Agent(Model.scripted(["x"]), tools=[whoami], deps_type=Deps)
    with pytest.raises(ConfigError, match="deps_type=Deps but the run got deps of type str"):
        agent.run_sync("go", deps="ada")
    with pytest.raises(ConfigError, match="got no deps"):
        agent.run_sync("go")


def test_deps_through_a_run_context_and_the_session() -> None:
    deps = Deps("bob", [])
    agent = Agent(Model.scripted([{"tool": "whoami", "args": {}}, "ok"]), tools=[whoami])
    session = agent.session(SessionConfig())
    result = session.run_sync("go", RunContext(inputs={"a": 1}, deps=deps))
    assert result.tool_calls[0].content.startswith("hi bob")
    assert deps.seen == [result.run_id]


def test_an_unbound_context_says_where_it_is_known() -> None:
    with pytest.raises(ConfigError, match="only known inside a run"):
        RunContext().run_id
    outcome = __import__("asyncio").run(whoami.invoke({}))
    assert outcome.is_error and "runs only inside a run" in outcome.content


def test_deps_survive_a_pause_for_approval() -> None:
    deps = Deps("cy", [])
    asks = tool(requires_approval=True)(whoami.function)
    agent = Agent(Model.scripted([{"tool": "whoami", "args": {}}, "done"]), tools=[asks])
    paused = agent.session(SessionConfig()).run_sync("go", deps=deps)
    assert paused.status == "needs_approval"
    resumed = paused.approve().resume_sync()
    assert resumed.status == "completed" and deps.seen == [paused.run_id]


def test_a_plain_run_context_still_works_as_before() -> None:
    seen: list[Any] = []

    def answer(request):  # type: ignore[no-untyped-def]
        seen.append(request.system)
        return "ok"

    Agent(Model.function(answer)).run_sync("go", RunContext(inputs={"city": "Oslo"}))
    assert "Oslo" in seen[0]


def test_deps_reach_streamed_and_background_runs() -> None:
    import asyncio

    deps = Deps("dee", [])
    agent = Agent(Model.scripted([{"tool": "whoami", "args": {}}, "one",
                                  {"tool": "whoami", "args": {}}, "two"]), tools=[whoami])
    session = agent.session(SessionConfig())

    async def both() -> list[str]:
        stream = session.stream("a", deps=deps)
        types = [event.type async for event in stream]
        assert "tool.result" in types
        started = session.start("b", deps=deps)
        result = await started.wait()
        return [stream.result.run_id, result.run_id]  # type: ignore[union-attr]

    assert asyncio.run(both()) == deps.seen
