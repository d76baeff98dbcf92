"""Dynamic instructions: functions of the run context (sync or async) evaluated once per run,
lists of parts, the capabilities' parts after them, and the context view showing each part."""

from __future__ import annotations

from typing import Any

import pytest

from loom_nb import Agent, Capability, ConfigError, Model, RunContext, SessionConfig, tool
from loom_nb.display.views import context_html, context_requests, context_text
from loom_nb.models import ModelRequest


def recording() -> tuple[Model, list[str]]:
    systems: list[str] = []

    def answer(request: ModelRequest) -> str:
        systems.append(request.system)
        return "ok"

    return Model.function(answer), systems


def test_a_function_is_evaluated_per_run_with_the_context() -> None:
    calls: list[str] = []

    def today(ctx: RunContext[dict[str, str]]) -> str:
        calls.append(ctx.run_id)
        return f"The user is {ctx.deps['user']}."

    model, systems = recording()
    agent = Agent(model, today)
    session = agent.session(SessionConfig())
    first = session.run_sync("a", deps={"user": "ada"})
    session.run_sync("b", deps={"user": "bob"})
    assert systems == ["The user is ada.", "The user is bob."]
    assert calls[0] == first.run_id and len(calls) == 2


def test_a_list_of_parts_sync_async_and_capabilities() -> None:
    async def mood() -> str:
        return "Be cheerful."

    @tool
    def noop() -> str:
        return ""

    model, systems = recording()
    caps = [Capability.tools(noop, name="helpers", instructions="Use the helpers sparingly.")]
    agent = Agent(model, ["You are terse.", mood, lambda ctx: f"Turn {ctx.turn}."],
                  capabilities=caps)
    result = agent.run_sync("hi")
    assert systems == ["You are terse.\n\nBe cheerful.\n\nTurn 0.\n\nUse the helpers sparingly."]
    (request,) = [e for e in result.events if e.type == "model.request"]
    labels = [p["label"] for p in request.data["system_parts"]]
    assert labels == ["instructions[0]", "instructions[1]: mood()", "instructions[2]: <lambda>()",
                      "capability helpers", "tool definitions"]
    # The parts add up to the partition (but rounding and the blank lines between them).
    total = sum(p["tokens"] for p in request.data["system_parts"])
    assert abs(total - request.data["context"]["partitions"]["system"]) <= len(labels)
    assert all(p["tokens"] > 0 for p in request.data["system_parts"])
    view = context_requests(result.events)
    text = context_text(view)
    assert "system parts:" in text and "instructions[1]: mood()" in text
    assert "<code>capability helpers</code>" in context_html(view)


def test_static_instructions_are_unchanged() -> None:
    model, systems = recording()
    result = Agent(model, "  Be brief.  ").run_sync("hi")
    assert systems == ["Be brief."]
    (request,) = [e for e in result.events if e.type == "model.request"]
    assert request.data["system_parts"] == [{"label": "instructions", "tokens": 3}]
    assert "system parts:" not in context_text(context_requests(result.events))


@pytest.mark.parametrize(("instructions", "message"), [
    (3, "item 0 is int"),
    (lambda a, b: "", "takes 2 arguments"),
])
def test_bad_instructions_fail_when_the_agent_is_made(instructions: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Agent(Model.scripted(["x"]), instructions)


def test_a_failing_or_non_str_function_fails_the_run_clearly() -> None:
    def broken(ctx: RunContext) -> str:
        raise KeyError("user")

    result = Agent(Model.scripted(["x"]), broken).run_sync("hi")
    assert result.status == "failed" and result.error_type == "ConfigError"
    assert result.error == "The instructions function broken() raised KeyError: 'user'"
    result = Agent(Model.scripted(["x"]), lambda: 42).run_sync("hi")
    assert result.error == "The instructions function <lambda>() returned int; it must return a str."
