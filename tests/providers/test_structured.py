"""Structured output and tool choice on the wire: the exact request bodies the official SDKs send
(OpenAI chat ``response_format``, Responses ``text.format``, Anthropic ``output_config``, the
output tool with ``tool_choice``), and the validated answer that comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from loom_nb import Agent, ConfigError, Model, tool

from .conftest import FAST
from .fake_servers import FakeServer, SSEReply, anthropic_stream, chat_stream, responses_stream

pytestmark = pytest.mark.anyio


class City(BaseModel):
    name: str
    population: int


CITY_SCHEMA = {"type": "object", "title": "City", "additionalProperties": False,
               "properties": {"name": {"title": "Name", "type": "string"},
                              "population": {"title": "Population", "type": "integer"}},
               "required": ["name", "population"]}
PARIS = '{"name": "Paris", "population": 2100000}'


@tool
def get_weather(city: str) -> str:
    """Weather of a city."""
    return f"sunny in {city}"


def openai(server: FakeServer, api: str = "chat", **kwargs: Any) -> Model:
    return Model.openai("gpt-5.4", api_key="sk-test", base_url=f"{server.url}/v1", api=api,  # type: ignore[arg-type]
                        **{**FAST, **kwargs})


def anthropic(server: FakeServer, **kwargs: Any) -> Model:
    return Model.anthropic("claude-sonnet-5", api_key="test-key", base_url=server.url,
                           **{**FAST, **kwargs})


# -- native structured output --------------------------------------------------------------------


async def test_chat_native_response_format(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=['{"name": "Paris", ', '"population": 2100000}'])))
    result = await Agent(openai(server, compatible=False), output_type=City).run("Biggest city?")
    assert result.output == City(name="Paris", population=2100000) and result.text == PARIS
    body = server.last.body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "City", "schema": CITY_SCHEMA, "strict": True}}
    assert "tools" not in body and "tool_choice" not in body


async def test_responses_native_text_format_wraps_a_list(server: FakeServer) -> None:
    server.add(SSEReply(responses_stream(text=['{"response": [1, 2, 3]}'])))
    result = await Agent(openai(server, api="responses", compatible=False)).run(
        "Three numbers", output_type=list[int])
    assert result.output == [1, 2, 3]
    assert server.last.body["text"] == {"format": {
        "type": "json_schema", "name": "list_int", "strict": True,
        "schema": {"type": "object", "additionalProperties": False, "required": ["response"],
                   "properties": {"response": {"type": "array", "items": {"type": "integer"}}}}}}


async def test_anthropic_native_output_config(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(text=[PARIS])))
    result = await Agent(anthropic(server, compatible=False), output_type=City).run("Biggest city?")
    assert result.output == City(name="Paris", population=2100000)
    body = server.last.body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": CITY_SCHEMA}}
    assert "tools" not in body


async def test_claude_gets_constraints_as_descriptions_and_pydantic_still_checks_them(
        server: FakeServer) -> None:
    from pydantic import Field

    class Rating(BaseModel):
        stars: int = Field(ge=1, le=5, description="How good")
        code: str = Field(pattern=r"^[A-Z]{3}$")

    server.add(SSEReply(anthropic_stream(text=['{"stars": 9, "code": "PAR"}'])),
               SSEReply(anthropic_stream(text=['{"stars": 4, "code": "PAR"}'])))
    result = await Agent(anthropic(server, compatible=False), output_type=Rating).run("Rate it")
    assert result.output == Rating(stars=4, code="PAR")  # the 9 went back as a retry
    sent = server.requests[0].body["output_config"]["format"]["schema"]["properties"]
    assert "minimum" not in sent["stars"] and "maximum" not in sent["stars"]
    assert "How good" in sent["stars"]["description"] and "minimum: 1" in sent["stars"]["description"]
    assert "pattern" not in sent["code"] and "^[A-Z]{3}$" in sent["code"]["description"]


async def test_a_schema_with_defaults_is_not_strict(server: FakeServer) -> None:
    class Query(BaseModel):
        text: str
        limit: int = 10

    server.add(SSEReply(chat_stream(text=['{"text": "cats"}'])))
    result = await Agent(openai(server, compatible=False), output_type=Query).run("q")
    assert result.output == Query(text="cats", limit=10)
    sent = server.last.body["response_format"]["json_schema"]
    assert sent["strict"] is False and sent["schema"]["required"] == ["text"]


# -- the output tool (compatible servers) ----------------------------------------------------------


async def test_compatible_server_gets_the_output_tool_and_required(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(tools=[("call_1", "final_result", ['{"name": "Paris", ',
                                                                      '"population": 2100000}'])])))
    agent = Agent(openai(server), tools=[get_weather], output_type=City)
    partial = []
    stream = agent.stream("Biggest city?")
    async for event in stream:
        if event.type == "output.partial":
            partial.append(event.data)
    assert stream.result is not None and stream.result.output == City(name="Paris", population=2100000)
    assert partial[-1] == {"output": {"name": "Paris", "population": 2100000}, "valid": True}
    assert partial[0]["output"] == {"name": "Paris"}
    body = server.last.body
    assert "response_format" not in body
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "final_result"]
    assert body["tools"][1]["function"]["parameters"] == CITY_SCHEMA


async def test_invalid_tool_answer_is_retried_with_the_error(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(tools=[("call_1", "final_result", ['{"name": "Paris"}'])])),
               SSEReply(chat_stream(tools=[("call_2", "final_result", [PARIS])])))
    result = await Agent(openai(server), output_type=City).run("Biggest city?")
    assert result.ok and result.output.population == 2100000
    retry = server.requests[1].body["messages"][-1]
    assert retry["role"] == "tool" and retry["tool_call_id"] == "call_1"
    assert "population: Field required" in retry["content"]


async def test_retries_run_out_with_the_last_error(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["Paris, about two million."])),
               SSEReply(chat_stream(text=['{"name": "Paris"}'])))
    result = await Agent(openai(server, compatible=False), output_type=City,
                         output_retries=1).run("Biggest city?")
    assert result.status == "failed" and result.error_type == "OutputValidationError"
    assert result.output is None and result.text == '{"name": "Paris"}'
    assert "population: Field required" in (result.error or "")
    assert "Answer again with only the JSON value" in server.requests[1].body["messages"][-1]["content"]
    assert len(server.requests) == 2


async def test_output_mode_overrides_the_rule(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=[PARIS])))
    result = await Agent(openai(server), output_type=City, output_mode="native").run("?")
    assert result.output.name == "Paris"
    assert server.last.body["response_format"]["json_schema"]["name"] == "City"


async def test_anthropic_output_tool_is_required(server: FakeServer) -> None:
    server.add(SSEReply(anthropic_stream(tools=[("toolu_1", "final_result", ['{"response": 7}'])])))
    result = await Agent(anthropic(server), output_type=int, output_mode="tool").run("7?")
    assert result.output == 7
    body = server.last.body
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["name"] == "final_result"
    assert "output_config" not in body


# -- tool choice -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("choice", "chat", "responses", "claude"), [
    ("auto", "auto", "auto", {"type": "auto"}),
    ("required", "required", "required", {"type": "any"}),
    ("none", "none", "none", {"type": "none"}),
    ("get_weather", {"type": "function", "function": {"name": "get_weather"}},
     {"type": "function", "name": "get_weather"}, {"type": "tool", "name": "get_weather"}),
])
async def test_tool_choice_per_provider(server: FakeServer, choice: str, chat: Any,
                                        responses: Any, claude: Any) -> None:
    server.add(SSEReply(chat_stream(text=["ok"])), SSEReply(responses_stream(text=["ok"])),
               SSEReply(anthropic_stream(text=["ok"])))
    for m in (openai(server), openai(server, api="responses"), anthropic(server)):
        assert (await Agent(m, tools=[get_weather]).run("hi", tool_choice=choice)).ok
    assert [r.body["tool_choice"] for r in server.requests] == [chat, responses, claude]


async def test_forced_choice_resets_to_auto_after_the_call(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(tools=[("call_1", "get_weather", ['{"city": "Paris"}'])])),
               SSEReply(chat_stream(text=["Sunny."])))
    agent = Agent(openai(server, tool_choice="required"), tools=[get_weather])
    result = await agent.run("Weather?")
    assert result.output == "Sunny."
    assert [r.body["tool_choice"] for r in server.requests] == ["required", "auto"]


async def test_tool_choice_mistakes_are_config_errors(server: FakeServer) -> None:
    with pytest.raises(ConfigError, match="no tools"):
        await Agent(openai(server)).run("hi", tool_choice="required")
    with pytest.raises(ConfigError, match="not one of the agent's tools"):
        await Agent(openai(server), tools=[get_weather]).run("hi", tool_choice="get_wether")
    with pytest.raises(ConfigError, match="output tool"):
        await Agent(openai(server), output_type=City).run("hi", tool_choice="none")
    assert server.requests == []


async def test_compatible_server_gets_max_tokens(server: FakeServer) -> None:
    server.add(SSEReply(chat_stream(text=["ok"])), SSEReply(chat_stream(text=["ok"])))
    await Agent(openai(server, max_tokens=64)).run("hi")
    await Agent(openai(server, max_tokens=64, compatible=False)).run("hi")
    first, second = (r.body for r in server.requests)
    assert first["max_tokens"] == 64 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 64 and "max_tokens" not in second
    assert json.dumps(first).count("tool_choice") == 0


async def test_claude_with_thinking_takes_no_forced_choice(server: FakeServer) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    server.add(SSEReply(anthropic_stream(text=['{"response": 7}'])))
    result = await Agent(anthropic(server, thinking=thinking), output_type=int,
                         output_mode="tool").run("7?")
    assert result.output == 7 and server.last.body["tool_choice"] == {"type": "auto"}
    result = await Agent(anthropic(server, thinking=thinking), tools=[get_weather]).run(
        "hi", tool_choice="get_weather")
    assert result.error_type == "ConfigError" and "forced tool use" in (result.error or "")
    assert len(server.requests) == 1
