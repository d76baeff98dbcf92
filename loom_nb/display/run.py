"""The run card: a run as deterministic plain text and self-contained HTML, finished or live.

Plain strings only, so the kernel can offer ``_repr_mimebundle_`` without importing IPython, and
an executed notebook reads well on GitHub, in nbviewer and in VS Code. The plain-text form holds
no ids or timestamps, so nbval can compare it. Every form is drawn from a run's events, which is
what lets the notebook layer draw a run that is still going (:func:`live_card`) and the session
panel's transcript (:func:`panel_html`) with the same pieces.
"""

from __future__ import annotations

import html
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, Protocol

from ..events import (ModelDeltaData, ModelResponseData, ModelRetryData, RunEvent, RunFinishedData,
                      RunStartedData, ToolCallData, ToolResultData, payload)
from ..messages import Usage
from .common import (CARD, ERROR, FAINT, MUTED, PRE, RULE, STATUS_COLORS, WARN, call_text,
                     printable, short, theme, usd)
from .markdown import markdown_html
from .media import media_html, media_index, media_lines
from .mcp_notes import MCP_NOTES, mcp_note

_TAGS = re.compile(r"<[^>]+>")

__all__ = ["LiveText", "RunLike", "events_html", "events_text", "header_html", "LiveCard",
           "APPROVAL_HINT", "cut_text", "error_html", "note_card", "panel_header_html", "panel_html", "panel_text",
           "prompt_html", "result_html", "result_text", "run_status", "status_sentence",
           "structured_output"]

if TYPE_CHECKING:
    from ..media import Media

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
    cached = (f", {usage.cache_read_tokens} cache read, {usage.cache_write_tokens} cache write"
              if usage.cache_read_tokens or usage.cache_write_tokens else "")
    tokens = (f"{usage.input_tokens + usage.output_tokens} tokens "
              f"({usage.input_tokens} in, {usage.output_tokens} out{cached})")
    if usage.cost is not None:  # unknown prices show nothing rather than a made-up $0
        tokens += f" · {usd(usage.cost)}"
    return f"{status} · {turns} turn{'s' if turns != 1 else ''} · {calls} · {tokens} · {model}"


def _answer(event: RunEvent) -> str:
    return payload(event, ModelResponseData)["text"].strip()


#: Status words as a sentence's end: "The run failed", not "The run is failed".
_STATUS_SENTENCES = {"completed": "completed", "failed": "failed", "cancelled": "was cancelled",
                     "limit": "stopped at a limit", "needs_approval": "waits for approval",
                     "interrupted": "was interrupted", "running": "is running"}


def status_sentence(status: str, error: str | None = None) -> str:
    """``The run failed: <why>.``: a run's end in words, with its reason when it has one."""
    sentence = f"The run {_STATUS_SENTENCES.get(status, status)}"
    if error and status not in ("completed", "needs_approval"):
        return f"{sentence}: {error.rstrip('.')}."
    return f"{sentence}."


def cut_text(events: Iterable[RunEvent]) -> str:
    """The answer a cancelled (or interrupted) run had streamed when it was stopped, if any.

    The run keeps it as its output and in ``run.finished``; no ``model.response`` holds it.
    """
    answered, cut = "", ""
    for event in events:
        if event.type == "model.response":
            answered = _answer(event)
        elif event.type == "run.finished":
            data = payload(event, RunFinishedData)
            output = str(data.get("output") or "").strip()
            cut = output if data["status"] in _CUT and output != answered else ""
    return cut


_CUT = frozenset({"cancelled", "interrupted"})
CUT_MARK = "[cut off here: the run was stopped]"


def events_text(events: Iterable[RunEvent], live_text: str = "") -> str:
    """The transcript of a run as plain text: tool calls, their results, and the answer."""
    events = list(events)
    lines: list[str] = []
    for event in events:
        if event.type == "run.started":
            lines += media_lines(payload(event, RunStartedData)["task"].get("attachments", []))
        elif event.type == "tool.call":
            call = payload(event, ToolCallData)
            lines.append(f"→ {call_text(call['name'], call['args'])}")
        elif event.type == "tool.result":
            result = payload(event, ToolResultData)
            mark = "✗" if result["is_error"] else "←"
            lines.append(f"  {mark} {short(result['content'], 200)}")
            lines += media_lines(result.get("media", []))
        elif event.type == "model.response" and (text := _answer(event)):
            lines.append(text)
    if cut := cut_text(events):
        lines += [cut, CUT_MARK]
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
    if result.status == "needs_approval":
        lines += [*question_lines(result), APPROVAL_HINT]
    if (shown := structured_output(result.events)) is not None:
        lines.append(f"output ({shown[0]}): {short(json.dumps(shown[1], ensure_ascii=False), 500)}")
    return printable("\n".join(lines))


