"""Token estimates: about four characters a token, before the context's calibration.

A module of its own because both the context policy (the budget) and the scripted model (its
reported usage) need the same estimate, and models must not import policies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .media import MAX_IMAGE_BYTES, Document, Image
from .messages import Message, TextPart, ToolCall, ToolResult

if TYPE_CHECKING:  # loom_nb.models imports this module (the scripted model)
    from .models import ToolDefinition

__all__ = ["estimate_tokens", "media_tokens", "message_tokens", "tool_tokens"]


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate (about four characters a token), before calibration."""
    return math.ceil(len(text) / 4)


_TOOL_TOKENS: dict[int, tuple[Sequence[ToolDefinition], int]] = {}


def tool_tokens(tools: Sequence[ToolDefinition]) -> int:
    """Estimated tokens of the tool definitions sent with each request.

    Cached by the identity of the tool tuple (an agent keeps one until its tools change), so a
    request does not serialize every schema again; the cache holds the tuple to keep its id valid.
    """
    cached = _TOOL_TOKENS.get(id(tools))
    if cached is not None and cached[0] is tools:
        return cached[1]
    count = sum(estimate_tokens(t.name + t.description + json.dumps(t.parameters)) for t in tools)
    if len(_TOOL_TOKENS) > 256:
        _TOOL_TOKENS.clear()
    _TOOL_TOKENS[id(tools)] = (tools, count)
    return count


#: An image's estimate: Anthropic bills about (width x height) / 750 tokens and scales images down
#: to about 1.15 megapixels, hence at most about 1,600; OpenAI's high detail is of the same order.
IMAGE_TOKENS = 1_600
#: A PDF page is sent as its text and an image of the page; a page is about 3 KB of PDF.
PDF_TOKENS_PER_KB = 1_500 / 3


def media_tokens(part: Image | Document) -> int:
    """Estimated tokens of an image or a document (before calibration)."""
    if isinstance(part, Image):
        # A small image costs less; the bytes are a rough proxy for its pixels.
        return IMAGE_TOKENS if part.data is None else max(85, min(IMAGE_TOKENS, IMAGE_TOKENS * part.size * 8 // MAX_IMAGE_BYTES))
    if part.is_pdf or part.data is None:
        return max(1_500, math.ceil(part.size / 1024 * PDF_TOKENS_PER_KB))
    return estimate_tokens(part.text)


def message_tokens(message: Message) -> int:
    """Estimated tokens of one message."""
    total = 0
    for part in message.parts:
        if isinstance(part, TextPart):
            total += estimate_tokens(part.text)
        elif isinstance(part, ToolCall):  # repr: as long as the JSON, and far cheaper to make
            total += estimate_tokens(part.name) + estimate_tokens(repr(part.args))
        elif isinstance(part, ToolResult):
            total += estimate_tokens(part.content)
            if part.media:
                total += sum([media_tokens(m) for m in part.media])
        elif isinstance(part, (Image, Document)):
            total += media_tokens(part)
        else:  # thinking
            total += estimate_tokens(part.text or part.data or "")
    return total + 4  # role and framing
