"""Every tool call has an identity of its own, whatever ids the provider sends.

Two calls of one turn with the same id, empty ids, or the same id in every turn (as compatible
servers send them): the run loop rewrites them where it takes the model's response, so each
call's result reaches the model under its own id, an approval runs the call the person saw, and
the ids sent back in the next request pair up (tool_use <-> tool_result). The wires are checked
with the real SDK clients against the loopback servers of tests/providers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from loom_nb import Agent, Message, Model, ModelResponse, Runtime, ToolCall, tool
from loom_nb.runtime import GovernancePolicy
from tests.backends import Backend
from providers.conftest import FAST  # tests/ is on sys.path: the reliability package's root
from providers.fake_servers import (
    FakeServer,
    SSEReply,
    anthropic_stream,
    chat_stream,
    responses_stream,
)

RAN: list[str] = []


@tool(read_only=True)
def lookup(key: str) -> str:
    """Look a key up."""
    RAN.append(f"lookup {key}")
    return f"{key}: found"


@tool(requires_approval=True)
def send_email(to: str) -> str:
    """Send an email."""
    RAN.append(f"send_email {to}")
    return f"sent to {to}"


@tool
def drop_table(name: str) -> str:
    """Drop a table."""
    RAN.append(f"drop_table {name}")
    return f"dropped {name}"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    RAN.clear()
    fake = FakeServer()
    try:
        yield fake
    finally:
        fake.close()


def _model(server: FakeServer, wire: str) -> Model:
    if wire == "anthropic":
        return Model.anthropic("claude-sonnet-5", api_key="k", base_url=server.url, **FAST)
    return Model.openai("gpt-5.4", api_key="k", base_url=f"{server.url}/v1", api=wire, **FAST)


def _turn(wire: str, calls: list[tuple[str, str, str]]) -> SSEReply:
    tools = [(call_id, name, [args]) for call_id, name, args in calls]
    if wire == "anthropic":
        return SSEReply(anthropic_stream(tools=tools))
    if wire == "chat":
        return SSEReply(chat_stream(tools=tools))
    return SSEReply(responses_stream(tools=tools))


def _answer(wire: str, text: str) -> SSEReply:
    if wire == "anthropic":
        return SSEReply(anthropic_stream(text=[text]))
    if wire == "chat":
        return SSEReply(chat_stream(text=[text]))
    return SSEReply(responses_stream(text=[text]))


def _sent_pairs(wire: str, body: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The call ids of the last assistant turn in a request, and the (id, content) results."""
    if wire == "anthropic":
        calls = [b["id"] for m in body["messages"] if m["role"] == "assistant"
                 for b in m["content"] if b["type"] == "tool_use"]
        results = [(b["tool_use_id"], b["content"]) for m in body["messages"] if m["role"] == "user"
                   and isinstance(m["content"], list) for b in m["content"]
                   if b["type"] == "tool_result"]
        return calls, results
    if wire == "chat":
        calls = [c["id"] for m in body["messages"] if m["role"] == "assistant"
                 for c in m.get("tool_calls") or []]
        results = [(m["tool_call_id"], m["content"]) for m in body["messages"] if m["role"] == "tool"]
        return calls, results
    calls = [i["call_id"] for i in body["input"] if i.get("type") == "function_call"]
    results = [(i["call_id"], i["output"]) for i in body["input"]
               if i.get("type") == "function_call_output"]
    return calls, results


WIRES = ["anthropic", "chat", "responses"]


@pytest.mark.parametrize("wire", WIRES)
def test_two_calls_with_one_id_each_get_their_own_result(server: FakeServer, wire: str) -> None:
    server.add(_turn(wire, [("toolu_X", "lookup", '{"key": "a"}'),
                            ("toolu_X", "lookup", '{"key": "b"}')]), _answer(wire, "done"))
    result = Agent(_model(server, wire), tools=[lookup]).run_sync("look a and b up")
    assert result.status == "completed", result.error
    assert RAN == ["lookup a", "lookup b"]
    calls, results = _sent_pairs(wire, server.requests[1].body)
    assert calls == ["toolu_X", "toolu_X_2"]
    assert results == [("toolu_X", "a: found"), ("toolu_X_2", "b: found")]  # not b twice
    assert [(c.call_id, c.content) for c in result.tool_calls] == [
        ("toolu_X", "a: found"), ("toolu_X_2", "b: found")]
    response = next(e for e in result.events if e.type == "model.response")
    assert [c.get("provider_id") for c in response.data["tool_calls"]] == [None, "toolu_X"]


