"""A session's signals: where they arrive (:class:`Inbox`), are decided, and take effect; and the
timers that send them.

Decisions are made one at a time in arrival order (a lock serializes them across threads), and
each is stored (the ``signals`` table) and announced as a ``signal.decision`` event to the
session's subscribers. The effects:

* observe: kept until the next run starts, which shows it in its working partition;
* queue: a run for it starts when the session is idle; queued signals run in urgency order, then
  arrival order; the queue is drained by one task on loom_nb's background loop, each run in the
  session's turn (:meth:`~loom_nb.session.Session.run_next`);
* interrupt: the active run stops at its next safe point and continues with the signal in its
  context; with no active run, the signal runs now, ahead of the queue;
* ignore: nothing.

Nothing is lost: a queued signal waits while a run is paused for approval, and runs once the
session can take runs again.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from typing import TYPE_CHECKING, Any, cast

from .. import _bridge
from .._recovery import signal_count
from ..attention import AttentionState
from ..errors import ConfigError, StoreError
from ..events import RunEvent
from ..signals import RuntimeSignal, SignalAdapter, SignalDecision, Urgency
from ..sources import Cron, Heartbeat, SourceHandle, Timer, start_source
from ..store import SessionStore, SignalRecord
from ..task import RunContext, RuntimeTask

if TYPE_CHECKING:
    from ..engine import RunLoop
    from .core import Session

__all__ = ["Inbox", "SessionSignals", "signal_task"]


class SessionSignals:
    """Signals and timers of a session (mixed into :class:`~loom_nb.session.Session`)."""

    id: str
    store: SessionStore
    closed: bool
    inbox: Inbox
    _sources: list[SourceHandle]

    async def receive(self, event_or_signal: Any, adapter: SignalAdapter | None = None) -> SignalDecision:
        """Take a signal (or any event, mapped by ``adapter``); the attention policy decides what
        it does, and the decision takes effect (see ``loom_nb.inbox``)."""
        if self.closed:
            raise ConfigError(f"Session {self.id} is closed; open it again with agent.session(...).")
        return await self.inbox.receive(event_or_signal, adapter)

    def receive_sync(self, event_or_signal: Any, adapter: SignalAdapter | None = None) -> SignalDecision:
        """:meth:`receive` from sync code."""
        return _bridge.run_sync(self.receive(event_or_signal, adapter))

    @property
    def signals(self) -> list[SignalRecord]:
        """Every signal this session received, with its decision, in order."""
        return self.store.signals(self.id)

    async def idle(self) -> None:
        """Wait until no signal is queued or being run."""
        await self.inbox.idle()

    def wait_idle(self, timeout: float | None = None) -> None:
        """:meth:`idle` from sync code, at most ``timeout`` seconds."""
        _bridge.submit(self.inbox.idle()).result(timeout)

    def every(self, seconds: float, *, source: str = "timer", type: str = "tick",
              urgency: Urgency = "low", summary: str = "", **options: Any) -> SourceHandle:
        """Send this session a signal every ``seconds`` (until ``stop()`` or close)."""
        timer = Timer(seconds=seconds, source=source, type=type, urgency=urgency, summary=summary)
        return self._start(timer, **options)

    def cron(self, expr: str, *, source: str = "cron", type: str = "scheduled",
             urgency: Urgency = "normal", summary: str = "", **options: Any) -> SourceHandle:
        """Send this session a signal at the times a cron expression names (UTC)."""
        return self._start(Cron(expr=expr, source=source, type=type, urgency=urgency,
                                summary=summary), **options)

    def heartbeat(self, seconds: float = 300.0, **options: Any) -> SourceHandle:
        """A low-urgency heartbeat signal every ``seconds``."""
        return self._start(Heartbeat(seconds=seconds), **options)

    def _start(self, source: Timer | Cron, **options: Any) -> SourceHandle:
        handle = start_source(cast("Session", self), source, **options)
        self._sources.append(handle)
        return handle


def signal_task(signal: RuntimeSignal) -> RuntimeTask:
    """The task of a run started for a signal."""
    return RuntimeTask(
        f"Handle this signal from {signal.source} ({signal.type}, urgency {signal.urgency}): "
        f"{signal.summary or '(no summary)'}",
        inputs={"signal_payload": signal.payload} if signal.payload else {},
        metadata={"signal_id": signal.id, "signal_source": signal.source,
                  "signal_type": signal.type, "signal_urgency": signal.urgency},
    )


class Inbox:
    """Receives signals for one session and carries out the attention policy's decisions."""

    def __init__(self, session: Session) -> None:
        import concurrent.futures
        self.session = session
        self._lock = threading.Lock()
        # Numbered on from the stored signals, counted at the first signal: most sessions (a
        # one-off run, a sub-agent's, a best-of candidate's) never receive one.
        self._seq: itertools.count[int] | None = None
        self._arrival = itertools.count()
        self.observed: list[RuntimeSignal] = []
        self._queue: list[tuple[int, int, str, RuntimeSignal]] = []
        self._pump: concurrent.futures.Future[None] | None = None

    @property
    def queued(self) -> list[RuntimeSignal]:
        """Signals waiting for a run, in the order they will run."""
        with self._lock:
            return [item[3] for item in sorted(self._queue)]

    def take_observed(self) -> list[RuntimeSignal]:
        """The observed signals, handed to the run that starts now (and cleared)."""
        with self._lock:
            taken, self.observed = self.observed, []
        return taken

    async def receive(self, event: Any, adapter: SignalAdapter | None = None) -> SignalDecision:
        signal = event if isinstance(event, RuntimeSignal) else (adapter or SignalAdapter()).adapt(event)
        session = self.session
        unstored: StoreError | None = None
        with self._lock:
            active = session.active_run
            if active is not None and active.ended:
                active = None  # it is only clearing up: for the policy the session is idle
            state = AttentionState(session_id=session.id,
                                   active_run_id=active.run_id if active else None,
                                   queued=len(self._queue), observed=len(self.observed))
            decision = session.agent.runtime.attention.evaluate(signal, state)
            run_id = self._apply(decision, active)
            if self._seq is None:
                self._seq = itertools.count(signal_count(session.store, session.id))
            record = SignalRecord(session_id=session.id, seq=next(self._seq), signal=signal.to_dict(),
                                  action=decision.action, reason=decision.reason, run_id=run_id)
            try:
                session.store.append_signal(record)
            except StoreError as exc:
                unstored = exc  # the decision has taken effect; only its record is missing
        session.notify(RunEvent(type="signal.decision", run_id=run_id or "", session_id=session.id,
                                seq=record.seq, ts=record.ts,
                                data={"action": decision.action, "reason": decision.reason,
                                      "signal": record.signal}))
        self.pump()
        if unstored is not None:
            raise unstored
        return decision

    def _apply(self, decision: SignalDecision, active: Any) -> str | None:
        """Carry out ``decision`` (under the lock); the id of the run it affects, if known."""
        from ..engine import new_run_id

        signal = decision.signal
        if decision.action == "observe":
            self.observed.append(signal)
            return active.run_id if active else None
        if decision.action == "interrupt" and active is not None and active.request_interrupt(signal):
            return active.run_id
        # An interrupt for a run that ended since it was looked at runs next, as when idle.
        if decision.action in ("queue", "interrupt"):
            run_id = new_run_id()
            rank = -1 if decision.action == "interrupt" else signal.rank  # idle interrupt: run now
            heapq.heappush(self._queue, (rank, next(self._arrival), run_id, signal))
            return run_id
        return None

    # -- draining the queue ------------------------------------------------------------------------

    def pump(self) -> None:
        """Make sure queued signals are being run (one drain task at a time)."""
        with self._lock:
            if not self._queue or (self._pump is not None and not self._pump.done()):
                return
            self._pump = _bridge.submit(self._drain())

    async def _drain(self) -> None:
        while await self.session.run_next(self._take):  # each waits until the session is idle
            pass

    def _take(self) -> RunLoop | None:
        """The run for the next queued signal, in the session's turn; None ends the drain."""
        from ..engine import RunLoop

        session = self.session
        with self._lock:
            if not self._queue or session.closed or session.waiting_run_id is not None:
                # Cleared under the lock, so a signal queued from now on starts a new drain;
                # after a paused run, pump() runs again once it is decided.
                self._pump = None
                return None
            _, _, run_id, signal = heapq.heappop(self._queue)
            loop = RunLoop(session, signal_task(signal), RunContext(), run_id=run_id)
            loop.started_by = signal
            # Active from the moment it left the queue, under the lock: a signal that arrives
            # now interrupts this run rather than finding the session idle and queueing itself
            # behind a run that already goes first.
            session.active_run = loop
            return loop

    def requeue(self, signals: list[RuntimeSignal]) -> None:
        """Interrupts a run could not take (it ended first): they run next, ahead of the queue."""
        from ..engine import new_run_id

        with self._lock:
            for signal in signals:
                heapq.heappush(self._queue, (-1, next(self._arrival), new_run_id(), signal))
        self.pump()

    async def idle(self) -> None:
        """Wait until no signal is queued or running."""
        import asyncio
        while True:
            with self._lock:
                pump = self._pump
            if pump is None or pump.done():
                return
            await asyncio.wrap_future(pump)
