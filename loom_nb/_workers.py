"""Worker threads for sync tools, with a cheaper hand-off than ``asyncio.to_thread``.

A sync tool runs off the event loop, so a slow one does not stall streaming displays or other
sessions, and an interrupt can cancel the run while the tool finishes in the background. The
default executor's futures and locks cost about 75 µs a call here; a queue that idle workers wait
on costs about 30 µs. The pool grows by one thread whenever every worker is busy (up to
``MAX_WORKERS``), so concurrent runs do not wait for each other's tools. The caller's contextvars
go with the call (ipykernel routes a tool's prints to its cell through them).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_WORKERS", "run_in_worker"]

MAX_WORKERS = 32

_jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
_lock = threading.Lock()
_workers = 0
_idle = 0  # workers waiting for a job
_queued = 0  # jobs no worker has taken yet


def _work() -> None:
    global _idle, _queued
    while True:
        with _lock:
            _idle += 1
        loop, future, context, fn, kwargs = _jobs.get()
        with _lock:
            _idle -= 1
            _queued -= 1
        try:
            outcome: tuple[bool, Any] = (True, context.run(fn, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, outcome)
        except RuntimeError:
            pass  # the loop was closed while the tool ran: nobody is waiting any more


def _settle(future: Any, outcome: tuple[bool, Any]) -> None:
    if future.done():  # the awaiting task was cancelled meanwhile
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _submit(job: tuple[Any, ...]) -> None:
    global _workers, _queued
    with _lock:
        _queued += 1
        # Every queued job needs its own idle worker: a tool may wait on another tool.
        spawn = _idle < _queued and _workers < MAX_WORKERS
        if spawn:
            _workers += 1
            name = f"loom-nb-tool-{_workers}"
    if spawn:
        threading.Thread(target=_work, name=name, daemon=True).start()
    _jobs.put(job)


async def run_in_worker(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``fn(**kwargs)`` on a worker thread, in a copy of the caller's context."""
    import asyncio

    loop = asyncio.get_running_loop()
    future = loop.create_future()
    _submit((loop, future, contextvars.copy_context(), fn, kwargs))
    return await future