def structured_output(events: Iterable[RunEvent]) -> tuple[str, object] | None:
    """``(type name, validated output as JSON)`` of a run with ``output_type=`` that completed."""
    finished = [payload(e, RunFinishedData) for e in events if e.type == "run.finished"]
    if not finished or finished[-1]["status"] != "completed":
        return None
    name = finished[-1].get("output_type")
    return None if name is None else (name, finished[-1].get("parsed"))


def _structured_html(events: Iterable[RunEvent]) -> str:
    shown = structured_output(events)
    if shown is None:
        return ""
    body = json.dumps(shown[1], ensure_ascii=False, indent=2)
    return (f"<div style='margin-top:6px'><b>output</b> <span style='{MUTED}'>"
            f"({html.escape(shown[0])})</span><pre style=\"{PRE}\">{html.escape(body)}</pre></div>")


#: Where a paused run's card points: the buttons, the notebook commands, and the code.
APPROVAL_HINT = ("Decide with Approve / Reject (%loom approvals), with %loom approve / "
                 "%loom reject [--reason R] [CALL_ID ...], or in code: "
                 "result.approve().resume_sync().")


def question_lines(result: Any) -> list[str]:
    """A paused run's questions of the model (``ask_user``), with how to answer them."""
    return [f"The model asks ({p.call_id}): {p.question} Answer with %loom answer TEXT, the "
            f"answer box (%loom approvals), or result.answer({p.call_id!r}, text).resume_sync()."
            for p in getattr(result, "pending", ()) if p.kind == "question"]


def prompt_html(prompt: str) -> str:
    return (f"<div style='{MUTED};white-space:pre-wrap'><b>Prompt</b>: "
            f"{html.escape(prompt)}</div>")


#: Beyond this many tool calls, the earlier ones fold into one line that says how many.
FOLD_CALLS = 8
_KEEP_CALLS = 3


def events_html(events: Iterable[RunEvent], live_text: str = "", *, ending: bool = False,
                media: Mapping[str, Media] | None = None) -> str:
    """The transcript of a run as HTML; long tool results and long runs are collapsed.

    ``ending``: also the run's end (its reason when it did not complete, the partial answer of
    a stopped run), for places that show no result card around it (the session panel).
    ``media``: images by sha256, drawn as thumbnails where the events reference them.
    """
    events = list(events)
    steps: list[tuple[bool, str]] = []  # (part of a tool step, markup)
    for index, event in enumerate(events):
        if event.type == "run.started":
            started = payload(event, RunStartedData)
            steps.append((False, prompt_html(started["prompt"])
                          + media_html(started["task"].get("attachments", []), media)))
        elif event.type in MCP_NOTES and (note := mcp_note(events, index)):
            steps.append((True, note))
        elif event.type == "tool.call":
            steps.append((True, _tool_call_html(payload(event, ToolCallData))))
        elif event.type == "tool.result":
            result = payload(event, ToolResultData)
            steps.append((True, _tool_result_html(result) + media_html(result.get("media", []), media)))
        elif event.type == "model.response" and (text := _answer(event)):
            steps.append((False, _answer_html(text)))
    if cut := cut_text(events):
        steps.append((False, _answer_html(cut) + f"<div style='color:{WARN};font-size:11px'>"
                             f"✂ {html.escape(CUT_MARK[1:-1])}</div>"))
    if ending:
        finished = [payload(e, RunFinishedData) for e in events if e.type == "run.finished"]
        if finished and finished[-1]["status"] not in ("completed", "needs_approval"):
            steps.append((False, error_html(finished[-1]["status"], finished[-1].get("error"))))
    parts = _fold_calls(steps, sum(1 for e in events if e.type == "tool.call"))
    if live_text:
        parts.append(_answer_html(live_text, cursor=True))
    return "\n".join(parts)


def _fold_calls(steps: list[tuple[bool, str]], calls: int) -> list[str]:
    """The markup of ``steps``, the tool steps but the last few folded away in a long run."""
    if calls <= FOLD_CALLS:
        return [markup for _, markup in steps]
    tool_steps = [i for i, (tool, _) in enumerate(steps) if tool]
    first_kept = tool_steps[-2 * _KEEP_CALLS]  # a call and its result per kept call
    folded = [markup for i, (tool, markup) in enumerate(steps) if tool and i < first_kept]
    hidden = calls - _KEEP_CALLS
    summary = (f"<details style='margin-top:6px'><summary style='cursor:pointer;{MUTED}'>"
               f"{hidden} earlier tool calls</summary>{''.join(folded)}</details>")
    parts: list[str] = []
    for i, (tool, markup) in enumerate(steps):
        if tool and i < first_kept:
            if i == tool_steps[0]:
                parts.append(summary)
            continue
        parts.append(markup)
    return parts


