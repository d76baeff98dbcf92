"""One writer thread per store: the writes queued while it writes go into one transaction.

Runs on loom_nb's event loop hand their turn's write to the thread and await it, so the loop
goes on with other sessions while SQLite writes (issue 21: 64 concurrent evaluation runs spent
their time waiting on each other's writes). A run awaits its write before it goes on, so a
write it was told is done is committed: the kill -9 guarantee is the same as writing inline.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # asyncio and concurrent.futures load on the first write, not at import
    from concurrent.futures import Future

__all__ = ["GroupWriter", "succeeded", "written"]

#: How long the thread waits for work before it ends (the next write starts a new one).
IDLE_SECONDS = 2.0

#: A queued write and the future its caller awaits.
Job: TypeAlias = "tuple[Callable[[], None], Future[None]]"


class GroupWriter:
    """A daemon thread that runs queued jobs in batches through ``write_batch``; it ends after
    :data:`IDLE_SECONDS` without work and starts again with the next job.

    ``write_batch(jobs)`` writes every job of a batch in one transaction and settles each job's
    future (a result, or that job's error); it must not raise.
    """

    def __init__(self, write_batch: Callable[[list[Job]], None], name: str) -> None:
        self._write_batch = write_batch
        self._name = name
        self._jobs: deque[Job | None] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._writing = False

    @property
    def busy(self) -> bool:
        """Whether jobs are queued or being written (read without the lock: a hint)."""
        return self._writing or bool(self._jobs)

    def submit(self, job: Callable[[], None]) -> Future[None]:
        from concurrent.futures import Future

        future: Future[None] = Future()
        with self._wake:
            self._jobs.append((job, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return future

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._wake:
            thread = self._thread
            if thread is None:
                return
            self._jobs.append(None)
            self._wake.notify()
        thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._jobs:
                    self._wake.wait(IDLE_SECONDS)
                if not self._jobs:  # idle: end, so that stores nobody writes hold no thread
                    self._thread = None
                    return
                batch = list(self._jobs)
                self._jobs.clear()
                self._writing = True  # before the queue looks empty to busy
            jobs = [job for job in batch if job is not None]
            if jobs:
                self._writing = True
                try:
                    self._write_batch(jobs)
                finally:
                    self._writing = False
            if len(jobs) < len(batch):  # close() was called: what came before it is written
                with self._wake:
                    self._thread = None
                return


def succeeded(future: Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


async def written(future: Future[None]) -> None:
    """Wait for a queued write; its error, if it failed.

    A cancel does not undo a write the thread may already be doing: the wait goes on until the
    write is settled (a second cancel stops waiting), so the caller can tell, with
    :func:`succeeded`, whether what it keeps matches the store; then the cancel goes through.
    """
    import asyncio

    wrapped = asyncio.wrap_future(future)
    try:
        await asyncio.shield(wrapped)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.shield(wrapped)
        raise
