"""A session's runs: starting them (in turn), their handles, results rebuilt from the store, and
the run paused for approval that the session waits on.

Runs in one session take turns: :meth:`SessionRuns._execute` holds the session's turn lock while
the engine (:class:`~loom_nb.engine.RunLoop`) runs one. A run paused for approval must be decided
before the next run starts, because its tool calls belong between the messages already in
history and whatever a new run would add; the engine reports each run's end
(:meth:`SessionRuns.run_ended`) so the session knows which run it waits on.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Unpack, cast

from .. import _bridge
from .._recovery import not_resumable, settle, settle_one
from .._turns import TurnLock
from ..engine import Decisions, RunLoop
from ..engine.approval import restore
from ..engine.structured import check_tool_choice
from ..engine.tool_call import check_caller
from ..errors import ConfigError, StoreError
from ..events import RunEvent
from ..output import RunOptions, restored_output, run_options
from ..result import PendingApproval, RunResult
from ..store import RunRecord, SessionStore
from ..task import Prompt, RunContext, RuntimeTask, as_task, check_deps

if TYPE_CHECKING:
    import asyncio

    from .._compaction import ContextState
    from ..agent import Agent
    from .core import Session
    from .signals import Inbox

__all__ = ["Run", "RunState", "RunStream", "SessionRuns"]


class SessionRuns:
    """The runs of a session (mixed into :class:`~loom_nb.session.Session`)."""

    agent: Agent
    id: str
    store: SessionStore
    context: ContextState
    inbox: Inbox
    closed: bool
    active_run: RunLoop | None
    _lock: TurnLock
    _waiting_run: str | None
    _unsaved: list[Callable[[], None]]

    @property
    def _session(self) -> Session:
        return cast("Session", self)  # this class is only ever a part of Session

    @property
    def runs(self) -> list[RunRecord]:
        """The runs of this session, oldest first, as the store records them (a run that a dead
        process left running is marked interrupted first)."""
        return settle(self.store, self.store.runs(self.id))

    @property
    def waiting(self) -> list[RunResult]:
        """Runs paused for approval (at most one), ready for ``.approve()`` / ``.reject()``."""
        run_id = self._still_waiting()
        return [self.result(run_id)] if run_id is not None else []

    @property
    def waiting_run_id(self) -> str | None:
        """The run paused for approval that this session waits on, as last seen here (no store
        read: see :attr:`waiting` for the store's word)."""
        return self._waiting_run

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
        pending = tuple(PendingApproval(**p) for p in (record.state or {}).get("pending", []))
        events = self.store.events(run_id=run_id)
        finished = next((e for e in reversed(events) if e.type == "run.finished"), None)
        data = finished.data if finished else {}
        output, output_type = restored_output(self.agent.output, data, record.output)
        return RunResult(
            output=output, text=record.output, output_type=output_type, status=record.status, run_id=run_id, session_id=self.id,  # type: ignore[arg-type]
            events=events, usage=record.usage, error=record.error,
            error_type=data.get("error_type"), limit=data.get("limit"), agent=record.agent,
            model=record.model, turns=record.turns, started_at=record.started_at,
            finished_at=record.finished_at, pending=pending, session=self._session)

    def _loop_for(self, prompt_or_task: Prompt, context: RunContext | None,
                  options: RunOptions) -> RunLoop:
        if self.closed:
            raise ConfigError(f"Session {self.id} is closed; open it again with agent.session(...).")
        if context is not None and not isinstance(context, RunContext):
            raise ConfigError("context= takes a RunContext(inputs=..., metadata=..., budget=...).")
        spec, tool_choice = run_options(self.agent.output, options)
        context = context or RunContext()
        if options.get("deps") is not None:
            context = context.with_deps(options["deps"])
        check_deps(context.deps, self.agent.deps_type, f"Agent {self.agent.name!r}")
        self._check_not_waiting()
        # Known now unless a capability's tools (MCP) join at the first turn, which checks again.
        check_tool_choice(tool_choice, list(self.agent.tools) if self.agent._resolved else None)
        return RunLoop(self._session, as_task(prompt_or_task), context,
                       output=spec, tool_choice=tool_choice)

    def _check_not_waiting(self) -> None:
        if self._still_waiting() is not None:
            raise ConfigError(
                f"Run {self._waiting_run} in session {self.id} is waiting for approval of tool "
                f"calls. Decide them first: result.approve() or result.reject(reason=...), then "
                f"result.resume() (session.waiting lists the waiting run)."
            )

    async def _execute(self, loop: RunLoop, decisions: Decisions | None = None) -> RunResult:
        check_caller(self._session, loop)  # before the turn: a tool's own session would never give it
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

    def run_ended(self, run_id: str, *, paused: bool) -> None:
        """Called by the engine as run ``run_id`` ends: a paused run is what this session waits
        on until it is decided; any other end of it frees the session for new runs."""
        if paused:
            self._waiting_run = run_id
        elif self._waiting_run == run_id:
            self._waiting_run = None

    async def run_next(self, take: Callable[[], RunLoop | None]) -> bool:
        """Wait for this session's turn, then run what ``take()`` gives (called in the turn, so
        that what it picks and marks active cannot be overtaken); False when it gives nothing."""
        async with self._lock:
            loop = take()
            if loop is None:
                return False
            await self._run_locked(loop)
            return True

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
        if self._waiting_run is None:  # run_ended set or cleared it
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
        loop = restore(self._session, record)
        loop.seen = dict(seen or {})
        return await self._execute(loop, decisions)

    async def run(self, prompt_or_task: Prompt, context: RunContext | None = None,
                  **options: Unpack[RunOptions]) -> RunResult:
        """Run the agent on a prompt (a str, or a list of str, Image and Document) or a task in
        this session and return the result.

        Options (see :class:`~loom_nb.output.RunOptions`): ``output_type``, ``output_mode``,
        ``output_retries``, ``tool_choice`` (each overrides the agent's for this run), and
        ``deps`` for the tools' RunContext."""
        return await self._execute(self._loop_for(prompt_or_task, context, options))

    def run_sync(self, prompt_or_task: Prompt, context: RunContext | None = None,
                 **options: Unpack[RunOptions]) -> RunResult:
        """:meth:`run` from sync code, also inside a running event loop (a Jupyter cell)."""
        return _bridge.run_sync(self.run(prompt_or_task, context, **options))

    def stream(self, prompt_or_task: Prompt, context: RunContext | None = None,
               **options: Unpack[RunOptions]) -> RunStream:
        """The run's events as they happen; ``.result`` holds the RunResult once it ends."""
        return RunStream(self._session, self._loop_for(prompt_or_task, context, options))

    def start(self, prompt_or_task: Prompt, context: RunContext | None = None,
              **options: Unpack[RunOptions]) -> Run:
        """Start a run in the background and return its handle at once."""
        return Run(self._session, self._loop_for(prompt_or_task, context, options))


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
        session.background.add(self.run_id)
        self._done.add_done_callback(lambda _: session.background.discard(self.run_id))
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
