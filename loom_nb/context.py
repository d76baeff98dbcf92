"""What the model sees: the request is built from partitions.

* ``system``: the agent's instructions and its capabilities' instructions;
* ``working``: this run's task inputs, criteria and RunContext inputs (run-scoped, never stored
  in history);
* ``history``: the session's messages, then this run's.

Each request carries a snapshot of the partitions with their token counts, which the
``model.request`` event records for displays and DataFrames. Token counts are estimates (about
four characters a token) until a provider reports the real input count in ``model.response``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .messages import Message, TextPart, ToolCall, ToolResult
from .models import ModelRequest, ToolDefinition
from .models.scripted import estimate_tokens
from .task import RunContext, RuntimeTask

__all__ = ["build_request", "message_tokens", "render_system", "render_working"]


def render_system(instructions: str, capability_instructions: Sequence[str]) -> str:
    blocks = [instructions.strip(), *(text.strip() for text in capability_instructions)]
    return "\n\n".join(b for b in blocks if b)


def render_working(task: RuntimeTask, context: RunContext) -> str:
    """The run-scoped working partition as text (empty when there is nothing to show)."""
    sections = []
    if task.inputs:
        sections.append("Task inputs:\n" + _render_mapping(task.inputs))
    if task.criteria:
        sections.append("Acceptance criteria:\n" + "\n".join(f"- {c}" for c in task.criteria))
    if context.inputs:
        sections.append("Run inputs:\n" + _render_mapping(context.inputs))
    return "\n\n".join(sections)


def _render_mapping(values: dict[str, Any]) -> str:
    lines = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        lines.append(f"- {key}: {text}")
    return "\n".join(lines)


def message_tokens(message: Message) -> int:
    """Estimated tokens of one message."""
    total = 0
    for part in message.parts:
        if isinstance(part, TextPart):
            total += estimate_tokens(part.text)
        elif isinstance(part, ToolCall):
            total += estimate_tokens(part.name + json.dumps(part.args, default=str))
        elif isinstance(part, ToolResult):
            total += estimate_tokens(part.content)
    return total + 4  # role and framing


def build_request(
    *,
    system: str,
    working: str,
    history: Sequence[Message],
    history_tokens: int,
    tools: Sequence[ToolDefinition],
) -> tuple[ModelRequest, dict[str, Any]]:
    """The request for one model call, and the partition snapshot that describes it."""
    prompt = system if not working else f"{system}\n\n{working}" if system else working
    request = ModelRequest(system=prompt, messages=tuple(history), tools=tuple(tools))
    tool_tokens = sum(
        estimate_tokens(t.name + t.description + json.dumps(t.parameters)) for t in tools
    )
    partitions = {
        "system": estimate_tokens(system) + tool_tokens,
        "working": estimate_tokens(working),
        "history": history_tokens,
    }
    snapshot = {"partitions": partitions, "total_tokens": sum(partitions.values()),
                "messages": len(history)}
    return request, snapshot
