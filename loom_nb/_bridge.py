"""Run coroutines from sync code, including inside Jupyter's running event loop, without patching.

One long-lived event loop runs on a daemon thread. ``run_sync`` hands it a coroutine and waits.
All sync entry points (``run_sync``, the magics, background runs) share this loop, so the
loop-bound resources they create (SDK connection pools, MCP sessions) stay on one loop.

The coroutine runs in a copy of the caller's ``contextvars`` context: ipykernel keeps the parent
message of the executing cell in a context variable, so prints and displays made by a run land in
the cell that started it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError, LoomError

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

__all__ = ["bridge_loop", "in_bridge_thread", "run_sync", "submit"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
#: How long an interrupted caller waits for the run to record its cancellation.
CANCEL_GRACE_SECONDS = 10.0


def bridge_loop() -> asyncio.AbstractEventLoop:
    import asyncio
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                while True:
                    try:
                        loop.run_forever()
                        return
                    except BaseException:  # noqa: BLE001 - see _keep_serving
                        _keep_serving(loop)

            _thread = threading.Thread(target=serve, name="loom-nb-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def _keep_serving(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio lets a SystemExit or KeyboardInterrupt raised inside a task escape run_forever
    (the task itself ends with it, and its caller hears of it). An interrupt never lands in this
    thread, so it came from code that ran here: serving on keeps every other run, session and
    MCP connection on this loop alive."""
    if loop.is_closed():
        raise RuntimeError("loom_nb's background loop was closed")


def in_bridge_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the background loop, in a copy of the caller's context."""
    import concurrent.futures
    loop = bridge_loop()
    context = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    # The future stays PENDING until the task ends (as with run_coroutine_threadsafe), so that
    # future.cancel() works while the coroutine runs, and cancels the task.
    def start() -> None:
        if future.cancelled():
            coro.close()
            return
        task = loop.create_task(coro, context=context)
        future.add_done_callback(
            lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None
        )
        task.add_done_callback(lambda t: _copy_outcome(t, future))

    loop.call_soon_threadsafe(start)
    return future


def _copy_outcome(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(task.result())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code and return its result.

    Works in a plain script and inside a running event loop (a Jupyter cell). An interrupt
    (Ctrl-C, the notebook's stop button) cancels the coroutine, waits briefly for it to record the
    cancellation, and re-raises ``KeyboardInterrupt``.
    """
    if in_bridge_thread():
        coro.close()
        raise ConfigError(
            "run_sync was called from inside a running loom_nb run (e.g. from an async tool); "
            "use `await agent.run(...)` there instead."
        )
    done = threading.Event()
    future: concurrent.futures.Future[T] | None = None
    try:
        # Inside the try: an interrupt may land while the coroutine is being handed over, and
        # the run must then be cancelled too, not left going with nobody to stop it.
        future = submit(_signal_when_done(coro, done))
        return _wait(future)
    except KeyboardInterrupt:
        if future is not None:
            future.cancel()
            done.wait(CANCEL_GRACE_SECONDS)
        else:
            coro.close()
        raise


def _wait(future: concurrent.futures.Future[T]) -> T:
    """The future's result, without waiting forever should the loop thread be gone."""
    import concurrent.futures
    while True:
        try:
            return future.result(timeout=0.5)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the coroutine's own TimeoutError
            thread = _thread
            if thread is not None and not thread.is_alive():
                future.cancel()
                raise LoomError(
                    "loom_nb's background event loop stopped while this call was waiting for it, "
                    "so the call's outcome is lost. Call it again: a new loop starts.") from None


async def _signal_when_done(coro: Coroutine[Any, Any, T], done: threading.Event) -> T:
    try:
        return await coro
    finally:
        done.set()
