"""Awaiting several coroutines at once, none left behind: :func:`all_settled`.

``asyncio.gather`` neither cancels the others when it is cancelled part-way through a wait that
some of them would still finish, nor waits for them to record their end; a ``TaskGroup`` cancels
all of them on the first error. A run's parallel tool calls and best-of candidates need neither:
each ends on its own (its faults are results), and a cancel must reach every one of them and wait
until each has recorded what became of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TypeVar

__all__ = ["all_settled"]

T = TypeVar("T")


async def all_settled(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``awaitables`` concurrently until every one has ended; their results in order.

    Cancelled (or interrupted) meanwhile: every one still running is cancelled and awaited
    before the cancellation goes on. An exception one of them raised is raised once all have
    ended, the first in order.
    """
    import asyncio

    tasks = [asyncio.ensure_future(a) for a in awaitables]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return [task.result() for task in tasks]
