"""The views as deterministic plain text and self-contained HTML: context partitions, token
budget, signals, governance and approvals, traces.

The views in ``loom_nb.notebook`` draw these strings into widgets, and offer them as the
``text/plain`` and ``text/html`` forms of their output, so that an executed notebook reads well
without widget state and nbval can compare the text. The widget pieces that are HTML (a waiting
call's label, a decided signal) are here too, so the notebook layer writes no markup. Plain
strings only: no IPython here.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from ..events import (CompactedData, PartitionName, DelegationFinishedData, DelegationStartedData,
                      GovernanceDecisionData, HarnessAttemptData, ModelRequestData,
                      ModelResponseData, ModelRetryData, QualityVerdictData, RenewedData,
                      RunEvent, RunFinishedData, RunInterruptedData, RunResumedData,
                      RunStartedData, SignalDecisionData, ToolCallData, ToolResultData, ToolStartedData,
                      payload)
from .approvals import (WAITING_HTML, GovernanceRow, approvals_html, approvals_text,
                        governance_rows, pending_call_html, pending_line, question_html,
                        remembered_text)
from .common import (BORDER, ERROR, GOOD, MUTED, WARN, PARTITION_COLORS, PRE, badge, bar_html,
                     call_text, plural, printable, share, short, signal_label, table_html,
                     text_table, usd, view_card)

__all__ = ["RATE_HTML", "WAITING_HTML", "GovernanceRow", "RequestContext", "SignalRow", "TraceRow",
           "approvals_html", "approvals_text",
           "budget_html", "budget_text", "compaction_text", "context_html", "context_requests",
           "context_text", "governance_rows", "pending_call_html", "pending_line", "question_html",
           "remembered_text", "signal_decision_card",
           "signals_html", "signals_text", "trace_html", "trace_rows", "trace_text"]

# -- context partitions ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RequestContext:
    """What one model request held, read from its ``model.request`` event."""

    number: int  #: 1-based among the requests drawn
    run: int  #: 1-based number of its run among the runs drawn
    run_id: str
    turn: int
    partitions: dict[PartitionName, int]
    total: int
    budget: int
    window: int
    output_reserve: int
    window_source: str
    messages: int
    content: dict[PartitionName, str]  #: partition texts as of this request (history is not recorded)
    marks: tuple[str, ...]  #: compactions and renewals just before this request
    input_tokens: int | None = None  #: as the provider reported for this request
    output_tokens: int | None = None
    cache_read_tokens: int = 0  #: the part of input_tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  #: the part of input_tokens written to it
    cost: float | None = None  #: USD, when the model's price is known
    #: The system partition's parts (label, tokens), as of this request.
    system_parts: tuple[tuple[str, int], ...] = ()


def context_requests(events: Iterable[RunEvent]) -> list[RequestContext]:
    """The requests of a run (or of a session's runs) with the context each one held."""
    requests: list[RequestContext] = []
    runs: dict[str, int] = {}
    content: dict[str, dict[PartitionName, str]] = {}
    parts: dict[str, tuple[tuple[str, int], ...]] = {}
    marks: dict[str, list[str]] = {}
    for event in events:
        run = runs.setdefault(event.run_id, len(runs) + 1)
        if event.type in ("context.compacted", "context.renewed"):
            marks.setdefault(event.run_id, []).append(compaction_text(event))
        elif event.type == "model.request" and "context" in event.data:
            data = payload(event, ModelRequestData)
            # Events carry only the partitions that changed since the run's previous request.
            seen = content.setdefault(event.run_id, {})
            seen.update(data.get("content") or {})
            if "system_parts" in data:
                parts[event.run_id] = tuple((str(p.get("label", "")), int(p.get("tokens", 0)))
                                            for p in data["system_parts"])
            ctx = data["context"]
            requests.append(RequestContext(
                number=len(requests) + 1, run=run, run_id=event.run_id, turn=int(data.get("turn", 0)),
                partitions=dict(ctx["partitions"]), total=int(ctx["total_tokens"]),
                budget=int(ctx["budget"]), window=int(ctx["window"]),
                output_reserve=int(ctx["output_reserve"]), window_source=str(ctx["window_source"]),
                messages=int(ctx.get("messages", 0)), content=dict(seen),
                marks=tuple(marks.pop(event.run_id, [])), system_parts=parts.get(event.run_id, ())))
        elif event.type == "model.response" and requests and requests[-1].run_id == event.run_id:
            usage = payload(event, ModelResponseData).get("usage") or {}
            requests[-1] = replace(requests[-1], input_tokens=usage.get("input_tokens"),
                                   output_tokens=usage.get("output_tokens"),
                                   cache_read_tokens=usage.get("cache_read_tokens") or 0,
                                   cache_write_tokens=usage.get("cache_write_tokens") or 0,
                                   cost=usage.get("cost"))
    return requests


def compaction_text(event: RunEvent) -> str:
    """One line for a ``context.compacted`` / ``context.renewed`` event."""
    if event.type == "context.renewed":
        renew = payload(event, RenewedData)
        return (f"renewed: {renew.get('before_tokens', '?')} → {renew.get('after_tokens', '?')} "
                f"tokens, handoff note of {renew.get('handoff_tokens', '?')} tokens "
                f"({renew.get('handoff_method', '?')}), {renew.get('kept_messages', 0)} "
                f"messages kept")
    data = payload(event, CompactedData)
    return (f"compacted: {data.get('before_tokens', '?')} → {data.get('after_tokens', '?')} "
            f"tokens, {data.get('shrunk_results', 0)} tool results shrunk, "
            f"{data.get('summarized_messages', 0)} messages summarized")


def _request_title(request: RequestContext, count: int) -> str:
    return (f"request {request.number} of {count} (run {request.run}, turn {request.turn}) · "
            f"{request.total} of {request.budget} tokens ({share(request.total, request.budget)})")


def context_text(requests: list[RequestContext], selected: int | None = None,
                 compactions: list[str] | None = None) -> str:
    """Plain text of the context view: one request's partitions (default: the latest)."""
    if not requests:
        return "Context · no model request yet"
    request = requests[(selected or len(requests)) - 1]
    lines = [f"Context · {_request_title(request, len(requests))}",
             f"  window {request.window} ({request.window_source}), {request.output_reserve} "
             f"reserved for output"]
    rows = [[name, str(tokens), share(tokens, request.budget)]
            for name, tokens in request.partitions.items()]
    rows = [[f"history ({plural(request.messages, 'message')})" if r[0] == "history" else r[0], *r[1:]]
            for r in rows]
    lines += text_table(rows, "    ")
    if len(request.system_parts) > 1:  # one part is the partition itself
        lines.append("  system parts:")
        lines += text_table([[label, str(tokens)] for label, tokens in request.system_parts], "    ")
    lines += [f"  before this request: {mark}" for mark in request.marks]
    if compactions is not None:
        lines.append(f"  compactions in the session: {len(compactions) or 'none'}")
        lines += [f"    {i}. {text}" for i, text in enumerate(compactions, 1)]
    return "\n".join(lines)


def context_html(requests: list[RequestContext], selected: int | None = None,
                 compactions: list[str] | None = None, history: str = "") -> str:
    """HTML of the context view; each partition's content opens on demand."""
    if not requests:
        return view_card("context", "Context", f"<div style='{MUTED}'>No model request yet.</div>")
    request = requests[(selected or len(requests)) - 1]
    budget = request.budget
    def stacked(whole: int) -> str:
        return bar_html([(t / whole, PARTITION_COLORS.get(n, "#999"), f"{n}: {t} tokens")
                         for n, t in request.partitions.items()], width=420, height=12)

    # Two bars: the budget in use (often a sliver), and the mix of the request (always legible).
    label = f"style='display:inline-block;width:110px;{MUTED};font-size:11px'"
    parts = [f"<div style='{MUTED}'>{html.escape(_request_title(request, len(requests)))} · window "
             f"{request.window} ({html.escape(request.window_source)}), {request.output_reserve} "
             f"reserved for output</div><div style='margin:6px 0 2px'><span {label}>of the budget"
             f"</span>{stacked(budget)}</div><div style='margin:0 0 6px'><span {label}>mix of the "
             f"request</span>{stacked(max(request.total, 1))}</div>"]
    for name, tokens in request.partitions.items():
        text = history if name == "history" else request.content.get(name, "")
        label = f"{name} ({plural(request.messages, 'message')})" if name == "history" else name
        swatch = (f"<span style='display:inline-block;width:10px;height:10px;border-radius:2px;"
                  f"background:{PARTITION_COLORS.get(name, '#999')};margin-right:6px'></span>")
        # One flex row: in a narrow tab the bar shrinks instead of dropping to a line of its own.
        head = (f"<span style='display:inline-flex;align-items:center;gap:2px;"
                f"width:calc(100% - 24px);vertical-align:middle'>{swatch}"
                f"<b style='display:inline-block;flex:0 1 170px;min-width:80px'>{html.escape(label)}</b>"
                f"<span style='display:inline-block;flex:none;width:60px;text-align:right'>{tokens}</span>"
                f"<span style='display:inline-block;flex:none;width:56px;text-align:right;{MUTED};"
                f"margin-right:6px'>{share(tokens, budget)}</span>"
                f"{bar_html([(tokens / budget, PARTITION_COLORS.get(name, '#999'), label)], 160, 8)}"
                f"</span>")
        body = (f"<pre style=\"{PRE}\">{html.escape(text)}</pre>" if text.strip() else
                f"<div style='{MUTED};margin:2px 0 4px 18px'>(empty)</div>")
        if name == "system" and len(request.system_parts) > 1:  # each part with its tokens
            body = (f"<ul style='{MUTED};margin:2px 0 4px 0'>" + "".join(
                f"<li><code>{html.escape(label)}</code>: {tokens} tokens</li>"
                for label, tokens in request.system_parts) + "</ul>" + body)
        parts.append(f"<details style='margin:2px 0'><summary style='cursor:pointer'>{head}</summary>"
                     f"{body}</details>")
    for mark in request.marks:
        parts.append(f"<div style='color:{WARN};margin-top:4px'>⤓ before this request: "
                     f"{html.escape(mark)}</div>")
    if compactions is not None:
        items = "".join(f"<li>{html.escape(c)}</li>" for c in compactions)
        parts.append(f"<div style='margin-top:6px'><b>Compactions in the session</b>: "
                     f"{len(compactions) or 'none'}</div>" + (f"<ol style='margin:2px 0'>{items}</ol>" if items else ""))
    return view_card("context", "Context partitions", "".join(parts))


# -- token budget ----------------------------------------------------------------------------------


def budget_text(requests: list[RequestContext], compact_at: float | None = None) -> str:
    """Plain text of the budget view: the latest request, then every request."""
    if not requests:
        return "Budget · no model request yet"
    last = requests[-1]
    head = (f"Budget · latest request: {last.total} of {last.budget} tokens "
            f"({share(last.total, last.budget)})")
    if compact_at is not None:
        head += f" · compaction at {compact_at:.0%}"
    extra, extras = _usage_columns(requests)
    rows = [["#", "run", "turn", "context", "share", "in", "out", *extra]]
    rows += [[str(r.number), str(r.run), str(r.turn), str(r.total), share(r.total, r.budget),
              _opt(r.input_tokens), _opt(r.output_tokens), *extras(r)] for r in requests]
    lines = [head, *text_table(rows), "  usage: " + _usage_total(requests)]
    return "\n".join(lines)


def _usage_columns(requests: list[RequestContext]) -> tuple[list[str], Callable[[RequestContext], list[str]]]:
    """The cache and cost columns, shown only when some request has them (a cache or a price)."""
    cached = any(r.cache_read_tokens or r.cache_write_tokens for r in requests)
    priced = any(r.cost is not None for r in requests)

    def cells(r: RequestContext) -> list[str]:
        return ([str(r.cache_read_tokens), str(r.cache_write_tokens)] if cached else []) + (
            ["-" if r.cost is None else usd(r.cost)] if priced else [])

    return (["cache read", "cache write"] if cached else []) + (["cost"] if priced else []), cells


def _usage_total(requests: list[RequestContext]) -> str:
    total_in = sum(r.input_tokens or 0 for r in requests)
    total_out = sum(r.output_tokens or 0 for r in requests)
    text = f"{total_in} in, {total_out} out"
    read, write = (sum(r.cache_read_tokens for r in requests), sum(r.cache_write_tokens for r in requests))
    if read or write:
        text += f" ({read} read from the prompt cache, {write} written to it)"
    text += f" over {len(requests)} request{'s' if len(requests) != 1 else ''}"
    costs = [r.cost for r in requests]
    if any(c is not None for c in costs):  # a partial sum would understate: say so
        known = sum(c for c in costs if c is not None)
        text += f" · {usd(known)}" + ("" if None not in costs else
                                      f" (+ {costs.count(None)} request(s) of unknown price)")
    return text


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def budget_html(requests: list[RequestContext], compact_at: float | None = None) -> str:
    if not requests:
        return view_card("budget", "Token budget", f"<div style='{MUTED}'>No model request yet.</div>")
    last = requests[-1]
    free = max(last.budget - last.total, 0)
    gauge = bar_html([(t / last.budget, PARTITION_COLORS.get(n, "#999"), f"{n}: {t}")
                      for n, t in last.partitions.items()], width=420, height=16)
    threshold = (f" · compaction at {compact_at:.0%} ({int(compact_at * last.budget)} tokens)"
                 if compact_at is not None else "")
    top = (f"<div><b>{last.total}</b> of {last.budget} tokens used "
           f"({share(last.total, last.budget)}), {free} free{threshold}</div>"
           f"<div style='margin:4px 0 8px'>{gauge}</div>")
    peak = max(r.total for r in requests) or 1
    rows = [[str(r.number), str(r.run), str(r.turn), str(r.total), share(r.total, r.budget),
             # The per-request bars are scaled to the largest request, so growth is visible
             # even far below the budget; the share column gives the absolute figure.
             bar_html([(r.total / peak, "#0969da", f"{r.total} tokens")], 160, 8),
             _opt(r.input_tokens), _opt(r.output_tokens)] for r in requests]
    extra, extras_of = _usage_columns(requests)
    rows = [row + extras_of(r) for row, r in zip(rows, requests)]
    headers = ["#", "run", "turn", "context", "of budget", "(vs largest)", "in", "out", *extra]
    table = table_html(headers, rows, align_right=tuple(i for i in range(len(headers)) if i != 5))
    total = f"<div style='{MUTED};margin-top:4px'>usage: {html.escape(_usage_total(requests))}</div>"
    return view_card("budget", "Token budget", top + table + (total if extra else ""))


# -- signals ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SignalRow:
    """One received signal, its decision, and what became of it."""

    number: int
    source: str
    type: str
    urgency: str
    summary: str
    action: str
    reason: str
    outcome: str  #: e.g. "queued", "ran as run 3 (completed)", "interrupted run 2"


def signals_text(rows: list[SignalRow], queued: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"Signals · {len(rows)} received · {len(queued)} queued"]
    for row in rows:
        label = signal_label({"source": row.source, "type": row.type, "urgency": row.urgency,
                              "summary": row.summary})
        lines.append(f"  {row.number}. {label} → {row.action}: {row.reason}"
                     + (f" · {row.outcome}" if row.outcome else ""))
    if queued:
        lines.append("  waiting to run: " + "; ".join(signal_label(s) for s in queued))
    return "\n".join(lines)


def signals_html(rows: list[SignalRow], queued: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        body = f"<div style='{MUTED}'>No signal received yet.</div>"
    else:
        body = table_html(["#", "signal", "urgency", "decision", "reason", "what happened"], [
            [str(r.number), f"<b>{html.escape(r.source)}/{html.escape(r.type)}</b> "
             f"{html.escape(r.summary)}", html.escape(r.urgency), badge(r.action),
             html.escape(r.reason), html.escape(r.outcome)] for r in rows], align_right=(0,))
    if queued:
        items = "".join(f"<li>{html.escape(signal_label(s))}</li>" for s in queued)
        body += f"<div style='margin-top:4px'><b>Waiting to run</b> (in this order)<ol style='margin:2px 0'>{items}</ol></div>"
    return view_card("signals", f"Signals · {len(rows)} received · {len(queued)} queued", body)


def signal_decision_card(signal: Mapping[str, Any], action: str, reason: str) -> dict[str, str]:
    """``%loom signal``'s output: the signal and the attention policy's decision."""
    label = signal_label(signal)
    return {"text/plain": printable(f"Signal {label} → {action}: {reason}"),
            "text/html": (f"<div class='loom-signal'><b>{html.escape(label)}</b>"
                          f" → {badge(action)} {html.escape(reason)}</div>")}


# -- traces ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TraceRow:
    """One event of a trace, as a line: ``depth`` > 0 for events of nested sub-runs."""

    depth: int
    type: str
    text: str
    offset: float | None = None  #: seconds since the trace's first event (HTML only)
    duration_ms: float | None = None
    tone: str = ""  #: "good", "bad" or "" (how the HTML colours it)


_MAX_DEPTH = 6


def trace_rows(events: list[RunEvent], children: Callable[[str], list[RunEvent]] | None = None,
               depth: int = 0, start: Any = None) -> list[TraceRow]:
    """The timeline of a run; ``children(run_id)`` gives a sub-run's events to nest in place."""
    rows: list[TraceRow] = []
    start = start or (events[0].ts if events else None)
    for event in events:
        if event.type == "model.delta":
            continue
        line = _LINES.get(event.type)
        text, tone = line(event) if line is not None else (event.type, "")
        offset = (event.ts - start).total_seconds() if start is not None else None
        rows.append(TraceRow(depth=depth, type=event.type, text=text, offset=offset, tone=tone,
                             duration_ms=event.data.get("duration_ms") if event.type == "tool.result" else None))
        child = event.data.get("run_id")
        nested = event.type == "delegation.started" or (
            event.type == "harness.attempt" and event.data.get("mode") == "candidate")
        if nested and child and children is not None and depth < _MAX_DEPTH:
            rows += trace_rows(children(child), children, depth + 1, start)
    return rows


# -- one line per event type: (text, tone) ---------------------------------------------------------

Line: TypeAlias = tuple[str, str]


def _tokens(usage: Mapping[str, Any] | None) -> str:
    usage = usage or {}
    return f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"


def _run_started(event: RunEvent) -> Line:
    data = payload(event, RunStartedData)
    signal = data.get("signal")
    by = f" (for signal {signal_label(signal)})" if signal else ""
    return f"run started: {short(json.dumps(data.get('prompt', ''), ensure_ascii=False), 120)}{by}", ""


def _model_request(event: RunEvent) -> Line:
    data = payload(event, ModelRequestData)
    ctx: Mapping[str, Any] = data.get("context") or {}
    return (f"request, turn {data.get('turn')}: {ctx.get('total_tokens', '?')} tokens of context, "
            f"{plural(len(data.get('tools') or []), 'tool')}"), ""


def _model_response(event: RunEvent) -> Line:
    data = payload(event, ModelResponseData)
    said = f": {short(data['text'], 80)}" if (data.get("text") or "").strip() else ""
    by = f" by {data['answered_by']}" if data.get("answered_by") else ""
    return (f"response, turn {data.get('turn')}{by} ({data.get('stop_reason')}, "
            f"{_tokens(data.get('usage'))}){said}"), ""


def _model_retry(event: RunEvent) -> Line:
    data = payload(event, ModelRetryData)
    return f"retry {data.get('attempt')}: {short(str(data.get('error', '')), 120)}", "bad"


def _model_fallback(event: RunEvent) -> Line:
    data = event.data
    return (f"fallback: {data.get('failed')} failed ({data.get('error_type')}: "
            f"{short(str(data.get('error', '')), 100)}); {data.get('next')} takes the turn"), "bad"


def _tool_call(event: RunEvent) -> Line:
    data = payload(event, ToolCallData)
    return f"→ {call_text(data['name'], data.get('args') or {})}", ""


def _tool_result(event: RunEvent) -> Line:
    data = payload(event, ToolResultData)
    mark = "✗" if data.get("is_error") else "←"
    return f"{mark} {short(str(data.get('content', '')), 120)}", "bad" if data.get("is_error") else ""


def _tool_started(event: RunEvent) -> Line:
    return f"started {payload(event, ToolStartedData).get('name')} (approved)", ""


def _governance(event: RunEvent) -> Line:
    data = payload(event, GovernanceDecisionData)
    tone = {"allow": "good", "deny": "bad"}.get(data.get("action", ""), "")
    return f"governance: {data.get('action')} {data.get('name')} ({data.get('reason')})", tone


def _resumed(event: RunEvent) -> Line:
    data = payload(event, RunResumedData)
    return (f"resumed: {len(data.get('approved') or [])} approved, "
            f"{len(data.get('rejected') or {})} rejected"), ""


def _interrupted(event: RunEvent) -> Line:
    data = payload(event, RunInterruptedData)
    if data.get("reason") == "signal":
        return f"interrupted by signal {signal_label(data.get('signal') or {})}", "bad"
    return f"interrupted: {data.get('reason')}", "bad"


def _verdict(event: RunEvent) -> Line:
    data = payload(event, QualityVerdictData)
    verdict = "PASS" if data.get("passed") else "FAIL"
    return (f"quality {verdict} (attempt {data.get('attempt')}, {data.get('gate')}): "
            f"{short(str(data.get('critique') or ''), 160)}"), "good" if data.get("passed") else "bad"


def _attempt(event: RunEvent) -> Line:
    data = payload(event, HarnessAttemptData)
    note = f": {short(note, 80)}" if (note := data.get("note")) else ""
    return f"attempt {data.get('attempt')} ({data.get('mode')}){note}", ""


def _delegated(event: RunEvent) -> Line:
    data = payload(event, DelegationStartedData)
    return f"delegated to {data.get('agent')}: {short(str(data.get('task', '')), 100)}", ""


def _delegation_finished(event: RunEvent) -> Line:
    data = payload(event, DelegationFinishedData)
    tone = "good" if data.get("status") == "completed" else "bad"
    return f"{data.get('agent')} finished: {data.get('status')}", tone


def _run_finished(event: RunEvent) -> Line:
    data = payload(event, RunFinishedData)
    status = data.get("status")
    tone = ("good" if status == "completed" else
            "bad" if status in ("failed", "cancelled", "limit", "interrupted") else "")
    why = f": {data.get('error')}" if data.get("error") and status != "completed" else ""
    return (f"run finished: {status}, {plural(data.get('turns', 0), 'turn')}, "
            f"{_tokens(data.get('usage'))}{why}"), tone


def _signal(event: RunEvent) -> Line:
    data = payload(event, SignalDecisionData)
    return f"signal {signal_label(data.get('signal') or {})} → {data.get('action')}", ""


_LINES: dict[str, Callable[[RunEvent], Line]] = {
    "run.started": _run_started, "model.request": _model_request,
    "model.response": _model_response, "model.retry": _model_retry, "tool.call": _tool_call,
    "model.fallback": _model_fallback,
    "tool.started": _tool_started, "tool.result": _tool_result, "governance.decision": _governance, "run.resumed": _resumed,
    "run.interrupted": _interrupted, "context.compacted": lambda e: (compaction_text(e), ""),
    "context.renewed": lambda e: (compaction_text(e), ""), "quality.verdict": _verdict,
    "harness.attempt": _attempt, "delegation.started": _delegated,
    "delegation.finished": _delegation_finished, "run.finished": _run_finished,
    "signal.decision": _signal,
}


def _rating_text(ratings: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r.get('score', 0):g}" + (f" {json.dumps(r['comment'], ensure_ascii=False)}"
                                                  if r.get("comment") else "") for r in ratings)


