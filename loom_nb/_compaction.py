"""Compaction and renewal of a session's context (the mechanics behind ContextProtocol).

Both rewrite the session's :class:`ContextState` (history and memory), save a checkpoint to the
store so a restored session resumes from the compacted state, and return the data of the event
that records what happened (tokens before and after, what was shrunk, summarized or carried).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .context import ContextProtocol, estimate_tokens, message_tokens
from .continuity import ContinuityPolicy, safe_cut
from .cost import priced
from .media import Document, Image, media_label
from .messages import Message, TextPart, ToolCall, ToolResult, Usage
from .models import Model, ModelRequest

__all__ = ["ContextState", "Summary", "compact", "renew", "summarize"]

SHRINK_MARK = "[... {n} characters of this old tool result removed by compaction ...]"


@dataclass(eq=False, kw_only=True)
class ContextState:
    """A session's context between runs: history, memory and the token calibration."""

    history: list[Message]
    memory: list[str] = field(default_factory=list)
    #: Messages ever written to the store for this session (checkpoints refer to it).
    message_count: int = 0
    #: Calibrates estimates: provider-reported input tokens / estimated input tokens.
    factor: float = 1.0
    history_tokens: int = field(init=False, default=0)  # counted from history, then kept

    def __post_init__(self) -> None:
        self.history_tokens = sum(message_tokens(m) for m in self.history)

    def append(self, messages: Sequence[Message]) -> None:
        self.history.extend(messages)
        for message in messages:
            self.history_tokens += message_tokens(message)
        self.message_count += len(messages)

    def replace(self, history: list[Message], memory: list[str]) -> None:
        self.history = history
        self.memory = memory
        self.history_tokens = sum(message_tokens(m) for m in history)

    def calibrate(self, reported: int, estimated_raw: int) -> None:
        """Move the factor halfway towards what the provider reported, never below 1.

        The local estimate is a floor: a provider (or a proxy, or a server that fakes usage) that
        under-reports would otherwise shrink every estimate, and the budget check would let
        requests grow past the window. A provider that counts more raises the factor (up to 4).
        """
        if reported > 0 and estimated_raw > 0:
            observed = min(max(reported / estimated_raw, 1.0), 4.0)
            self.factor = round(max(0.5 * self.factor + 0.5 * observed, 1.0), 4)


@dataclass(frozen=True)
class Summary:
    text: str
    method: str
    usage: Usage = field(default_factory=Usage)


def transcript(messages: Sequence[Message], limit: int = 2_000) -> str:
    """The messages as plain text for a summarizer; long tool results are clipped."""
    lines = []
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCall):
                lines.append(f"Assistant called {part.name}({json.dumps(part.args, default=str)})")
            elif isinstance(part, ToolResult):
                text = part.content if len(part.content) <= limit else part.content[:limit] + " [...]"
                lines.append(f"Tool {part.name} {'failed' if part.is_error else 'returned'}: {text}")
            elif isinstance(part, TextPart) and part.text.strip():
                lines.append(f"{message.role.capitalize()}: {part.text.strip()}")
            elif isinstance(part, (Image, Document)):
                lines.append(f"{message.role.capitalize()} attached {media_label(part)}")
    return "\n".join(lines)


def extractive(messages: Sequence[Message], lines: int = 40, width: int = 160) -> str:
    """A summary without a model: the start of each of the last ``lines`` entries."""
    entries = [e if len(e) <= width else e[: width - 3] + "..."
               for e in transcript(messages).splitlines()]
    skipped = len(entries) - lines
    head = [f"({skipped} earlier entries not shown)"] if skipped > 0 else []
    return "\n".join(head + entries[-lines:])


async def summarize(summarizer: Any, model: Model, messages: Sequence[Message],
                    instructions: str) -> Summary:
    """A summary of ``messages`` by the configured summarizer; extractive if it fails."""
    import inspect
    chosen: Any = summarizer if summarizer is not None else (
        "extractive" if getattr(model, "provider", "") == "scripted" else model)
    if chosen == "extractive":
        return Summary(extractive(messages), "extractive")
    try:
        if isinstance(chosen, Model):
            request = ModelRequest(system=instructions, messages=(Message.user(transcript(messages)),))
            response = await chosen.request(request)
            if not response.message.text.strip():
                raise ValueError("the summarizer returned no text")
            return Summary(response.message.text.strip(), f"model {chosen.identifier}",
                           priced(response.usage, chosen, response.model_name))
        text = chosen(messages, instructions)
        if inspect.isawaitable(text):
            text = await text
        return Summary(str(text).strip(), f"function {getattr(chosen, '__name__', 'summarizer')}")
    except Exception as exc:  # noqa: BLE001 - a failed summary must not lose the run
        return Summary(extractive(messages), f"extractive (summarizer failed: {type(exc).__name__}: {exc})")


