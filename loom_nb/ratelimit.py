"""Rate limits: a spec (``RateLimit``) and the sliding window that counts calls against it.

Governance limits tool calls with them and attention limits signals; both are policies, so the
window lives here, below both, rather than in one of them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["RateLimit", "RateWindow"]


@dataclass(frozen=True)
class RateLimit:
    """At most ``calls`` calls in any ``per_seconds`` window."""

    calls: int
    per_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per_seconds <= 0:
            raise ConfigError("RateLimit(calls, per_seconds) takes calls >= 1 and per_seconds > 0.")

    @classmethod
    def parse(cls, spec: RateLimit | str | int) -> RateLimit:
        """``RateLimit``, an int (calls per minute) or ``"N/s"``, ``"N/min"``, ``"N/h"``."""
        if isinstance(spec, RateLimit):
            return spec
        if isinstance(spec, int):
            return cls(spec)
        count, _, unit = str(spec).partition("/")
        seconds = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
        if not count.strip().isdigit() or unit.strip() not in seconds:
            raise ConfigError(f"Rate limit {spec!r}: write it as 'N/s', 'N/min' or 'N/h', e.g. '10/min'.")
        return cls(int(count), seconds[unit.strip()])


class RateWindow:
    """Sliding-window call counter; thread-safe because runs may share one policy."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def full(self) -> bool:
        with self._lock:
            now = self._clock()
            while self._calls and now - self._calls[0] >= self.limit.per_seconds:
                self._calls.popleft()
            return len(self._calls) >= self.limit.calls

    def record(self) -> None:
        with self._lock:
            self._calls.append(self._clock())
