"""Static renderings of runs: deterministic plain text and self-contained HTML.

Plain strings only, so the kernel can offer ``_repr_mimebundle_`` without importing IPython, and
an executed notebook reads well on GitHub, in nbviewer and in VS Code. The plain-text form holds
no ids or timestamps, so nbval can compare it. Both forms are drawn from a run's events, which is
what lets the notebook layer draw a run that is still going.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .events import RunEvent

if TYPE_CHECKING:
    from .result import RunResult

__all__ = ["LiveText", "call_text", "events_html", "events_text", "header_html", "result_html",
           "result_text"]

TEXT_PREVIEW = 300
_STATUS_COLORS = {"completed": "#1a7f37", "failed": "#cf222e", "cancelled": "#6e7781",
                  "limit": "#9a6700", "needs_approval": "#8250df", "running": "#0969da",
                  "interrupted": "#bc4c00"}


def _short(text: str, limit: int = TEXT_PREVIEW) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def _call_text(name: str, args: dict[str, Any]) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
    return f"{name}({inner})"


def call_text(name: str, args: dict[str, Any]) -> str:
    """A tool call as one line: ``name(key=json, ...)``."""
    return _call_text(name, args)


class LiveText:
    """What a model turn's ``model.delta`` events have spelled so far: the answer's text, and
    each tool call taking shape as its argument fragments arrive (``→ name({"city": ...``)."""

    def __init__(self) -> None:
        self._parts: list[str] = []  # joined when drawn: appending to one str copies it each time
        self._call: str | None = None

    def add(self, data: dict[str, Any]) -> None:
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


def _summary(status: str, turns: int, tool_calls: int, usage: dict[str, int], model: str) -> str:
    calls = f"{tool_calls} tool call{'s' if tool_calls != 1 else ''}"
    tokens = (f"{usage.get('input_tokens', 0) + usage.get('output_tokens', 0)} tokens "
              f"({usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out)")
    return f"{status} · {turns} turn{'s' if turns != 1 else ''} · {calls} · {tokens} · {model}"


def events_text(events: Iterable[RunEvent], live_text: str = "") -> str:
    """The transcript of a run as plain text: tool calls, their results, and the answer."""
    lines: list[str] = []
    for event in events:
        data = event.data
        if event.type == "tool.call":
            lines.append(f"→ {_call_text(data['name'], data['args'])}")
        elif event.type == "tool.result":
            mark = "✗" if data["is_error"] else "←"
            lines.append(f"  {mark} {_short(data['content'], 200)}")
        elif event.type == "model.response" and data["text"].strip():
            lines.append(data["text"].strip())
    if live_text:
        lines.append(live_text)
    return "\n".join(lines)


def result_text(result: RunResult) -> str:
    summary = _summary(result.status, result.turns, len(result.tool_calls),
                       result.usage.to_dict(), result.model)
    lines = [f"Run {summary}"]
    body = events_text(result.events)
    if body:
        lines.append(body)
    if result.error and result.status != "completed":
        lines.append(f"{result.status}: {result.error}")
    return "\n".join(lines)


_CARD = ("font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; font-size: 13px; "
         "border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; margin: 4px 0; "
         "max-width: 900px")
_PRE = ("white-space: pre-wrap; word-break: break-word; margin: 4px 0; font-family: ui-monospace, "
        "SFMono-Regular, Menlo, monospace; font-size: 12px; background: #f6f8fa; padding: 6px; "
        "border-radius: 4px")


def events_html(events: Iterable[RunEvent], live_text: str = "") -> str:
    """The transcript of a run as HTML; long tool results are collapsed."""
    parts: list[str] = []
    for event in events:
        data = event.data
        if event.type == "run.started":
            parts.append(f"<div style='color:#57606a;white-space:pre-wrap'><b>Prompt</b>: "
                         f"{html.escape(data['prompt'])}</div>")
        elif event.type == "tool.call":
            parts.append(
                f"<div style='margin-top:6px'>→ <code>{html.escape(_call_text(data['name'], data['args']))}</code></div>"
            )
        elif event.type == "tool.result":
            parts.append(_tool_result_html(data))
        elif event.type == "model.response" and data["text"].strip():
            parts.append(f"<div style='white-space:pre-wrap;margin-top:6px'>{html.escape(data['text'].strip())}</div>")
    if live_text:
        parts.append(f"<div style='white-space:pre-wrap;margin-top:6px'>{html.escape(live_text)}▌</div>")
    return "\n".join(parts)


def _tool_result_html(data: dict[str, Any]) -> str:
    content = data["content"]
    color = "#cf222e" if data["is_error"] else "#57606a"
    label = "error" if data["is_error"] else "result"
    if len(content) <= 200 and "\n" not in content:
        return (f"<div style='margin-left:18px;color:{color}'>{label}: "
                f"<code>{html.escape(content)}</code></div>")
    body = f"<pre style=\"{_PRE}\">{html.escape(content)}</pre>"
    return (f"<details style='margin-left:18px;color:{color}'><summary>{label} "
            f"({len(content)} characters)</summary>{body}</details>")


def header_html(status: str, summary: str) -> str:
    color = _STATUS_COLORS.get(status, "#57606a")
    return (f"<div style='margin-bottom:4px'><span style='background:{color};color:white;"
            f"border-radius:10px;padding:1px 8px;font-weight:600'>{html.escape(status)}</span> "
            f"<span style='color:#57606a'>{html.escape(summary)}</span></div>")


def result_html(result: RunResult) -> str:
    summary = _summary(result.status, result.turns, len(result.tool_calls),
                       result.usage.to_dict(), result.model)
    summary = summary.split(" · ", 1)[1]
    error = ""
    if result.error and result.status != "completed":
        error = f"<div style='color:#cf222e;margin-top:6px'><b>{html.escape(result.status)}</b>: {html.escape(result.error)}</div>"
    return (f"<div class='loom-run' style=\"{_CARD}\">{header_html(result.status, summary)}"
            f"{events_html(result.events)}{error}"
            f"<div style='color:#8c959f;font-size:11px;margin-top:6px'>{html.escape(result.run_id)}"
            f" · {html.escape(result.session_id)}</div></div>")
