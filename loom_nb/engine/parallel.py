"""The allowed tool calls of one model turn, run concurrently (``Runtime(parallel_tools=...)``).

Governance has already decided every call of the turn, in the model's order (``RunLoop``); this
module only carries the allowed ones out. Async tools run as tasks on the run's loop, sync tools
each on their own worker thread (``loom_nb._workers``), at most ``width`` at once. Each call is
bounded by its own timeout exactly as a call run alone is (``tool_call.run_tool_call``), and a
tool that raises ``SystemExit`` or hangs ends as its own error result: the others are not
touched. ``tool.result`` events come as the calls finish, each naming its ``call_id``; the
results handed back keep the model's order, which is the order the history stores them in.

Cancelling the run cancels every call still in flight, and waits (within the tools' cancel
grace) until each has recorded what became of it, before the cancellation goes on
(:func:`loom_nb._tasks.all_settled`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from .._tasks import all_settled
from ..delegation import SubAgentPaused
from ..messages import ToolCall, ToolResult
from .tool_call import run_tool_call

if TYPE_CHECKING:
    from .loop import RunLoop

__all__ = ["Outcome", "run_concurrently", "width_of"]

#: What one call came to: its result, or the paused sub-run of a ``delegate`` call.
Outcome: TypeAlias = ToolResult | SubAgentPaused

#: ``Runtime(parallel_tools=True)``: at most this many calls of one turn at once.
DEFAULT_WIDTH = 8


def width_of(setting: bool | int) -> int:
    """How many calls of one turn may run at once for ``Runtime(parallel_tools=setting)``."""
    if setting is True:
        return DEFAULT_WIDTH
    if setting is False:
        return 1
    return setting


async def run_concurrently(loop: RunLoop, calls: Sequence[ToolCall], width: int) -> list[Outcome]:
    """Run ``calls`` (all allowed), at most ``width`` at once; their outcomes in ``calls`` order.

    A fault of the engine itself (not of a tool: those are results) is raised once every call
    has ended, the first in the model's order, so that no call is left running unrecorded.
    """
    import asyncio

    gate = asyncio.Semaphore(width)

    async def one(call: ToolCall) -> Outcome:
        async with gate:
            try:
                return await run_tool_call(loop, call)
            except SubAgentPaused as paused:  # the turn pauses once every call has ended
                return paused

    return await all_settled(one(call) for call in calls)
