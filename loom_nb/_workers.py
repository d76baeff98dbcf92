"""Worker threads for sync tools, with a cheaper hand-off than ``asyncio.to_thread``.

A sync tool always runs off the event loop, so a slow one does not stall streaming displays or
other sessions, and an interrupt can cancel the run while the tool finishes in the background. The
default executor's futures and locks cost about 75 µs a call here; a queue that idle workers wait
on costs about 30 µs. The pool grows by one thread whenever every worker is busy (up to
``MAX_WORKERS``), so concurrent runs do not wait for each other's tools. The caller's contextvars
go with the call (ipykernel routes a tool's prints to its cell through them).

A job whose caller itself holds a worker (a tool that started a run whose tools run here too)
always gets a thread, beyond ``MAX_WORKERS`` if need be: otherwise nested runs would wait for the
workers their own callers hold, forever. Their number is bounded by the session's limit on
nested runs.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["MAX_WORKERS", "Escaped", "Job", "run_in_worker", "submit_to_worker"]

MAX_WORKERS = 32

_jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
_lock = threading.Lock()
_workers = 0
_idle = 0  # workers waiting for a job
_queued = 0  # jobs no worker has taken yet
#: True inside a job: whatever the job starts waits while holding this worker.
_HOLDS_WORKER: contextvars.ContextVar[bool] = contextvars.ContextVar("loom_holds_worker", default=False)


class Escaped(Exception):
    """A ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``,
    ``GeneratorExit``, a stray ``CancelledError``) raised by a job. It reaches the awaiting task
    wrapped: raised raw there, asyncio would re-raise it out of the event loop and stop it."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    _HOLDS_WORKER.set(True)  # in the job's own context copy only
    return fn(**kwargs)


class Job:
    """A call handed to a worker. ``future`` settles with its outcome (an escaping BaseException
    comes as :class:`Escaped`); :meth:`follow` gives another future of the same outcome, for a
    caller whose wait on ``future`` was cancelled but who still wants to know how it ended."""

    __slots__ = ("loop", "future", "context", "fn", "kwargs", "_followers", "_outcome")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any],
                 kwargs: dict[str, Any]) -> None:
        self.loop, self.fn, self.kwargs = loop, fn, kwargs
        self.future: asyncio.Future[Any] = loop.create_future()
        self.context = contextvars.copy_context()
        self._followers: list[asyncio.Future[Any]] = []
        self._outcome: tuple[bool, Any] | None = None  # set on the loop's thread only

    def follow(self) -> asyncio.Future[Any]:
        """A new future of the call's outcome (call on the loop's thread)."""
        follower = self.loop.create_future()
        if self._outcome is None:
            self._followers.append(follower)
        else:
            _set(follower, self._outcome)
        return follower

    def _settle(self, outcome: tuple[bool, Any]) -> None:
        self._outcome = outcome
        for future in (self.future, *self._followers):
            if not future.done():  # a waiter cancelled or gave up (a timeout) meanwhile
                _set(future, outcome)
        self._followers.clear()


def _set(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _work() -> None:
    global _idle, _queued
    while True:
        with _lock:
            _idle += 1
        job: Job = _jobs.get()
        with _lock:
            _idle -= 1
            _queued -= 1
        try:
            outcome: tuple[bool, Any] = (True, job.context.run(_call, job.fn, job.kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (False, exc)
        except BaseException as exc:  # noqa: BLE001 - the worker thread must survive it too
            outcome = (False, Escaped(exc))
        try:
            job.loop.call_soon_threadsafe(job._settle, outcome)
        except RuntimeError:
            pass  # the loop was closed while the tool ran: nobody is waiting any more
        del job, outcome  # an idle worker keeps nothing alive


def _submit(job: Job, *, caller_holds_worker: bool) -> None:
    global _workers, _queued
    with _lock:
        _queued += 1
        # Every queued job needs its own idle worker: a tool may wait on another tool.
        spawn = _idle < _queued and (_workers < MAX_WORKERS or caller_holds_worker)
        if spawn:
            _workers += 1
            name = f"loom-nb-tool-{_workers}"
    if spawn:
        threading.Thread(target=_work, name=name, daemon=True).start()
    _jobs.put(job)


def submit_to_worker(fn: Callable[..., Any], /, **kwargs: Any) -> Job:
    """Start ``fn(**kwargs)`` on a worker thread, in a copy of the caller's context."""
    import asyncio

    job = Job(asyncio.get_running_loop(), fn, kwargs)
    _submit(job, caller_holds_worker=job.context.get(_HOLDS_WORKER, False))
    return job


async def run_in_worker(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``fn(**kwargs)`` on a worker thread, in a copy of the caller's context."""
    return await submit_to_worker(fn, **kwargs).future
