"""OpenAI Chat Completions: loom messages to the wire format, and streamed chunks to a response.

Kept apart from ``openai.py`` so that each wire format reads on its own. Only plain dicts and the
SDK's chunk objects (read by attribute) pass through here; nothing vendor-typed is returned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._words import a_type
from ..errors import ConfigError, NotSupportedError
from ..media import Document, Image
from ..messages import Message, Part, TextPart, ToolResult, Usage
from . import ModelResponse, StopReason, StreamItem, TextDelta, ToolCallDelta, ToolDefinition
from ._errors import IncompleteStreamError
from ._sdk import tool_call

__all__ = ["ChatStreamState", "chat_tools", "result_text", "text_document", "to_chat_messages"]

_FINISH: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


def result_text(result: ToolResult) -> str:
    """A tool result's text; OpenAI has no error flag, so a failure says so in words."""
    return f"Error: {result.content}" if result.is_error else result.content


def to_chat_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat ``messages``: the system prompt first, one ``tool`` message per tool result.

    A user message with images or documents is one message with a list of content parts. A
    tool message cannot hold an image, so the media that tools returned follow their tool
    messages in one user message that names the calls.
    """
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        if message.role == "assistant":
            out.append(_assistant(message))
        elif message.role == "user" and message.media:
            out.append({"role": "user", "content": [_content_part(p) for p in message.parts]})
        else:
            out.extend(_user_or_tool(part) for part in message.parts)
            returned = [r for r in message.tool_results if r.media]
            if returned:
                out.append({"role": "user", "content": _returned_media(returned)})
    return out


def _returned_media(results: Sequence[ToolResult]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for result in results:
        content.append({"type": "text", "text": f"Returned by the tool call {result.call_id} "
                                                f"({result.name}):"})
        content.extend(_content_part(m) for m in result.media)
    return content


def _content_part(part: Part) -> dict[str, Any]:
    """A user content part: text, ``image_url`` (a data: URI or the URL), ``file`` for a PDF."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        return {"type": "image_url", "image_url": {"url": part.data_uri()}}
    if isinstance(part, Document) and not part.is_pdf:
        return {"type": "text", "text": text_document(part)}
    if isinstance(part, Document):
        if part.data is None:
            raise NotSupportedError(
                f"Chat Completions takes a PDF as data, not as a URL ({part.url}); use "
                f"Model.openai(..., api='responses'), or pass the PDF's bytes to Document(...).")
        return {"type": "file", "file": {"filename": part.name or "document.pdf",
                                         "file_data": part.data_uri()}}
    raise ConfigError(f"Cannot send {a_type(part)} in a user message to OpenAI.")


def text_document(part: Document) -> str:
    """A text document as the text OpenAI gets (its file inputs are for PDFs)."""
    title = f" {part.name!r}" if part.name else ""
    return f"Document{title} ({part.media_type}):\n\n{part.text}"


def _assistant(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    calls = message.tool_calls
    if calls:
        # Arguments travel as JSON text. Malformed ones the model wrote go back as "{}": the
        # error result that follows tells the model what was wrong.
        entry["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.args, ensure_ascii=False)}}
            for c in calls
        ]
    elif entry["content"] is None:
        entry["content"] = ""
    return entry


def _user_or_tool(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"role": "user", "content": part.text}
    if isinstance(part, ToolResult):
        return {"role": "tool", "tool_call_id": part.call_id, "content": result_text(part)}
    raise ConfigError(f"Cannot send {a_type(part)} in a user or tool message to OpenAI.")


def chat_tools(tools: Sequence[ToolDefinition]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


@dataclass
class _Call:
    call_id: str
    name: str
    arguments: str = ""


@dataclass
class ChatStreamState:
    """Assembles ``ChatCompletionChunk`` s: text, tool calls by index, finish reason, usage."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    finish: str | None = None
    usage: Any = None
    model: str = ""

    def feed(self, chunk: Any) -> list[StreamItem]:
        self.model = getattr(chunk, "model", None) or self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage  # on the last chunk, whose choices are empty
        items: list[StreamItem] = []
        for choice in chunk.choices or []:
            if choice.index != 0:
                continue
            delta = choice.delta
            for text in (getattr(delta, "content", None), getattr(delta, "refusal", None)):
                if text:
                    self.text.append(text)
                    items.append(TextDelta(text))
            for fragment in getattr(delta, "tool_calls", None) or []:
                items.extend(self._tool_delta(fragment))
            if choice.finish_reason:
                self.finish = choice.finish_reason
        return items

    def _tool_delta(self, fragment: Any) -> list[StreamItem]:
        # id and name arrive on the first fragment of an index only; later ones add arguments.
        function = getattr(fragment, "function", None)
        call = self.calls.get(fragment.index)
        if call is None:
            call = self.calls[fragment.index] = _Call(
                call_id=fragment.id or f"call_{fragment.index}", name="")
        if function is not None and function.name:
            call.name = function.name
        arguments = getattr(function, "arguments", None) if function is not None else None
        if not arguments:
            return []
        call.arguments += arguments
        return [ToolCallDelta(call.call_id, call.name, arguments)]

    def response(self, model_name: str) -> ModelResponse:
        if self.finish is None:
            raise IncompleteStreamError(
                "The chat completion stream ended without a finish_reason (the connection was "
                "closed early)."
            )
        parts: list[Part] = [TextPart(text="".join(self.text))] if self.text else []
        parts += [tool_call(c.call_id, c.name, c.arguments) for _, c in sorted(self.calls.items())]
        stop = _FINISH.get(self.finish, "end_turn")
        if self.calls and stop == "end_turn":
            stop = "tool_use"  # some compatible servers finish tool calls with "stop"
        return ModelResponse(message=Message(role="assistant", parts=tuple(parts)),
                             usage=_usage(self.usage), stop_reason=stop,
                             model_name=self.model or model_name)


def _usage(usage: Any) -> Usage:
    if usage is None:  # compatible servers may not report usage
        return Usage(requests=1)
    return usage_from(usage.prompt_tokens, usage.completion_tokens,
                      getattr(usage, "prompt_tokens_details", None))


def usage_from(input_tokens: int | None, output_tokens: int | None, details: Any) -> Usage:
    """Usage from OpenAI's counts (chat and Responses name them differently, same meaning)."""
    return Usage(
        input_tokens=input_tokens or 0,  # includes the cached tokens
        output_tokens=output_tokens or 0,
        cache_read_tokens=getattr(details, "cached_tokens", None) or 0,
        cache_write_tokens=getattr(details, "cache_write_tokens", None) or 0,
        requests=1,
    )
