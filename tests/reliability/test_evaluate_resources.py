"""Agent-wide resources (MCP connections) belong to the agent: closing one session, as evaluate()
does after each task, does not close them under the others."""

from __future__ import annotations

import asyncio
import sys

import pytest
from test_mcp import TOOLBOX  # tests/ is on sys.path: the reliability package's root
from test_mcp import process_gone as _process_gone

import loom_nb
from loom_nb import Agent, Capability, Model, ModelRequest


def _adder(request: ModelRequest) -> object:
    """Asks the server to add the two numbers of the goal, then answers with the sum."""
    last = request.messages[-1]
    if last.role == "tool":
        return f"sum={last.parts[0].content}"
    a, b = (int(x) for x in last.text.split()[-2:])
    return {"tool": "box__add", "args": {"a": a, "b": b}}


def test_evaluate_with_an_mcp_capability_completes_every_task() -> None:
    agent = Agent(Model.function(_adder), capabilities=[Capability.mcp("box", command=[sys.executable, TOOLBOX])])
    try:
        frame = loom_nb.evaluate(agent, [f"add {i} {i + 1}" for i in range(6)], concurrency=3,
                                 progress=False)
        assert list(frame["status"]) == ["completed"] * 6, list(frame["error"])
        assert list(frame["output"]) == [f"sum={2 * i + 1}" for i in range(6)]
    finally:
        agent.close()


def test_closing_a_session_leaves_the_agents_server_to_its_other_sessions() -> None:
    model = Model.scripted([{"tool": "box__pid", "args": {}}, "first", {"tool": "box__pid", "args": {}},
                            "second"])
    agent = Agent(model, capabilities=[Capability.mcp("box", command=[sys.executable, TOOLBOX])])
    try:
        one, two = agent.session(), agent.session()
        pid = int(one.run_sync("pid?").tool_calls[0].content)
        one.close()
        again = two.run_sync("pid again?")
        assert again.status == "completed" and int(again.tool_calls[0].content) == pid  # same process
    finally:
        agent.close()
    assert _process_gone(pid)  # the agent closes what it opened


@pytest.mark.anyio
async def test_session_aclose_from_async_code() -> None:
    model = Model.scripted([{"tool": "box__pid", "args": {}}, "done", "later"])
    agent = Agent(model, capabilities=[Capability.mcp("box", command=[sys.executable, TOOLBOX])])
    async with agent:
        session = agent.session()
        pid = int((await session.run("pid?")).tool_calls[0].content)
        await session.aclose()
        assert session.closed
        with pytest.raises(loom_nb.ConfigError, match="closed"):
            await session.run("refused")
        assert not _process_gone(pid, within=0.2)  # still the agent's
        assert (await agent.session().run("still works")).output == "later"
    assert await asyncio.to_thread(_process_gone, pid)
