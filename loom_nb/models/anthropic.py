"""Claude through the official ``anthropic`` SDK: the Messages API, streamed, with tool use.

``Model.anthropic("claude-sonnet-5", api_key=None, base_url=None, context_window=None,
**settings)``. The key comes from ``api_key=`` or ``ANTHROPIC_API_KEY``, the endpoint from
``base_url=`` or ``ANTHROPIC_BASE_URL``. Settings: ``max_tokens`` (default 4096), ``temperature``,
``top_p``, ``top_k``, ``stop_sequences``, ``thinking``, ``tool_choice``, ``cache`` (prompt caching:
True by default, False, or the places; see ``_anthropic_cache``); client options: ``max_retries``,
``timeout``, ``retry_base_delay``, ``retry_max_delay``, ``max_retry_after``.

With ``thinking=``, Claude's thinking blocks (text and signature) and redacted_thinking blocks
(opaque data) become :class:`ThinkingPart` s of the assistant message, in their place before the
text and tool_use blocks. They are not streamed as text, and they are sent back unchanged in
later turns: Claude checks their signatures, and requires them in a tool loop's assistant turn.

The SDK is imported when a model is built, never by ``import loom_nb``; no anthropic type leaves
this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..media import Document, Image
from ..messages import Message, Part, TextPart, ThinkingPart, ToolCall, ToolResult, Usage
from . import ModelRequest, ModelResponse, StopReason, StreamItem, TextDelta, ToolCallDelta
from ._anthropic_cache import add_breakpoints, cache_places
from ._errors import IncompleteStreamError, ProviderError, classify_sdk_error
from ._sdk import (
    SDKModel,
    Validator,
    check_settings,
    number,
    positive_int,
    string,
    strings,
    tool_call,
)

__all__ = ["AnthropicModel", "to_anthropic_messages"]

DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
    "model_context_window_exceeded": "context_window_exceeded",
    # pause_turn only happens with server-side tools, which loom_nb does not send; the turn
    # is over from the loop's point of view.
    "pause_turn": "end_turn",
}

#: loom_nb's tool choices as Anthropic's (a tool's name becomes {"type": "tool", "name": ...}).
_CHOICES: dict[str, dict[str, str]] = {"auto": {"type": "auto"}, "required": {"type": "any"},
                                       "none": {"type": "none"}}

#: Sampling settings the 2.x SDK no longer takes as keyword arguments: they go in the body.
_BODY_SETTINGS = ("temperature", "top_p", "top_k")


def _thinking(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ConfigError(
            f"The setting {key} must be a dict with a 'type', e.g. "
            f"{{'type': 'enabled', 'budget_tokens': 2048}} or {{'type': 'adaptive'}}; "
            f"got {value!r}."
        )
    return dict(value)


_SETTINGS: dict[str, Validator] = {
    "max_tokens": positive_int,
    "temperature": number,
    "top_p": number,
    "top_k": positive_int,
    "stop_sequences": strings,
    "thinking": _thinking,
    "tool_choice": string,
    "cache": cache_places,
}


def _claude_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The output schema as Claude's structured outputs take it: the SDK's own transform moves the
    keywords they do not support (``minimum``, ``minLength``, ``pattern``...) into descriptions,
    so that a constrained field is asked for, not refused with a 400; pydantic still checks the
    constraint on the answer (and a failure goes back to the model as a retry)."""
    from anthropic import transform_schema

    try:
        return transform_schema(schema)
    except ValueError:  # a schema the transform cannot read: sent as it is (the API says why)
        return schema


