"""Session: the state boundary around many runs of one agent.

A session keeps the conversation history across runs and writes every message, run and event
to its store as it happens. Opening a session with an existing id in the same store restores it,
also in a new process. Runs in one session take turns (a second run waits for the first).
"""

from __future__ import annotations

import collections.abc
import contextvars
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from . import _bridge
from ._approval import restore
from ._compaction import ContextState
from ._recovery import not_resumable, settle, settle_one
from ._tool_call import check_caller
from ._turns import TurnLock
from .errors import ConfigError, StoreError
from .events import SESSION_SUBSCRIBERS, RunEvent
from .feedback import FeedbackRecord, summarize
from .inbox import Inbox
from .messages import Message
from .result import PendingApproval, RunResult
from .run import Decisions, RunLoop
from .signals import SignalAdapter, SignalDecision, Urgency
from .sources import Cron, Heartbeat, SourceHandle, Timer, start_source
from .store import Checkpoint, RunRecord, SessionStore, SignalRecord, open_store
from .task import RunContext, RuntimeTask, as_task

if TYPE_CHECKING:
    import asyncio

    from .agent import Agent

__all__ = ["Run", "RunStream", "Session", "SessionConfig"]


@dataclass(frozen=True)
class SessionConfig:
    """How to open a session.

    Attributes:
        id: the session id; an existing id in the same store restores that session. None makes a
            new id.
        store: an SQLite file path (durable, the usual choice in notebooks), a store object, or
            None for the process-wide in-memory store.
        metadata: labels kept with the session (merged into an existing session's).
    """

    id: str | None = None
    store: SessionStore | str | os.PathLike[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, where the mistake is made: a wrong field found later (at the first
        # write, in another thread) would name neither the field nor the fix.
        if self.id is not None and (not isinstance(self.id, str) or not self.id.strip()):
            raise ConfigError(
                f"SessionConfig(id=...) takes a non-empty str such as 'notes-2024' (or None for a "
                f"new id), not {_shown(self.id)}.")
        if isinstance(self.id, str) and "\x00" in self.id:
            raise ConfigError("SessionConfig(id=...) must not contain NUL characters.")
        store = self.store
        if isinstance(store, str) and not store.strip():
            raise ConfigError("SessionConfig(store='') names no file: give a path such as "
                              "'sessions.sqlite', or None for the in-memory store.")
        if not (store is None or isinstance(store, str | os.PathLike) or isinstance(store, SessionStore)):
            raise ConfigError(
                f"SessionConfig(store=...) takes an SQLite file path such as 'sessions.sqlite', a "
                f"store object (SQLiteStore, InMemoryStore), or None for the in-memory store; "
                f"not {_shown(store)}.")
        metadata = self.metadata
        if not isinstance(metadata, collections.abc.Mapping):
            raise ConfigError(
                f"SessionConfig(metadata=...) takes a dict of labels such as {{'user': 'ana'}}, "
                f"not {_shown(metadata)}.")
        bad_keys = [k for k in metadata if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(
                f"SessionConfig(metadata=...) keys must be str (they are stored as JSON); "
                f"got {bad_keys[0]!r}. Use str({bad_keys[0]!r}) as the key.")
        # A copy: the caller's dict changing later must not change the config (it is frozen).
        object.__setattr__(self, "metadata", dict(metadata))


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def new_session_id() -> str:
    return f"ses_{os.urandom(8).hex()}"


class Session:
    """Many runs of one agent, with a shared history. Get one with ``agent.session(...)``."""

    def __init__(self, agent: Agent, config: SessionConfig | None = None) -> None:
        config = config or SessionConfig()
        if not isinstance(config, SessionConfig):
            raise ConfigError("agent.session() takes a SessionConfig(id=..., store=..., metadata=...).")
        self.agent = agent
        self.config = config
        self.store: SessionStore = open_store(config.store)
        self.id: str = config.id or new_session_id()
        stored = self.store.open_session(self.id, dict(config.metadata),
                                         agent.runtime.continuity.restore)
        self.metadata: dict[str, Any] = stored.metadata
        self.created_at: datetime = stored.created_at
        #: True when the session existed in the store before it was opened here.
        self.restored: bool = stored.restored
        #: History, memory and token calibration: what the next request is built from.
        self.context = ContextState(history=stored.messages, memory=stored.memory,
                                    message_count=stored.message_count)
        self._lock = TurnLock()
        self.closed = False
        # A run paused for approval must be decided before the next run: its tool calls belong
        # between the messages already in history and whatever a new run would add. Runs a dead
        # process left "running" become "interrupted" here, so they do not look alive forever.
        self._waiting_run: str | None = next(
            (r.run_id for r in settle(self.store, self.store.runs(self.id))
             if r.status == "needs_approval"), None)
        #: The run executing now, if any.
        self.active_run: RunLoop | None = None
        # Process-wide subscribers and the runtime's tracer (loom_nb.tracing); usually none.
        self._subscribers: list[Callable[[RunEvent], None]] = [*SESSION_SUBSCRIBERS]
        if agent.runtime.tracing is not None and agent.runtime.tracing not in self._subscribers:
            self._subscribers.append(agent.runtime.tracing)
        self._sources: list[SourceHandle] = []
        self.inbox = Inbox(self)
        #: Notes shown to the model in the working partition of every run until removed.
        self.notes: list[str] = []
        # Writes that failed at a run's end (disk full): retried, in order, before the next run.
        self._unsaved: list[Callable[[], None]] = []
        if agent.runtime.feedback.kinds - {"rating"}:
            self._subscribers.append(self._record_feedback)

    def __repr__(self) -> str:
        return (f"<Session {self.id} agent={self.agent.name!r} messages={len(self.history)} "
                f"store={self.store!r}>")

    # -- state -------------------------------------------------------------------------------------

    @property
    def history(self) -> list[Message]:
        return self.context.history

    @property
    def messages(self) -> tuple[Message, ...]:
        """The conversation the model sees now, oldest first (compacted parts are in memory)."""
        return tuple(self.context.history)

    @property
    def memory(self) -> tuple[str, ...]:
        """Summaries and handoff notes carried over by compaction and renewal."""
        return tuple(self.context.memory)

    def open_tasks(self, limit: int = 5) -> list[str]:
        """Goals of runs that did not complete (failed, cancelled or at a limit) and that no
        later run with the same goal completed; the latest ``limit`` of them."""
        open_goals: dict[str, None] = {}
        for record in self.runs:
            open_goals.pop(record.prompt, None)
            if record.status in ("failed", "cancelled", "limit"):
                open_goals[record.prompt] = None
        return list(open_goals)[-limit:]

    def child(self, label: str, *, agent: Agent | None = None, seed: bool = False) -> Session:
        """A nested session in the same store (sub-runs live there, linked by parent_run_id);
        ``seed`` starts it from a copy of this session's context."""
        child = Session(agent or self.agent,
                        SessionConfig(id=f"{self.id}/{label}-{os.urandom(3).hex()}", store=self.store))
        child._subscribers.append(self.notify)  # views of this session see nested runs live
        if seed:
            child.context = ContextState(history=list(self.context.history),
                                         memory=list(self.context.memory), factor=self.context.factor)
        return child

    def checkpoint(self) -> None:
        """Store the current (compacted) context, so a restored session starts from it."""
        self.store.save_checkpoint(Checkpoint(
            session_id=self.id, through=self.context.message_count,
            history=list(self.context.history), memory=list(self.context.memory)))

    @property
    def runs(self) -> list[RunRecord]:
        """The runs of this session, oldest first, as the store records them (a run that a dead
        process left running is marked interrupted first)."""
        return settle(self.store, self.store.runs(self.id))

    def events(self, run_id: str | None = None) -> list[RunEvent]:
        """The stored events of this session (or of one of its runs), in order."""
        if run_id is not None:
            return self.store.events(run_id=run_id)
        return self.store.events(session_id=self.id)

    @property
    def waiting(self) -> list[RunResult]:
        """Runs paused for approval (at most one), ready for ``.approve()`` / ``.reject()``."""
        return [self.result(self._waiting_run)] if self._still_waiting() else []

    def _still_waiting(self) -> str | None:
        """The run this session waits on, as the store says now: another session or process may
        have resumed it since this one looked."""
        run_id = self._waiting_run
        if run_id is not None:
            record = self.store.get_run(run_id)
            if record is None or record.status != "needs_approval":
                if self._waiting_run == run_id:
                    self._waiting_run = None
                return None
        return run_id

    def _own_run(self, run_id: str, hint: str = "") -> RunRecord:
        record = self.store.get_run(run_id)
        if record is None or record.session_id != self.id:  # a shared store holds others' runs
            raise ConfigError(f"Session {self.id} has no run {run_id!r}{hint}.")
        return record

    def already_resumed(self, run_id: str) -> ConfigError:
        """The error for resuming ``run_id`` once it no longer waits for approval."""
        if self._waiting_run == run_id:
            self._waiting_run = None
        return not_resumable(self.store, self._own_run(run_id))

    def result(self, run_id: str) -> RunResult:
        """The RunResult of a stored run of this session, rebuilt from the store."""
        record = settle_one(self.store, self._own_run(run_id))
        from .result import PendingApproval

        pending = tuple(PendingApproval(**p) for p in (record.state or {}).get("pending", []))
        events = self.store.events(run_id=run_id)
        finished = next((e for e in reversed(events) if e.type == "run.finished"), None)
        data = finished.data if finished else {}
        return RunResult(
            output=record.output, status=record.status, run_id=run_id, session_id=self.id,  # type: ignore[arg-type]
            events=events, usage=record.usage, error=record.error,
            error_type=data.get("error_type"), limit=data.get("limit"), agent=record.agent,
            model=record.model, turns=record.turns, started_at=record.started_at,
            finished_at=record.finished_at, pending=pending, session=self)

    def commit(self, run_id: str, messages: list[Message]) -> None:
        """Append messages to the history; the store first, so a failed write changes nothing."""
        self.store.append_messages(self.id, run_id, messages)
        self.context.append(messages)

    # -- runs --------------------------------------------------------------------------------------

    def _loop_for(self, prompt_or_task: str | RuntimeTask, context: RunContext | None) -> RunLoop:
        if self.closed:
            raise ConfigError(f"Session {self.id} is closed; open it again with agent.session(...).")
        if context is not None and not isinstance(context, RunContext):
            raise ConfigError("context= takes a RunContext(inputs=..., metadata=..., budget=...).")
        self._check_not_waiting()
        return RunLoop(self, as_task(prompt_or_task), context or RunContext())

    def _check_not_waiting(self) -> None:
        if self._still_waiting() is not None:
            raise ConfigError(
                f"Run {self._waiting_run} in session {self.id} is waiting for approval of tool "
                f"calls. Decide them first: result.approve() or result.reject(reason=...), then "
                f"result.resume() (session.waiting lists the waiting run)."
            )

    async def _execute(self, loop: RunLoop, decisions: Decisions | None = None) -> RunResult:
        check_caller(self, loop)  # before the turn: a tool's own session would never give it
        async with self._lock:
            return await self._run_locked(loop, decisions)

    def defer_write(self, write: Callable[[], None]) -> None:
        """Keep a store write that failed (a run's end on a full disk) to retry before the next
        run, so that the store does not show that run as still running once there is room."""
        self._unsaved.append(write)

    def _write_deferred(self) -> None:
        while self._unsaved:
            try:
                self._unsaved[0]()
            except StoreError:
                return  # still failing: the run that starts now fails with its own StoreError
            self._unsaved.pop(0)

    async def _run_locked(self, loop: RunLoop, decisions: Decisions | None = None) -> RunResult:
        """Execute (or resume) ``loop``; the caller holds the session's turn."""
        if decisions is None:
            self._check_not_waiting()
        self._write_deferred()
        self.active_run = loop
        try:
            result = await (loop.execute() if decisions is None else loop.resume(decisions))
        finally:
            self.active_run = None
        if self._waiting_run is None:  # RunLoop._finish set or cleared it
            self.inbox.pump()  # signals queued behind a paused run can go now
        return result

    async def resume(self, run_id: str, decisions: Decisions,
                     seen: Mapping[str, PendingApproval] | None = None) -> RunResult:
        """Continue a run paused for approval: ``decisions`` maps each waiting call id to None
        (approved) or a rejection reason; approvals bind to the calls as ``seen`` (by id).
        Raises RunAlreadyResumedError when another click, session or process resumed it first."""
        record = self._own_run(run_id)
        if record.status != "needs_approval":
            raise self.already_resumed(run_id)
        loop = restore(self, record)
        loop.seen = dict(seen or {})
        return await self._execute(loop, decisions)

    async def run(self, prompt_or_task: str | RuntimeTask, context: RunContext | None = None) -> RunResult:
        """Run the agent on a prompt or task in this session and return the result."""
        return await self._execute(self._loop_for(prompt_or_task, context))

    def run_sync(self, prompt_or_task: str | RuntimeTask, context: RunContext | None = None) -> RunResult:
        """:meth:`run` from sync code, also inside a running event loop (a Jupyter cell)."""
        return _bridge.run_sync(self.run(prompt_or_task, context))

    def stream(self, prompt_or_task: str | RuntimeTask, context: RunContext | None = None) -> RunStream:
        """The run's events as they happen; ``.result`` holds the RunResult once it ends."""
        return RunStream(self, self._loop_for(prompt_or_task, context))

    def start(self, prompt_or_task: str | RuntimeTask, context: RunContext | None = None) -> Run:
        """Start a run in the background and return its handle at once."""
        return Run(self, self._loop_for(prompt_or_task, context))

    # -- signals -----------------------------------------------------------------------------------

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

    # -- feedback ----------------------------------------------------------------------------------

    def _record_feedback(self, event: RunEvent) -> None:
        if event.session_id != self.id:
            return  # a nested run's event, forwarded here: its own session records it
        record = self.agent.runtime.feedback.record_for(event)
        if record is not None:
            self.store.append_feedback(record)
            self.agent.runtime.feedback.send(record)

    def feedback(self, run_id: str, score: float, comment: str = "") -> FeedbackRecord:
        """Rate a run of this session (any number scale you like; kept as given)."""
        self._own_run(run_id, " to rate; use a run_id from session.runs")
        record = FeedbackRecord(session_id=self.id, run_id=run_id, kind="rating",
                                data={"score": float(score), "comment": comment})
        self.store.append_feedback(record)
        self.agent.runtime.feedback.send(record)
        return record

    @property
    def feedback_records(self) -> list[FeedbackRecord]:
        """The feedback kept for this session, oldest first."""
        return self.store.feedback(self.id)

    def feedback_summary(self) -> dict[str, Any]:
        """Pass rates, tool error rates, denials and ratings of this session."""
        return summarize(self.feedback_records)

    def subscribe(self, callback: Callable[[RunEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every event of this session's runs and every signal decision,
        as they happen (from loom_nb's threads: keep it quick). Returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def notify(self, event: RunEvent) -> None:
        for callback in list(self._subscribers):
            callback(event)

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
        handle = start_source(self, source, **options)
        self._sources.append(handle)
        return handle

    def close(self) -> None:
        """Stop accepting runs and signals and stop this session's timers. The stored session
        stays and can be opened again.

        What the agent's capabilities opened (MCP server connections) belongs to the agent, which
        other sessions (evaluate()'s tasks, sub-agents, a second notebook session) may be using
        at the same moment: close it with ``agent.close()``, ``await agent.aclose()`` or
        ``async with agent``. A run already going on is not stopped (``run.cancel()`` does that).
        """
        for handle in self._sources:
            handle.stop()
        self.closed = True
        self.agent._forget(self)

    async def aclose(self) -> None:
        """:meth:`close` from async code; also waits until the signal queue has stopped (a run a
        signal started, and any run it waits behind, ends first; no further queued signal starts)."""
        self.close()
        await self.inbox.idle()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class RunStream:
    """An async iterator over a run's events, delivered as they happen.

    To stop early, leave the loop and call ``await stream.aclose()`` (or iterate inside
    ``async with agent.stream(...) as stream:``): the run is cancelled, and its events so far stay
    stored.
    """

    def __init__(self, session: Session, loop: RunLoop) -> None:
        self.session = session
        self.run_id = loop.run_id
        self._loop = loop
        self.result: RunResult | None = None
        self._iterator: AsyncIterator[RunEvent] | None = None

    def __aiter__(self) -> AsyncIterator[RunEvent]:
        if self._iterator is None:
            self._iterator = self._events()
        return self._iterator

    async def aclose(self) -> None:
        """Cancel the run if it is still going and wait until it has recorded that."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> RunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _events(self) -> AsyncIterator[RunEvent]:
        import asyncio
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        self._loop.subscribers.append(queue.put_nowait)
        task = asyncio.ensure_future(self.session._execute(self._loop))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            self.result = await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self.result = self._loop.result


RunState = Literal["running", "completed", "failed", "cancelled", "needs_approval", "limit",
                   "interrupted"]


#: How long a background run waits before its first step (see Run._start).
START_DELAY_SECONDS = 0.005


class Run:
    """A run going on in the background (``session.start(...)``).

    It runs on loom_nb's background event loop, so it goes on while other cells execute.
    """

    def __init__(self, session: Session, loop: RunLoop) -> None:
        import concurrent.futures
        self.session = session
        self.run_id = loop.run_id
        self._loop = loop
        self._done: concurrent.futures.Future[RunResult] = concurrent.futures.Future()
        self._task: asyncio.Task[None] | None = None
        self._handed_over = threading.Event()
        context = contextvars.copy_context()
        loop_ = _bridge.bridge_loop()
        try:
            loop_.call_soon_threadsafe(loop_.call_later, START_DELAY_SECONDS, self._start, context)
        finally:
            self._handed_over.set()

    def __repr__(self) -> str:
        return f"<Run {self.run_id} {self.status}>"

    def _start(self, context: contextvars.Context) -> None:
        import asyncio
        # Handing the callback to the loop releases the GIL, and the loop thread could otherwise
        # run a quick run to its end before the caller even holds the handle, so that a
        # ``run.cancel()`` on the next line found it completed. The start waits for the rest of
        # __init__ (bounded, should the caller's thread be stopped there) and a few ms more
        # (START_DELAY_SECONDS), so that a caller descheduled by a busy machine between start()
        # and cancel() still finds the run not started.
        self._handed_over.wait(1.0)
        if self._loop.cancel_requested:
            self._done.set_result(_cancelled_before_start(self._loop))
            return
        self._task = asyncio.get_running_loop().create_task(self._main(), context=context)
        self._task.add_done_callback(self._if_never_started)

    def _if_never_started(self, task: asyncio.Task[None]) -> None:
        # A cancel that lands before the task's first step never enters _main's try block.
        if task.cancelled() and not self._done.done():
            self._done.set_result(_cancelled_before_start(self._loop))

    async def _main(self) -> None:
        import asyncio
        try:
            result = await self.session._execute(self._loop)
        except asyncio.CancelledError:
            result = self._loop.result or _cancelled_before_start(self._loop)
        except BaseException as exc:  # noqa: BLE001 - hand any escape to whoever waits
            self._done.set_exception(exc)
            return
        self._done.set_result(result)

    @property
    def status(self) -> RunState:
        if not self._done.done():
            return "running"
        return "failed" if self._done.exception() else self._done.result().status

    def done(self) -> bool:
        return self._done.done()

    def cancel(self) -> bool:
        """Stop the run: it ends ``status="cancelled"`` and the session stays consistent.

        Takes effect at once, from any thread: once it returns True, the run cannot end any other
        way (a run between two awaits ends cancelled where it would have ended). False when the
        run had already ended; its result stays what it was.
        """
        if self._done.done() or not self._loop.request_cancel():
            return False

        def cancel() -> None:
            if self._task is not None:  # None: _start has not run yet, and will see the request
                self._task.cancel()
        _bridge.bridge_loop().call_soon_threadsafe(cancel)
        return True

    async def wait(self) -> RunResult:
        """The RunResult, once the run has ended."""
        import asyncio
        return await asyncio.wrap_future(self._done)

    def result(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends (at most ``timeout`` seconds) and return its RunResult."""
        return self._done.result(timeout)


def _cancelled_before_start(loop: RunLoop) -> RunResult:
    return RunResult(output="", status="cancelled", run_id=loop.run_id, session_id=loop.session.id,
                     error="The run was cancelled before it started.", agent=loop.agent.name,
                     model=loop.agent.model.identifier)
