"""Signal sources that emit into a session on a schedule: interval timers, cron, heartbeat.

Add one with ``session.every(...)``, ``session.cron(...)`` or ``session.heartbeat(...)``; it
runs on loom_nb's background loop and stops when the session closes or its handle's ``stop()`` is
called. The clock and the sleep are injectable, so schedules can be tested without waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import _bridge
from ._cron import CronExpression
from .errors import ConfigError
from .signals import RuntimeSignal, Urgency

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Cron", "Heartbeat", "Source", "SourceHandle", "Timer"]

Sleep = Callable[[float], Awaitable[Any]]
Clock = Callable[[], float]
SignalFactory = Callable[[int, datetime], RuntimeSignal]


@dataclass(kw_only=True)
class Source:
    """A schedule and the signal to emit at each tick (``make(n, when)`` builds the n-th one)."""

    source: str
    type: str
    urgency: Urgency = "low"
    summary: str = ""
    make: SignalFactory | None = None

    def next_delay(self, now: float) -> float:
        raise NotImplementedError

    def signal(self, n: int, when: datetime) -> RuntimeSignal:
        if self.make is not None:
            return self.make(n, when)
        return RuntimeSignal(source=self.source, type=self.type, urgency=self.urgency,
                             summary=self.summary or f"{self.type} #{n} at {when:%Y-%m-%d %H:%M:%S} UTC",
                             payload={"tick": n, "at": when.isoformat()},
                             dedupe_key=f"{self.source}:{self.type}:{when.isoformat()}")


@dataclass(kw_only=True)
class Timer(Source):
    """Every ``seconds``."""

    seconds: float = 60.0
    source: str = "timer"
    type: str = "tick"

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError("A timer needs a positive interval: session.every(seconds=...).")

    def next_delay(self, now: float) -> float:
        return self.seconds


@dataclass(kw_only=True)
class Heartbeat(Timer):
    """A low-urgency pulse that lets a long-lived session notice time passing."""

    source: str = "heartbeat"
    type: str = "heartbeat"


@dataclass(kw_only=True)
class Cron(Source):
    """At the times a five-field cron expression names (in UTC)."""

    expr: str = "* * * * *"
    source: str = "cron"
    type: str = "scheduled"
    urgency: Urgency = "normal"
    _cron: CronExpression = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cron = CronExpression(self.expr)

    def next_delay(self, now: float) -> float:
        moment = datetime.fromtimestamp(now, timezone.utc)
        return max((self._cron.next_after(moment) - moment).total_seconds(), 0.0)


class SourceHandle:
    """A running source; ``stop()`` ends it."""

    def __init__(self, source: Source) -> None:
        import concurrent.futures
        self.source = source
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.ticks = 0

    def __repr__(self) -> str:
        state = "stopped" if self.future.done() else "running"
        return f"<SourceHandle {self.source.source}/{self.source.type} {state}, {self.ticks} ticks>"

    @property
    def running(self) -> bool:
        return not self.future.done()

    def stop(self) -> None:
        self.future.cancel()


def start_source(session: Session, source: Source, *, sleep: Sleep | None = None,
                 clock: Clock | None = None) -> SourceHandle:
    """Run ``source`` on the background loop, sending its signals to ``session.receive``."""
    import asyncio
    import time

    do_sleep = sleep or asyncio.sleep
    now = clock or time.time
    handle = SourceHandle(source)

    async def tick_forever() -> None:
        while True:
            await do_sleep(source.next_delay(now()))
            handle.ticks += 1
            await session.receive(source.signal(handle.ticks, datetime.fromtimestamp(now(), timezone.utc)))

    handle.future = _bridge.submit(tick_forever())
    return handle
