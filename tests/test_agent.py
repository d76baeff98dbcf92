"""The agent loop: events, streaming, limits, failures and the sync bridge."""

from __future__ import annotations

import asyncio
import threading

import pytest

from loom_nb import (Agent, ConfigError, Limits, Model, ModelRequest, RunContext, RunError,
                     Runtime, RuntimeTask, tool)


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value-of-{key}"


@tool
def broken(n: int) -> int:
    """Always fails."""
    raise RuntimeError(f"disk {n} is on fire")


def test_tool_round_trip_events_and_result() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"key": "a"}}, "The value is value-of-a."])
    result = Agent(model, "Be terse.", tools=[lookup], name="finder").run_sync("What is a?")
    assert (result.status, result.output, result.turns, result.error) == (
        "completed", "The value is value-of-a.", 2, None)
    assert [e.type for e in result.events] == [
        "run.started", "model.request", "model.response", "tool.call", "governance.decision",
        "tool.result", "model.request", "model.response", "run.finished"]
    assert [e.seq for e in result.events] == list(range(9))
    assert {e.run_id for e in result.events} == {result.run_id}
    assert result.events[0].data["prompt"] == "What is a?"
    assert result.events[0].data["agent"] == "finder"
    assert result.events[1].data["context"]["partitions"]["history"] > 0
    assert result.usage.requests == 2 and result.usage.input_tokens > 0
    (call,) = result.tool_calls
    assert (call.name, call.args, call.content, call.is_error) == ("lookup", {"key": "a"}, "value-of-a", False)
    # the model saw the system prompt, the tools, and the tool result
    second = model.requests[1]
    assert second.system == "Be terse."
    assert [t.name for t in second.tools] == ["lookup"]
    assert second.messages[-1].tool_results[0].content == "value-of-a"
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]


def test_tool_exception_goes_to_the_model_and_run_goes_on() -> None:
    model = Model.scripted([{"tool": "broken", "args": {"n": 3}}, "The disk failed; sorry."])
    result = Agent(model, tools=[broken]).run_sync("check disk 3")
    assert result.status == "completed" and result.output == "The disk failed; sorry."
    sent = model.requests[1].messages[-1].tool_results[0]
    assert sent.is_error and sent.content == "Tool 'broken' raised RuntimeError: disk 3 is on fire"
    tool_result = next(e for e in result.events if e.type == "tool.result")
    assert tool_result.data["error_type"] == "RuntimeError" and "on fire" in tool_result.data["traceback"]


def test_invalid_arguments_go_to_the_model() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"key": 5, "extra": 1}}, "ok"])
    result = Agent(model, tools=[lookup]).run_sync("x")
    sent = model.requests[1].messages[-1].tool_results[0]
    assert sent.is_error and "Invalid arguments for tool 'lookup'" in sent.content
    assert "extra: Extra inputs are not permitted" in sent.content and result.status == "completed"


def test_several_tool_calls_in_one_turn_run_in_order() -> None:
    model = Model.scripted([[{"tool": "lookup", "args": {"key": "a"}},
                             {"tool": "lookup", "args": {"key": "b"}}], "both"])
    result = Agent(model, tools=[lookup]).run_sync("x")
    assert [c.content for c in result.tool_calls] == ["value-of-a", "value-of-b"]
    assert len(model.requests[1].messages[-1].tool_results) == 2


def test_max_turns_limit_ends_with_what_it_had() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"key": "a"}}] * 3)
    agent = Agent(model, tools=[lookup], runtime=Runtime.sdk(max_turns=2))
    session = agent.session()
    result = session.run_sync("loop forever")
    assert (result.status, result.limit, result.turns) == ("limit", "max_turns", 2)
    assert "max_turns=2" in (result.error or "") and "Runtime.sdk(max_turns=...)" in (result.error or "")
    assert result.events[-1].data["limit"] == "max_turns"
    # history ends with complete tool exchanges: a valid conversation to continue from
    assert [m.role for m in session.messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert model.remaining == 1


def test_output_at_a_limit_is_the_last_text_written() -> None:
    from loom_nb import Message, ModelResponse, TextPart, ToolCall

    thinking = ModelResponse(message=Message(role="assistant", parts=(
        TextPart(text="Let me look."), ToolCall(id="c1", name="lookup", args={"key": "k"}))),
        stop_reason="tool_use")
    result = Agent(Model.scripted([thinking]), tools=[lookup],
                   runtime=Runtime.sdk(max_turns=1)).run_sync("x")
    assert (result.status, result.output) == ("limit", "Let me look.")


def test_budget_in_run_context_replaces_runtime_limits() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"key": "a"}}, "done"])
    agent = Agent(model, tools=[lookup], runtime=Runtime.sdk(max_turns=1))
    result = agent.run_sync("x", RunContext(budget=Limits(max_turns=5)))
    assert result.status == "completed"