def trace_text(title: str, rows: list[TraceRow], ratings: list[dict[str, Any]] | None = None) -> str:
    """Plain text of a trace: no ids, timestamps or durations."""
    lines = [f"Trace · {title}"]
    lines += [f"  {'    ' * row.depth}{row.text}" for row in rows]
    if ratings is not None:
        lines.append(f"  ratings: {_rating_text(ratings) if ratings else 'none'}")
    return "\n".join(lines)


#: The label of the trace's rating buttons.
RATE_HTML = "<b style='white-space:nowrap'>Rate this run</b>&nbsp;"
_TONES = {"good": GOOD, "bad": ERROR}


def trace_html(title: str, rows: list[TraceRow], ratings: list[dict[str, Any]] | None = None,
               framed: bool = True) -> str:
    lines = []
    for row in rows:
        when = f"+{row.offset:.2f}s" if row.offset is not None else ""
        took = f" <span style='{MUTED}'>({row.duration_ms:.0f} ms)</span>" if row.duration_ms else ""
        color = _TONES.get(row.tone, "inherit")
        nested = f"border-left:2px solid {BORDER};padding-left:8px;" if row.depth else ""
        lines.append(
            # flex-wrap: in a narrow place the text goes under its time and type, full width.
            f"<div style='display:flex;flex-wrap:wrap;column-gap:8px;line-height:1.4;"
            f"margin-left:{row.depth * 22}px;{nested}'>"
            f"<span style='{MUTED};width:56px;flex:none;text-align:right;font-size:11px'>{when}</span>"
            f"<span style='{MUTED};width:150px;flex:none;font-size:11px'>{html.escape(row.type)}</span>"
            f"<span style='color:{color};white-space:pre-wrap;word-break:break-word;"
            f"flex:1 1 240px;min-width:0'>"
            f"{html.escape(row.text)}{took}</span></div>")
    body = "".join(lines) or f"<div style='{MUTED}'>No events yet.</div>"
    if ratings is not None:
        body += (f"<div style='margin-top:6px'><b>Ratings</b>: "
                 f"{html.escape(_rating_text(ratings)) if ratings else 'none yet'}</div>")
    return view_card("trace", f"Trace · {title}", body, framed)
