"""What a run adds for issue 18's parts: the system partition's instruction parts (evaluated
once per run), their token counts for ``model.request``, a fallback's ``model.fallback`` event,
and tool results (with their images) in a paused run's state."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..context import estimate_tokens, tool_tokens
from ..events import (ModelFallbackData, ModelRequestData, ModelResponseData,
                      ResponseCallData)
from ..instructions import joined, render_parts
from ..messages import ToolCall, ToolResult, Usage, part_from_dict, part_to_dict
from ..models import FallbackNotice, ModelResponse
from ..result import PendingApproval

if TYPE_CHECKING:
    from ..context import ContextSnapshot
    from .loop import RunLoop

__all__ = ["fallback_data", "in_order", "prepare_system", "request_data", "response_data",
           "result_dict", "system_parts_data", "tool_result_from_dict"]


async def prepare_system(loop: RunLoop) -> None:
    """The run's instruction parts and system text, once per run (functions called here)."""
    if loop.system_parts is not None:
        return
    static = loop.agent.static_system_parts
    loop.system_parts = static if static is not None else await render_parts(
        loop.agent.instruction_parts, loop.context.bind(loop))
    loop.joined_system = joined(loop.system_parts)


def system_parts_data(loop: RunLoop) -> list[dict[str, Any]]:
    """Each part of the system partition: its label and (calibrated) tokens; the tool
    definitions, which the partition counts too, last."""
    factor = loop.session.context.factor
    parts = [{"label": label, "tokens": math.ceil(estimate_tokens(text) * factor)}
             for label, text in loop.system_parts or ()]
    tools = loop.agent.tool_definitions
    if tools:
        parts.append({"label": "tool definitions",
                      "tokens": math.ceil(tool_tokens(tools) * factor)})
    return parts


def request_data(loop: RunLoop, model_id: str, tool_names: list[str],
                 snapshot: ContextSnapshot) -> ModelRequestData:
    """The ``model.request`` payload; with the system partition's content, its parts."""
    content = loop.window.unrecorded(snapshot)
    data: ModelRequestData = {"turn": loop.turns + 1, "model": model_id,
                              "tools": tool_names.copy(), "context": snapshot.to_dict(),
                              "content": content}
    if "system" in content and loop.system_parts:
        data["system_parts"] = system_parts_data(loop)
    return data


def response_data(loop: RunLoop, response: ModelResponse, usage: Usage,
                  calls: list[ResponseCallData]) -> ModelResponseData:
    """The ``model.response`` payload; with a fallback, which of its models answered."""
    message = response.message
    data: ModelResponseData = {
        "turn": loop.turns, "text": message.text, "stop_reason": response.stop_reason,
        "tool_calls": calls, "usage": usage.to_dict(),
        "model": response.model_name or loop.agent.model.name}
    if response.model_id:
        data["answered_by"] = response.model_id
    return data


def in_order(pending: list[PendingApproval], calls: tuple[ToolCall, ...]) -> list[PendingApproval]:
    """The waiting calls in the model's order, a sub-agent's under its ``delegate`` call."""
    order = {c.id: i for i, c in enumerate(calls)}
    return sorted(pending, key=lambda p: order[p.via or p.call_id])


def fallback_data(item: FallbackNotice) -> ModelFallbackData:
    return {"failed": item.failed, "next": item.next, "error": item.error,
            "error_type": item.error_type, "discarded": item.discarded}


def result_dict(result: ToolResult) -> dict[str, Any]:
    """A tool result for a paused run's state; its images go inline (each bounded in size)."""
    data = part_to_dict(result)
    data.pop("kind")
    return data


def tool_result_from_dict(data: dict[str, Any]) -> ToolResult:
    part = part_from_dict({"kind": "tool_result", **data})
    assert isinstance(part, ToolResult)
    return part
