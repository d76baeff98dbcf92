"""Offline, deterministic models: a script of turns, for demos, notebooks under nbval, and tests."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from .._tokens import estimate_tokens, message_tokens, tool_tokens
from ..errors import ConfigError, ScriptExhaustedError
from ..messages import Message, TextPart, ToolCall, Usage
from . import Model, ModelRequest, ModelResponse, StopReason, StreamItem, TextDelta
from ._requests import DEFAULT_KEEP, KeepRequests, RequestLog

__all__ = ["ScriptedModel", "Turn", "estimate_tokens", "response_from_turn"]

#: A scripted turn: text, one tool call ``{"tool": NAME, "args": {...}}``, a list of tool calls,
#: or a ready-made :class:`ModelResponse`.
Turn: TypeAlias = "str | dict[str, Any] | list[dict[str, Any]] | ModelResponse"

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def check_turn(turn: Any, where: str) -> None:
    """Raise a :class:`ConfigError` naming ``where`` if ``turn`` is not a valid turn."""
    if isinstance(turn, str | ModelResponse):
        return
    calls = turn if isinstance(turn, list) else [turn]
    if not calls or not all(isinstance(c, dict) for c in calls):
        raise ConfigError(
            f"{where} is {turn!r}: a turn is a str, a dict {{'tool': NAME, 'args': {{...}}}}, "
            f"or a non-empty list of such dicts."
        )
    for call in calls:
        unknown = set(call) - {"tool", "args", "id"}
        if not isinstance(call.get("tool"), str) or unknown:
            raise ConfigError(
                f"{where} has the tool call {call!r}: write it as {{'tool': NAME, 'args': {{...}}}}."
            )
        if not isinstance(call.get("args", {}), dict):
            raise ConfigError(f"{where}: 'args' of tool {call['tool']!r} must be a dict.")


def response_from_turn(
    turn: Turn, request: ModelRequest, call_ids: itertools.count, model_name: str
) -> ModelResponse:
    """The :class:`ModelResponse` a turn stands for, with deterministic ids and token counts."""
    if isinstance(turn, ModelResponse):
        return turn
    if isinstance(turn, str):
        parts: tuple[TextPart | ToolCall, ...] = (TextPart(text=turn),)
        stop: StopReason = "end_turn"
    else:
        calls = turn if isinstance(turn, list) else [turn]
        parts = tuple(
            ToolCall(
                id=c.get("id") or f"call_{next(call_ids)}", name=c["tool"], args=dict(c.get("args", {}))
            )
            for c in calls
        )
        stop = "tool_use"
    message = Message(role="assistant", parts=parts)
    usage = Usage(
        input_tokens=_request_tokens(request),
        output_tokens=estimate_tokens(message.text or repr(turn)),
        requests=1,
    )
    return ModelResponse(message=message, usage=usage, stop_reason=stop, model_name=model_name)


_MESSAGE_TOKENS: dict[int, tuple[Message, int]] = {}
#: The messages of the last request counted, and their tokens: the next request of a run
#: usually repeats them and adds one or two.
_LAST: tuple[tuple[Message, ...], int] = ((), 0)


def _request_tokens(request: ModelRequest) -> int:
    # The same estimate the context budget uses, so that offline runs calibrate to 1.0. A test
    # double must not make a long run look slower than the framework is: a request that extends
    # the last one counts only its new messages (the prefix check compares identities in C), and
    # any other request counts each message once, memoized by identity.
    global _LAST
    messages = request.messages
    prev, prev_total = _LAST
    k = len(prev)
    if k and len(messages) >= k and messages[k - 1] is prev[-1] and messages[:k] == prev:
        total = prev_total + sum([_message_tokens(m) for m in messages[k:]])
    else:
        total = sum([_message_tokens(m) for m in messages])
    _LAST = (messages, total)
    return estimate_tokens(request.system) + tool_tokens(request.tools) + total


def _message_tokens(message: Message) -> int:
    cached = _MESSAGE_TOKENS.get(id(message))
    if cached is None or cached[0] is not message:
        if len(_MESSAGE_TOKENS) > 100_000:
            _MESSAGE_TOKENS.clear()
        cached = _MESSAGE_TOKENS[id(message)] = (message, message_tokens(message))
    return cached[1]


async def stream_response(response: ModelResponse) -> AsyncIterator[StreamItem]:
    """Stream a finished response's text word by word, so live displays have something to draw.

    Tool calls are not streamed: the response carries them whole, and a synthetic delta of
    their arguments would show nothing new.
    """
    for part in response.message.parts:
        if isinstance(part, TextPart):
            for chunk in _WORDS.findall(part.text):
                yield TextDelta(chunk)
    yield response


class ScriptedModel(Model):
    """Plays a fixed list of turns, in order, across every run that uses it.

    ``requests`` (a :class:`RequestLog`) keeps the first and the last ``keep_requests`` requests
    it received, so tests can check what the model was shown, and counts all of them.
    """

    provider = "scripted"

    def __init__(
        self, turns: list[Turn], *, name: str = "scripted", context_window: int | None = None,
        keep_requests: KeepRequests = DEFAULT_KEEP,
    ) -> None:
        if isinstance(turns, str | dict) or not hasattr(turns, "__iter__"):
            raise ConfigError("Model.scripted takes a list of turns, e.g. ['Hello!'].")
        self.turns: list[Turn] = list(turns)
        for i, turn in enumerate(self.turns):
            check_turn(turn, f"Turn {i} of Model.scripted")
        self.name = name
        self.context_window = context_window
        self.requests = RequestLog(keep_requests)
        self._next = 0
        self._call_ids = itertools.count(1)

    @property
    def remaining(self) -> int:
        """How many turns are left to play."""
        return len(self.turns) - self._next

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        if self._next >= len(self.turns):
            raise ScriptExhaustedError(
                f"The scripted model has no turn left: all {len(self.turns)} turns were played. "
                f"Add turns to Model.scripted([...]), or build a new scripted model for a new run."
            )
        turn = self.turns[self._next]
        self._next += 1
        self.requests.append(request)
        response = response_from_turn(turn, request, self._call_ids, self.name)
        async for item in stream_response(response):
            yield item
