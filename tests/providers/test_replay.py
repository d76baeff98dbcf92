"""Model.record / Model.replay: exchanges written to JSON Lines and served back offline."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Message, Model, ModelError, tool
from loom_nb.messages import TextPart, ThinkingPart, ToolCall, ToolResult
from loom_nb.models import ModelRequest, ModelResponse, TextDelta, ToolCallDelta, ToolDefinition
from loom_nb.errors import ModelRateLimitError
from loom_nb.models.replay import (
    RecordingModel,
    RecordingNotFoundError,
    ReplayExhaustedError,
    ReplayMismatchError,
    ReplayModel,
    first_difference,
)

from .conftest import FAST
from .fake_servers import FakeServer, SSEReply, anthropic_error, anthropic_stream

pytestmark = pytest.mark.anyio


@tool
def lookup(city: str) -> str:
    """The weather of a city.

    Args:
        city: the city's name.
    """
    return f"sunny in {city}"


def weather_brain(request: ModelRequest) -> Any:
    """A model function: call the tool once, then answer from its result."""
    last = request.messages[-1]
    if last.role == "tool":
        return f"Report: {last.tool_results[0].content}."
    return {"tool": "lookup", "args": {"city": last.text.split()[-1].rstrip("?")}}


async def record_weather(path: Path, prompt: str = "Weather in Paris?") -> Any:
    recorder = Model.record(Model.function(weather_brain, name="brain", context_window=32_000),
                            path)
    return await Agent(recorder, "You report weather.", tools=[lookup]).run(prompt)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- record then replay --------------------------------------------------------------------------


async def test_record_writes_one_line_per_exchange(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "weather.jsonl"  # the folder is created
    result = await record_weather(path)
    assert result.status == "completed" and result.output == "Report: sunny in Paris."
    first, second = lines(path)
    assert first["model"] == "function:brain" and first["context_window"] == 32_000
    assert first["request"]["system"] == "You report weather."
    assert first["request"]["messages"] == [Message.user("Weather in Paris?").to_dict()]
    assert first["request"]["tools"][0]["name"] == "lookup"
    assert first["response"]["stop_reason"] == "tool_use"
    assert first["stream"] == []  # offline models stream text only; tool calls come whole
    assert second["request"]["messages"][-1]["parts"][0]["content"] == "sunny in Paris"
    assert second["response"]["message"]["parts"][0]["text"] == "Report: sunny in Paris."
    assert [c["text"] for c in second["stream"]] == ["Report: ", "sunny ", "in ", "Paris."]


async def test_replay_serves_the_run_again_offline(tmp_path: Path) -> None:
    path = tmp_path / "weather.jsonl"
    recorded = await record_weather(path)
    replay = Model.replay(path)
    assert isinstance(replay, ReplayModel)
    assert replay.identifier == "replay:function:brain"
    assert replay.context_window == 32_000 and replay.remaining == 2
    again = await Agent(replay, "You report weather.", tools=[lookup]).run("Weather in Paris?")
    assert again.status == "completed", again.error
    assert again.output == recorded.output
    assert again.usage == recorded.usage

    assert replay.remaining == 0


async def test_replay_streams_the_recorded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "weather.jsonl"
    brain = Model.function(weather_brain, name="brain")

    async def shown(model: Model) -> list[tuple[str, Any]]:
        agent = Agent(model, "You report weather.", tools=[lookup])
        return [(e.type, e.data.get("text") or e.data.get("args_delta") or e.data.get("content"))
                async for e in agent.stream("Weather in Paris?")
                if e.type in ("model.delta", "tool.call", "tool.result")]

    recorded = await shown(Model.record(brain, path))
    assert ("model.delta", "sunny ") in recorded
    assert await shown(Model.replay(path)) == recorded  # the same chunks, in the same order


async def test_record_and_replay_a_real_provider(server: FakeServer, tmp_path: Path) -> None:
    """The real Anthropic client records; the replay runs with the server gone."""
    path = tmp_path / "claude.jsonl"
    server.add(
        SSEReply(anthropic_stream(text=["Checking."], tools=[
            ("toolu_1", "lookup", ['{"city": ', '"Oslo"}'])], input_tokens=50)),
        SSEReply(anthropic_stream(text=["Sunny ", "in Oslo."], input_tokens=80)),
    )
    live = Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, **FAST)
    recorded = await Agent(Model.record(live, path), tools=[lookup]).run("Weather in Oslo?")
    assert recorded.output == "Sunny in Oslo."
    server.close()
    replay = Model.replay(path)
    assert replay.identifier == "replay:anthropic:claude-sonnet-5"
    # the window the live budget used (known for this model), so the replay budgets the same
    assert live.context_window is None and replay.context_window == 1_000_000
    items = [i async for i in replay.stream(ModelRequest(
        system="", messages=(Message.user("Weather in Oslo?"),),
        tools=tuple(Agent(live, tools=[lookup]).tool_definitions)))]
    assert items[:3] == [TextDelta("Checking."), ToolCallDelta("toolu_1", "lookup", '{"city": '),
                         ToolCallDelta("toolu_1", "lookup", '"Oslo"}')]
    assert isinstance(items[-1], ModelResponse)
    assert items[-1].usage.input_tokens == 50 and items[-1].model_name == "claude-sonnet-5"
    second = await Agent(Model.replay(path), tools=[lookup]).run("Weather in Oslo?")
    assert second.output == "Sunny in Oslo." and second.usage == recorded.usage


async def test_thinking_parts_survive_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "thinking.jsonl"
    answer = ModelResponse(message=Message(role="assistant", parts=(
        ThinkingPart(text="Let me think.", signature="sig=="),
        ThinkingPart(redacted=True, data="opaque"),
        TextPart(text="42"))), stop_reason="end_turn")
    await Agent(Model.record(Model.scripted([answer]), path)).run("Answer?")
    response = await Model.replay(path).request(ModelRequest(
        system="", messages=(Message.user("Answer?"),)))
    assert response.message == answer.message


# -- mismatches, exhaustion, missing files -------------------------------------------------------


async def test_a_changed_prompt_fails_with_the_first_difference(tmp_path: Path) -> None:
    path = tmp_path / "weather.jsonl"
    await record_weather(path)
    result = await Agent(Model.replay(path), "You report weather.",
                         tools=[lookup]).run("Weather in Rome?")
    assert result.status == "failed" and result.error_type == "ReplayMismatchError"
    assert "messages[0].parts[0].text (character 11)" in (result.error or "")
    with pytest.raises(ReplayMismatchError) as caught:
        await Model.replay(path).request(ModelRequest(
            system="You report weather.", messages=(Message.user("Weather in Rome?"),),
            tools=tuple(Agent(Model.scripted([]), tools=[lookup]).tool_definitions)))
    error = caught.value
    assert isinstance(error, ModelError)
    assert error.path == "messages[0].parts[0].text"
    assert (error.recorded, error.actual) == ("Weather in Paris?", "Weather in Rome?")
    message = str(error)
    assert "recorded: 'Weather in Paris?'" in message and "actual:   'Weather in Rome?'" in message
    assert "Model.record" in message and str(path) in message


async def test_a_changed_tool_result_is_found_deep_in_the_history(tmp_path: Path) -> None:
    path = tmp_path / "weather.jsonl"
    await record_weather(path)

    @tool(name="lookup")
    def lookup_v2(city: str) -> str:
        """The weather of a city.

        Args:
            city: the city's name.
        """
        return f"rainy in {city}"

    result = await Agent(Model.replay(path), "You report weather.",
                         tools=[lookup_v2]).run("Weather in Paris?")
    assert result.status == "failed"
    assert "Request 2 of the recording" in (result.error or "")
    assert "messages[2].parts[0].content" in (result.error or "")
    assert "'sunny in Paris'" in (result.error or "")


async def test_changed_instructions_and_tools_are_mismatches(tmp_path: Path) -> None:
    path = tmp_path / "weather.jsonl"
    await record_weather(path)
    result = await Agent(Model.replay(path), "Report the weather.",
                         tools=[lookup]).run("Weather in Paris?")
    assert "differ at system" in (result.error or "")
    result = await Agent(Model.replay(path), "You report weather.").run("Weather in Paris?")
    assert "differ at tools[0]" in (result.error or "")
    assert "recorded: {\"name\": \"lookup\"" in (result.error or "")
    assert "actual:   <missing>" in (result.error or "")


async def test_long_texts_are_shown_from_where_they_diverge(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    base = "word " * 200
    await Agent(Model.record(Model.scripted(["ok"]), path)).run(base + "END")
    with pytest.raises(ReplayMismatchError) as caught:
        await Model.replay(path).request(ModelRequest(
            system="", messages=(Message.user(base + "FIN"),)))
    message = str(caught.value)
    assert "(character 1000)" in message
    assert "recorded: '…word word" in message and "END'" in message and "FIN'" in message
    shown = [line for line in message.splitlines() if line.startswith(("  recorded", "  actual"))]
    assert len(shown) == 2 and all(len(line) < 200 for line in shown)


async def test_more_requests_than_recorded(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    agent = Agent(Model.record(Model.scripted(["first"]), path))
    await agent.run("One")
    replay = Model.replay(path)
    session = Agent(replay).session()
    assert (await session.run("One")).output == "first"
    result = await session.run("Two")
    assert result.status == "failed" and result.error_type == "ReplayExhaustedError"
    assert "no exchange left: all 1 were served" in (result.error or "")
    assert "last user text: 'Two'" in (result.error or "")
    with pytest.raises(ReplayExhaustedError, match="re-record with Model.record"):
        await replay.request(ModelRequest(system="", messages=(Message.user("Three"),)))


async def test_a_missing_recording_fails_at_the_first_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "recordings" / "absent.jsonl"
    replay = Model.replay(path)  # building it is fine: LOOM_MODEL may name a live model instead
    assert replay.identifier == "replay:absent.jsonl" and replay.context_window is None
    result = await Agent(replay).run("Hi")
    assert result.status == "failed" and result.error_type == "RecordingNotFoundError"
    assert str(path) in (result.error or "") and "Model.record(" in (result.error or "")
    monkeypatch.setenv("LOOM_MODEL", "scripted-is-not-a-provider:x")
    with pytest.raises(ConfigError, match="Unknown model provider"):
        Model.from_env(default=Model.replay(path))  # LOOM_MODEL wins over the default
    monkeypatch.delenv("LOOM_MODEL")
    assert Model.from_env(default=Model.replay(path)).identifier == "replay:absent.jsonl"
    with pytest.raises(RecordingNotFoundError):
        await replay.request(ModelRequest(system="", messages=(Message.user("Hi"),)))


def test_a_broken_recording_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"loom_recording": 1, "request": {}, "response": {}}\n{not json\n')
    with pytest.raises(ConfigError, match="Line 2 of the recording .* is not JSON"):
        Model.replay(path)
    path.write_text('{"something": "else"}\n')
    with pytest.raises(ConfigError, match="Line 1 .* not a loom_nb recording"):
        Model.replay(path)


def test_bad_replay_options() -> None:
    with pytest.raises(ConfigError, match="match="):
        Model.replay("x.jsonl", match=("messages", "temperature"))
    with pytest.raises(ConfigError, match="normalize="):
        Model.replay("x.jsonl", normalize="abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="wraps a live model"):
        Model.record(Model.replay("x.jsonl"), "y.jsonl")


# -- what is compared ----------------------------------------------------------------------------


async def test_normalize_masks_volatile_text(tmp_path: Path) -> None:
    path = tmp_path / "volatile.jsonl"

    def run_with(model: Model, stamp: str) -> Any:
        @tool(name="now")
        def now() -> str:
            """The current time."""
            return f"It is {stamp}."

        brain = Agent(model, tools=[now])
        return brain.run("What time is it?")

    script = Model.scripted([{"tool": "now", "args": {}}, "Time told."])
    await run_with(Model.record(script, path), "2026-11-02T10:00:00")
    strict = await run_with(Model.replay(path), "2026-11-03T11:30:00")
    assert strict.status == "failed" and "messages[2].parts[0].content" in (strict.error or "")
    mask = lambda text: re.sub(r"\d{4}-\d\d-\d\dT[\d:]+", "<time>", text)  # noqa: E731
    masked = await run_with(Model.replay(path, normalize=mask), "2026-11-03T11:30:00")
    assert masked.status == "completed" and masked.output == "Time told."


async def test_settings_are_compared_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "settings.jsonl"
    recorder = Model.record(Model.scripted(["a", "b"]), path)
    for _ in range(2):
        await recorder.request(ModelRequest(system="s", messages=(Message.user("q"),),
                                            settings={"max_tokens": 100}))
    other = ModelRequest(system="s", messages=(Message.user("q"),), settings={"max_tokens": 5})
    assert (await Model.replay(path).request(other)).message.text == "a"
    with pytest.raises(ReplayMismatchError, match=r"differ at settings\.max_tokens"):
        await Model.replay(path, match=("messages", "settings")).request(other)


async def test_concurrent_requests_may_arrive_in_another_order(tmp_path: Path) -> None:
    path = tmp_path / "parallel.jsonl"
    recorder = Model.record(Model.function(lambda r: f"answer to {r.messages[0].text}"), path)
    for question in ("A", "B", "C"):
        await recorder.request(ModelRequest(system="", messages=(Message.user(question),)))
    replay = Model.replay(path)

    async def ask(question: str) -> str:
        req = ModelRequest(system="", messages=(Message.user(question),))
        return (await replay.request(req)).message.text

    assert await asyncio.gather(ask("C"), ask("A"), ask("B")) == [
        "answer to C", "answer to A", "answer to B"]


async def test_repeated_identical_requests_are_served_in_order(tmp_path: Path) -> None:
    path = tmp_path / "same.jsonl"
    recorder = Model.record(Model.scripted(["one", "two"]), path)
    req = ModelRequest(system="", messages=(Message.user("again"),))
    assert [(await recorder.request(req)).message.text for _ in range(2)] == ["one", "two"]
    replay = Model.replay(path)
    assert [(await replay.request(req)).message.text for _ in range(2)] == ["one", "two"]


def test_first_difference_paths() -> None:
    recorded = {"messages": [{"role": "user", "parts": [{"text": "a"}]}], "tools": []}
    assert first_difference(recorded, json.loads(json.dumps(recorded)))[0] == ""
    extra = {"messages": [*recorded["messages"], {"role": "user"}], "tools": []}
    path, old, new = first_difference(recorded, extra)
    assert path == "messages[1]" and new == {"role": "user"}
    assert first_difference({"a": 1}, {"a": True})[0] == "a"  # a bool is not an int
    assert first_difference({"a": 1}, {"b": 1})[0] == "a"
    assert first_difference("x", "y") == ("<root>", "x", "y")


# -- failures and files --------------------------------------------------------------------------


async def test_a_recorded_failure_fails_the_same_way_on_replay(server: FakeServer,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "failure.jsonl"
    server.add(anthropic_error(429, "rate_limit_error", "slow down", {"retry-after": "0"}))
    live = Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, max_retries=0)
    recorded = await Agent(Model.record(live, path)).run("Hi")
    assert recorded.status == "failed" and recorded.error_type == "ModelRateLimitError"
    assert lines(path)[0]["error"]["type"] == "ModelRateLimitError"
    again = await Agent(Model.replay(path)).run("Hi")
    assert (again.status, again.error_type, again.error) == (
        "failed", "ModelRateLimitError", recorded.error)
    with pytest.raises(ModelRateLimitError):
        await Model.replay(path).request(ModelRequest(system="", messages=(Message.user("Hi"),)))


async def test_retries_are_not_recorded(server: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "retry.jsonl"
    server.add(anthropic_error(529, "overloaded_error", "Overloaded"),
               SSEReply(anthropic_stream(text=["fine"])))
    live = Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, **FAST)
    result = await Agent(Model.record(live, path)).run("Hi")
    assert any(e.type == "model.retry" for e in result.events)
    (only,) = lines(path)
    assert only["response"]["message"]["parts"] == [{"kind": "text", "text": "fine"}]
    assert only["stream"] == [{"text": "fine"}]


async def test_recording_again_starts_the_file_afresh(tmp_path: Path) -> None:
    path = tmp_path / "again.jsonl"
    path.write_text("stale content from an old recording\n")
    built = Model.record(Model.scripted(["one"]), path)  # building it changes nothing yet
    assert path.read_text().startswith("stale")
    await Agent(built).run("Hi")
    await Agent(Model.record(Model.scripted(["two"]), path)).run("Hi")  # a cell run again
    assert [line["response"]["message"]["parts"][0]["text"] for line in lines(path)] == ["two"]


async def test_two_models_recorded_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    main = Model.record(Model.scripted(["main answer"], name="main"), path)
    judge = Model.record(Model.scripted(["PASS"], name="judge"), path, append=True)
    assert isinstance(main, RecordingModel) and main.identifier == "scripted:main"
    await main.request(ModelRequest(system="", messages=(Message.user("Do it"),)))
    await judge.request(ModelRequest(system="judge", messages=(Message.user("Judge it"),)))
    assert [line["model"] for line in lines(path)] == ["scripted:main", "scripted:judge"]
    judged = Model.replay(path, model="scripted:judge")
    assert judged.identifier == "replay:scripted:judge" and judged.remaining == 1
    req = ModelRequest(system="judge", messages=(Message.user("Judge it"),))
    assert (await judged.request(req)).message.text == "PASS"


async def test_a_stream_abandoned_early_is_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "abandoned.jsonl"
    recorder = Model.record(Model.scripted(["many words in this answer"]), path)
    stream = recorder.stream(ModelRequest(system="", messages=(Message.user("Hi"),)))
    assert isinstance(await stream.__anext__(), TextDelta)
    await stream.aclose()
    assert not path.exists() and recorder.exchanges == 0


async def test_tool_parts_in_history_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = (Message.user("Go"),
               Message(role="assistant", parts=(ToolCall(id="c1", name="f", args={"x": [1, 2]}),
                                                ToolCall(id="c2", name="f", args={},
                                                         invalid_args="{bad"))),
               Message(role="tool", parts=(ToolResult(call_id="c1", name="f", content="ok"),
                                           ToolResult(call_id="c2", name="f", content="bad args",
                                                      is_error=True))))
    tools = (ToolDefinition(name="f", description="F.", parameters={"type": "object"}),)
    req = ModelRequest(system="s", messages=history, tools=tools, settings={"stop": ("a",)})
    await Model.record(Model.scripted(["done"]), path).request(req)
    assert (await Model.replay(path, match=("system", "messages", "tools", "settings")
                               ).request(req)).message.text == "done"