class AnthropicModel(SDKModel):
    """A Claude model behind the provider-neutral :class:`Model` protocol."""

    provider = "anthropic"
    sdk_module = "anthropic"
    key_var = "ANTHROPIC_API_KEY"
    base_url_var = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    label = "Anthropic"
    models_hint = ("names look like 'claude-sonnet-5'; list them with "
                   "`await anthropic.AsyncAnthropic().models.list()` or see "
                   "https://docs.anthropic.com/en/docs/about-claude/models")

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        context_window: int | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(name, api_key=api_key, base_url=base_url,
                         context_window=context_window, settings=settings)
        self.settings = check_settings(settings, _SETTINGS, f"Model.anthropic({self.name!r})")
        if not self.api_key:
            raise ConfigError(
                f"No API key for Anthropic: set ANTHROPIC_API_KEY in the environment, or pass "
                f"api_key=... to Model.anthropic({self.name!r})."
            )

    def _make_client(self) -> Any:
        return self._sdk.AsyncAnthropic(api_key=self.api_key, base_url=self.base_url,
                                        http_client=self._http_client(),
                                        max_retries=0, timeout=self.timeout)

    def _settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        extra = check_settings(overrides, _SETTINGS, f"Model.anthropic({self.name!r})")
        return {"max_tokens": DEFAULT_MAX_TOKENS, **self.settings, **extra}

    def _classify(self, exc: BaseException) -> ProviderError | None:
        return classify_sdk_error(exc, self._sdk, self.info)

    def create_kwargs(self, request: ModelRequest, settings: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``client.messages.create`` for ``request``."""
        kwargs: dict[str, Any] = {
            "model": self.name,
            "max_tokens": settings["max_tokens"],
            "messages": to_anthropic_messages(request.messages),
            "stream": True,
        }
        if request.system:
            kwargs["system"] = request.system
        if request.tools:
            kwargs["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        choice = request.tool_choice if request.tool_choice is not None else settings.get("tool_choice")
        if choice is not None and request.tools:
            choice = _thinking_choice(choice, request, settings)
            kwargs["tool_choice"] = _CHOICES.get(choice) or {"type": "tool", "name": choice}
        if request.output is not None and request.output.mode == "native":
            # Structured outputs: the same closed schema OpenAI gets (objects closed, $defs kept).
            kwargs["output_config"] = {"format": {"type": "json_schema",
                                                  "schema": _claude_schema(request.output.schema)}}
        if "stop_sequences" in settings:
            kwargs["stop_sequences"] = settings["stop_sequences"]
        if "thinking" in settings:
            kwargs["thinking"] = settings["thinking"]
        body = {key: settings[key] for key in _BODY_SETTINGS if key in settings}
        if body:
            kwargs["extra_body"] = body
        add_breakpoints(kwargs, settings.get("cache", cache_places("cache", True)))
        return kwargs

    async def _open_stream(
        self, request: ModelRequest, settings: dict[str, Any]
    ) -> tuple[Any, _StreamState]:
        stream = await self.client().messages.create(**self.create_kwargs(request, settings))
        return stream, _StreamState()


def _thinking_choice(choice: str, request: ModelRequest, settings: Mapping[str, Any]) -> str:
    """The tool choice Claude takes with ``thinking=`` on: only ``auto`` and ``none`` (thinking
    is not compatible with forced tool use). The output tool's ``required`` becomes ``auto``: a
    text answer is validated too, and one that is not JSON is sent back (see loom_nb.output)."""
    thinking = settings.get("thinking")
    if not thinking or thinking.get("type") == "disabled" or choice in ("auto", "none"):
        return choice
    if choice == "required" and request.output is not None and request.output.mode == "tool":
        return "auto"
    raise ConfigError(f"Claude with thinking= takes tool_choice 'auto' or 'none' only (thinking is "
                      f"not compatible with forced tool use), not {choice!r}.")


# -- loom messages -> Anthropic messages ---------------------------------------------------------


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Anthropic's ``messages``: tool results become user content, same-role turns are merged.

    The API requires user and assistant turns to alternate, so the tool results of one turn and
    the next user prompt travel together in one user message (tool results first, as required).
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [block for part in message.parts if (block := _block(part)) is not None]
        if not blocks:
            continue  # the API refuses empty content
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.args}
    if isinstance(part, ToolResult):
        content: str | list[dict[str, Any]] = part.content
        if part.media:  # images and documents travel inside the tool_result block
            content = [{"type": "text", "text": part.content}, *map(media_block, part.media)]
        return {"type": "tool_result", "tool_use_id": part.call_id, "content": content,
                "is_error": part.is_error}
    if isinstance(part, ThinkingPart):
        return _thinking_block(part)
    if isinstance(part, (Image, Document)):
        return media_block(part)
    raise ConfigError(f"Cannot send a message part of type {type(part).__name__} to Anthropic.")


def media_block(part: Image | Document) -> dict[str, Any]:
    """An image or document block: base64 bytes, a URL (Claude fetches it), or a text source."""
    kind = "image" if isinstance(part, Image) else "document"
    if part.data is None:
        source: dict[str, Any] = {"type": "url", "url": part.url}
    elif isinstance(part, Document) and not part.is_pdf:
        # Anthropic's text source is text/plain only; Markdown and CSV are text to the model.
        source = {"type": "text", "media_type": "text/plain", "data": part.text}
    else:
        source = {"type": "base64", "media_type": part.media_type, "data": part.base64()}
    block: dict[str, Any] = {"type": kind, "source": source}
    if isinstance(part, Document) and part.name:
        block["title"] = part.name
    return block


def _thinking_block(part: ThinkingPart) -> dict[str, Any] | None:
    """A thinking block exactly as Claude wrote it, or None for one that cannot be sent.

    Claude checks the signature of every thinking block sent back (and needs them, unchanged,
    before the tool_use blocks of a tool loop's assistant turn). Thinking without a signature
    came from another provider, or was never signed: Anthropic would refuse it, so it is left out.
    """
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.data} if part.data else None
    if not part.signature:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


# -- Anthropic stream events -> deltas and one response ------------------------------------------


@dataclass
class _Block:
    kind: str  # "text", "tool_use", "thinking" or "redacted_thinking"
    text: str = ""  # text, tool input JSON, or thinking
    call_id: str = ""
    name: str = ""
    signature: str = ""
    data: str = ""


@dataclass
class _StreamState:
    """Assembles the raw ``RawMessageStreamEvent`` sequence into deltas and one response."""

    blocks: dict[int, _Block] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None
    model: str = ""
    finished: bool = False

    def feed(self, event: Any) -> list[StreamItem]:
        kind = getattr(event, "type", "")
        if kind == "message_start":
            self.model = getattr(event.message, "model", "") or ""
            self._usage(event.message.usage)
        elif kind == "content_block_start":
            return self._start(event.index, event.content_block)
        elif kind == "content_block_delta":
            return self._delta(event.index, event.delta)
        elif kind == "message_delta":
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
            if getattr(event, "usage", None) is not None:
                self._usage(event.usage)
        elif kind == "message_stop":
            self.finished = True
        return []

    def _usage(self, usage: Any) -> None:
        # message_start has the input counts; message_delta the cumulative output count (and
        # sometimes updated input counts). A None field keeps the value seen before.
        for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                    "cache_read_input_tokens"):
            value = getattr(usage, key, None)
            if value is not None:
                self.usage[key] = int(value)

    def _start(self, index: int, block: Any) -> list[StreamItem]:
        if block.type == "text":
            self.blocks[index] = _Block("text", text=block.text or "")
            return [TextDelta(block.text)] if block.text else []
        if block.type == "tool_use":
            self.blocks[index] = _Block("tool_use", call_id=block.id, name=block.name)
        elif block.type == "thinking":
            self.blocks[index] = _Block("thinking", text=block.thinking or "",
                                        signature=block.signature or "")
        elif block.type == "redacted_thinking":
            self.blocks[index] = _Block("redacted_thinking", data=block.data or "")
        # Thinking is assembled but not streamed (the stream has no thinking item); server-side
        # tool blocks are not part of the provider-neutral message.
        return []

    def _delta(self, index: int, delta: Any) -> list[StreamItem]:
        block = self.blocks.get(index)
        if block is None:
            return []
        if delta.type == "text_delta" and delta.text:
            block.text += delta.text
            return [TextDelta(delta.text)]
        if delta.type == "input_json_delta" and delta.partial_json:
            block.text += delta.partial_json
            return [ToolCallDelta(block.call_id, block.name, delta.partial_json)]
        if delta.type == "thinking_delta":
            block.text += delta.thinking or ""
        elif delta.type == "signature_delta":
            block.signature += delta.signature or ""
        return []

    def response(self, model_name: str) -> ModelResponse:
        if not self.finished:
            raise IncompleteStreamError(
                "The Anthropic response stream ended before message_stop (the connection was "
                "closed early)."
            )
        parts: list[Part] = []
        for _, block in sorted(self.blocks.items()):
            if block.kind == "text" and block.text:
                parts.append(TextPart(text=block.text))
            elif block.kind == "tool_use":
                parts.append(tool_call(block.call_id, block.name, block.text))
            elif block.kind == "thinking":
                parts.append(ThinkingPart(text=block.text, signature=block.signature or None))
            elif block.kind == "redacted_thinking":
                parts.append(ThinkingPart(redacted=True, data=block.data))
        cache_write = self.usage.get("cache_creation_input_tokens", 0)
        cache_read = self.usage.get("cache_read_input_tokens", 0)
        usage = Usage(
            # input_tokens is everything the model read, cached or not, as the context budget
            # counts it; the cache counts are broken out next to it.
            input_tokens=self.usage.get("input_tokens", 0) + cache_write + cache_read,
            output_tokens=self.usage.get("output_tokens", 0),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            requests=1,
        )
        stop = _STOP_REASONS.get(self.stop_reason or "", "end_turn")
        if stop == "end_turn" and any(isinstance(p, ToolCall) for p in parts):
            stop = "tool_use"
        return ModelResponse(message=Message(role="assistant", parts=tuple(parts)), usage=usage,
                             stop_reason=stop, model_name=self.model or model_name)
