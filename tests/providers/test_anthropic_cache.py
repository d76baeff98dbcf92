"""Prompt caching with Claude (issue 19): the breakpoints the real AsyncAnthropic client sends,
and the cache usage a server billing like the Messages API reports, through to cost and views."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Model, SessionConfig, tool
from loom_nb.cost import price
from loom_nb.display.views import budget_text, context_requests
from loom_nb.messages import Usage

from .anthropic_cache import PromptCache, cached_turns
from .conftest import FAST
from .fake_servers import FakeServer, SSEReply

pytestmark = pytest.mark.anyio

INSTRUCTIONS = "You look things up. " + "Follow the house style guide closely. " * 200  # ~1.9k tokens
MARK = {"type": "ephemeral"}


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def agent(server: FakeServer, **settings: Any) -> Agent:
    model = Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, **FAST, **settings)
    return Agent(model, INSTRUCTIONS, tools=[lookup])


def marked(body: dict[str, Any]) -> list[str]:
    """Where a request carries cache_control: 'tools', 'system', or 'message N'."""
    places = ["tools" for t in body.get("tools", []) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        places += ["system" for b in system if "cache_control" in b]
    for n, message in enumerate(body["messages"]):
        places += [f"message {n}" for b in message["content"] if "cache_control" in b]
    return places


async def test_breakpoints_on_tools_system_and_history_and_the_cache_is_read_next_turn(
        server: FakeServer) -> None:
    cache = PromptCache()
    server.add(*[cached_turns(cache)] * 4)
    session = agent(server).session(SessionConfig())
    first = await session.run("Look k up.")
    second = await session.run("Again.")
    assert first.status == second.status == "completed"
    bodies = [r.body for r in server.requests]
    assert bodies[0]["tools"][-1]["cache_control"] == MARK
    assert bodies[0]["system"][0]["cache_control"] == MARK
    assert bodies[0]["system"][0]["text"].startswith("You look things up.")
    # the newest message, and the user message the previous request ended with
    assert [marked(b) for b in bodies] == [
        ["tools", "system", "message 0"], ["tools", "system", "message 0", "message 2"],
        ["tools", "system", "message 2", "message 4"], ["tools", "system", "message 4", "message 6"]]
    assert bodies[1]["messages"][2]["content"][-1] == {
        "type": "tool_result", "tool_use_id": "toolu_1", "content": "value of k",
        "is_error": False, "cache_control": MARK}
    usages = [e.data["usage"] for r in (first, second) for e in r.events if e.type == "model.response"]
    assert usages[0]["cache_read_tokens"] == 0 and usages[0]["cache_write_tokens"] > 1500
    for usage in usages[1:]:  # every later turn reads the prefix the one before wrote
        assert usage["cache_read_tokens"] > 1500
        assert usage["input_tokens"] >= usage["cache_read_tokens"] + usage["cache_write_tokens"]
    total = first.usage + second.usage
    assert total.cache_read_tokens == sum(u["cache_read_tokens"] for u in usages)
    # priced as Anthropic prices cache reads and writes
    assert total.cost == pytest.approx(sum(price(Usage(**{k: v for k, v in u.items() if k != "cost"}),
                                                 "anthropic", "claude-sonnet-5") for u in usages))
    view = budget_text(context_requests([*first.events, *second.events]))
    assert "cache read" in view and f"{total.cache_read_tokens} read from the prompt cache" in view


async def test_caching_lowers_the_bill_of_a_session(server: FakeServer) -> None:
    costs = {}
    for setting in (True, False):
        cache = PromptCache()
        server.add(*[cached_turns(cache)] * 6)
        session = agent(server, cache=setting).session(SessionConfig())
        results = [await session.run(f"Look {n} up.") for n in range(3)]
        costs[setting] = sum(r.cost or 0 for r in results)
        if not setting:
            assert all(r.usage.cache_read_tokens == r.usage.cache_write_tokens == 0 for r in results)
    assert costs[True] < 0.6 * costs[False]


async def test_cache_false_sends_no_breakpoint_and_places_can_be_chosen(server: FakeServer) -> None:
    cache = PromptCache()
    server.add(*[cached_turns(cache)] * 4)
    await agent(server, cache=False).run("Look k up.")
    assert not any("cache_control" in json.dumps(r.body) for r in server.requests)
    await agent(server, cache=["system"]).run("Look k up.")
    assert [marked(r.body) for r in server.requests[2:]] == [["system"], ["system"]]


def test_a_wrong_cache_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cache"):
        Model.anthropic("claude-sonnet-5", api_key="k", cache="everything")


async def test_at_most_four_breakpoints_and_a_hit_past_many_parallel_results(
        server: FakeServer) -> None:
    cache = PromptCache()
    calls = [{"tool": "lookup", "args": {"key": str(i)}} for i in range(12)]

    def reply(body: Any) -> Any:
        from .fake_servers import SSEReply, anthropic_stream

        uncached, read, write = cache.usage(body)
        usage = {"input_tokens": uncached, "cache_read": read, "cache_write": write}
        if len(body["messages"]) >= 5:
            return SSEReply(anthropic_stream(text=["Done."], **usage))
        n = len(body["messages"])
        tools = [(f"toolu_{n}_{i}", "lookup", [json.dumps(c["args"])]) for i, c in enumerate(calls)]
        return SSEReply(anthropic_stream(tools=tools, **usage))

    server.add(*[reply] * 3)
    result = await agent(server).run("Look them all up.")
    assert result.status == "completed"
    assert all(len(marked(r.body)) <= 4 for r in server.requests)
    # 12 tool_use and 12 tool_result blocks per turn: past the 20-block look-back, yet read
    usages = [e.data["usage"] for e in result.events if e.type == "model.response"]
    assert usages[0]["cache_read_tokens"] == 0
    for before, after in zip(usages, usages[1:]):  # the whole previous prompt is read back
        assert after["cache_read_tokens"] >= before["input_tokens"]


async def test_openai_cached_tokens_are_reported_and_a_compatible_server_has_no_price(
        server: FakeServer) -> None:
    from .fake_servers import chat_stream

    server.add(SSEReply(chat_stream(text=["Hi."], prompt_tokens=3000, cached_tokens=2048)))
    model = Model.openai("gpt-5.4", api_key="sk-test", base_url=f"{server.url}/v1", **FAST)
    result = await Agent(model).run("Hi")
    assert (result.usage.input_tokens, result.usage.cache_read_tokens) == (3000, 2048)
    # an OpenAI-compatible server at an address genai-prices cannot place: unknown, not $0
    assert result.cost is None
    assert "$" not in budget_text(context_requests(result.events))
    # at OpenAI's own address the same usage is priced at the cached-input rate
    at_openai = price(result.usage, "openai", "gpt-5.4")
    uncached = price(Usage(input_tokens=3000, output_tokens=result.usage.output_tokens,
                           requests=1), "openai", "gpt-5.4")
    assert at_openai is not None and uncached is not None and at_openai < uncached