def _shrink(message: Message, over: int) -> tuple[Message, int]:
    """The message with its large tool results shrunk, and how many characters went."""
    removed = 0
    parts = []
    for part in message.parts:
        if isinstance(part, ToolResult) and estimate_tokens(part.content) > over:
            keep = part.content[: over * 2]
            cut = len(part.content) - len(keep)
            removed += cut
            part = ToolResult(call_id=part.call_id, name=part.name, is_error=part.is_error,
                              content=f"{keep}\n{SHRINK_MARK.format(n=cut)}", media=part.media)
        parts.append(part)
    return Message(role=message.role, parts=tuple(parts)), removed


def with_user_head(tail: list[Message], goal: str) -> list[Message]:
    """Providers want the conversation to start with a user message; say where it picks up."""
    if tail and tail[0].role == "user":
        return tail
    note = ("(The earlier part of this conversation is summarized in your memory.) "
            f"The current goal: {goal}")
    return [Message.user(note), *tail]


Measure = Callable[[], int]
Checkpoint = Callable[[], None]
Summarize = Callable[[Sequence[Message], str], Awaitable[Summary]]


async def compact(state: ContextState, protocol: ContextProtocol, continuity: ContinuityPolicy,
                  *, budget: int, measure: Measure, summarize_fn: Summarize, goal: str,
                  checkpoint: Checkpoint) -> dict[str, Any]:
    """Shrink old tool results, then summarize older turns into memory; the event data."""
    before = measure()
    cut = safe_cut(state.history, continuity.keep_recent)
    old, tail = state.history[:cut], state.history[cut:]
    shrunk = removed = 0
    for i, message in enumerate(old):
        if message.role == "tool":
            old[i], cut_chars = _shrink(message, protocol.shrink_over)
            shrunk, removed = shrunk + bool(cut_chars), removed + cut_chars
    state.replace(old + tail, list(state.memory))
    data: dict[str, Any] = {"before_tokens": before, "shrunk_results": shrunk,
                            "shrunk_characters": removed, "summarized_messages": 0}
    if measure() > protocol.compact_to * budget and old:
        summary = await summarize_fn(old, continuity.summary_instructions)
        entry = f"Summary of {len(old)} earlier messages ({summary.method}):\n{summary.text}"
        state.replace(with_user_head(tail, goal), [*state.memory, entry])
        data.update(summarized_messages=len(old), summary_tokens=estimate_tokens(summary.text),
                    summary_method=summary.method, summary_usage=summary.usage.to_dict())
    checkpoint()
    data.update(after_tokens=measure(), kept_messages=len(state.history),
                memory_entries=len(state.memory))
    return data


async def renew(state: ContextState, continuity: ContinuityPolicy, *, measure: Measure,
                summarize_fn: Summarize, goal: str, open_tasks: list[str],
                checkpoint: Checkpoint) -> dict[str, Any]:
    """Replace memory and history with a handoff note and the most recent messages."""
    before = measure()
    cut = safe_cut(state.history, continuity.renewal_recent)
    memory_note = [Message.user("Notes carried so far:\n\n" + "\n\n".join(state.memory))] if state.memory else []
    summary = await summarize_fn(memory_note + state.history[:cut], continuity.handoff_instructions)
    memory = [f"Handoff note ({summary.method}):\n{summary.text}"]
    if open_tasks and continuity.carry_open_tasks:
        memory.append("Open tasks from earlier runs that did not complete:\n"
                      + "\n".join(f"- {t}" for t in open_tasks))
    state.replace(with_user_head(state.history[cut:], goal), memory)
    checkpoint()
    return {"before_tokens": before, "after_tokens": measure(), "handoff_tokens": estimate_tokens(summary.text),
            "handoff_method": summary.method, "handoff_usage": summary.usage.to_dict(),
            "kept_messages": len(state.history), "open_tasks": open_tasks if continuity.carry_open_tasks else []}
