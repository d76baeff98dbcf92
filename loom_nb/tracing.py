"""OpenTelemetry spans of runs, following the GenAI semantic conventions.

A :class:`Tracing` is one more subscriber of the event stream: it turns the events of every run
into spans, live, and :func:`export_session` turns stored events into the same spans later. The
run loop knows nothing of it. Spans (conventions: open-telemetry/semantic-conventions-genai,
``gen-ai-agent-spans.md`` and ``gen-ai-spans.md``):

==========================  ========  =================================================================
span                        kind      from
==========================  ========  =================================================================
``invoke_agent {agent}``    INTERNAL  ``run.started`` to ``run.finished``; a resumed run adds one more,
                                      a child of the span that paused; sub-agent runs and best-of
                                      candidates are children of the ``delegate`` call / the run
``chat {model}``            CLIENT    ``model.request`` to ``model.response`` (usage, finish reasons)
``execute_tool {tool}``     INTERNAL  ``tool.call`` to ``tool.result`` (governance decision, outcome)
==========================  ========  =================================================================

Retries, signals, approvals, compaction, renewal, harness attempts and quality verdicts are span
events. Message content (prompts, answers, tool arguments and results, critiques, signal
summaries) is recorded only with ``capture_content=True``. opentelemetry-api/-sdk are the
``otel`` extra and are imported only when tracing is used.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigError
from .events import LIVE_ONLY, SESSION_SUBSCRIBERS

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

__all__ = ["Tracing", "export_session", "instrument", "uninstrument"]

_INSTALL = "pip install 'loom-nb[otel]'"
_log = logging.getLogger(__name__)
#: How many ended runs are remembered (for a resume, and to drop events delivered twice).
_REMEMBERED_RUNS = 4096


def _trace_api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError(f"Tracing needs OpenTelemetry, which is not installed. Install it with "
                          f"`{_INSTALL}`.") from None
    return trace


class _Event(Protocol):
    """A live :class:`~loom_nb.events.RunEvent` or a stored event row."""

    @property
    def type(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def parent_run_id(self) -> str | None: ...
    @property
    def seq(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...


@dataclass
class _OpenRun:
    run_id: str
    span: Span
    info: dict[str, Any]  # what every span of the run repeats: provider, model, agent, session
    last_seq: int = -1
    chat: Span | None = None
    tools: dict[str, Span] = field(default_factory=dict)
    segment: int = 0


@dataclass(frozen=True)
class _EndedRun:
    context: SpanContext
    info: dict[str, Any]
    last_seq: int
    segment: int


class _SpanBuilder:
    """Spans from the events of runs, fed in order per run (a parent's events before a child's
    ``run.started``). Live and offline export use this one class, so both give the same tree."""

    def __init__(self, tracer: Tracer, capture_content: bool, *, ambient_root: bool) -> None:
        self.trace = _trace_api()
        from opentelemetry.trace import SpanKind, Status, StatusCode
        self._kind, self._status, self._code = SpanKind, Status, StatusCode
        self.tracer, self.content, self.ambient_root = tracer, capture_content, ambient_root
        self.open: dict[str, _OpenRun] = {}
        self.ended: OrderedDict[str, _EndedRun] = OrderedDict()
        self.parents: dict[str, Span] = {}  # child run id -> the span it nests under
        self.signals: deque[tuple[str, int]] = deque(maxlen=256)
        self.spans = 0

    # -- dispatch ----------------------------------------------------------------------------------

    def feed(self, event: _Event, ts: datetime | None) -> None:
        kind = event.type
        if kind in LIVE_ONLY:  # never stored; their seq is the next stored event's
            return
        if kind == "signal.decision":
            self._signal(event, _ns(ts))
            return
        run = self.open.get(event.run_id)
        if not self._fresh(event, run):
            return  # delivered twice: through a child session and its parent
        at = _ns(ts)
        if kind in ("run.started", "run.resumed"):
            self._start_run(event, at)
            return
        if run is None:
            return  # a run whose start this builder never saw (it started before instrument())
        run.last_seq = event.seq
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, run, event.data, at)

    def _fresh(self, event: _Event, run: _OpenRun | None) -> bool:
        if run is not None:
            return event.seq > run.last_seq
        ended = self.ended.get(event.run_id)
        return ended is None or event.seq > ended.last_seq

    # -- spans -------------------------------------------------------------------------------------

    def _span(self, name: str, parent: Span | SpanContext | None, at: int, kind: Any,
              attributes: dict[str, Any]) -> Span:
        trace = self.trace
        if parent is None:
            context = None if self.ambient_root else trace.set_span_in_context(trace.INVALID_SPAN)
        elif isinstance(parent, trace.SpanContext):
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        else:
            context = trace.set_span_in_context(parent)
        self.spans += 1
        return self.tracer.start_span(name, context=context, kind=kind, start_time=at,
                                      attributes=_clean(attributes))

    def _start_run(self, event: _Event, at: int) -> None:
        data, run_id = event.data, event.run_id
        previous = self.ended.pop(event.run_id, None) if event.type == "run.resumed" else None
        parent: Span | SpanContext | None
        if previous is not None:
            info, parent, segment = previous.info, previous.context, previous.segment + 1
        else:
            info = _run_info(event)
            parent = self.parents.pop(run_id, None) or self._run_span(event.parent_run_id)
            segment = 0
        attributes = {**_agent_attributes(info), "gen_ai.operation.name": "invoke_agent",
                      "loom.run.id": run_id, "loom.run.parent_id": event.parent_run_id,
                      "loom.run.segment": segment}
        if event.type == "run.resumed":
            attributes["loom.run.resumed"] = True
        elif self.content:
            attributes["gen_ai.input.messages"] = _messages("user", data.get("prompt", ""))
        span = self._span(f"invoke_agent {info['agent']}".strip(), parent, at,
                          self._kind.INTERNAL, attributes)
        self.open[run_id] = _OpenRun(run_id, span, info, last_seq=event.seq, segment=segment)
        if event.type == "run.resumed":
            span.add_event("loom.run.resumed", _clean({
                "loom.approved": len(data.get("approved", [])),
                "loom.rejected": len(data.get("rejected", {}))}), timestamp=at)
            return
        if data.get("signal"):
            span.add_event("loom.signal", self._signal_attributes(data["signal"], "started"), timestamp=at)
        for signal in data.get("observed_signals") or ():
            span.add_event("loom.signal", self._signal_attributes(signal, "observed"), timestamp=at)

    def _run_span(self, run_id: str | None) -> Span | SpanContext | None:
        if run_id is None:
            return None
        if run_id in self.open:
            return self.open[run_id].span
        ended = self.ended.get(run_id)
        return ended.context if ended is not None else None

    def finish_run(self, run: _OpenRun, data: dict[str, Any], at: int) -> None:
        status = str(data.get("status", ""))
        failed = status in ("failed", "cancelled", "limit", "interrupted")
        error_type = str(data.get("error_type") or data.get("limit") or status)
        for span in [*([run.chat] if run.chat else []), *run.tools.values()]:
            if status == "needs_approval":
                span.set_attribute("loom.tool.outcome", "awaiting_approval")
            elif failed:
                self._fail(span, error_type, None)
            span.end(end_time=at)
        run.chat, run.tools = None, {}
        span = run.span
        span.set_attributes(_clean({**_usage(data.get("usage") or {}), "loom.run.status": status,
                                    "loom.run.turns": data.get("turns"),
                                    "loom.harness.attempts": data.get("attempts"),
                                    "loom.harness.winner": data.get("winner")}))
        if data.get("pending"):
            span.set_attribute("loom.approval.pending", [p.get("call_id", "") for p in data["pending"]])
        if self.content and data.get("output"):
            span.set_attribute("gen_ai.output.messages", _messages("assistant", data["output"]))
        if failed:
            self._fail(span, error_type, data.get("error"))
        span.end(end_time=at)
        del self.open[run.run_id]
        self.ended[run.run_id] = _EndedRun(span.get_span_context(), run.info, run.last_seq, run.segment)
        while len(self.ended) > _REMEMBERED_RUNS:
            self.ended.popitem(last=False)

    def _fail(self, span: Span, error_type: str, message: str | None) -> None:
        span.set_attribute("error.type", error_type or "_OTHER")
        span.set_status(self._status(self._code.ERROR, message or error_type))

    def chat(self, run: _OpenRun, data: dict[str, Any], at: int) -> None:
        if run.chat is not None:  # a request without a response: the model failed
            run.chat.end(end_time=at)
        provider, model = _split_model(str(data.get("model", ""))) if data.get("model") else (
            run.info["provider"], run.info["model"])
        context = data.get("context") or {}
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                      "gen_ai.request.model": model, "gen_ai.conversation.id": run.info["session"],
                      "loom.turn": data.get("turn"), "loom.context.tokens": context.get("total_tokens"),
                      "loom.context.budget": context.get("budget"),
                      "loom.tools": data.get("tools")}
        content = data.get("content") or {}
        if self.content and content:
            if "system" in content:
                attributes["gen_ai.system_instructions"] = json.dumps(
                    [{"type": "text", "content": content["system"]}], ensure_ascii=False)
            attributes["loom.context.changed"] = json.dumps(content, ensure_ascii=False)
        run.chat = self._span(f"chat {model}".strip(), run.span, at, self._kind.CLIENT, attributes)

    def chat_done(self, run: _OpenRun, data: dict[str, Any], at: int) -> None:
        span = run.chat
        if span is None:
            return
        stop = str(data.get("stop_reason") or "")
        span.set_attributes(_clean({**_usage(data.get("usage") or {}),
                                    "gen_ai.response.model": data.get("model"),
                                    "gen_ai.response.finish_reasons": [stop] if stop else None}))
        if self.content:
            parts: list[dict[str, Any]] = [{"type": "text", "content": data.get("text", "")}] if data.get("text") else []
            parts += [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"),
                       "arguments": c.get("args")} for c in data.get("tool_calls") or ()]
            span.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": parts, "finish_reason": stop}], ensure_ascii=False,
                default=str))
        span.end(end_time=at)
        run.chat = None

    def tool(self, run: _OpenRun, data: dict[str, Any], at: int, *, resumed: bool = False) -> Span:
        name, call_id = str(data.get("name", "")), str(data.get("call_id", ""))
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                      "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function",
                                      "gen_ai.conversation.id": run.info["session"]}
        if resumed:
            attributes["loom.tool.resumed"] = True
        if self.content and "args" in data:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(data["args"], ensure_ascii=False,
                                                                   default=str)
        span = run.tools[call_id] = self._span(f"execute_tool {name}".strip(), run.span, at,
                                               self._kind.INTERNAL, attributes)
        return span

    def decision(self, run: _OpenRun, data: dict[str, Any], at: int) -> None:
        attributes = {"loom.governance.action": data.get("action"),
                      "loom.governance.check": data.get("check"),
                      "loom.governance.reason": data.get("reason")}
        if data.get("via"):  # a person's decision on a sub-agent's call: its sub-run runs it
            run.span.add_event("loom.governance.decision", _clean({
                **attributes, "gen_ai.tool.name": data.get("name"),
                "gen_ai.tool.call.id": data.get("call_id"), "loom.via": data.get("via")}), timestamp=at)
            return
        span = run.tools.get(str(data.get("call_id"))) or self.tool(run, data, at, resumed=True)
        span.set_attributes(_clean(attributes))
        span.add_event("loom.governance.decision", _clean(attributes), timestamp=at)

    def tool_done(self, run: _OpenRun, data: dict[str, Any], at: int) -> None:
        call_id = str(data.get("call_id", ""))
        span = run.tools.pop(call_id, None) or self.tool(run, data, at, resumed=True)
        run.tools.pop(call_id, None)
        error = bool(data.get("is_error"))
        span.set_attributes(_clean({"loom.tool.outcome": "error" if error else "ok",
                                    "loom.tool.duration_ms": data.get("duration_ms"),
                                    "loom.tool.truncated_from": data.get("truncated_from")}))
        if self.content:
            span.set_attribute("gen_ai.tool.call.result", str(data.get("content", "")))
        if error:
            self._fail(span, str(data.get("error_type") or "_OTHER"),
                       str(data.get("content", "")) if self.content else None)
        span.end(end_time=at)

    def nested(self, run: _OpenRun, data: dict[str, Any], at: int, delegated: bool) -> None:
        """A sub-run begins: a sub-agent under the latest open tool call (the ``delegate`` call),
        a best-of candidate under the run."""
        child = str(data.get("run_id", ""))
        parent = list(run.tools.values())[-1] if delegated and run.tools else run.span
        if child:
            self.parents[child] = parent
        name = "loom.delegation.started" if delegated else "loom.harness.attempt"
        parent.add_event(name, _clean({"loom.run.child_id": child or None,
                                       "loom.attempt": data.get("attempt"),
                                       "loom.mode": data.get("mode"),
                                       "gen_ai.agent.name": data.get("agent"),
                                       "loom.depth": data.get("depth")}), timestamp=at)

    def event(self, run: _OpenRun, name: str, attributes: dict[str, Any], at: int) -> None:
        target = run.chat if name == "loom.model.retry" and run.chat is not None else run.span
        target.add_event(name, _clean(attributes), timestamp=at)

    # -- signals -----------------------------------------------------------------------------------

    def _signal_attributes(self, signal: dict[str, Any], how: str) -> dict[str, Any]:
        attributes = {"loom.signal.source": signal.get("source"), "loom.signal.type": signal.get("type"),
                      "loom.signal.urgency": signal.get("urgency"), "loom.signal.how": how}
        if self.content:
            attributes["loom.signal.summary"] = signal.get("summary")
        return _clean(attributes)

    def _signal(self, event: _Event, at: int) -> None:
        key = (event.session_id, event.seq)
        run = self.open.get(event.run_id)
        if key in self.signals or run is None:
            return  # a decision outside a run has no span to go on (docs/tracing.md)
        self.signals.append(key)
        data = event.data
        attributes = {**self._signal_attributes(data.get("signal") or {}, "decision"),
                      "loom.signal.action": data.get("action"), "loom.signal.reason": data.get("reason")}
        run.span.add_event("loom.signal.decision", attributes, timestamp=at)


# -- event handlers --------------------------------------------------------------------------------


def _verdict(b: _SpanBuilder, run: _OpenRun, d: dict[str, Any], at: int) -> None:
    attributes = {"loom.attempt": d.get("attempt"), "loom.quality.passed": d.get("passed"),
                  "loom.quality.gate": d.get("gate")}
    if b.content:
        attributes["loom.quality.critique"] = d.get("critique")
    b.event(run, "loom.quality.verdict", attributes, at)


def _context(name: str) -> Any:
    """Compaction and renewal: their numbers and methods (the summary and open tasks are content)."""
    def handle(b: _SpanBuilder, run: _OpenRun, d: dict[str, Any], at: int) -> None:
        b.event(run, name, {f"loom.{k}": v for k, v in d.items() if isinstance(v, int | float | str)}, at)
    return handle


def _tool_call(b: _SpanBuilder, run: _OpenRun, d: dict[str, Any], at: int) -> None:
    b.tool(run, d, at)


def _tool_started(b: _SpanBuilder, run: _OpenRun, d: dict[str, Any], at: int) -> None:
    span = run.tools.get(str(d.get("call_id"))) or b.tool(run, d, at, resumed=True)
    span.add_event("loom.tool.started", timestamp=at)


def _interrupted(b: _SpanBuilder, run: _OpenRun, d: dict[str, Any], at: int) -> None:
    attributes = {"loom.reason": d.get("reason"), "loom.by": d.get("by")}
    if d.get("signal"):
        attributes.update(b._signal_attributes(d["signal"], "interrupt"))
    b.event(run, "loom.run.interrupted", attributes, at)


_HANDLERS: dict[str, Any] = {
    "run.finished": _SpanBuilder.finish_run,
    "model.request": _SpanBuilder.chat,
    "model.response": _SpanBuilder.chat_done,
    "model.retry": lambda b, run, d, at: b.event(run, "loom.model.retry", {
        "loom.attempt": d.get("attempt"), "loom.delay": d.get("delay"), "loom.error": d.get("error")}, at),
    "tool.call": _tool_call,
    "governance.decision": _SpanBuilder.decision,
    "tool.started": _tool_started,
    "tool.result": _SpanBuilder.tool_done,
    "delegation.started": lambda b, run, d, at: b.nested(run, d, at, delegated=True),
    "delegation.finished": lambda b, run, d, at: b.event(run, "loom.delegation.finished", {
        "gen_ai.agent.name": d.get("agent"), "loom.run.child_id": d.get("run_id"),
        "loom.run.status": d.get("status")}, at),
    "harness.attempt": lambda b, run, d, at: (
        b.nested(run, d, at, delegated=False) if d.get("mode") == "candidate"
        else b.event(run, "loom.harness.attempt", {"loom.attempt": d.get("attempt"),
                                                   "loom.mode": d.get("mode")}, at)),
    "quality.verdict": _verdict,
    "context.compacted": _context("loom.context.compacted"),
    "context.renewed": _context("loom.context.renewed"),
    "run.interrupted": _interrupted,
}


# -- values ----------------------------------------------------------------------------------------


def _ns(ts: datetime | None) -> int:
    import time
    return int(ts.timestamp() * 1e9) if ts is not None else time.time_ns()


def _split_model(identifier: str) -> tuple[str, str]:
    """``provider:name`` -> (provider, name); the provider is the ``gen_ai.provider.name``
    (``anthropic`` and ``openai`` are the conventions' own values)."""
    provider, sep, name = identifier.partition(":")
    return (provider, name) if sep else ("loom_nb", identifier)


def _run_info(event: _Event) -> dict[str, Any]:
    data = event.data
    provider, model = _split_model(str(data.get("model", "")))
    return {"agent": str(data.get("agent", "")), "provider": provider, "model": model,
            "session": event.session_id}


def _agent_attributes(info: dict[str, Any]) -> dict[str, Any]:
    return {"gen_ai.provider.name": info["provider"], "gen_ai.agent.name": info["agent"],
            "gen_ai.request.model": info["model"], "gen_ai.conversation.id": info["session"]}


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    return {"gen_ai.usage.input_tokens": usage.get("input_tokens"),
            "gen_ai.usage.output_tokens": usage.get("output_tokens"),
            "gen_ai.usage.cache_read.input_tokens": usage.get("cache_read_tokens"),
            "gen_ai.usage.cache_creation.input_tokens": usage.get("cache_write_tokens"),
            "loom.usage.requests": usage.get("requests")}


def _messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}],
                      ensure_ascii=False)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """Without the values not known (OpenTelemetry takes no None)."""
    return {k: v for k, v in attributes.items() if v is not None}


