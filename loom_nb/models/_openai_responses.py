"""OpenAI Responses API: loom messages as input items, and streamed events to a response.

The conversation is sent whole on each call (stateless: no ``previous_response_id``), so a
session restored from a store, or moved between models, works the same way as with Chat
Completions.

Reasoning items that a reasoning model returns are kept as :class:`ThinkingPart` s (their summary
as ``text``, the item as JSON in ``data``). One that carries ``encrypted_content`` is sent back
unchanged in later turns, which lets the model continue its reasoning across a tool loop without
server-side state; one without it could only be sent back as a reference to a stored response,
which fails where responses are not stored, so it is left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..media import Document, Image
from ..messages import Message, Part, TextPart, ThinkingPart, ToolCall, ToolResult, Usage
from . import ModelResponse, StopReason, StreamItem, TextDelta, ToolCallDelta, ToolDefinition
from ._errors import (
    IncompleteStreamError,
    ProviderError,
    ProviderInfo,
    classify_sdk_error,
    error_from_body,
)
from ._openai_chat import _Call, result_text, text_document, usage_from
from ._sdk import tool_call

__all__ = [
    "ResponsesStreamState",
    "classify_responses_error",
    "response_tools",
    "to_response_input",
]


def to_response_input(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Input items: messages, ``function_call`` and ``function_call_output`` items, in order.

    A user message with images or documents is one message item with a list of input parts; a
    tool's images and documents go in its ``function_call_output`` as input parts.
    """
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "user" and message.media:
            items.append({"type": "message", "role": "user",
                          "content": [_input_part(p) for p in message.parts]})
            continue
        for part in message.parts:
            item = _item(message.role, part)
            if item is not None:
                items.append(item)
    return items


def _item(role: str, part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        kind = "assistant" if role == "assistant" else "user"
        return {"type": "message", "role": kind, "content": part.text}
    if isinstance(part, ToolCall):
        return {"type": "function_call", "call_id": part.id, "name": part.name,
                "arguments": json.dumps(part.args, ensure_ascii=False)}
    if isinstance(part, ToolResult):
        output: str | list[dict[str, Any]] = result_text(part)
        if part.media:
            output = [{"type": "input_text", "text": output}, *map(_input_part, part.media)]
        return {"type": "function_call_output", "call_id": part.call_id, "output": output}
    if isinstance(part, ThinkingPart):
        return _reasoning_item(part)
    raise ConfigError(f"Cannot send a message part of type {type(part).__name__} to OpenAI.")


def _input_part(part: Part) -> dict[str, Any]:
    """``input_text``, ``input_image`` (a data: URI or the URL) or ``input_file`` for a PDF."""
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, Image):
        return {"type": "input_image", "image_url": part.data_uri(), "detail": "auto"}
    if isinstance(part, Document) and not part.is_pdf:
        return {"type": "input_text", "text": text_document(part)}
    if isinstance(part, Document):
        if part.data is None:
            return {"type": "input_file", "file_url": part.url}
        return {"type": "input_file", "filename": part.name or "document.pdf",
                "file_data": part.data_uri()}
    raise ConfigError(f"Cannot send a message part of type {type(part).__name__} in a user "
                      f"message to OpenAI.")


def _reasoning_item(part: ThinkingPart) -> dict[str, Any] | None:
    """The reasoning item a part was made from, when it can be sent back statelessly.

    Thinking from other providers (Anthropic's, signed or redacted) has no meaning here.
    """
    if part.redacted or part.signature or not part.data:
        return None
    try:
        item = json.loads(part.data)
    except ValueError:
        return None
    if not isinstance(item, dict) or item.get("type") != "reasoning":
        return None
    return item if item.get("encrypted_content") and item.get("id") else None


def _reasoning_part(item: Any) -> ThinkingPart:
    """A reasoning output item as a ThinkingPart: readable text, and the item to send back."""
    summary = [{"type": "summary_text", "text": s.text}
               for s in getattr(item, "summary", None) or [] if getattr(s, "text", None)]
    # Open-weight models behind compatible servers give their reasoning as content instead.
    content = [c.text for c in getattr(item, "content", None) or [] if getattr(c, "text", None)]
    text = "\n\n".join([s["text"] for s in summary] or content)
    data: dict[str, Any] = {"type": "reasoning", "id": item.id, "summary": summary}
    encrypted = getattr(item, "encrypted_content", None)
    if encrypted:
        data["encrypted_content"] = encrypted
    return ThinkingPart(text=text, data=json.dumps(data, ensure_ascii=False))


