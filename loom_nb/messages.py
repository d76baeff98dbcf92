"""Provider-neutral messages: what a conversation is, independent of any vendor's wire format.

A :class:`Message` has a role and a tuple of parts. Providers translate to and from their own
types inside their module; nothing outside ``loom_nb/models/`` sees a vendor type. Every type here
round-trips through plain JSON (``to_dict`` / ``message_from_dict``), which is how sessions are
stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .media import Document, Image, Media, media_from_dict

if TYPE_CHECKING:
    from .events import UsageData

__all__ = [
    "Document",
    "Image",
    "Message",
    "Part",
    "Role",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "ToolResult",
    "Usage",
    "message_from_dict",
]

Role: TypeAlias = Literal["user", "assistant", "tool"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextPart:
    """Plain text written by the user or the model."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """The model asks for a tool to be run.

    ``invalid_args`` holds the raw argument text when the model wrote arguments that are not a
    JSON object (``args`` is then empty); the loop sends the model an error instead of running
    the tool.
    """

    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    invalid_args: str | None = None
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResult:
    """What a tool returned (or why it failed), sent back to the model.

    ``media`` holds the images (and documents) the tool returned, next to ``content``.
    """

    call_id: str
    name: str
    content: str
    is_error: bool = False
    media: tuple[Media, ...] = ()
    kind: Literal["tool_result"] = "tool_result"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkingPart:
    """The model's reasoning, kept so that it can be sent back where a provider requires it
    (Anthropic wants its thinking blocks, with their signatures, in later turns of a tool loop).

    ``redacted`` blocks carry only opaque ``data`` from the provider. Thinking is not part of
    ``Message.text``.
    """

    text: str = ""
    signature: str | None = None
    redacted: bool = False
    data: str | None = None
    kind: Literal["thinking"] = "thinking"


Part: TypeAlias = TextPart | ToolCall | ToolResult | ThinkingPart | Image | Document
_PART_TYPES: dict[str, type[TextPart | ToolCall | ThinkingPart]] = {
    "text": TextPart, "tool_call": ToolCall, "thinking": ThinkingPart}
#: Where a stored message's binary parts come from: a mapping or a callable of sha256.
Blobs: TypeAlias = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One turn of a conversation.

    ``user`` messages carry text, ``assistant`` messages carry text and tool calls, and ``tool``
    messages carry the results of the previous assistant turn's tool calls.
    """

    role: Role
    parts: tuple[Part, ...]

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", parts=(TextPart(text=text),))

    @property
    def text(self) -> str:
        """The text parts joined together (empty when there are none)."""
        return "".join([p.text for p in self.parts if isinstance(p, TextPart)])

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple([p for p in self.parts if isinstance(p, ToolCall)])

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolResult))

    @property
    def media(self) -> tuple[Media, ...]:
        """The images and documents of the message, its tool results' included."""
        found: list[Media] = []
        for part in self.parts:
            kind = part.kind
            if kind == "image" or kind == "document":
                found.append(part)  # type: ignore[arg-type]
            elif kind == "tool_result" and part.media:  # type: ignore[union-attr]
                found.extend(part.media)  # type: ignore[union-attr]
        return tuple(found) if found else ()

    def to_dict(self, blobs: dict[str, bytes] | None = None) -> dict[str, Any]:
        """JSON data; with ``blobs``, binary parts are references and their bytes go there."""
        return {"role": self.role, "parts": [part_to_dict(p, blobs) for p in self.parts]}


def part_to_dict(part: Part, blobs: dict[str, bytes] | None = None) -> dict[str, Any]:
    if isinstance(part, (Image, Document)):
        return part.to_dict(blobs)
    data = {name: getattr(part, name) for name in part.__slots__}
    if isinstance(part, ToolResult):
        if part.media:
            data["media"] = [m.to_dict(blobs) for m in part.media]
        else:
            del data["media"]  # the common case stays as it was stored before media existed
    return data


def part_from_dict(raw: dict[str, Any], blobs: Blobs = None) -> Part:
    fields = dict(raw)
    kind = fields.pop("kind")
    if kind in ("image", "document"):
        return media_from_dict(raw, blobs)
    if kind == "tool_result":
        media = tuple(media_from_dict(m, blobs) for m in fields.pop("media", None) or ())
        return ToolResult(**fields, media=media)
    return _PART_TYPES[kind](**fields)


def message_from_dict(data: dict[str, Any], blobs: Blobs = None) -> Message:
    """Rebuild a :class:`Message` from :meth:`Message.to_dict` output (binary parts stored as
    references take their bytes from ``blobs``)."""
    return Message(role=data["role"], parts=tuple(part_from_dict(p, blobs) for p in data["parts"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts of one model response, or summed over a run, and what they cost.

    ``input_tokens`` is everything the model read, cached or not; ``cache_read_tokens`` and
    ``cache_write_tokens`` are the parts of it read from or written to the provider's prompt
    cache. ``cost`` is in USD, from the ``genai-prices`` package (``loom_nb.cost``): None when
    the model or its price is unknown (or the package is missing), never a made-up 0. A sum is
    None as soon as one priced part is unknown.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0
    cost: float | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            requests=self.requests + other.requests,
            cost=_sum_cost(self, other),
        )

    @property
    def empty(self) -> bool:
        """Nothing used: the identity of ``+`` (its unknown cost does not make a sum unknown)."""
        return not (self.requests or self.input_tokens or self.output_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> UsageData:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens, "requests": self.requests,
                "cost": self.cost}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        cost = data.get("cost")
        return cls(cost=None if cost is None else float(cost),
                   **{k: int(v) for k, v in data.items() if k in _COUNTS})


_COUNTS = frozenset({"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                     "requests"})


def _sum_cost(a: Usage, b: Usage) -> float | None:
    if b.empty:
        return a.cost
    if a.empty:
        return b.cost
    if a.cost is None or b.cost is None:
        return None
    return a.cost + b.cost
