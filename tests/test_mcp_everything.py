"""Capability.mcp against the official reference server, ``@modelcontextprotocol/server-everything``
(npm, version pinned in tests/mcp_servers/everything.py), over stdio and streamable HTTP on
loopback: client capabilities, content, resources, prompts, sampling, elicitation, roots, progress."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from loom_nb import Agent, Capability, Model
from loom_nb.governance import GovernanceDecision
from loom_nb.runtime import GovernancePolicy, Runtime

def _load_installer() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "mcp_everything_installer", Path(__file__).parent / "mcp_servers" / "everything.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


everything = _load_installer()

SERVER = "everything"


@pytest.fixture(scope="session")
def everything_entry() -> Path:
    try:
        return everything.install()
    except everything.NodeMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def everything_url(everything_entry: Path, http_process: Any) -> str:
    port, _ = http_process(everything.http_command(), env={**os.environ, "PORT": "{port}"})
    return f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(params=["stdio", "http"])
def where(request: pytest.FixtureRequest, everything_entry: Path) -> dict[str, Any]:
    if request.param == "stdio":
        return {"command": everything.stdio_command()}
    return {"url": request.getfixturevalue("everything_url")}


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def run(caps: list[Capability], turns: list[Any], **agent: Any) -> tuple[Any, Any, Agent]:
    model = Model.scripted(turns)
    a = Agent(model, capabilities=caps, **agent)
    try:
        return a.run_sync("go"), model, a
    finally:
        a.close()


def results(result: Any) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.is_error, c.content) for c in result.tool_calls}


def events(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in result.events if e.type == kind]


def test_installed_version_is_the_pinned_one(everything_entry: Path) -> None:
    assert everything.installed_version() == everything.VERSION == "2026.8.31"


def test_client_capabilities_make_the_server_offer_its_features_and_task_tools_are_left_out(
        where: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare = Capability.mcp("ev", sampling=False, elicitation=False, **where)
    full = Capability.mcp("ev", roots=[tmp_path], **where)
    with caplog.at_level(logging.WARNING, logger="loom_nb.mcp"):
        _, bare_model, _ = run([bare], ["ok"])
        _, full_model, _ = run([full], ["ok"])
    offered = {t.name for t in bare_model.requests[0].tools}
    assert "ev__echo" in offered and "ev__trigger-sampling-request" not in offered
    assert "ev__trigger-elicitation-request" not in offered and "ev__get-roots-list" not in offered
    tools = {t.name for t in full_model.requests[0].tools}
    assert {"ev__trigger-sampling-request", "ev__trigger-elicitation-request",
            "ev__get-roots-list", "ev__list_resources", "ev__read_resource"} <= tools
    # simulate-research-query runs only as an MCP task: not offered, with the reason logged
    assert "ev__simulate-research-query" not in tools
    assert any("simulate-research-query" in r.getMessage() and "taskSupport" in r.getMessage()
               for r in caplog.records)


def test_sampling_is_answered_by_the_runs_model_counted_and_recorded(where: dict[str, Any]) -> None:
    def brain(request: Any) -> Any:
        if request.system == "You are a helpful test server.":  # the server's sampling request
            assert request.messages[0].text.endswith("context: what is 6*7?")
            assert request.tools == ()
            return "forty-two"
        if len(request.messages) == 1:
            return call("ev__trigger-sampling-request", prompt="what is 6*7?", maxTokens=20)
        return "done"

    model = Model.function(brain)
    agent = Agent(model, capabilities=[Capability.mcp("ev", **where)])
    try:
        result = agent.run_sync("sample")
    finally:
        agent.close()
    assert result.status == "completed", result.error
    content = results(result)["ev__trigger-sampling-request"][1]
    answer = json.loads(content.split("\n", 1)[1])
    assert answer["content"] == {"type": "text", "text": "forty-two"}
    assert answer["model"] == "function" and answer["role"] == "assistant"
    [sampled] = events(result, "mcp.sampling")
    assert sampled["action"] == "allow" and sampled["tool"] == "ev__trigger-sampling-request"
    assert sampled["max_tokens"] == 20 and sampled["text"] == "forty-two"
    assert result.usage.requests == 3  # two turns of the run and the server's sampling request
    # the sampling event is stored between the call and its result
    kinds = [e.type for e in result.events]
    assert kinds.index("tool.call") < kinds.index("mcp.sampling") < kinds.index("tool.result")


def ask_for_sampling(request: Any) -> GovernanceDecision | None:
    if request.name.endswith("__sampling"):
        return GovernanceDecision(action="ask", reason="Sampling needs a person's approval.",
                                  check="veto")
    return None


def test_sampling_under_governance_denied_asked_and_approved(where: dict[str, Any]) -> None:
    turn = [call("ev__trigger-sampling-request", prompt="hi")]
    denied, _, _ = run([Capability.mcp("ev", sampling=Model.scripted(["never"]), **where)],
                       [turn, "ok"], runtime=Runtime.sdk(
                           governance=GovernancePolicy(deny=["*__sampling"])))
    [event] = events(denied, "mcp.sampling")
    assert event["action"] == "deny" and event["check"] == "deny_list"
    assert "Sampling refused by the client" in results(denied)["ev__trigger-sampling-request"][1]
    seen: list[Any] = []
    approved, _, _ = run([Capability.mcp(
        "ev", sampling=Model.scripted(["yes"]), approve_sampling=lambda r: seen.append(r) or True,
        **where)], [turn, "ok"], runtime=Runtime.sdk(governance=GovernancePolicy(
            vetoes=[ask_for_sampling])))
    [event] = events(approved, "mcp.sampling")
    assert event["action"] == "allow" and event["check"] == "approval"
    assert seen[0].server == "ev" and seen[0].tool == "ev__trigger-sampling-request"
    refused, _, _ = run([Capability.mcp("ev", sampling=Model.scripted(["yes"]), **where)],
                        [turn, "ok"], runtime=Runtime.sdk(governance=GovernancePolicy(
                            vetoes=[ask_for_sampling])))
    [event] = events(refused, "mcp.sampling")
    assert event["action"] == "deny" and "approve_sampling=callback" in event["reason"]


def test_elicitation_callback_accepts_and_without_one_it_is_declined(where: dict[str, Any]) -> None:
    asked: list[Any] = []

    def person(request: Any) -> dict[str, Any]:
        asked.append(request)
        return {"name": "Ada Lovelace", "check": True, "email": "ada@example.org"}

    turn = [call("ev__trigger-elicitation-request")]
    accepted, _, _ = run([Capability.mcp("ev", elicitation=person, **where)], [turn, "ok"])
    text = results(accepted)["ev__trigger-elicitation-request"][1]
    assert "User provided the requested information" in text and "Ada Lovelace" in text
    assert asked[0].mode == "form" and "email" in asked[0].schema["properties"]
    [event] = events(accepted, "mcp.elicitation")
    assert event["action"] == "accept" and event["answered_by"] == "callback"
    assert "Ada" not in json.dumps(event)  # the person's values are not recorded in events
    declined, _, _ = run([Capability.mcp("ev", **where)], [turn, "ok"])
    assert "declined" in results(declined)["ev__trigger-elicitation-request"][1]
    [event] = events(declined, "mcp.elicitation")
    assert event["action"] == "decline" and event["answered_by"] == "nobody"
    assert "elicitation= callback" in event["reason"]
    # values that do not match the requested schema: cancelled, and the event says why
    cancelled, _, _ = run([Capability.mcp("ev", elicitation=lambda r: {"email": 7}, **where)],
                          [turn, "ok"])
    [event] = events(cancelled, "mcp.elicitation")
    assert event["action"] == "cancel" and "email" in event["reason"]


def test_url_elicitation_gives_the_callback_the_page_to_open(where: dict[str, Any]) -> None:
    asked: list[Any] = []
    turn = [call("ev__trigger-url-elicitation", url="https://example.org/consent",
                 message="Open the consent page")]
    result, _, _ = run([Capability.mcp("ev", elicitation=lambda r: asked.append(r) or "accept",
                                       **where)], [turn, "ok"])
    assert asked[0].mode == "url" and asked[0].url == "https://example.org/consent"
    assert asked[0].message == "Open the consent page"
    [event] = events(result, "mcp.elicitation")
    assert event["mode"] == "url" and event["action"] == "accept"
    assert not result.tool_calls[0].is_error and "accept" in result.tool_calls[0].content


def test_content_structured_blob_references_links_and_reading_them(where: dict[str, Any]) -> None:
    turns = [[call("ev__get-structured-content", location="New York"),
              call("ev__get-resource-reference", resourceType="Blob", resourceId=2),
              call("ev__get-resource-reference", resourceType="Text", resourceId=3),
              call("ev__get-resource-links", count=2)],
             [call("ev__read_resource", uri="demo://resource/dynamic/blob/2"),
              call("ev__list_resources")], "ok"]
    result, _, _ = run([Capability.mcp("ev", **where)], turns)
    calls = result.tool_calls
    weather = json.loads(calls[0].content)
    assert set(weather) == {"temperature", "conditions", "humidity"}  # said once, not twice
    blob = calls[1].content
    assert "[binary resource demo://resource/dynamic/blob/2 (text/plain" in blob
    assert 'read it with ev__read_resource(uri="demo://resource/dynamic/blob/2")' in blob
    assert "[resource demo://resource/dynamic/text/3 (text/plain)]\nResource 3: This is a " \
           "plaintext resource" in calls[2].content
    assert calls[3].content.count("[resource link demo://resource/dynamic/") == 2
    read = calls[4].content
    assert read.startswith("[resource demo://resource/dynamic/blob/2 (text/plain)]\nResource 2:")
    listing = calls[5].content
    assert "template demo://resource/dynamic/text/{resourceId}" in listing
    assert "demo://resource/static/document/architecture.md (text/markdown)" in listing


def test_an_image_from_a_tool_reaches_the_model_as_an_image_part(where: dict[str, Any]) -> None:
    result, model, _ = run([Capability.mcp("ev", **where)],
                           [[call("ev__get-tiny-image")], "ok"])
    parts = model.requests[1].messages[-1].parts[0]
    assert "not shown to the model" not in parts.content
    assert "image (image/png, " in parts.content and ": attached]" in parts.content
    (image,) = parts.media
    assert image.media_type == "image/png" and image.data.startswith(b"\x89PNG")


def test_resources_and_prompts_for_the_user(where: dict[str, Any]) -> None:
    cap = Capability.mcp("ev", **where)
    agent = Agent(Model.scripted(["ok"]), capabilities=[cap])
    try:
        listed = cap.resources()
        uris = {r.uri for r in listed}
        assert "demo://resource/static/document/architecture.md" in uris
        assert any(r.template and r.uri == "demo://resource/dynamic/blob/{resourceId}"
                   for r in listed)
        [text] = cap.read("demo://resource/dynamic/text/1")
        assert text.text.startswith("Resource 1: This is a plaintext resource")
        [blob] = cap.read("demo://resource/dynamic/blob/1")
        assert blob.text is None and blob.data.startswith(b"Resource 1: This is a base64 blob")
        prompts = {p.name: p for p in cap.prompts()}
        assert prompts["args-prompt"].arguments[0] == ("city", True, "Name of the city")
        rendered = cap.prompt("args-prompt", {"city": "Paris", "state": "Ile-de-France"})
        assert rendered.text == "What's weather in Paris, Ile-de-France?"
        result = agent.run_sync(rendered.text)
        assert result.status == "completed"
        with pytest.raises(Exception, match="failed the request"):
            cap.prompt("no-such-prompt")
    finally:
        agent.close()


def test_progress_is_recorded_and_roots_are_listed(where: dict[str, Any], tmp_path: Path) -> None:
    turns = [[call("ev__trigger-long-running-operation", duration=1, steps=3),
              call("ev__get-roots-list")], "ok"]
    result, _, _ = run([Capability.mcp("ev", roots=[tmp_path], **where)], turns)
    progress = events(result, "mcp.progress")
    assert [(p["progress"], p["total"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert all(p["tool"] == "ev__trigger-long-running-operation" for p in progress)
    roots = result.tool_calls[1].content
    assert f"URI: {tmp_path.as_uri()}" in roots and "(1 total)" in roots


def test_callbacks_run_in_the_context_of_the_call_they_answer_for(where: dict[str, Any]) -> None:
    # server-everything sends its requests on the connection (protocol 2025-11-25), not in the
    # call's task: the callback must still see the context of the call it answers for.
    import asyncio
    import contextvars

    from loom_nb.delegation import CURRENT_RUN

    cell = contextvars.ContextVar("cell", default="none")
    seen: dict[str, Any] = {}

    async def person(request: Any) -> dict[str, Any]:
        # as ipykernel's parent header is: what the callback prints lands in the running cell
        seen["cell"], seen["run"] = cell.get(), CURRENT_RUN.get()
        return {"name": "Ada", "check": True, "email": "ada@example.org"}

    agent = Agent(Model.scripted([[call("ev__trigger-elicitation-request")], "ok"]),
                  capabilities=[Capability.mcp("ev", elicitation=person, **where)])
    try:
        # the connection is made from another cell than the one whose run asks
        contextvars.copy_context().run(lambda: (cell.set("cell 1"),
                                                asyncio.run(agent.resolve_tools())))
        cell.set("cell 7")
        result = agent.run_sync("go")
    finally:
        agent.close()
    assert "User provided the requested information" in result.tool_calls[0].content
    assert seen["cell"] == "cell 7" and seen["run"].run_id == result.run_id
