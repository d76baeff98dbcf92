"""Model.anthropic: the real AsyncAnthropic client against a loopback server speaking its wire."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Message, Model, ModelError, SessionConfig, tool
from loom_nb import _bridge
from loom_nb.messages import TextPart, ThinkingPart, ToolCall, ToolResult
from loom_nb.models import ModelResponse, RetryNotice, TextDelta, ToolCallDelta
from loom_nb.errors import (
    ContextWindowExceededError,
    IncompleteStreamError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelUnavailableError,
)
from loom_nb.models.anthropic import AnthropicModel, to_anthropic_messages

from .conftest import FAST, WEATHER, collect, free_port, request
from .fake_servers import FakeServer, JSONReply, SSEReply, anthropic_error, anthropic_stream

pytestmark = pytest.mark.anyio


def model(server: FakeServer, **kwargs: Any) -> AnthropicModel:
    options = {"api_key": "test-key", "base_url": server.url, **FAST, **kwargs}
    built = Model.anthropic("claude-sonnet-5", **options)
    assert isinstance(built, AnthropicModel)
    return built


# -- streaming and the response ------------------------------------------------------------------


async def test_streams_deltas_then_one_response(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(
        text=["Let me ", "check."], tools=[("toolu_1", "get_weather", ['{"city"', ': "Paris"}'])],
        input_tokens=100, output_tokens=20, cache_read=30, cache_write=5)))
    items = await collect(model(server), request())
    assert items[:4] == [TextDelta("Let me "), TextDelta("check."),
                         ToolCallDelta("toolu_1", "get_weather", '{"city"'),
                         ToolCallDelta("toolu_1", "get_weather", ': "Paris"}')]
    response = items[-1]
    assert isinstance(response, ModelResponse) and len(items) == 5
    assert response.message.parts == (
        TextPart(text="Let me check."),
        ToolCall(id="toolu_1", name="get_weather", args={"city": "Paris"}))
    assert response.stop_reason == "tool_use"
    assert response.model_name == "claude-sonnet-5"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens) == (135, 20)  # input includes cache counts
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.requests) == (30, 5, 1)


@pytest.mark.parametrize(("wire", "loom"), [
    ("end_turn", "end_turn"), ("max_tokens", "max_tokens"), ("stop_sequence", "stop_sequence"),
    ("refusal", "refusal"), ("model_context_window_exceeded", "context_window_exceeded"),
])
async def test_stop_reasons(server: FakeServer, wire: str, loom: str) -> None:
    server.add(SSEReply(anthropic_stream(text=["x"], stop_reason=wire)))
    response = await model(server).request(request())
    assert response.stop_reason == loom


async def test_malformed_tool_json_becomes_invalid_args(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(tools=[("toolu_9", "get_weather", ['{"city": "Par'])])))
    response = await model(server).request(request())
    assert response.message.tool_calls == (
        ToolCall(id="toolu_9", name="get_weather", args={}, invalid_args='{"city": "Par'),)


async def test_tool_without_arguments_has_empty_args(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(tools=[("toolu_2", "now", [])])))
    response = await model(server).request(request())
    assert response.message.tool_calls == (ToolCall(id="toolu_2", name="now", args={}),)


# -- the request on the wire ---------------------------------------------------------------------


async def test_request_json_merges_tool_results_with_the_next_prompt(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["Sunny."])))
    history = (
        Message.user("Weather in Paris?"),
        Message(role="assistant", parts=(TextPart(text="Checking."),
                                         ToolCall(id="toolu_1", name="get_weather",
                                                  args={"city": "Paris"}))),
        Message(role="tool", parts=(ToolResult(call_id="toolu_1", name="get_weather",
                                               content="sunny"),)),
        Message.user("And in Rome?"),
    )
    m = model(server, cache=False, temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END"],
              thinking={"type": "enabled", "budget_tokens": 1024})
    await m.request(request(*history))
    sent = server.last
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert sent.headers["authorization"] == "Bearer test-key"
    assert "anthropic-version" in sent.headers
    body = sent.body
    assert body["model"] == "claude-sonnet-5" and body["stream"] is True
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 4096
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny",
             "is_error": False},
            {"type": "text", "text": "And in Rome?"}]},
    ]
    assert body["tools"] == [{"name": "get_weather", "description": "Weather of a city.",
                              "input_schema": WEATHER.parameters}]
    # sampling settings travel in the body (the 2.x SDK has no keyword arguments for them)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 40)
    assert body["stop_sequences"] == ["END"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_error_results_are_flagged_and_request_settings_override(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["ok"])))
    history = (
        Message.user("Go"),
        Message(role="assistant", parts=(ToolCall(id="t1", name="get_weather", args={}),)),
        Message(role="tool", parts=(ToolResult(call_id="t1", name="get_weather",
                                               content="boom", is_error=True),)),
    )
    await model(server, max_tokens=100, cache=False).request(request(*history, max_tokens=50))
    body = server.last.body
    assert body["max_tokens"] == 50
    assert body["messages"][-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}]}
    assert "temperature" not in body


# -- configuration -------------------------------------------------------------------------------


def test_unknown_setting_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="temprature.*max_tokens.*stop_sequences"):
        Model.anthropic("claude-sonnet-5", api_key="k", temprature=0.1)


def test_bad_setting_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_tokens must be a positive int"):
        Model.anthropic("claude-sonnet-5", api_key="k", max_tokens=0)
    with pytest.raises(ConfigError, match="thinking must be a dict"):
        Model.anthropic("claude-sonnet-5", api_key="k", thinking=True)


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        Model.anthropic("claude-sonnet-5")


async def test_key_and_base_url_from_the_environment(server: FakeServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    server.add(SSEReply(anthropic_stream(text=["hi"])))
    m = Model.anthropic("claude-sonnet-5", context_window=200_000)
    assert m.context_window == 200_000
    assert (await m.request(request())).message.text == "hi"
    assert server.last.headers["authorization"] == "Bearer env-key"


def test_missing_package_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic -> ImportError
    with pytest.raises(ConfigError, match=r'pip install "loom-nb\[anthropic\]"'):
        Model.anthropic("claude-sonnet-5", api_key="k")


async def test_from_string_and_loom_model(server: FakeServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model.from_string("anthropic:claude-sonnet-5", api_key="k", base_url=server.url)
    assert isinstance(m, AnthropicModel) and m.identifier == "anthropic:claude-sonnet-5"
    monkeypatch.setenv("LOOM_MODEL", "anthropic:claude-haiku-5-5")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    env_model = Model.from_env()
    assert isinstance(env_model, AnthropicModel) and env_model.name == "claude-haiku-5-5"
    server.add(SSEReply(anthropic_stream(text=["hello"])))
    result = await Agent("anthropic:claude-sonnet-5").run("Hi")
    assert result.status == "completed" and result.output == "hello"
    assert server.last.body["model"] == "claude-sonnet-5"


def test_import_loom_nb_does_not_import_the_sdks() -> None:
    code = ("import sys, loom_nb; from loom_nb import Model; "
            "assert 'anthropic' not in sys.modules and 'openai' not in sys.modules, "
            "[m for m in sys.modules if m.split('.')[0] in ('anthropic', 'openai')]")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- faults and retries --------------------------------------------------------------------------


async def test_429_waits_for_retry_after_then_succeeds(server: FakeServer) -> None:
    server.add(anthropic_error(429, "rate_limit_error", "slow down", {"retry-after": "0.4"}),
               SSEReply(anthropic_stream(text=["done"])))
    response = await model(server).request(request())
    assert response.message.text == "done"
    first, second = server.requests
    assert 0.4 <= second.at - first.at < 2.0


@pytest.mark.parametrize("reply", [
    anthropic_error(500, "api_error", "internal"),
    anthropic_error(529, "overloaded_error", "Overloaded"),
    anthropic_error(503, "api_error", "unavailable"),
], ids=["500", "529", "503"])
async def test_server_errors_are_retried(server: FakeServer, reply: JSONReply) -> None:
    server.add(reply, SSEReply(anthropic_stream(text=["ok"])))
    assert (await model(server).request(request())).message.text == "ok"
    assert len(server.requests) == 2


async def test_gives_up_after_max_retries(server: FakeServer) -> None:
    server.add(*[anthropic_error(529, "overloaded_error", "Overloaded")] * 5)
    with pytest.raises(ModelUnavailableError, match="gave up after 3 attempts"):
        await model(server, max_retries=2).request(request())
    assert len(server.requests) == 3


async def test_retry_after_longer_than_allowed_fails_at_once(server: FakeServer) -> None:
    server.add(anthropic_error(429, "rate_limit_error", "slow", {"retry-after": "120"}))
    started = time.monotonic()
    with pytest.raises(ModelRateLimitError, match="wait 120 s"):
        await model(server, max_retry_after=5).request(request())
    assert time.monotonic() - started < 2 and len(server.requests) == 1


async def test_401_names_the_key_variable_and_is_not_retried(server: FakeServer) -> None:
    server.add(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(ModelAuthenticationError, match="ANTHROPIC_API_KEY"):
        await model(server).request(request())
    assert len(server.requests) == 1


async def test_404_names_the_model(server: FakeServer) -> None:
    server.add(anthropic_error(404, "not_found_error", "model: claude-nope"))
    with pytest.raises(ModelNotFoundError, match="'claude-sonnet-5'.*models.list"):
        await model(server).request(request())


async def test_prompt_too_long_is_a_context_window_error(server: FakeServer) -> None:
    server.add(anthropic_error(400, "invalid_request_error",
                               "prompt is too long: 250000 tokens > 200000 maximum"))
    with pytest.raises(ContextWindowExceededError, match="context window"):
        await model(server).request(request())
    assert len(server.requests) == 1


async def test_connection_refused_names_the_base_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    m = Model.anthropic("claude-sonnet-5", api_key="k", base_url=url, max_retries=1, **FAST)
    with pytest.raises(ModelConnectionError, match=f"{url}.*gave up after 2 attempts"):
        await m.request(request())


async def test_a_compatible_server_is_not_called_by_the_vendors_name() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    local = Model.openai("llama3", api_key="k", base_url=url, max_retries=0, **FAST)
    with pytest.raises(ModelConnectionError,
                       match=f"^Could not connect to the OpenAI-compatible server at {url}"):
        await local.request(request())
    assert Model.openai("gpt-5.4", api_key="k").info.label == "OpenAI"  # type: ignore[attr-defined]
    assert Model.anthropic("claude-sonnet-5", api_key="k",  # type: ignore[attr-defined]
                           base_url=url).info.title == "The Anthropic-compatible server"


async def test_stream_cut_before_any_delta_is_retried(server: FakeServer) -> None:
    frames = anthropic_stream(text=["whole"])
    server.add(SSEReply(frames, cut_after=2), SSEReply(frames))  # cut after message_start, ping
    items = await collect(model(server), request())
    assert [i.text for i in items if isinstance(i, TextDelta)] == ["whole"]
    assert len(server.requests) == 2


async def test_error_event_in_the_stream_is_retried(server: FakeServer) -> None:
    overloaded = ('event: error\ndata: {"type": "error", "error": '
                  '{"type": "overloaded_error", "message": "Overloaded"}}\n\n')
    server.add(SSEReply(anthropic_stream(text=["x"])[:1] + [overloaded]),
               SSEReply(anthropic_stream(text=["ok"])))
    assert (await model(server).request(request())).message.text == "ok"
    assert len(server.requests) == 2


async def test_stream_cut_after_deltas_fails_cleanly(server: FakeServer) -> None:
    frames = anthropic_stream(text=["Half ", "an ", "answer"])
    server.add(SSEReply(frames, cut_after=5))  # after two text deltas
    seen: list[Any] = []
    with pytest.raises(IncompleteStreamError, match="broke off after it had started"):
        async for item in model(server).stream(request()):
            seen.append(item)
    assert seen == [TextDelta("Half "), TextDelta("an ")]
    assert len(server.requests) == 1


async def test_a_cut_stream_leaves_no_half_turn_in_the_session(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["Half ", "an ", "answer"]), cut_after=5))
    session = Agent(model(server)).session(SessionConfig())
    result = await session.run("Tell me")
    assert result.status == "failed"
    assert result.error_type == "IncompleteStreamError"
    assert "broke off" in (result.error or "")
    assert [m.role for m in session.messages] == ["user"]
    assert not any(e.type == "model.response" for e in result.events)
    # the session continues normally after the failed run
    server.add(SSEReply(anthropic_stream(text=["Full answer"])))
    again = await session.run("Tell me again")
    assert again.output == "Full answer"
    assert [m.role for m in session.messages] == ["user", "user", "assistant"]
    assert [m["role"] for m in server.last.body["messages"]] == ["user"]  # merged user turns


# -- cancellation and event loops ----------------------------------------------------------------


async def test_cancel_stops_a_streaming_request_promptly(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["a", "b", "c"]), hang_after=4))
    first = asyncio.Event()

    async def consume() -> None:
        async for item in model(server).stream(request()):
            if isinstance(item, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0


async def test_cancel_stops_a_retry_wait_promptly(server: FakeServer) -> None:
    server.add(anthropic_error(429, "rate_limit_error", "slow", {"retry-after": "30"}))
    task = asyncio.create_task(model(server).request(request()))
    while not server.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0


def test_one_model_works_from_several_event_loops(server: FakeServer) -> None:
    m = model(server)
    for text in ("one", "two", "three", "four"):
        server.add(SSEReply(anthropic_stream(text=[text])))
    clients: list[Any] = []

    async def ask() -> str:
        clients.append(m.client())
        assert m.client() is clients[-1]  # one client per loop
        return (await m.request(request())).message.text

    assert asyncio.run(ask()) == "one"
    assert asyncio.run(ask()) == "two"  # a new loop: the first loop's pool is not reused
    assert _bridge.run_sync(ask()) == "three"  # loom_nb's background loop thread
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(ask())))
    thread.start()
    thread.join(10)
    assert result == ["four"]
    assert len({id(c) for c in clients}) == 4


# -- end to end through the agent ----------------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """The weather of a city.

    Args:
        city: the city's name.
    """
    return f"sunny in {city}"


async def test_agent_tool_round_trip(server: FakeServer) -> None:
    server.add(
        SSEReply(anthropic_stream(text=["Checking."], tools=[
            ("toolu_1", "get_weather", ['{"city": ', '"Paris"}'])],
            input_tokens=50, output_tokens=10)),
        SSEReply(anthropic_stream(text=["It is ", "sunny."], input_tokens=80, output_tokens=4)),
    )
    agent = Agent(Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, cache=False),
                  "You report weather.", tools=[get_weather])
    result = await agent.run("Weather in Paris?")
    assert result.status == "completed", result.error
    assert result.output == "It is sunny."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (130, 14)
    types = [e.type for e in result.events]
    assert types.count("model.response") == 2
    call = next(e for e in result.events if e.type == "tool.call")
    assert call.data["args"] == {"city": "Paris"} and call.data["call_id"] == "toolu_1"
    tool_result = next(e for e in result.events if e.type == "tool.result")
    assert tool_result.data["content"] == "sunny in Paris" and not tool_result.data["is_error"]
    first_response = next(e for e in result.events if e.type == "model.response")
    assert first_response.data["usage"]["input_tokens"] == 50
    assert first_response.data["stop_reason"] == "tool_use"
    second = server.requests[1].body
    assert second["system"] == "You report weather."
    assert second["messages"][-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny in Paris",
         "is_error": False}]}


async def test_agent_stream_yields_deltas_as_they_arrive(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["Hel", "lo ", "there"])))
    agent = Agent(Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url))
    events = [event async for event in agent.stream("Hi")]
    deltas = [e.data["text"] for e in events if e.type == "model.delta"]
    assert deltas == ["Hel", "lo ", "there"]
    assert events[-1].type == "run.finished" and events[-1].data["status"] == "completed"


async def test_agent_invalid_tool_json_goes_back_to_the_model(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(tools=[("toolu_1", "get_weather", ['{"city": '])])),
               SSEReply(anthropic_stream(text=["Sorry."])))
    agent = Agent(Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url),
                  tools=[get_weather])
    result = await agent.run("Weather?")
    assert result.status == "completed" and result.output == "Sorry."
    sent = server.requests[1].body["messages"][-1]["content"][0]
    assert sent["type"] == "tool_result" and sent["is_error"] is True
    assert "not a JSON object" in sent["content"]


async def test_agent_run_fails_with_a_clear_message_on_401(server: FakeServer) -> None:
    server.add(anthropic_error(401, "authentication_error", "invalid key"))
    result = await Agent(model(server)).run("Hi")
    assert result.status == "failed"
    assert result.error_type == "ModelAuthenticationError"
    assert "ANTHROPIC_API_KEY" in (result.error or "")
    assert isinstance(ModelAuthenticationError("x"), ModelError)


async def test_cancelling_a_background_run_stops_the_stream(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["a", "b", "c"]), hang_after=4))
    session = Agent(model(server)).session(SessionConfig())
    run = session.start("Talk")  # on loom_nb's background loop: a client is made there
    while not server.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the first deltas are in; the stream now hangs
    started = time.monotonic()
    run.cancel()
    result = await run.wait()
    assert time.monotonic() - started < 2.0
    assert result.status == "cancelled"
    assert [m.role for m in session.messages] == ["user"]


def test_a_client_of_an_ended_loop_is_dropped_quietly(server: FakeServer) -> None:
    """Collecting a model whose client belonged to a finished loop must not disturb another."""
    import gc

    m = model(server)
    server.add(SSEReply(anthropic_stream(text=["one"])), SSEReply(anthropic_stream(text=["two"])))
    assert asyncio.run(m.request(request())).message.text == "one"
    errors: list[dict[str, Any]] = []

    async def in_another_loop() -> str:
        nonlocal m
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        text = (await m.request(request())).message.text
        del m
        gc.collect()
        await asyncio.sleep(0.05)  # let any finalizer-scheduled task run and fail
        return text

    assert asyncio.run(in_another_loop()) == "two"
    assert errors == []


async def test_a_retry_is_an_event_of_the_run(server: FakeServer) -> None:
    server.add(anthropic_error(529, "overloaded_error", "Overloaded"),
               SSEReply(anthropic_stream(text=["after the retry"])))
    result = await Agent(model(server)).run("Hi")
    assert result.output == "after the retry"
    (retry,) = [e for e in result.events if e.type == "model.retry"]
    assert retry.data["attempt"] == 1 and retry.data["delay"] >= 0
    assert "Overloaded" in retry.data["error"]
    assert [e.type for e in result.events].index("model.retry") < [
        e.type for e in result.events].index("model.response")


# -- thinking ------------------------------------------------------------------------------------


async def test_thinking_is_assembled_but_not_streamed_as_text(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(thinking=["Paris is ", "in France."],
                                         signature="sig-1", redacted="opaque==",
                                         text=["Sunny."])))
    items = await collect(model(server, thinking={"type": "enabled", "budget_tokens": 1024}),
                          request())
    assert items[:-1] == [TextDelta("Sunny.")]
    response = items[-1]
    assert response.message.parts == (
        ThinkingPart(text="Paris is in France.", signature="sig-1"),
        ThinkingPart(redacted=True, data="opaque=="),
        TextPart(text="Sunny."))
    assert response.message.text == "Sunny."  # thinking is not part of the answer
    assert Message.to_dict(response.message)["parts"][0] == {
        "text": "Paris is in France.", "signature": "sig-1", "redacted": False, "data": None,
        "kind": "thinking"}


async def test_thinking_goes_back_unchanged_before_the_tool_use_of_a_tool_loop(
        server: FakeServer) -> None:
    server.add(
        SSEReply(anthropic_stream(thinking=["I need ", "the weather tool."], signature="c2lnbmVk",
                                  redacted="ZW5jcnlwdGVk",
                                  tools=[("toolu_1", "get_weather", ['{"city": "Paris"}'])])),
        SSEReply(anthropic_stream(thinking=["It is sunny."], signature="c2lnMg==",
                                  text=["Sunny in Paris."])),
    )
    thinking = {"type": "enabled", "budget_tokens": 2048}
    agent = Agent(model(server, thinking=thinking, cache=False), tools=[get_weather])
    session = agent.session(SessionConfig())
    result = await session.run("Weather in Paris?")
    assert result.status == "completed", result.error
    assert result.output == "Sunny in Paris."
    first, second = (r.body for r in server.requests)
    assert first["thinking"] == second["thinking"] == thinking
    assert second["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I need the weather tool.",
             "signature": "c2lnbmVk"},
            {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "sunny in Paris", "is_error": False}]},
    ]
    # the final turn keeps its thinking in the session too, for the next run
    assert isinstance(session.messages[-1].parts[0], ThinkingPart)


def test_thinking_that_anthropic_cannot_check_is_left_out() -> None:
    unsigned = Message(role="assistant", parts=(
        ThinkingPart(text="from another provider"),
        ThinkingPart(redacted=True),
        ThinkingPart(text="", data='{"type": "reasoning"}'),
        TextPart(text="Answer."),
    ))
    assert to_anthropic_messages([Message.user("Q"), unsigned]) == [
        {"role": "user", "content": [{"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Answer."}]},
    ]


# -- timeouts ------------------------------------------------------------------------------------


async def test_a_server_slower_than_the_timeout_is_retried_then_fails(server: FakeServer) -> None:
    frames = anthropic_stream(text=["late"])
    server.add(SSEReply(frames, delay=5), SSEReply(frames, delay=5))
    started = time.monotonic()
    with pytest.raises(ModelConnectionError,
                       match=r"sent nothing for timeout=0.3 s.*raise timeout=.*"
                             r"gave up after 2 attempts"):
        await model(server, timeout=0.3, max_retries=1).request(request())
    assert time.monotonic() - started < 3.0  # two timeouts and a short backoff, no hang
    assert len(server.requests) == 2


async def test_a_slow_first_attempt_is_retried_and_the_retry_answers(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["late"]), delay=5),
               SSEReply(anthropic_stream(text=["on time"])))
    items = await collect(model(server, timeout=0.3), request())
    notices = [i for i in items if isinstance(i, RetryNotice)]
    assert len(notices) == 1 and "timeout=0.3" in notices[0].error
    assert items[-1].message.text == "on time"


async def test_a_stream_that_stalls_before_any_delta_is_retried(server: FakeServer) -> None:
    frames = anthropic_stream(text=["whole"])
    server.add(SSEReply(frames, hang_after=2), SSEReply(frames))  # message_start, ping, stall
    response = await model(server, timeout=0.3).request(request())
    assert response.message.text == "whole" and len(server.requests) == 2


async def test_a_stream_that_stalls_after_deltas_fails_naming_the_timeout(
        server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=["Half ", "an ", "answer"]), hang_after=5))
    seen: list[Any] = []
    started = time.monotonic()
    with pytest.raises(IncompleteStreamError, match=r"broke off.*timeout=0.3 s"):
        async for item in model(server, timeout=0.3).stream(request()):
            seen.append(item)
    assert time.monotonic() - started < 2.0
    assert seen == [TextDelta("Half "), TextDelta("an ")]
    assert len(server.requests) == 1  # text was shown: not replayed


async def test_a_run_past_the_timeout_fails_with_a_clear_error(server: FakeServer) -> None:
    server.add(*[SSEReply(anthropic_stream(text=["x"]), delay=5)] * 2)
    result = await Agent(model(server, timeout=0.2, max_retries=1)).run("Hi")
    assert result.status == "failed" and result.error_type == "ModelConnectionError"
    assert "timeout=0.2 s" in (result.error or "")
    assert [e.type for e in result.events].count("model.retry") == 1
