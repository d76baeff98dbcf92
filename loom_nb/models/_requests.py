"""What the test models keep of the requests they received: bounded by default.

Each :class:`ModelRequest` holds the whole history of its run, so keeping every one costs memory
quadratic in the session's length (issue 25: 496 MiB at 15,000 messages). Tests look at the first
few requests and the last ones; a :class:`RequestLog` keeps those and counts the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, TypeAlias, overload

from ..errors import ConfigError

if TYPE_CHECKING:
    from . import ModelRequest

__all__ = ["DEFAULT_KEEP", "KeepRequests", "RequestLog"]

#: ``keep_requests=`` of a test model: how many of the first and of the last requests it keeps,
#: or ``"all"``.
KeepRequests: TypeAlias = "int | Literal['all']"

#: The first 32 and the last 32 requests: enough for every assertion in the project's tests
#: and docs, and flat in the session's length.
DEFAULT_KEEP = 32


class RequestLog:
    """The requests a test model received, indexed as if every one were kept.

    ``len(log)`` counts every request; ``log[i]`` (also negative) and slices return the first
    ``keep`` and the last ``keep`` requests, and raise :class:`~loom_nb.errors.ConfigError` for
    one in between that was dropped, naming the option that keeps it. Iterating needs every
    request to be there: an iteration that skipped some would make a test pass on less than
    it claims. ``kept()`` lists what is there, with positions.
    """

    __slots__ = ("_count", "_head", "_keep", "_tail")

    def __init__(self, keep: KeepRequests = DEFAULT_KEEP) -> None:
        if keep != "all" and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ConfigError(
                f"keep_requests={keep!r}: pass a positive int (how many of the first and of the "
                f"last requests to keep) or 'all'."
            )
        self._keep: int | None = None if keep == "all" else int(keep)
        self._head: list[ModelRequest] = []
        self._tail: deque[ModelRequest] = deque(maxlen=self._keep)
        self._count = 0

    @property
    def keep(self) -> KeepRequests:
        return "all" if self._keep is None else self._keep

    def append(self, request: ModelRequest) -> None:
        self._count += 1
        if self._keep is None or len(self._head) < self._keep:
            self._head.append(request)
        else:
            self._tail.append(request)  # the deque drops the oldest of the tail itself

    def clear(self) -> None:
        self._head.clear()
        self._tail.clear()
        self._count = 0

    @property
    def last(self) -> ModelRequest | None:
        """The latest request (``None`` before the first)."""
        if self._tail:
            return self._tail[-1]
        return self._head[-1] if self._head else None

    @property
    def dropped(self) -> int:
        """How many requests were received but not kept."""
        return self._count - len(self._head) - len(self._tail)

    def kept(self) -> list[tuple[int, ModelRequest]]:
        """The kept requests with their positions (0 is the first request received)."""
        start = self._count - len(self._tail)
        return [*enumerate(self._head), *enumerate(self._tail, start)]

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> ModelRequest: ...
    @overload
    def __getitem__(self, index: slice) -> list[ModelRequest]: ...

    def __getitem__(self, index: int | slice) -> ModelRequest | list[ModelRequest]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(self._count))]
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError(f"request {index} out of range: the model received {self._count}.")
        return self._at(position)

    def _at(self, position: int) -> ModelRequest:
        if position < len(self._head):
            return self._head[position]
        start = self._count - len(self._tail)
        if position >= start:
            return self._tail[position - start]
        raise ConfigError(
            f"Request {position} of {self._count} was not kept: the model keeps the first "
            f"{self._keep} and the last {self._keep} requests (memory would grow with the "
            f"square of the session's length). Build the model with keep_requests='all', or "
            f"a larger number, to check it."
        )

    def __iter__(self) -> Iterator[ModelRequest]:
        if self.dropped:
            self._at(len(self._head))  # raises, naming the option
        yield from self._head
        yield from self._tail

    def __bool__(self) -> bool:
        return self._count > 0

    def __repr__(self) -> str:
        return f"<RequestLog {self._count} requests, {self.dropped} not kept (keep={self.keep!r})>"
