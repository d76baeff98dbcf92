"""Capability.mcp beyond tools, fault cases, against the project's own Python test server
(tests/mcp_servers/toolbox.py, the official SDK's MCPServer, protocol 2026-07-28): sampling and
elicitation on the input-required flow, outputSchema mismatches, log messages, list changes,
hostile sampling requests, and configuration mistakes."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, Capability, ConfigError, Model
from loom_nb.errors import NotSupportedError, ToolError

TOOLBOX = [sys.executable, str(Path(__file__).parent / "mcp_servers" / "toolbox.py")]


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def run(turns: list[Any], **options: Any) -> Any:
    agent = Agent(Model.scripted(turns), capabilities=[Capability.mcp("box", command=TOOLBOX,
                                                                      **options)])
    try:
        return agent.run_sync("go")
    finally:
        agent.close()


def events(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in result.events if e.type == kind]


def test_structured_content_beside_text_and_an_output_schema_mismatch_is_an_error() -> None:
    result = run([[call("box__where"), call("box__bad_where"), call("box__point")], "ok"])
    where, bad, point = result.tool_calls
    assert not where.is_error and '"x": 1' in where.content
    assert "[structured content]" not in where.content  # the text already is that JSON
    assert bad.is_error and "does not match the tool's outputSchema" in bad.content
    assert "oops" not in bad.content  # the result is not used
    errors = {e["name"]: e.get("error_type") for e in events(result, "tool.result")}
    assert errors["box__bad_where"] == "McpOutputSchemaError"
    assert point.content == '{"x": 1, "y": 2}'  # structured content alone, as JSON


def test_log_messages_go_to_a_logger_and_warnings_to_the_run(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="loom_nb.mcp"):
        result = run([[call("box__warn", text="disk almost full")], "ok"])
    [logged] = events(result, "mcp.log")  # info stays in the logger, warning is a run event too
    assert logged == {"server": "box", "level": "warning", "logger": None,
                      "message": "warning: disk almost full"}
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records
                if r.name == "loom_nb.mcp.box" and "disk" in r.getMessage()]
    assert ("loom_nb.mcp.box", logging.INFO, "[box] info: disk almost full") in messages
    assert ("loom_nb.mcp.box", logging.WARNING, "[box] warning: disk almost full") in messages


def test_progress_events_of_the_call_in_flight() -> None:
    result = run([[call("box__steps", count=3)], "ok"])
    assert [(p["progress"], p["message"]) for p in events(result, "mcp.progress")] == [
        (1, "step 1"), (2, "step 2"), (3, "step 3")]


def test_tools_list_changed_refreshes_the_tools_before_the_next_turn() -> None:
    model = Model.scripted([[call("box__grow")], [call("box__sprout")], "ok"])
    agent = Agent(model, capabilities=[Capability.mcp("box", command=TOOLBOX)])
    try:
        result = agent.run_sync("grow")
    finally:
        agent.close()
    assert "box__sprout" not in {t.name for t in model.requests[0].tools}
    assert "box__sprout" in {t.name for t in model.requests[1].tools}
    assert result.tool_calls[1].content == "sprouted"
    # the model.request event of the turn lists the new tool too
    assert "box__sprout" in events(result, "model.request")[1]["tools"]


def test_sampling_with_an_explicit_model_and_hostile_requests() -> None:
    sampler = Model.scripted(["small answer", "never used"])
    result = run([[call("box__ask_model", prompt="hi", max_tokens=10_000_000),
                   call("box__ask_model", prompt="x" * 300_000)], "ok"], sampling=sampler)
    capped, huge = events(result, "mcp.sampling")
    assert capped["action"] == "allow" and capped["max_tokens"] == 4096  # capped, not 10 M
    assert capped["model"] == "scripted" and result.tool_calls[0].content == "model said: small answer"
    assert huge["action"] == "deny" and "300" in huge["reason"] and "characters" in huge["reason"]
    assert result.tool_calls[1].is_error
    # the sampling model's usage counts in the run's usage
    assert result.usage.requests == 3


def test_sampling_model_that_fails_is_an_error_for_the_server_and_an_event() -> None:
    def broken(request: Any) -> Any:
        raise RuntimeError("provider down")

    result = run([[call("box__ask_model", prompt="hi")], "ok"], sampling=Model.function(broken))
    [event] = events(result, "mcp.sampling")
    assert event["action"] == "error" and "provider down" in event["reason"]
    assert result.status == "completed" and result.tool_calls[0].is_error


def test_sampling_outside_a_run_needs_an_explicit_model() -> None:
    cap = Capability.mcp("box", command=TOOLBOX)
    agent = Agent(Model.scripted(["ok"]), capabilities=[cap])
    try:
        tools = asyncio.run(agent.resolve_tools())
        with pytest.raises(ToolError, match="no run is in progress"):
            asyncio.run(tools["box__ask_model"].function(prompt="hi"))
    finally:
        agent.close()
    cap = Capability.mcp("box", command=TOOLBOX, sampling=Model.scripted(["direct"]))
    agent = Agent(Model.scripted(["ok"]), capabilities=[cap])
    try:
        tools = asyncio.run(agent.resolve_tools())
        assert asyncio.run(tools["box__ask_model"].function(prompt="hi")) == "model said: direct"
    finally:
        agent.close()


def test_elicitation_answers_async_callbacks_bad_answers_and_raising_callbacks() -> None:
    async def later(request: Any) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"answer": f"yes to {request.message}"}

    result = run([[call("box__ask_person", question="proceed?")], "ok"], elicitation=later)
    assert result.tool_calls[0].content == "person said: yes to proceed?"
    for callback, reason in ((lambda r: 42, "returned int"),
                             (lambda r: {"answer": 3}, "do not match the requested schema"),
                             (lambda r: 1 / 0, "raised ZeroDivisionError")):
        result = run([[call("box__ask_person", question="q")], "ok"], elicitation=callback)
        [event] = events(result, "mcp.elicitation")
        assert event["action"] == "cancel" and reason in event["reason"]
        assert "did not answer: cancel" in result.tool_calls[0].content
    declined = run([[call("box__ask_person", question="q")], "ok"],
                   elicitation=lambda r: "decline")
    assert "did not answer: decline" in declined.tool_calls[0].content


def test_user_api_errors() -> None:
    with pytest.raises(ConfigError, match="is for MCP servers"):
        Capability.files(".").resources()
    cap = Capability.mcp("box", command=TOOLBOX)
    agent = Agent(Model.scripted(["ok"]), capabilities=[cap])
    try:
        assert [(r.uri, r.template) for r in cap.resources()] == [
            ("box://notes/<b>today</b>", False), ("box://notes/{day}", True)]
        [note] = cap.read("box://notes/monday")  # a template filled in
        assert note.text == "note of monday" and note.mime_type == "text/plain"
        assert cap.prompt("greet", {"name": "Ada"}).text == "Say hello to Ada, plain."
        with pytest.raises(ConfigError, match="takes a resource URI"):
            cap.read("")
        with pytest.raises(ConfigError, match="takes a dict"):
            cap.prompt("x", ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(ToolError, match="failed the request"):
            cap.read("file:///nowhere")
    finally:
        agent.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"sampling": 42}, "sampling=...) takes a Model"),
    ({"approve_sampling": "yes"}, "approve_sampling=...) takes a function"),
    ({"elicitation": "yes"}, "elicitation=...) takes a function"),
    ({"elicitation": "ask"}, "elicitation='ask'), pausing the run .* is not supported yet"),
    ({"roots": "/tmp"}, "takes a list of folders"),
    ({"roots": ["/no/such/folder"]}, "are not folders"),
])
def test_configuration_mistakes(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        Capability.mcp("box", command=TOOLBOX, **options)
    assert isinstance(raised.value, NotSupportedError) == ("'ask'" in message)


def test_the_run_card_shows_progress_while_the_call_runs_and_server_requests_after() -> None:
    from loom_nb.display.run import events_html

    result = run([[call("box__steps", count=2), call("box__ask_model", prompt="hi"),
                   call("box__warn", text="<hot>")], "ok"], sampling=Model.scripted(["fine"]))
    kinds = [e.type for e in result.events]
    last_progress = len(kinds) - 1 - kinds[::-1].index("mcp.progress")
    while_running = events_html(result.events[:last_progress + 1])
    assert "⏳ box__steps: 2 of 2 (step 2)" in while_running
    assert "step 1" not in while_running  # only the latest progress
    done = events_html(result.events)
    assert "⏳" not in done  # the call finished: its result shows instead
    assert "↳ box asked the model (sampling): answered" in done
    assert "⚠ box logged warning: warning: &lt;hot&gt;" in done  # escaped


@pytest.mark.anyio
async def test_a_server_request_while_calls_of_two_runs_are_in_flight_is_refused() -> None:
    # One capability (one server connection) shared by two agents whose runs overlap: the server's
    # sampling request cannot be told apart between them, so neither run's model answers it.
    cap = Capability.mcp("box", command=TOOLBOX)
    waiting = Agent(Model.scripted([[call("box__slow", seconds=3)], "ok"]), capabilities=[cap])
    asking = Agent(Model.scripted([[call("box__ask_model", prompt="hi")], "ok", "never"]),
                   capabilities=[cap])
    try:
        await waiting.resolve_tools()
        slow = asyncio.ensure_future(waiting.run("wait"))
        await asyncio.sleep(1.0)  # the slow call is in flight
        asked = await asking.run("ask")
        waited = await slow
    finally:
        await waiting.aclose()
        await asking.aclose()
    [event] = events(asked, "mcp.sampling")
    assert event["action"] == "deny" and "calls of 2 runs" in event["reason"]
    assert asked.tool_calls[0].is_error
    # the other run records what its server asked during its call, too
    assert events(waited, "mcp.sampling") == [event]
    assert waited.tool_calls[0].content == "slept 3.0"


def test_a_flood_of_progress_notifications_is_recorded_only_up_to_a_bound() -> None:
    from loom_nb.capability._mcp_requests import MAX_NOTES_PER_CALL

    result = run([[call("box__steps", count=MAX_NOTES_PER_CALL + 300)], "ok"])
    assert len(events(result, "mcp.progress")) == MAX_NOTES_PER_CALL
    assert result.tool_calls[0].content == f"{MAX_NOTES_PER_CALL + 300} steps"

