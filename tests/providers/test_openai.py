"""Model.openai: the real AsyncOpenAI client against a loopback server (chat and responses)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Message, Model, SessionConfig, tool
from loom_nb.messages import TextPart, ThinkingPart, ToolCall, ToolResult
from loom_nb.models import ModelResponse, TextDelta, ToolCallDelta
from loom_nb.errors import (
    ContextWindowExceededError,
    IncompleteStreamError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelNotFoundError,
    ModelUnavailableError,
)
from loom_nb.models.openai import OpenAIModel

from .conftest import FAST, WEATHER, collect, request
from .fake_servers import (
    FakeServer,
    SSEReply,
    chat_stream,
    openai_error,
    responses_stream,
)

pytestmark = pytest.mark.anyio

HISTORY = (
    Message.user("Weather in Paris?"),
    Message(role="assistant", parts=(TextPart(text="Checking."),
                                     ToolCall(id="call_1", name="get_weather",
                                              args={"city": "Paris"}),
                                     ToolCall(id="call_2", name="get_weather",
                                              args={"city": "Lyon"}))),
    Message(role="tool", parts=(ToolResult(call_id="call_1", name="get_weather", content="sunny"),
                                ToolResult(call_id="call_2", name="get_weather", content="down",
                                           is_error=True))),
    Message.user("Thanks. And Rome?"),
)


def model(server: FakeServer, api: str = "chat", **kwargs: Any) -> OpenAIModel:
    built = Model.openai("gpt-5.4", api_key="sk-test", base_url=f"{server.url}/v1", api=api,
                         **{**FAST, **kwargs})  # type: ignore[arg-type]
    assert isinstance(built, OpenAIModel)
    return built


# -- chat completions ----------------------------------------------------------------------------


async def test_chat_streams_tool_calls_assembled_by_index(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(
        text=["Two ", "lookups."],
        tools=[("call_a", "get_weather", ['{"city":', ' "Paris"}']),
               ("call_b", "get_weather", ['{"city": "Lyon"}'])],
        prompt_tokens=40, completion_tokens=12, cached_tokens=16)))
    items = await collect(model(server), request())
    assert items[:5] == [TextDelta("Two "), TextDelta("lookups."),
                         ToolCallDelta("call_a", "get_weather", '{"city":'),
                         ToolCallDelta("call_a", "get_weather", ' "Paris"}'),
                         ToolCallDelta("call_b", "get_weather", '{"city": "Lyon"}')]
    response = items[-1]
    assert isinstance(response, ModelResponse)
    assert response.message.parts == (
        TextPart(text="Two lookups."),
        ToolCall(id="call_a", name="get_weather", args={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", args={"city": "Lyon"}))
    assert response.stop_reason == "tool_use"
    u = response.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.requests) == (40, 12, 16, 1)


async def test_chat_request_json(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["Rainy."])))
    # compatible=False: the loopback server stands for OpenAI's own API (max_completion_tokens)
    m = model(server, compatible=False, max_tokens=256, temperature=0.3, top_p=0.8, stop=["END"],
              seed=7, reasoning_effort="low")
    await m.request(request(*HISTORY))
    sent = server.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = sent.body
    assert body["model"] == "gpt-5.4" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: down"},
        {"role": "user", "content": "Thanks. And Rome?"},
    ]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city.",
        "parameters": WEATHER.parameters}}]
    assert body["max_completion_tokens"] == 256 and "max_tokens" not in body
    assert (body["temperature"], body["top_p"]) == (0.3, 0.8)
    assert (body["stop"], body["seed"]) == (["END"], 7)
    assert body["reasoning_effort"] == "low"


@pytest.mark.parametrize(("finish", "stop"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"),
])
async def test_chat_finish_reasons(server: FakeServer, finish: str, stop: str) -> None:
    server.add(SSEReply(chat_stream(text=["x"], finish_reason=finish)))
    assert (await model(server).request(request())).stop_reason == stop


async def test_chat_without_usage_and_with_malformed_arguments(server: FakeServer) -> None:
    # Some compatible servers send no usage chunk, and finish tool calls with "stop".
    server.add(SSEReply(chat_stream(tools=[("call_x", "get_weather", ['{"city": Paris}'])],
                                    finish_reason="stop", usage=False)))
    response = await model(server).request(request())
    assert response.message.tool_calls == (
        ToolCall(id="call_x", name="get_weather", args={}, invalid_args='{"city": Paris}'),)
    assert response.stop_reason == "tool_use"
    assert response.usage.input_tokens == 0 and response.usage.requests == 1


async def test_chat_stream_without_finish_is_incomplete(server: FakeServer) -> None:
    frames = chat_stream(text=["partial"])
    server.add(SSEReply(frames[:2]), SSEReply(frames[:2]))  # ends cleanly, but too early
    with pytest.raises(IncompleteStreamError, match="broke off"):
        await model(server).request(request())
    assert len(server.requests) == 1  # a delta had been streamed: no retry


async def test_chat_cut_before_any_delta_is_retried(server: FakeServer) -> None:
    frames = chat_stream(text=["ok"])
    server.add(SSEReply(frames, cut_after=1), SSEReply(frames))  # role chunk only, then cut
    assert (await model(server).request(request())).message.text == "ok"
    assert len(server.requests) == 2


async def test_chat_cut_after_deltas_leaves_no_half_turn(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["Half ", "an ", "answer"]), cut_after=3))
    session = Agent(model(server)).session(SessionConfig())
    result = await session.run("Tell me")
    assert result.status == "failed" and result.error_type == "IncompleteStreamError"
    assert [m.role for m in session.messages] == ["user"]


# -- configuration -------------------------------------------------------------------------------


def test_missing_key_for_openai_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Model.openai("gpt-5.4")


async def test_compatible_server_without_key(server: FakeServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    server.add(SSEReply(chat_stream(text=["local"])))
    m = Model.openai("llama3.2", context_window=8192)
    assert m.context_window == 8192
    assert (await m.request(request())).message.text == "local"
    assert server.last.headers["authorization"] == "Bearer EMPTY"


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_output_tokens.*max_tokens.*seed"):
        Model.openai("gpt-5.4", api_key="k", max_output_tokens=5)
    with pytest.raises(ConfigError, match="Responses API has no seed"):
        Model.openai("gpt-5.4", api_key="k", api="responses", seed=1)
    with pytest.raises(ConfigError, match="'chat' or 'responses'"):
        Model.openai("gpt-5.4", api_key="k", api="completions")  # type: ignore[arg-type]


def test_missing_package_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ConfigError, match=r'pip install "loom-nb\[openai\]"'):
        Model.openai("gpt-5.4", api_key="k")


async def test_from_string_and_loom_model(server: FakeServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model.from_string("openai:gpt-5.4", api_key="k", base_url=f"{server.url}/v1",
                          api="responses")
    assert isinstance(m, OpenAIModel) and m.api == "responses"
    monkeypatch.setenv("LOOM_MODEL", "openai:gpt-5.4-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    server.add(SSEReply(chat_stream(text=["from env"])))
    result = await Agent(Model.from_env()).run("Hi")
    assert result.output == "from env"
    assert server.last.body["model"] == "gpt-5.4-mini"
    assert server.last.headers["authorization"] == "Bearer env-key"


# -- errors --------------------------------------------------------------------------------------


async def test_429_then_500_then_success(server: FakeServer) -> None:
    server.add(openai_error(429, "Rate limit", kind="rate_limit_error", code="rate_limit_exceeded",
                            headers={"retry-after-ms": "300"}),
               openai_error(500, "boom", kind="server_error"),
               SSEReply(chat_stream(text=["ok"])))
    assert (await model(server).request(request())).message.text == "ok"
    first, second, _ = server.requests
    assert second.at - first.at >= 0.3


async def test_the_live_card_says_a_request_is_being_retried_and_for_how_long(
        server: FakeServer) -> None:
    from loom_nb.display.run import LiveCard

    server.add(openai_error(429, "Rate limit", kind="rate_limit_error", code="rate_limit_exceeded",
                            headers={"retry-after-ms": "300"}),
               SSEReply(chat_stream(text=["ok"])))
    card = LiveCard("Hi", agent="agent", model="openai:gpt-5.4")
    during: list[str] = []
    async with Agent(model(server)).stream("Hi") as stream:
        async for event in stream:
            card.add(event)
            if event.type == "model.retry":
                during.append(card.bundle("")["text/plain"])
    [shown] = during
    assert re.search(r"⟳ retrying in 0\.\d s \(retry 1\): .*[Rr]ate limit", shown), shown
    assert "retrying" not in card.bundle("")["text/plain"]  # the answer came: the line is gone


async def test_401_404_and_context_length(server: FakeServer) -> None:
    server.add(openai_error(401, "Incorrect API key provided", code="invalid_api_key"))
    with pytest.raises(ModelAuthenticationError, match="OPENAI_API_KEY"):
        await model(server).request(request())
    server.add(openai_error(404, "The model `gpt-nope` does not exist", code="model_not_found"))
    with pytest.raises(ModelNotFoundError, match="'gpt-5.4'.*models.list"):
        await model(server).request(request())
    server.add(openai_error(400, "This model's maximum context length is 128000 tokens.",
                            code="context_length_exceeded"))
    with pytest.raises(ContextWindowExceededError):
        await model(server).request(request())
    assert len(server.requests) == 3  # none of these is retried


async def test_error_inside_a_chat_stream_is_retried(server: FakeServer) -> None:
    broken = 'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    server.add(SSEReply([broken]), SSEReply(chat_stream(text=["ok"])))
    assert (await model(server).request(request())).message.text == "ok"


async def test_persistent_5xx_gives_up(server: FakeServer) -> None:
    server.add(*[openai_error(502, "bad gateway", kind="server_error")] * 3)
    with pytest.raises(ModelUnavailableError, match="gave up after 2 attempts"):
        await model(server, max_retries=1).request(request())


# -- responses -----------------------------------------------------------------------------------


async def test_responses_streams_text_and_calls(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(
        text=["Looking ", "it up."], tools=[("call_r", "get_weather", ['{"city"', ': "Oslo"}'])],
        input_tokens=30, output_tokens=8, cached_tokens=10)))
    items = await collect(model(server, api="responses"), request())
    assert items[:4] == [TextDelta("Looking "), TextDelta("it up."),
                         ToolCallDelta("call_r", "get_weather", '{"city"'),
                         ToolCallDelta("call_r", "get_weather", ': "Oslo"}')]
    response = items[-1]
    assert response.message.parts == (
        TextPart(text="Looking it up."),
        ToolCall(id="call_r", name="get_weather", args={"city": "Oslo"}))
    assert response.stop_reason == "tool_use"
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.cache_read_tokens) == (30, 8, 10)


async def test_responses_request_json(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(text=["Rainy."])))
    m = model(server, api="responses", max_tokens=300, temperature=0.5, reasoning_effort="high")
    await m.request(request(*HISTORY))
    sent = server.last
    assert sent.path == "/v1/responses"
    body = sent.body
    assert body["instructions"] == "Be brief."
    assert body["input"] == [
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather",
         "arguments": '{"city": "Lyon"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": "Error: down"},
        {"type": "message", "role": "user", "content": "Thanks. And Rome?"},
    ]
    assert body["tools"] == [{"type": "function", "name": "get_weather",
                              "description": "Weather of a city.",
                              "parameters": WEATHER.parameters, "strict": False}]
    assert body["max_output_tokens"] == 300 and body["temperature"] == 0.5
    assert body["reasoning"] == {"effort": "high"}
    assert body["include"] == ["reasoning.encrypted_content"]


async def test_responses_incomplete_is_max_tokens(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(text=["cut"], status="incomplete",
                                         incomplete_reason="max_output_tokens")))
    assert (await model(server, api="responses").request(request())).stop_reason == "max_tokens"


async def test_responses_failed_event_is_retried_then_reported(server: FakeServer) -> None:
    failed = ('event: response.failed\ndata: {"type": "response.failed", "sequence_number": 1, '
              '"response": {"id": "resp_1", "object": "response", "created_at": 1, '
              '"model": "gpt-5.4", "output": [], "parallel_tool_calls": true, '
              '"tool_choice": "auto", "tools": [], "status": "failed", '
              '"error": {"code": "server_error", "message": "The model crashed"}}}\n\n')
    server.add(*[SSEReply([failed])] * 2)
    with pytest.raises(ModelUnavailableError, match="The model crashed.*gave up after 2"):
        await model(server, api="responses", max_retries=1).request(request())
    assert len(server.requests) == 2


# -- end to end and event loops ------------------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """The weather of a city.

    Args:
        city: the city's name.
    """
    return f"sunny in {city}"


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_agent_tool_round_trip(server: FakeServer, api: str) -> None:
    if api == "chat":
        server.add(SSEReply(chat_stream(tools=[("call_1", "get_weather", ['{"city": "Paris"}'])],
                                        prompt_tokens=50, completion_tokens=10)),
                   SSEReply(chat_stream(text=["Sunny ", "in Paris."], prompt_tokens=70,
                                        completion_tokens=5)))
    else:
        call = ("call_1", "get_weather", ['{"city": "Paris"}'])
        server.add(SSEReply(responses_stream(tools=[call], input_tokens=50, output_tokens=10)),
                   SSEReply(responses_stream(text=["Sunny ", "in Paris."], input_tokens=70,
                                             output_tokens=5)))
    agent = Agent(model(server, api=api), "Report weather.", tools=[get_weather])
    events = [event async for event in agent.stream("Weather in Paris?")]
    finished = events[-1]
    assert finished.type == "run.finished" and finished.data["status"] == "completed"
    assert finished.data["output"] == "Sunny in Paris."
    assert finished.data["usage"]["input_tokens"] == 120
    assert [e.data.get("text") for e in events
            if e.type == "model.delta" and "text" in e.data] == ["Sunny ", "in Paris."]
    assert any(e.type == "model.delta" and e.data.get("args_delta") for e in events)
    result = next(e for e in events if e.type == "tool.result")
    assert result.data["content"] == "sunny in Paris"
    second = server.requests[1].body
    if api == "chat":
        assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1",
                                          "content": "sunny in Paris"}
    else:
        assert second["input"][-1] == {"type": "function_call_output", "call_id": "call_1",
                                       "output": "sunny in Paris"}


def test_one_openai_model_from_two_loops(server: FakeServer) -> None:
    m = model(server)
    server.add(SSEReply(chat_stream(text=["a"])), SSEReply(chat_stream(text=["b"])))

    async def ask() -> str:
        return (await m.request(request())).message.text

    assert [asyncio.run(ask()), asyncio.run(ask())] == ["a", "b"]


# -- thinking and reasoning ----------------------------------------------------------------------

THOUGHTFUL = (
    Message.user("Weather?"),
    Message(role="assistant", parts=(
        ThinkingPart(text="Claude's thought", signature="sig"),
        ThinkingPart(redacted=True, data="opaque"),
        ThinkingPart(text="r", data=json.dumps({"type": "reasoning", "id": "rs_9", "summary": [],
                                                "encrypted_content": "enc"})),
        ToolCall(id="call_1", name="get_weather", args={"city": "Oslo"}))),
    Message(role="tool", parts=(ToolResult(call_id="call_1", name="get_weather",
                                           content="cold"),)),
)


async def test_chat_leaves_thinking_out(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["Cold."])))
    await model(server).request(request(*THOUGHTFUL))
    assert server.last.body["messages"][1:] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
    ]


async def test_responses_keeps_reasoning_and_sends_it_back_in_a_tool_loop(
        server: FakeServer) -> None:
    server.add(
        SSEReply(responses_stream(reasoning=(["Need ", "the tool."], "gAAAA-encrypted"),
                                  tools=[("call_1", "get_weather", ['{"city": "Oslo"}'])])),
        SSEReply(responses_stream(reasoning=(["Done."], None), text=["Cold in Oslo."])),
    )
    session = Agent(model(server, api="responses"), tools=[get_weather]).session(SessionConfig())
    result = await session.run("Weather in Oslo?")
    assert result.status == "completed", result.error
    assert result.output == "Cold in Oslo."
    assistant = session.messages[1]
    thinking = assistant.parts[0]
    assert isinstance(thinking, ThinkingPart) and thinking.text == "Need \n\nthe tool."
    assert assistant.text == ""  # reasoning is not part of the answer
    second = server.requests[1].body["input"]
    assert second[1] == {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAA-encrypted",
                         "summary": [{"type": "summary_text", "text": "Need "},
                                     {"type": "summary_text", "text": "the tool."}]}
    assert second[2]["type"] == "function_call" and second[3]["type"] == "function_call_output"
    # the last turn's reasoning has no encrypted_content: kept in the session, never sent
    assert isinstance(session.messages[-1].parts[0], ThinkingPart)
    server.add(SSEReply(responses_stream(text=["Bye."])))
    await session.run("Thanks")
    sent = server.last.body["input"]
    assert [i["type"] for i in sent].count("reasoning") == 1


async def test_responses_leaves_out_thinking_it_cannot_send(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(text=["Cold."])))
    await model(server, api="responses").request(request(*THOUGHTFUL))
    kinds = [item["type"] for item in server.last.body["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert server.last.body["input"][1]["id"] == "rs_9"


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_slow_server_past_the_timeout(server: FakeServer, api: str) -> None:
    frames = chat_stream(text=["x"]) if api == "chat" else responses_stream(text=["x"])
    server.add(SSEReply(frames, delay=5), SSEReply(frames, delay=5))
    started = time.monotonic()
    with pytest.raises(ModelConnectionError,
                       match=r"^The OpenAI-compatible server at .* sent nothing for timeout=0.3 s.*Model.openai\("
                             r"'gpt-5.4', timeout=300\).*gave up after 2 attempts"):
        await model(server, api=api, timeout=0.3, max_retries=1).request(request())
    assert time.monotonic() - started < 3.0 and len(server.requests) == 2


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_stream_stalling_after_text_names_the_timeout(server: FakeServer, api: str) -> None:
    frames = (chat_stream(text=["a", "b", "c"]) if api == "chat"
              else responses_stream(text=["a", "b", "c"]))
    server.add(SSEReply(frames, hang_after=3))
    seen: list[Any] = []
    with pytest.raises(IncompleteStreamError, match=r"broke off.*timeout=0.3 s"):
        async for item in model(server, api=api, timeout=0.3).stream(request()):
            seen.append(item)
    # the stream stalls after the third frame: two text chunks on chat, one on responses
    expected = ["a", "b"] if api == "chat" else ["a"]
    assert [i.text for i in seen if isinstance(i, TextDelta)] == expected