def test_token_and_time_limits() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"key": "a"}}, "never"])
    result = Agent(model, tools=[lookup], runtime=Runtime.sdk(max_tokens=10)).run_sync("x")
    assert (result.status, result.limit) == ("limit", "max_tokens")

    async def slow(request: ModelRequest) -> dict:
        await asyncio.sleep(0.05)
        return {"tool": "lookup", "args": {"key": "a"}}

    result = Agent(Model.function(slow), tools=[lookup],
                   runtime=Runtime.sdk(max_seconds=0.01)).run_sync("x")
    assert (result.status, result.limit, result.turns) == ("limit", "max_seconds", 1)
    with pytest.raises(ConfigError, match="positive number"):
        Limits(max_turns=0)


def test_task_and_context_inputs_go_to_the_working_partition() -> None:
    model = Model.scripted(["done"])
    task = RuntimeTask("Summarize the table", inputs={"rows": 3}, criteria=["one sentence"],
                       metadata={"suite": "a"})
    result = Agent(model, "Be brief.").run_sync(task, RunContext(inputs={"user": "ana"}))
    request = model.requests[0]
    assert request.system == ("Be brief.\n\nTask inputs:\n- rows: 3\n\nAcceptance criteria:\n"
                              "- one sentence\n\nRun inputs:\n- user: ana")
    assert [m.text for m in request.messages] == ["Summarize the table"]
    assert result.events[0].data["task"]["metadata"] == {"suite": "a"}


def test_script_exhaustion_fails_clearly() -> None:
    agent = Agent(Model.scripted(["one"]))
    assert agent.run_sync("a").output == "one"
    result = agent.run_sync("b")
    assert (result.status, result.error_type) == ("failed", "ScriptExhaustedError")
    assert "no turn left" in (result.error or "") and "Add turns to Model.scripted" in (result.error or "")
    with pytest.raises(RunError, match="status 'failed'"):
        result.raise_for_status()


def test_unexpected_model_exception_fails_the_run_with_a_traceback() -> None:
    def model_fn(request: ModelRequest) -> str:
        raise ZeroDivisionError("bad math")

    result = Agent(Model.function(model_fn)).run_sync("x")
    assert (result.status, result.error) == ("failed", "ZeroDivisionError: bad math")
    assert "ZeroDivisionError" in result.events[-1].data["traceback"]


def test_scripted_turns_are_checked_up_front() -> None:
    with pytest.raises(ConfigError, match=r"Turn 1 of Model.scripted"):
        Model.scripted(["ok", {"tol": "x"}])
    with pytest.raises(ConfigError, match="list of turns"):
        Model.scripted("hello")


def test_model_strings_and_env() -> None:
    with pytest.raises(ConfigError, match="provider:name"):
        Model.from_string("claude")
    with pytest.raises(ConfigError, match="Unknown model provider 'nope'"):
        Model.from_string("nope:model")
    with pytest.raises(ConfigError, match="set LOOM_MODEL"):
        Agent(None)  # type: ignore[arg-type]
    assert Model.from_env(default=Model.scripted(["x"])).identifier == "scripted:scripted"


def test_function_model_sync_async_and_streaming() -> None:
    seen: list[int] = []

    def sync_fn(request: ModelRequest) -> str:
        seen.append(len(request.messages))
        return "sync"

    async def async_fn(request: ModelRequest) -> str:
        return "async"

    async def streaming(request: ModelRequest):
        for chunk in ("str", "eam", "ed"):
            yield chunk

    assert Agent(Model.function(sync_fn)).run_sync("x").output == "sync" and seen == [1]
    assert Agent(Model.function(async_fn)).run_sync("x").output == "async"
    assert Agent(Model.function(streaming)).run_sync("x").output == "streamed"