# -- live tracing ----------------------------------------------------------------------------------


class Tracing:
    """A subscriber that turns every event it is given into spans (see the module docstring).

    ``instrument()`` makes one for every session the process opens from then on;
    ``Runtime.sdk(tracing=Tracing(...))`` (or ``tracing=True``) for the sessions of the agents
    with that runtime. ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *,
                 capture_content: bool = False) -> None:
        trace = _trace_api()
        from . import __version__
        provider = tracer_provider or trace.get_tracer_provider()
        self.capture_content = capture_content
        self.tracer_provider = tracer_provider
        self._builder = _SpanBuilder(provider.get_tracer("loom_nb", __version__), capture_content,
                                     ambient_root=True)
        # Runs in several threads (background runs, sub-agents on other loops) feed one builder.
        self._lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return f"<Tracing capture_content={self.capture_content}>"

    def __call__(self, event: Any) -> None:
        if event.type in LIVE_ONLY:
            return
        try:
            with self._lock:
                self._builder.feed(event, event.ts)
        except Exception:  # noqa: BLE001 - tracing must never fail the run it watches
            if not self._warned:
                self._warned = True
                _log.warning("loom_nb.tracing: an event could not be turned into spans; runs go "
                             "on, their spans may be incomplete", exc_info=True)


def instrument(tracer_provider: TracerProvider | None = None, capture_content: bool = False) -> Tracing:
    """Trace every session opened from now on in this process (replacing an earlier
    ``instrument()``). ``capture_content=True`` also records prompts, answers, tool arguments
    and results (off by default: they may hold personal or secret data)."""
    tracing = Tracing(tracer_provider, capture_content=capture_content)
    uninstrument()
    SESSION_SUBSCRIBERS.append(tracing)
    return tracing


def uninstrument() -> None:
    """Stop tracing sessions opened from now on (sessions already open keep their tracer)."""
    SESSION_SUBSCRIBERS[:] = [s for s in SESSION_SUBSCRIBERS if not isinstance(s, Tracing)]


# -- export of stored sessions ---------------------------------------------------------------------


def export_session(source: Any, exporter: SpanExporter | None = None, *,
                   tracer_provider: TracerProvider | None = None,
                   capture_content: bool = False) -> int:
    """Send the spans of stored runs to ``exporter`` (e.g. an ``OTLPSpanExporter``) or through
    ``tracer_provider``; the number of spans. ``source``: a Session (with its sub-runs), the
    path of an SQLite store, a store, a RunResult, or a list of these. The spans are those a live
    :class:`Tracing` makes, with the events' own times."""
    if (exporter is None) == (tracer_provider is None):
        raise ConfigError("export_session(source, exporter) takes a span exporter, or "
                          "tracer_provider=... instead: exactly one of them.")
    _trace_api()
    owned = None
    if exporter is not None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        owned = SDKProvider(resource=Resource.create({"service.name": "loom_nb"}))
        owned.add_span_processor(SimpleSpanProcessor(exporter))
    provider = owned or tracer_provider
    assert provider is not None
    from . import __version__
    builder = _SpanBuilder(provider.get_tracer("loom_nb", __version__), capture_content,
                           ambient_root=False)
    for event in _stored_events(source):
        builder.feed(event, event.ts)
    if owned is not None:
        owned.force_flush()
    return builder.spans