@pytest.mark.parametrize("wire", WIRES)
def test_approving_the_call_seen_runs_that_call_and_never_the_denied_twin(
        server: FakeServer, wire: str) -> None:
    server.add(_turn(wire, [("X", "send_email", '{"to": "ana@example.org"}'),
                            ("X", "drop_table", '{"name": "users"}')]), _answer(wire, "sent"))
    agent = Agent(_model(server, wire), tools=[send_email, drop_table],
                  runtime=Runtime.sdk(governance=GovernancePolicy(deny=["drop_*"])))
    paused = agent.run_sync("email Ana, drop users")
    assert paused.status == "needs_approval" and RAN == []
    [shown] = paused.pending
    assert (shown.call_id, shown.name, shown.args) == ("X", "send_email", {"to": "ana@example.org"})
    done = paused.approve("X").resume_sync()
    assert done.status == "completed", done.error
    assert RAN == ["send_email ana@example.org"]  # exactly the call approved; drop_table never
    calls, results = _sent_pairs(wire, server.requests[1].body)
    assert calls == ["X", "X_2"]
    assert results[0] == ("X", "sent to ana@example.org")
    assert results[1][0] == "X_2" and "Denied by the governance policy" in results[1][1]


@pytest.mark.parametrize("wire", ["anthropic", "responses"])
def test_empty_ids_become_call_turn_index(server: FakeServer, wire: str) -> None:
    server.add(_turn(wire, [("", "lookup", '{"key": "a"}'), ("", "lookup", '{"key": "b"}')]),
               _answer(wire, "done"))
    result = Agent(_model(server, wire), tools=[lookup]).run_sync("a and b")
    assert result.status == "completed", result.error
    calls, results = _sent_pairs(wire, server.requests[1].body)
    assert calls == ["call_1_1", "call_1_2"]
    assert results == [("call_1_1", "a: found"), ("call_1_2", "b: found")]


def test_a_server_that_sends_no_ids_and_repeats_them_every_turn(server: FakeServer) -> None:
    # The chat adapter names a call without an id by its index: call_0 in every turn.
    server.add(_turn("chat", [("", "lookup", '{"key": "a"}')]),
               _turn("chat", [("", "lookup", '{"key": "b"}')]), _answer("chat", "done"))
    result = Agent(_model(server, "chat"), tools=[lookup]).run_sync("a then b")
    assert result.status == "completed", result.error
    assert [(c.call_id, c.content) for c in result.tool_calls] == [
        ("call_0", "a: found"), ("call_0_2", "b: found")]  # both kept: ids unique in the run
    calls, results = _sent_pairs("chat", server.requests[2].body)
    assert calls == ["call_0", "call_0_2"]
    assert results == [("call_0", "a: found"), ("call_0_2", "b: found")]


def _calls(*specs: tuple[str, str, dict[str, Any]]) -> ModelResponse:
    return ModelResponse(message=Message(role="assistant", parts=tuple(
        ToolCall(id=i, name=n, args=a) for i, n, a in specs)), stop_reason="tool_use")


def test_scripted_duplicates_empties_and_slashes() -> None:
    RAN.clear()
    model = Model.scripted([
        _calls(("X", "lookup", {"key": "a"}), ("X", "lookup", {"key": "b"}),
               ("X_2", "lookup", {"key": "c"}), ("", "lookup", {"key": "d"}),
               ("  ", "lookup", {"key": "e"}), ("d/x", "lookup", {"key": "f"})),
        [{"tool": "lookup", "id": "X", "args": {"key": "g"}}],
        "done"])
    result = Agent(model, tools=[lookup]).run_sync("many")
    assert result.status == "completed", result.error
    # a provider id that is unique keeps it (X_2), even when a duplicate would derive it
    first = ["X", "X_3", "X_2", "call_1_4", "call_1_5", "d_x"]
    assert [c.call_id for c in result.tool_calls] == [*first, "X_4"]
    assert [c.content for c in result.tool_calls] == [f"{k}: found" for k in "abcdefg"]
    sent = model.requests[1].messages
    assert [c.id for c in sent[-2].tool_calls] == first
    assert [r.call_id for r in sent[-1].tool_results] == first


def test_ids_stay_unique_across_a_pause_and_a_restore(backend: Backend) -> None:
    from loom_nb import SessionConfig

    RAN.clear()
    store = backend.spec
    model = Model.scripted([[{"tool": "send_email", "id": "c", "args": {"to": "a"}}]])
    agent = Agent(model, tools=[send_email, lookup])
    paused = agent.session(SessionConfig(id="s", store=store)).run_sync("mail")
    later = Agent(Model.scripted([[{"tool": "lookup", "id": "c", "args": {"key": "z"}}], "ok"]),
                  tools=[send_email, lookup])
    (waiting,) = later.session(SessionConfig(id="s", store=store)).waiting
    assert waiting.run_id == paused.run_id
    done = waiting.approve().resume_sync()
    assert done.status == "completed", done.error
    assert [(c.call_id, c.content) for c in done.tool_calls] == [
        ("c", "sent to a"), ("c_2", "z: found")]