def _tool_call_html(call: ToolCallData) -> str:
    return (f"<div style='margin-top:6px'>→ <code style='overflow-wrap:anywhere'>"
            f"{html.escape(call_text(call['name'], call['args']))}</code></div>")


def _answer_html(text: str, cursor: bool = False) -> str:
    # The cursor goes in as text, so that it ends the last paragraph instead of one of its own.
    body = markdown_html(text + (" ▌" if cursor else ""))
    return f"<div style='margin-top:6px'>{body}</div>"


def error_html(status: str, error: str | None) -> str:
    """Why a run did not complete, under its transcript."""
    return (f"<div style='color:{ERROR};margin-top:6px;white-space:pre-wrap'><b>"
            f"{html.escape(status)}</b>: {html.escape(error or 'no reason was recorded')}</div>")


def _tool_result_html(data: ToolResultData) -> str:
    content = data["content"]
    color = ERROR if data["is_error"] else theme("ui-font-color2", "#57606a")
    label = "error" if data["is_error"] else "result"
    if len(content) <= 200 and "\n" not in content:
        return (f"<div style='margin-left:18px;color:{color}'>{label}: "
                f"<code style='overflow-wrap:anywhere'>{html.escape(content)}</code></div>")
    body = f"<pre style=\"{PRE}\">{html.escape(content)}</pre>"
    return (f"<details style='margin-left:18px;color:{color}'><summary style='cursor:pointer'>"
            f"{label} ({len(content)} characters)</summary>{body}</details>")


def header_html(status: str, summary: str) -> str:
    color = STATUS_COLORS.get(status, "#6e7781")
    return (f"<div style='margin-bottom:4px'><span style='background:{color};color:white;"
            f"border-radius:10px;padding:1px 8px;font-weight:600'>{html.escape(status)}</span> "
            f"<span style='{MUTED}'>{html.escape(summary)}</span></div>")


def _hint_html() -> str:
    return (html.escape(APPROVAL_HINT).replace("%loom approve", "<code>%loom approve</code>")
            .replace("%loom reject", "<code>%loom reject</code>")
            .replace("result.approve().resume_sync()", "<code>result.approve().resume_sync()</code>"))


def _elapsed(result: RunLike) -> str:
    ms = getattr(result, "duration_ms", None)
    if ms is None:
        return ""
    return f" · {ms / 1000:.1f} s" if ms >= 100 else f" · {ms:.0f} ms"


def result_html(result: RunLike) -> str:
    summary = _summary(result.status, result.turns, len(result.tool_calls), result.usage,
                       result.model)
    agent = getattr(result, "agent", "")
    summary = (f"{agent} · " if agent else "") + summary.split(" · ", 1)[1] + _elapsed(result)
    error = ""
    if result.error and result.status != "completed":
        error = error_html(result.status, result.error)
    if result.status == "needs_approval":
        error += "".join(f"<div style='margin-top:4px'><b>{html.escape(line)}</b></div>"
                         for line in question_lines(result))
        error += f"<div style='{MUTED};margin-top:4px'>{_hint_html()}</div>"
    return (f"<div class='loom-run' style=\"{CARD}\">{header_html(result.status, summary)}"
            f"{events_html(result.events, media=media_index(getattr(result, 'messages', ())))}"
            f"{_structured_html(result.events)}{error}"
            f"<div style='color:{FAINT};font-size:11px;margin-top:6px'>{html.escape(result.run_id)}"
            f" · {html.escape(result.session_id)}</div></div>")


# -- a run that is still going (the cell's live display) and the session panel ---------------------


#: How many of a running run's latest steps (a tool call, a result, an answer) its live card
#: shows; the earlier ones are counted in one line, and the final render lists them all.
LIVE_STEPS = 8


