"""OpenTelemetry GenAI spans from runs (loom_nb.tracing), checked with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from loom_nb import Agent, Model, SessionConfig, tool
from loom_nb.errors import ConfigError
from loom_nb.events import SESSION_SUBSCRIBERS
from loom_nb.messages import Message, TextPart, ToolCall, Usage
from loom_nb.models import ModelResponse
from loom_nb.runtime import DelegationPolicy, Harness, QualityGate, Runtime
from loom_nb.tracing import Tracing, export_session, instrument, uninstrument

CONTENT_KEYS = {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "loom.context.changed"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()
    uninstrument()


def provider_for(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def traced(exporter: InMemorySpanExporter, *, policies: dict[str, Any] | None = None,
           capture_content: bool = False) -> Runtime:
    return Runtime.sdk(tracing=Tracing(provider_for(exporter), capture_content=capture_content),
                       **(policies or {}))


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@tool(requires_approval=True)
def wipe(path: str) -> str:
    """Wipe a path."""
    return f"wiped {path}"


def cached_model() -> Model:
    """A model that calls add once, then answers; each turn reports cache tokens."""
    def turn(request: Any) -> Any:
        usage = Usage(input_tokens=100, output_tokens=7, cache_read_tokens=60, cache_write_tokens=5,
                      requests=1)
        if not any(m.role == "tool" for m in request.messages):
            call = ToolCall(id="c1", name="add", args={"a": 2, "b": 3})
            return ModelResponse(message=Message(role="assistant", parts=(call,)), usage=usage,
                                 stop_reason="tool_use", model_name="fn-2024")
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text="It is 5."),)),
                             usage=usage, model_name="fn-2024")
    return Model.function(turn, name="fn")


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)


def named(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name.startswith(prefix)), key=lambda s: s.start_time)


def test_a_run_is_an_agent_span_with_chat_and_tool_children_and_genai_attributes(
        exporter: InMemorySpanExporter) -> None:
    agent = Agent(cached_model(), tools=[add], name="calc", runtime=traced(exporter))
    result = agent.run_sync("What is 2 + 3?")
    assert result.status == "completed"
    spans = list(exporter.get_finished_spans())
    assert sorted(s.name for s in spans) == ["chat fn", "chat fn", "execute_tool add", "invoke_agent calc"]
    [root] = named(spans, "invoke_agent")
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert all(parent_of(s, spans) is root for s in spans if s is not root)
    a = root.attributes or {}
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.agent.name"],
            a["gen_ai.request.model"], a["gen_ai.conversation.id"], a["loom.run.id"]) == (
        "invoke_agent", "function", "calc", "fn", result.session_id, result.run_id)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"],
            a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"],
            a["loom.run.status"], a["loom.run.turns"]) == (200, 14, 120, 10, "completed", 2)
    first, second = named(spans, "chat")
    assert first.kind == SpanKind.CLIENT and first.end_time <= second.start_time
    c = first.attributes or {}
    assert (c["gen_ai.operation.name"], c["gen_ai.provider.name"], c["gen_ai.request.model"],
            c["gen_ai.response.model"], c["gen_ai.response.finish_reasons"],
            c["gen_ai.usage.input_tokens"], c["gen_ai.usage.cache_read.input_tokens"],
            c["gen_ai.usage.cache_creation.input_tokens"]) == (
        "chat", "function", "fn", "fn-2024", ("tool_use",), 100, 60, 5)
    [call] = named(spans, "execute_tool")
    t = call.attributes or {}
    call_id = result.tool_calls[0].call_id
    assert call.kind == SpanKind.INTERNAL and first.end_time <= call.start_time <= second.start_time
    assert (t["gen_ai.operation.name"], t["gen_ai.tool.name"], t["gen_ai.tool.call.id"],
            t["gen_ai.tool.type"], t["loom.tool.outcome"], t["loom.governance.action"]) == (
        "execute_tool", "add", call_id, "function", "ok", "allow")
    assert call.status.status_code == StatusCode.UNSET
    # Span times are the events' times.
    started = next(e for e in result.events if e.type == "run.started")
    assert root.start_time == int(started.ts.timestamp() * 1e9)
    # No message content unless asked for.
    assert not any(CONTENT_KEYS & set(s.attributes or {}) for s in spans)


def test_capture_content_records_prompt_answer_arguments_and_result(exporter: InMemorySpanExporter) -> None:
    agent = Agent(cached_model(), "Be exact.", tools=[add], runtime=traced(exporter, capture_content=True))
    agent.run_sync("What is 2 + 3?")
    spans = list(exporter.get_finished_spans())
    [root] = named(spans, "invoke_agent")
    a = root.attributes or {}
    assert json.loads(str(a["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is 2 + 3?"}]}]
    assert json.loads(str(a["gen_ai.output.messages"]))[0]["parts"][0]["content"] == "It is 5."
    first, second = named(spans, "chat")
    assert "Be exact." in str((first.attributes or {})["gen_ai.system_instructions"])
    [out] = json.loads(str((first.attributes or {})["gen_ai.output.messages"]))
    call_id = str((named(spans, "execute_tool")[0].attributes or {})["gen_ai.tool.call.id"])
    assert out["parts"] == [{"type": "tool_call", "id": call_id, "name": "add", "arguments": {"a": 2, "b": 3}}]
    [call] = named(spans, "execute_tool")
    t = call.attributes or {}
    assert json.loads(str(t["gen_ai.tool.call.arguments"])) == {"a": 2, "b": 3}
    assert t["gen_ai.tool.call.result"] == "5"


def test_errors_set_the_span_status(exporter: InMemorySpanExporter) -> None:
    # A tool that raises is an error on its span; running out of scripted turns fails the run,
    # and the chat span that never got its response fails with it.
    agent = Agent(Model.scripted([{"tool": "explode", "args": {}}]), tools=[explode],
                  runtime=traced(exporter))
    result = agent.run_sync("go")
    assert result.status == "failed"
    spans = list(exporter.get_finished_spans())
    [call] = named(spans, "execute_tool")
    assert call.status.status_code == StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "RuntimeError"
    assert (call.attributes or {})["loom.tool.outcome"] == "error"
    [root] = named(spans, "invoke_agent")
    assert root.status.status_code == StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == result.error_type == "ScriptExhaustedError"
    assert root.status.description == result.error
    last_chat = named(spans, "chat")[-1]
    assert last_chat.status.status_code == StatusCode.ERROR
    assert "gen_ai.response.model" not in (last_chat.attributes or {})


def test_delegation_with_an_approval_pause_and_resume_is_one_connected_trace(
        exporter: InMemorySpanExporter) -> None:
    sub = Agent(Model.scripted([{"tool": "wipe", "args": {"path": "/x"}}, "Wiped /x."]),
                tools=[wipe], name="cleaner")
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "cleaner", "task": "wipe /x"}},
                                 "The cleaner is done."]), name="lead",
                 runtime=traced(exporter, policies={"delegation": DelegationPolicy.subagents({"cleaner": sub})}))
    paused = lead.run_sync("Clean up.")
    assert paused.status == "needs_approval"
    assert len(named(list(exporter.get_finished_spans()), "invoke_agent")) == 2  # visible while it waits
    done = paused.approve().resume_sync()
    assert done.status == "completed"
    spans = list(exporter.get_finished_spans())
    roots = [s for s in spans if parent_of(s, spans) is None]
    assert [r.name for r in roots] == ["invoke_agent lead"] and roots[0].parent is None
    assert len({s.context.trace_id for s in spans}) == 1
    agents = named(spans, "invoke_agent")
    assert [(s.name, (s.attributes or {})["loom.run.segment"], (s.attributes or {})["loom.run.status"])
            for s in agents] == [("invoke_agent lead", 0, "needs_approval"),
                                 ("invoke_agent cleaner", 0, "needs_approval"),
                                 ("invoke_agent lead", 1, "completed"),
                                 ("invoke_agent cleaner", 1, "completed")]
    lead0, cleaner0, lead1, cleaner1 = agents
    delegate = next(s for s in spans if s.name == "execute_tool delegate"
                    and (s.attributes or {}).get("loom.tool.outcome") == "awaiting_approval")
    assert parent_of(cleaner0, spans) is delegate and parent_of(delegate, spans) is lead0
    assert parent_of(lead1, spans) is lead0 and parent_of(cleaner1, spans) is cleaner0
    assert (cleaner0.attributes or {})["loom.run.parent_id"] == paused.run_id
    waiting, ran = named(spans, "execute_tool wipe")
    assert (waiting.attributes or {})["loom.tool.outcome"] == "awaiting_approval"
    assert parent_of(waiting, spans) is cleaner0 and parent_of(ran, spans) is cleaner1
    r = ran.attributes or {}
    assert (r["loom.tool.outcome"], r["loom.governance.action"], r["loom.governance.check"]) == (
        "ok", "allow", "approval")
    assert [e.name for e in ran.events] == ["loom.governance.decision", "loom.tool.started"]
    assert "loom.run.resumed" in [e.name for e in lead1.events]
    assert list((lead0.attributes or {})["loom.approval.pending"]) == ["call_1/call_1"]


def test_best_of_candidates_nest_under_their_run_with_verdict_events(exporter: InMemorySpanExporter) -> None:
    gate = QualityGate.check(lambda output: len(output) > 5)
    agent = Agent(Model.scripted(["short", "long enough"]), name="writer",
                  runtime=traced(exporter, policies={"harness": Harness.best_of(2), "quality": gate}))
    result = agent.run_sync("Write.")
    assert result.status == "completed"
    spans = list(exporter.get_finished_spans())
    root, *candidates = named(spans, "invoke_agent")
    assert len(candidates) == 2 and all(parent_of(c, spans) is root for c in candidates)
    assert [e.attributes["loom.mode"] for e in root.events if e.name == "loom.harness.attempt"] == [
        "candidate", "candidate"]
    verdicts = [dict(e.attributes or {}) for e in root.events if e.name == "loom.quality.verdict"]
    assert [(v["loom.attempt"], v["loom.quality.passed"]) for v in verdicts] == [(1, False), (2, True)]
    assert "loom.quality.critique" not in verdicts[0]  # content
    assert (root.attributes or {})["loom.harness.winner"] == 2


def test_observed_signals_are_events_on_the_run_that_sees_them(exporter: InMemorySpanExporter) -> None:
    from loom_nb import RuntimeSignal
    agent = Agent(Model.scripted(["ok"]), runtime=traced(exporter))
    session = agent.session()
    decision = session.receive_sync(RuntimeSignal(source="ci", type="build", summary="secret text",
                                                  urgency="low"))
    assert decision.action == "observe"
    session.run_sync("status?")
    [root] = named(list(exporter.get_finished_spans()), "invoke_agent")
    [event] = [e for e in root.events if e.name == "loom.signal"]
    assert dict(event.attributes or {}) == {"loom.signal.source": "ci", "loom.signal.type": "build",
                                            "loom.signal.urgency": "low", "loom.signal.how": "observed"}


def test_export_session_makes_the_live_spans_from_the_store(tmp_path: Path,
                                                           exporter: InMemorySpanExporter) -> None:
    store = str(tmp_path / "s.db")
    sub = Agent(Model.scripted(["sub answer"]), name="helper")
    lead = Agent(Model.scripted([{"tool": "delegate", "args": {"agent": "helper", "task": "t"}},
                                 {"tool": "add", "args": {"a": 1, "b": 2}}, "done"]),
                 tools=[add], name="lead",
                 runtime=traced(exporter, policies={"delegation": DelegationPolicy.subagents({"helper": sub})}))
    session = lead.session(SessionConfig(store=store))
    session.run_sync("go")
    live = list(exporter.get_finished_spans())

    def shape(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
        return sorted((s.name, getattr(parent_of(s, spans), "name", None), s.start_time, s.end_time,
                       s.status.status_code, tuple(sorted((s.attributes or {}).items())),
                       tuple(e.name for e in s.events)) for s in spans)

    for source in (store, session):
        offline = InMemorySpanExporter()
        assert export_session(source, offline) == len(live) == 8
        assert shape(list(offline.get_finished_spans())) == shape(live)
    with pytest.raises(ConfigError, match="exactly one"):
        export_session(store)


def test_instrument_traces_sessions_opened_after_it_until_uninstrument(exporter: InMemorySpanExporter) -> None:
    assert SESSION_SUBSCRIBERS == []
    assert Agent(Model.scripted(["a"])).session()._subscribers == []  # tracing off: nothing added
    tracing = instrument(provider_for(exporter))
    assert SESSION_SUBSCRIBERS == [tracing]
    Agent(Model.scripted(["a"]), name="one").run_sync("x")
    instrument(provider_for(exporter))  # replaces, does not add
    assert len(SESSION_SUBSCRIBERS) == 1
    Agent(Model.scripted(["b"]), name="two").run_sync("x")
    uninstrument()
    Agent(Model.scripted(["c"]), name="three").run_sync("x")
    assert [s.name for s in named(list(exporter.get_finished_spans()), "invoke_agent")] == [
        "invoke_agent one", "invoke_agent two"]


def test_runtime_tracing_takes_a_tracing_or_true() -> None:
    assert isinstance(Runtime.sdk(tracing=True).tracing, Tracing)
    assert Runtime.sdk().tracing is None
    with pytest.raises(ConfigError, match="Runtime\\(tracing=...\\) takes"):
        Runtime(tracing="yes")  # type: ignore[arg-type]


def test_without_opentelemetry_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"pip install 'loom-nb\[otel\]'"):
        instrument()


def test_a_failing_tracer_never_fails_the_run(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            raise_on = super().get_tracer(*args, **kwargs)

            class Tracer:
                def start_span(self, *a: Any, **k: Any) -> Any:
                    raise RuntimeError("exporter down")
            del raise_on
            return Tracer()

    agent = Agent(Model.scripted(["fine"]), runtime=Runtime.sdk(tracing=Tracing(Broken())))
    with caplog.at_level(logging.WARNING, logger="loom_nb.tracing"):
        result = agent.run_sync("x")
    assert (result.status, result.output) == ("completed", "fine")
    assert sum("could not be turned into spans" in r.message for r in caplog.records) == 1


def test_live_only_output_partial_events_leave_the_spans_whole(exporter: InMemorySpanExporter) -> None:
    # output.partial carries the seq of the model.response that follows it (it is live only):
    # tracing must not take it for that event and drop the response.
    from pydantic import BaseModel

    class Sum(BaseModel):
        total: int

    async def answer(request: Any) -> Any:
        for piece in ['{"tot', 'al": 5', '}']:
            yield piece

    agent = Agent(Model.function(answer, name="fn"), runtime=traced(exporter), output_type=Sum)
    stream = agent.stream("2 + 3?")

    async def kinds() -> list[str]:
        return [event.type async for event in stream]

    from loom_nb import _bridge
    assert "output.partial" in _bridge.run_sync(kinds()) and stream.result is not None
    assert stream.result.output == Sum(total=5)
    spans = exporter.get_finished_spans()
    chat = [s for s in spans if s.name.startswith("chat")]
    assert len(chat) == 1 and chat[0].attributes is not None
    assert chat[0].attributes.get("gen_ai.usage.output_tokens") is not None