def _stored_events(source: Any) -> Iterator[Any]:
    """The stored events of ``source``, run by run in seq order, each run after the run that
    started it (a sub-run's span needs its parent's)."""
    from . import _export_read as read
    from .session import Session

    problems = read.Problems(strict=True)
    if isinstance(source, Session):  # its sub-runs live in child sessions "<id>/<label>-..."
        rows: Iterable[Any] = (e for e in read.events(source.store, problems)
                               if e.session_id == source.id or e.session_id.startswith(source.id + "/"))
    else:
        rows = read.events(source, problems)
    runs: dict[str, list[Any]] = {}
    for row in rows:
        runs.setdefault(row.run_id, []).append(row)
    children: dict[str | None, list[str]] = {}
    for run_id, found in runs.items():
        found.sort(key=lambda e: e.seq)
        parent = found[0].parent_run_id
        children.setdefault(parent if parent in runs else None, []).append(run_id)
    first = {run_id: found[0].ts or datetime.min for run_id, found in runs.items()}
    pending = sorted(children.get(None, []), key=lambda r: first[r], reverse=True)
    while pending:  # depth first, oldest first at every level
        run_id = pending.pop()
        yield from runs[run_id]
        pending.extend(sorted(children.get(run_id, []), key=lambda r: first[r], reverse=True))