class LiveCard:
    """The live display of a running run, built one event at a time.

    Each finished step is rendered once, when its event arrives, and only the latest
    :data:`LIVE_STEPS` are kept, so drawing the card costs the same at the 500th tool call as at
    the first (issue 25: re-rendering every event made one update's cost grow with the run).
    """

    def __init__(self, prompt: str, *, agent: str, model: str, shown: int = LIVE_STEPS) -> None:
        self.prompt = prompt
        self.agent = agent
        self.model = model
        self.turns = 0
        self.calls = 0
        #: Steps folded away: counted, not kept.
        self.hidden = 0
        self._steps: deque[tuple[str, str]] = deque(maxlen=shown)  # (plain line, markup)
        self._prompt_html = prompt_html(prompt)
        #: "retrying in N s" while the provider's request is retried (a connection, a 429).
        self.retrying = ""

    def add(self, event: RunEvent) -> None:
        """Take one (non-delta) event of the run into the card."""
        kind = event.type
        if kind == "model.request":
            self.turns += 1
        elif kind == "run.started":
            self._prompt_html = prompt_html(payload(event, RunStartedData)["prompt"])
        elif kind == "tool.call":
            self.calls += 1
            call = payload(event, ToolCallData)
            self._push(f"→ {call_text(call['name'], call['args'])}", _tool_call_html(call))
        elif kind == "tool.result":
            result = payload(event, ToolResultData)
            mark = "✗" if result["is_error"] else "←"
            self._push(f"  {mark} {short(result['content'], 200)}", _tool_result_html(result))
        elif kind == "model.response" and (text := _answer(event)):
            self._push(text, _answer_html(text))
        elif kind in MCP_NOTES and (note := mcp_note([event], 0)):
            line = html.unescape(_TAGS.sub("", note))
            if kind == "mcp.progress" and self._steps and self._steps[-1][0].startswith("⏳"):
                self._steps[-1] = (line, note)  # the latest progress replaces the one before
            else:
                self._push(line, note)
        if kind == "model.retry":
            retry = payload(event, ModelRetryData)
            self.retrying = (f"⟳ retrying in {retry['delay']:.1f} s (retry {retry['attempt']}): "
                             f"{short(retry['error'], 200)}")
        elif kind in ("model.response", "model.request", "tool.call"):
            self.retrying = ""

    def _push(self, line: str, markup: str) -> None:
        if len(self._steps) == self._steps.maxlen:
            self.hidden += 1
        self._steps.append((line, markup))

    def bundle(self, live_text: str) -> MimeBundle:
        """The card now: the latest steps and the text streaming in."""
        calls = self.calls
        summary = (f"turn {max(1, self.turns)} · {calls} tool call{'s' if calls != 1 else ''} · "
                   f"{self.agent} · {self.model}")
        lines = [line for line, _ in self._steps]
        parts = [markup for _, markup in self._steps]
        if self.hidden:
            more = f"{self.hidden} earlier step{'s' if self.hidden != 1 else ''}"
            lines.insert(0, f"… {more} (all of them in the final render)")
            parts.insert(0, f"<div style='margin-top:6px;{MUTED}'>… {more}; the final render "
                            f"lists them all</div>")
        if live_text:
            self.retrying = ""  # the answer is coming through
            lines.append(live_text)
        if self.retrying:
            lines.append(self.retrying)
            parts.append(f"<div style='color:{WARN};margin-top:6px'>{html.escape(self.retrying)}"
                         f"</div>")
        text = f"Run running · {summary}\n" + ("\n".join(lines) or self.prompt)
        parts.append(_answer_html(live_text or "…", cursor=True))
        markup = (f"<div class='loom-run loom-live' style=\"{CARD}\">"
                  f"{header_html('running', summary)}{self._prompt_html}{''.join(parts)}</div>")
        return {"text/plain": printable(text), "text/html": markup}


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
    return (f"<b>loom session</b> <span style='{MUTED}'>{html.escape(session_id)} · "
            f"{html.escape(agent)} · {html.escape(model)}</span>")


def panel_html(runs: list[tuple[list[RunEvent], str]]) -> str:
    """The panel's transcript: each run's events, with the text of a turn still streaming."""
    return panel_transcript([panel_run_html(events, live) for events, live in runs])


def panel_run_html(events: list[RunEvent], live: str = "") -> str:
    """One run of the panel's transcript (the panel keeps a finished run's, drawn once)."""
    return (f"<div style='border-top:1px solid {RULE};padding:4px 0'>"
            f"{header_html(run_status(events), '')}{events_html(events, live, ending=True)}</div>")


def panel_transcript(parts: list[str]) -> str:
    """The transcript around its runs' markup."""
    # line-height: ipywidgets' HTML widget sets its own (the height of a button) otherwise.
    body = "".join(parts) or (f"<div style='{MUTED}'>No runs yet: write a prompt and press "
                              f"Send.</div>")
    return f"<div class='loom-transcript' style='line-height:1.45;overflow-wrap:anywhere'>{body}</div>"


def panel_text(runs: list[list[RunEvent]]) -> str:
    lines = [f"Session panel · {len(runs)} run{'s' if len(runs) != 1 else ''}"]
    for number, events in enumerate(runs, 1):
        started = next((e for e in events if e.type == "run.started"), None)
        prompt = payload(started, RunStartedData).get("prompt", "") if started else ""
        lines.append(f"▶ run {number} ({run_status(events)}): {prompt}")
        body = events_text(events)
        if body:
            lines += [f"  {line}" for line in body.splitlines()]
        finished = [payload(e, RunFinishedData) for e in events if e.type == "run.finished"]
        if finished and finished[-1]["status"] not in ("completed", "needs_approval"):
            lines.append(f"  {finished[-1]['status']}: {finished[-1].get('error') or 'no reason'}")
    return printable("\n".join(lines))