@pytest.mark.anyio
async def test_stream_delivers_events_in_real_time() -> None:
    first_delta_seen = asyncio.Event()

    async def model_fn(request: ModelRequest):
        yield "Hello"
        # The model cannot go on until the consumer has seen the first delta: if events were
        # only delivered at the end, this would time out.
        await asyncio.wait_for(first_delta_seen.wait(), timeout=5)
        yield " world"

    stream = Agent(Model.function(model_fn)).stream("hi")
    types = []
    async for event in stream:
        types.append(event.type)
        if event.type == "model.delta":
            first_delta_seen.set()
    assert types == ["run.started", "model.request", "model.delta", "model.delta",
                     "model.response", "run.finished"]
    assert stream.result is not None and stream.result.output == "Hello world"
    # deltas are live-only: not in the result's events, and they share the response's seq
    assert [e.type for e in stream.result.events] == ["run.started", "model.request",
                                                      "model.response", "run.finished"]


@pytest.mark.anyio
async def test_leaving_a_stream_early_cancels_the_run() -> None:
    async def model_fn(request: ModelRequest):
        yield "part"
        await asyncio.sleep(30)
        yield "never"

    session = Agent(Model.function(model_fn)).session()
    async with session.stream("hi") as stream:
        async for event in stream:
            if event.type == "model.delta":
                break
    assert stream.result is not None and stream.result.status == "cancelled"
    assert stream.result.output == "part"  # the text streamed before the cancel is kept
    assert session.runs[0].status == "cancelled"
    assert [m.role for m in session.messages] == ["user"]


def test_run_sync_inside_a_running_event_loop() -> None:
    agent = Agent(Model.scripted(["from inside a loop"]))

    async def cell() -> str:  # what a Jupyter cell is: code running inside an event loop
        asyncio.get_running_loop()
        return agent.run_sync("x").output

    assert asyncio.run(cell()) == "from inside a loop"


def test_run_sync_runs_on_one_background_loop_and_keeps_contextvars() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("cell", default="none")
    loops: list[int] = []

    async def model_fn(request: ModelRequest) -> str:
        loops.append(id(asyncio.get_running_loop()))
        return var.get()

    agent = Agent(Model.function(model_fn))
    var.set("cell-7")
    assert agent.run_sync("x").output == "cell-7"
    other = threading.Thread(target=lambda: agent.run_sync("y"))
    other.start()
    agent.run_sync("z")
    other.join(10)
    assert not other.is_alive() and len(loops) == 3 and len(set(loops)) == 1


@pytest.mark.anyio
async def test_run_sync_from_inside_a_run_is_refused_with_advice() -> None:
    inner = Agent(Model.scripted(["inner"]))

    @tool
    async def nested() -> str:
        """Calls another agent the wrong way."""
        return inner.run_sync("x").output

    outer = Agent(Model.scripted([{"tool": "nested", "args": {}}, "done"]), tools=[nested])
    result = await asyncio.to_thread(outer.run_sync, "go")
    assert "use `await agent.run(...)`" in (result.tool_calls[0].content or "")


@pytest.mark.anyio
async def test_await_run_is_the_async_path() -> None:
    result = await Agent(Model.scripted(["awaited"])).run("x")
    assert result.output == "awaited"


@pytest.mark.parametrize(("stop", "status", "check"), [
    ("max_tokens", "limit", "cut off at the model's output limit"),
    ("refusal", "failed", "The model refused to answer: I cannot help with that."),
    ("context_window_exceeded", "failed", "context window was full"),
])
def test_final_stop_reasons_end_the_run_clearly(stop: str, status: str, check: str) -> None:
    from loom_nb import Message, ModelResponse, TextPart

    reply = ModelResponse(message=Message(role="assistant", parts=(TextPart(text="I cannot help with that."),)),
                          stop_reason=stop)  # type: ignore[arg-type]
    session = Agent(Model.scripted([reply])).session()
    result = session.run_sync("x")
    assert result.status == status and check in (result.error or "")
    assert result.output == "I cannot help with that."  # the answer is kept
    assert [m.role for m in session.messages] == ["user", "assistant"]
    if stop == "max_tokens":
        assert result.limit == "model_max_tokens"
