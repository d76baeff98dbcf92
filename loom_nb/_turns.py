"""The turn lock of a session: its runs take turns, whichever event loop they come from."""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import concurrent.futures

__all__ = ["TurnLock"]


class TurnLock:
    """A lock that coroutines on *different* event loops can share.

    A session's runs take turns whether they come from a notebook's loop (``await``) or from
    loom_nb's background loop (``run_sync``, ``start``); asyncio.Lock belongs to one loop and
    would wake a waiter on another loop from the wrong thread.
    """

    def __init__(self) -> None:
        import concurrent.futures
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: collections.deque[concurrent.futures.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        import asyncio
        import concurrent.futures
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._waiters.append(turn)
        try:
            await asyncio.wrap_future(turn)
        except asyncio.CancelledError:
            with self._mutex:
                handed_over = turn.done() and not turn.cancelled()
                turn.cancel()
            if handed_over:
                self._release()  # the turn arrived as we were cancelled: pass it on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        with self._mutex:
            while self._waiters:
                turn = self._waiters.popleft()
                if turn.set_running_or_notify_cancel():
                    turn.set_result(None)  # ownership goes straight to the next waiter
                    return
            self._held = False