def response_tools(tools: Sequence[ToolDefinition]) -> list[dict[str, Any]]:
    # strict=False: loom tool schemas are plain JSON schemas, not OpenAI's strict subset.
    return [{"type": "function", "name": t.name, "description": t.description,
             "parameters": t.parameters, "strict": False} for t in tools]


@dataclass
class ResponsesStreamState:
    """Assembles typed Responses stream events into deltas and one response."""

    texts: dict[int, str] = field(default_factory=dict)
    calls: dict[int, _Call] = field(default_factory=dict)
    reasoning: dict[int, ThinkingPart] = field(default_factory=dict)
    refused: bool = False
    final: Any = None
    model: str = ""

    def feed(self, event: Any) -> list[StreamItem]:
        kind = getattr(event, "type", "")
        if kind == "response.output_text.delta" and event.delta:
            self.texts[event.output_index] = self.texts.get(event.output_index, "") + event.delta
            return [TextDelta(event.delta)]
        if kind == "response.refusal.delta" and event.delta:
            self.refused = True
            self.texts[event.output_index] = self.texts.get(event.output_index, "") + event.delta
            return [TextDelta(event.delta)]
        if kind == "response.output_item.added" and event.item.type == "function_call":
            self.calls[event.output_index] = _Call(event.item.call_id, event.item.name)
        elif kind == "response.function_call_arguments.delta" and event.delta:
            call = self.calls.get(event.output_index)
            if call is not None:
                call.arguments += event.delta
                return [ToolCallDelta(call.call_id, call.name, event.delta)]
        elif kind == "response.output_item.done":
            self._item_done(event.output_index, event.item)
        elif kind in ("response.completed", "response.incomplete"):
            self.final = event.response
        elif kind in ("response.failed", "error"):
            raise _stream_failure(event)
        return []

    def _item_done(self, index: int, item: Any) -> None:
        # The finished item is authoritative: it holds the full arguments even when a server
        # sent no argument deltas.
        if item.type == "function_call":
            self.calls[index] = _Call(item.call_id, item.name, item.arguments or "")
        elif item.type == "reasoning":
            self.reasoning[index] = _reasoning_part(item)
        elif item.type == "message":
            text = "".join(getattr(c, "text", None) or getattr(c, "refusal", None) or ""
                           for c in item.content or [])
            if text:
                self.texts[index] = text
            self.refused = self.refused or any(c.type == "refusal" for c in item.content or [])

    def response(self, model_name: str) -> ModelResponse:
        if self.final is None:
            raise IncompleteStreamError(
                "The Responses stream ended before response.completed (the connection was "
                "closed early)."
            )
        positions = sorted({*self.texts, *self.calls, *self.reasoning})
        parts: list[Part] = []
        for index in positions:
            if index in self.reasoning:
                parts.append(self.reasoning[index])
            if self.texts.get(index):
                parts.append(TextPart(text=self.texts[index]))
            if index in self.calls:
                call = self.calls[index]
                parts.append(tool_call(call.call_id, call.name, call.arguments))
        return ModelResponse(message=Message(role="assistant", parts=tuple(parts)),
                             usage=_usage(getattr(self.final, "usage", None)),
                             stop_reason=self._stop(), model_name=self.final.model or model_name)

    def _stop(self) -> StopReason:
        details = getattr(self.final, "incomplete_details", None)
        reason = getattr(details, "reason", None) if details else None
        if reason == "max_output_tokens":
            return "max_tokens"
        if reason == "content_filter" or self.refused:
            return "refusal"
        return "tool_use" if self.calls else "end_turn"


def _stream_failure(event: Any) -> _StreamReportedError:
    """A failure reported inside the stream, with an error body for classification."""
    if event.type == "error":
        error: dict[str, Any] = {"type": "", "code": event.code or "", "message": event.message}
    else:
        reported = getattr(event.response, "error", None)
        error = {"type": "", "code": getattr(reported, "code", "") or "",
                 "message": getattr(reported, "message", "") or "the response failed"}
    if not error["code"] or error["code"] == "server_error":
        error["type"] = "server_error"  # a failure without a cause is the server's: retryable
    return _StreamReportedError({"error": error})


class _StreamReportedError(Exception):
    """An error event in a Responses stream; carries its body for classification."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.body = body


def classify_responses_error(exc: BaseException, sdk: Any, info: ProviderInfo
                             ) -> ProviderError | None:
    """Like :func:`classify_sdk_error`, plus the error events of a Responses stream."""
    if isinstance(exc, _StreamReportedError):
        return error_from_body(exc.body, str(exc), None, None, info)
    return classify_sdk_error(exc, sdk, info)


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage(requests=1)
    return usage_from(usage.input_tokens, usage.output_tokens,
                      getattr(usage, "input_tokens_details", None))
