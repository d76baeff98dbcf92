"""The run card: a run as deterministic plain text and self-contained HTML, finished or live.

Plain strings only, so the kernel can offer ``_repr_mimebundle_`` without importing IPython, and
an executed notebook reads well on GitHub, in nbviewer and in VS Code. The plain-text form holds
no ids or timestamps, so nbval can compare it. Every form is drawn from a run's events, which is
what lets the notebook layer draw a run that is still going (:func:`live_card`) and the session
panel's transcript (:func:`panel_html`) with the same pieces.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence, Sized
from typing import Protocol

from ..events import (ModelDeltaData, ModelResponseData, RunEvent, RunFinishedData,
                      RunStartedData, ToolCallData, ToolResultData, payload)
from ..messages import Usage
from .common import CARD, PRE, STATUS_COLORS, call_text, short

__all__ = ["LiveText", "RunLike", "events_html", "events_text", "header_html", "live_card",
           "note_card", "panel_header_html", "panel_html", "panel_text", "prompt_html",
           "result_html", "result_text", "run_status"]

MimeBundle = dict[str, str]


class RunLike(Protocol):
    """What the run card reads of a :class:`~loom_nb.RunResult` (the kernel's result imports
    this module, not the other way round)."""

    @property
    def status(self) -> str: ...
    @property
    def turns(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def run_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def events(self) -> Sequence[RunEvent]: ...
    @property
    def tool_calls(self) -> Sized: ...


class LiveText:
    """What a model turn's ``model.delta`` events have spelled so far: the answer's text, and
    each tool call taking shape as its argument fragments arrive (``→ name({"city": ...``)."""

    def __init__(self) -> None:
        self._parts: list[str] = []  # joined when drawn: appending to one str copies it each time
        self._call: str | None = None

    def add(self, data: ModelDeltaData) -> None:
        if "text" in data:
            self._parts.append(str(data["text"]))
            return
        call = str(data.get("tool_call_id"))
        if call != self._call:  # the first fragment of a call: start its line
            self._call = call
            self._parts.append(f"{chr(10) if self._parts else ''}→ {data.get('name') or 'tool'}(")
        self._parts.append(str(data.get("args_delta", "")))

    @property
    def text(self) -> str:
        return "".join(self._parts)


def _summary(status: str, turns: int, tool_calls: int, usage: Usage, model: str) -> str:
    calls = f"{tool_calls} tool call{'s' if tool_calls != 1 else ''}"
    tokens = (f"{usage.input_tokens + usage.output_tokens} tokens "
              f"({usage.input_tokens} in, {usage.output_tokens} out)")
    return f"{status} · {turns} turn{'s' if turns != 1 else ''} · {calls} · {tokens} · {model}"


def _answer(event: RunEvent) -> str:
    return payload(event, ModelResponseData)["text"].strip()


def events_text(events: Iterable[RunEvent], live_text: str = "") -> str:
    """The transcript of a run as plain text: tool calls, their results, and the answer."""
    lines: list[str] = []
    for event in events:
        if event.type == "tool.call":
            call = payload(event, ToolCallData)
            lines.append(f"→ {call_text(call['name'], call['args'])}")
        elif event.type == "tool.result":
            result = payload(event, ToolResultData)
            mark = "✗" if result["is_error"] else "←"
            lines.append(f"  {mark} {short(result['content'], 200)}")
        elif event.type == "model.response" and (text := _answer(event)):
            lines.append(text)
    if live_text:
        lines.append(live_text)
    return "\n".join(lines)


def result_text(result: RunLike) -> str:
    summary = _summary(result.status, result.turns, len(result.tool_calls), result.usage,
                       result.model)
    lines = [f"Run {summary}"]
    body = events_text(result.events)
    if body:
        lines.append(body)
    if result.error and result.status != "completed":
        lines.append(f"{result.status}: {result.error}")
    return "\n".join(lines)


def prompt_html(prompt: str) -> str:
    return (f"<div style='color:#57606a;white-space:pre-wrap'><b>Prompt</b>: "
            f"{html.escape(prompt)}</div>")


def events_html(events: Iterable[RunEvent], live_text: str = "") -> str:
    """The transcript of a run as HTML; long tool results are collapsed."""
    parts: list[str] = []
    for event in events:
        if event.type == "run.started":
            parts.append(prompt_html(payload(event, RunStartedData)["prompt"]))
        elif event.type == "tool.call":
            call = payload(event, ToolCallData)
            parts.append(f"<div style='margin-top:6px'>→ "
                         f"<code>{html.escape(call_text(call['name'], call['args']))}</code></div>")
        elif event.type == "tool.result":
            parts.append(_tool_result_html(payload(event, ToolResultData)))
        elif event.type == "model.response" and (text := _answer(event)):
            parts.append(f"<div style='white-space:pre-wrap;margin-top:6px'>"
                         f"{html.escape(text)}</div>")
    if live_text:
        parts.append(f"<div style='white-space:pre-wrap;margin-top:6px'>{html.escape(live_text)}▌</div>")
    return "\n".join(parts)


def _tool_result_html(data: ToolResultData) -> str:
    content = data["content"]
    color = "#cf222e" if data["is_error"] else "#57606a"
    label = "error" if data["is_error"] else "result"
    if len(content) <= 200 and "\n" not in content:
        return (f"<div style='margin-left:18px;color:{color}'>{label}: "
                f"<code>{html.escape(content)}</code></div>")
    body = f"<pre style=\"{PRE}\">{html.escape(content)}</pre>"
    return (f"<details style='margin-left:18px;color:{color}'><summary>{label} "
            f"({len(content)} characters)</summary>{body}</details>")


def header_html(status: str, summary: str) -> str:
    color = STATUS_COLORS.get(status, "#57606a")
    return (f"<div style='margin-bottom:4px'><span style='background:{color};color:white;"
            f"border-radius:10px;padding:1px 8px;font-weight:600'>{html.escape(status)}</span> "
            f"<span style='color:#57606a'>{html.escape(summary)}</span></div>")


def result_html(result: RunLike) -> str:
    summary = _summary(result.status, result.turns, len(result.tool_calls), result.usage,
                       result.model)
    summary = summary.split(" · ", 1)[1]
    error = ""
    if result.error and result.status != "completed":
        error = f"<div style='color:#cf222e;margin-top:6px'><b>{html.escape(result.status)}</b>: {html.escape(result.error)}</div>"
    return (f"<div class='loom-run' style=\"{CARD}\">{header_html(result.status, summary)}"
            f"{events_html(result.events)}{error}"
            f"<div style='color:#8c959f;font-size:11px;margin-top:6px'>{html.escape(result.run_id)}"
            f" · {html.escape(result.session_id)}</div></div>")


# -- a run that is still going (the cell's live display) and the session panel ---------------------


def live_card(events: Sequence[RunEvent], live_text: str, *, prompt: str, agent: str,
              model: str) -> MimeBundle:
    """The live display of a running run: the transcript so far and the text streaming in."""
    turn = max(1, sum(1 for e in events if e.type == "model.request"))
    calls = sum(1 for e in events if e.type == "tool.call")
    summary = f"turn {turn} · {calls} tool call{'s' if calls != 1 else ''} · {agent} · {model}"
    body = events_text(events, live_text)
    text = f"Run running · {summary}" + (f"\n{body}" if body else f"\n{prompt}")
    shown_prompt = "" if events else prompt_html(prompt)
    markup = (f"<div class='loom-run loom-live' style=\"{CARD}\">"
              f"{header_html('running', summary)}{shown_prompt}"
              f"{events_html(events, live_text or '…')}</div>")
    return {"text/plain": text, "text/html": markup}


def note_card(prompt: str, note: str) -> MimeBundle:
    """A run that ended without a result to show (cancelled before it started)."""
    markup = (f"<div class='loom-run' style=\"{CARD}\">{header_html('cancelled', note)}"
              f"{prompt_html(prompt)}</div>")
    return {"text/plain": f"Run cancelled · {note}", "text/html": markup}


def run_status(events: Iterable[RunEvent]) -> str:
    """A run's status as its events tell it: the last ``run.finished``'s, or ``running``."""
    finished = [payload(e, RunFinishedData)["status"] for e in events if e.type == "run.finished"]
    return finished[-1] if finished else "running"


def panel_header_html(session_id: str, agent: str, model: str) -> str:
    return (f"<b>loom session</b> <span style='color:#57606a'>{html.escape(session_id)} · "
            f"{html.escape(agent)} · {html.escape(model)}</span>")


def panel_html(runs: list[tuple[list[RunEvent], str]]) -> str:
    """The panel's transcript: each run's events, with the text of a turn still streaming."""
    parts = [f"<div style='border-top:1px solid #eaeef2;padding:4px 0'>"
             f"{header_html(run_status(events), '')}{events_html(events, live)}</div>"
             for events, live in runs]
    return "".join(parts) or ("<div style='color:#57606a'>No runs yet: write a prompt and press "
                              "Send.</div>")


def panel_text(runs: list[list[RunEvent]]) -> str:
    lines = [f"Session panel · {len(runs)} run{'s' if len(runs) != 1 else ''}"]
    for number, events in enumerate(runs, 1):
        started = next((e for e in events if e.type == "run.started"), None)
        prompt = payload(started, RunStartedData).get("prompt", "") if started else ""
        lines.append(f"▶ run {number} ({run_status(events)}): {prompt}")
        body = events_text(events)
        if body:
            lines += [f"  {line}" for line in body.splitlines()]
    return "\n".join(lines)
