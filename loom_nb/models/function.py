"""A model backed by a Python function: the test double for behaviour that depends on the request."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import ConfigError
from . import Model, ModelRequest, ModelResponse, StreamItem, TextDelta
from ._requests import DEFAULT_KEEP, KeepRequests, RequestLog
from .scripted import check_turn, response_from_turn, stream_response

__all__ = ["FunctionModel"]


class FunctionModel(Model):
    """Calls ``fn(request)`` for every model turn.

    ``fn`` may be sync or async and returns a turn in the form :meth:`Model.scripted` takes (text,
    a tool-call dict, a list of them, or a :class:`ModelResponse`). An async generator function
    streams: each ``str`` it yields is a text delta, and the text together is the answer.
    ``requests`` keeps the first and the last ``keep_requests`` requests and counts all.
    """

    provider = "function"

    def __init__(
        self, fn: Callable[[ModelRequest], Any], *, name: str = "function",
        context_window: int | None = None, keep_requests: KeepRequests = DEFAULT_KEEP,
    ) -> None:
        import inspect
        if not callable(fn):
            raise ConfigError("Model.function takes a callable: fn(request) -> turn.")
        self.fn = fn
        self.name = name
        self.context_window = context_window
        self.requests = RequestLog(keep_requests)
        self._call_ids = itertools.count(1)
        self._streams = inspect.isasyncgenfunction(fn)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        import inspect
        self.requests.append(request)
        if self._streams:
            chunks: list[str] = []
            async for chunk in self.fn(request):
                if not isinstance(chunk, str):
                    raise ConfigError(
                        f"A streaming model function must yield str chunks, got {type(chunk).__name__}."
                    )
                chunks.append(chunk)
                yield TextDelta(chunk)
            yield response_from_turn("".join(chunks), request, self._call_ids, self.name)
            return
        turn = self.fn(request)
        if type(turn) is ModelResponse and not turn.message.text:
            yield turn  # nothing to stream: no nested generator for the most common test turn
            return
        if inspect.isawaitable(turn):
            turn = await turn
        check_turn(turn, f"The value returned by model function {getattr(self.fn, '__name__', self.fn)!r}")
        async for item in stream_response(response_from_turn(turn, request, self._call_ids, self.name)):
            yield item

