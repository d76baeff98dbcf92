"""A run's record: its events as they happen, its history commits, and the RunResult at its end.

:class:`RunRecorder` is the half of :class:`~loom_nb.engine.loop.RunLoop` that writes: each
event goes to the run's subscribers and the session's, and into the store in batches (flushed
with each history commit and before a tool can act); the end of the run is decided once, under
a lock, against cancels and interrupts from other threads, then stored, announced as
``run.finished`` and turned into the :class:`~loom_nb.RunResult`. A store that fails at the end
does not lose the end: the session writes it before its next run.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any, cast

from ..errors import StoreError
from ..events import LIVE_ONLY, EventPayload, EventType, RunEvent, RunFinishedData, make_event, utcnow
from ..messages import Message, Usage
from ..result import PendingApproval, RunResult, RunStatus
from .approval import pause_state
from .structured import remember_pause

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..agent import Agent
    from ..limits import LimitName, Limits
    from ..quality import Verdict
    from ..session import Session
    from ..signals import RuntimeSignal
    from ..store import RunRecord
    from ..task import RunContext, RuntimeTask
    from .structured import TurnSteer
    from .window import RunWindow

__all__ = ["RunRecorder"]


class RunRecorder:
    """Events, commits and the end of one run (mixed into RunLoop, which sets these fields)."""

    session: Session
    agent: Agent
    run_id: str
    parent_run_id: str | None
    record: RunRecord
    window: RunWindow
    subscribers: list[Callable[[RunEvent], None]]
    events: list[RunEvent]
    _unflushed: list[RunEvent]
    #: Turn writes on the store's writer thread not yet committed (several with parallel tools).
    _writing: set[Any]
    _seq: int
    usage: Usage
    turns: int
    tool_calls: int
    output: str
    added: list[Message]
    result: RunResult | None
    verdict: Verdict | None
    attempt_count: int
    winner: int | None
    _traceback: str | None
    _pause: dict[str, Any] | None
    _interrupts: collections.deque[RuntimeSignal]
    _ending: threading.Lock
    _ended: bool
    _cancel_requested: bool
    task: RuntimeTask
    context: RunContext
    limits: Limits
    steer: TurnSteer

    def emit(self, type: EventType, data: EventPayload) -> RunEvent | None:
        live_only = type in LIVE_ONLY
        if live_only and not (self.subscribers or self.session.watched):
            return None  # nobody is watching, and live-only events are not kept
        # A delta takes the seq of the model.response it belongs to (see events.py).
        event = make_event(type, self.run_id, self.session.id, self._seq,
                           cast(dict[str, Any], data), self.parent_run_id)
        if not live_only:
            self._seq += 1
            self.events.append(event)
            self._unflushed.append(event)
        for subscriber in self.subscribers:
            subscriber(event)
        if self.session.watched:
            self.session.notify(event)
        return event

    def _flush(self) -> None:
        if self._unflushed:
            batch, self._unflushed = self._unflushed, []
            try:
                self.session.store.append_events(batch)
            except BaseException:
                self._unflushed = batch + self._unflushed  # not stored: kept for the next flush
                raise

    def commit(self, *messages: Message) -> None:
        # The turn's messages and its events so far go to the store together: one transaction
        # where the store offers one (SQLite), so a kill -9 leaves both or neither.
        batch, self._unflushed = self._unflushed, []
        try:
            together = self.session.commit(self.run_id, list(messages), batch)
        except BaseException:
            self._unflushed = batch + self._unflushed  # not stored: kept for the next flush
            raise
        self.added.extend(messages)
        if not together:
            self._unflushed = batch + self._unflushed
            self._flush()

    async def commit_turn(self, *messages: Message) -> None:
        """:meth:`commit` (or, with no messages, the flush of the events so far) through the
        store's writer thread when it has one: the loop goes on with other runs while SQLite
        writes, and this run goes on once the write is committed."""
        submit = getattr(self.session.store, "submit_turn", None)
        if submit is None or not (messages or self._unflushed):
            if messages:
                self.commit(*messages)
            elif self._writing:
                await self._await_writes()  # another call of this turn is writing what we need
            else:
                self._flush()  # stored before a tool can act, whatever the store
            return
        from ..store._writer import succeeded, written

        batch, self._unflushed = self._unflushed, []
        added = list(messages)
        stored = False
        future = None
        try:
            future = submit(self.session.id, self.run_id, added, batch)  # None: written already
            if future is None:
                stored = True
            else:
                self._writing.add(future)
                try:
                    await written(future)
                finally:
                    self._writing.discard(future)
                    stored = succeeded(future)  # also when a cancel came while it was written
        finally:
            if stored:
                self.session.context.append(added)
                self.added.extend(added)
            else:
                self._unflushed = batch + self._unflushed  # not stored: kept for the next flush

    async def _await_writes(self) -> None:
        """Wait for the turn writes in flight. Parallel tool calls share one batch: the call whose
        flush took it writes it, and the others must not act before it is committed (nor at all
        when it failed: their events may be in it)."""
        from ..store._writer import succeeded, written

        for future in list(self._writing):
            try:
                await written(future)
            except Exception:  # noqa: BLE001 - the call that wrote it reports the error
                pass
            if not succeeded(future):
                raise StoreError("The store could not save this turn's events, so the tool "
                                 "call was not run; the run stops here with what is stored.")

    def commit_note(self, note: str) -> None:
        self.commit(Message.user(self.window.fit(note)))

    def absorb_usage(self, usage: Usage, turns: int) -> None:
        """Count what nested runs or judges used as this run's cost."""
        self.usage = self.usage + usage
        self.turns += turns

    def _finish(self, status: RunStatus, error: str | None, error_type: str | None,
                limit: LimitName | None) -> RunResult:
        with self._ending:  # from here on, cancel() and interrupts find the run ended
            self._ended = True
            cancel_won = self._cancel_requested and status != "cancelled"
            leftovers = list(self._interrupts)
            self._interrupts.clear()
        if cancel_won:  # cancel() came before the end, at no await the task could be stopped at
            status, error, error_type, limit = "cancelled", "The run was cancelled.", "CancelledError", None
            self._emit_safely("run.interrupted", {"reason": "cancelled", "by": "cancel",
                                                  "partial_text": False})
        # The record and the session's waiting state first, so that whoever reacts to
        # run.finished (a view redrawing) reads the run's end, not its middle.
        record = self.record
        record.status, record.output, record.error = status, self.output, error
        record.finished_at, record.usage, record.turns = utcnow(), self.usage, self.turns
        record.state = pause_state(self, next_seq=self._seq + 1) if status == "needs_approval" else None
        unsaved = self._store_end(record)
        if unsaved is not None:  # the end is not stored: the run cannot count as anything but failed
            status, error_type, limit = "failed", "StoreError", None
            error = str(unsaved) if error is None or error == str(unsaved) else f"{error} Then: {unsaved}"
            record.status, record.error, record.state = status, error, None
        self.session.run_ended(self.run_id, paused=status == "needs_approval")
        remember_pause(self.run_id, self.steer, status == "needs_approval")
        self._emit_safely("run.finished", self._finished_data(status, error, error_type, limit))
        try:
            self._flush()
        except StoreError:
            batch, self._unflushed = self._unflushed, []
            self.session.defer_write(lambda: self.session.store.append_events(batch))
        if leftovers:  # the run ended before a safe point took them: they run next
            self.session.inbox.requeue(leftovers)
        pending = tuple(PendingApproval(**p) for p in (record.state or {}).get("pending", []))
        spec = self.steer.spec
        self.result = RunResult(
            output=self._value(status), text=self.output, output_type=spec.name if spec else None,
            status=status, run_id=self.run_id, session_id=self.session.id,
            events=self.events, usage=self.usage, error=error, error_type=error_type, limit=limit,
            messages=tuple(self.added), agent=self.agent.name, model=self.agent.model.identifier,
            turns=self.turns, started_at=record.started_at, finished_at=record.finished_at,
            pending=pending, session=self.session, verdict=self.verdict,
            attempts=self.attempt_count, winner=self.winner, parent_run_id=self.parent_run_id,
        )
        return self.result

    def _value(self, status: RunStatus) -> Any:
        """``RunResult.output``: the text, or with ``output_type`` the validated value of a
        completed run's answer (None for any other end)."""
        if self.steer.spec is None:
            return self.output
        if status != "completed":
            return None
        return self.steer.value(self.output)

    def _store_end(self, record: RunRecord) -> StoreError | None:
        """Save the run's final record; on a store failure, the error (the record, marked failed,
        is written by the session's next successful write)."""
        try:
            self.session.store.save_run(record)
            return None
        except StoreError as exc:
            record.status, record.error, record.state = "failed", str(exc), None
            self.session.defer_write(lambda: self.session.store.save_run(record))
            return exc

    def _emit_safely(self, type: EventType, data: EventPayload) -> None:
        """Emit at the end of a run, where a subscriber's store write (feedback) failing must not
        escape: the run's result is what is left to tell the user."""
        try:
            self.emit(type, data)
        except StoreError:
            pass  # the event is in self.events (and the result); the store is already failing

    def _finished_data(self, status: RunStatus, error: str | None, error_type: str | None,
                       limit: LimitName | None) -> RunFinishedData:
        data: RunFinishedData = {"status": status, "output": self.output, "turns": self.turns,
                                "usage": self.usage.to_dict(), "error": error,
                                "error_type": error_type, "limit": limit,
                                "attempts": self.attempt_count, "winner": self.winner,
                                "verdict": self.verdict.to_dict() if self.verdict else None}
        if self._traceback:
            data["traceback"] = self._traceback
        spec = self.steer.spec
        if spec is not None:
            value = self._value(status)
            data["output_type"] = spec.name
            data["parsed"] = None if value is None else spec.jsonable(value)
        if status == "needs_approval" and self._pause is not None:
            data["pending"] = self._pause["pending"]
        return data
