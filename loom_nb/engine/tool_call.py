"""One tool call of a run: its time bound, its execution, and the ``tool.result`` it records.

A call is bounded by the tool's ``@tool(timeout=...)`` (else the run's ``Limits(tool_seconds=)``)
and by what is left of the run's ``max_seconds``, so that no tool keeps a run (or the session's
turn) past its limits. A call the run is cancelled during is still recorded: its outcome if it
ended within a short grace, otherwise that it may still complete (see ``Tool.invoke``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypedDict

from ..delegation import CURRENT_RUN
from ..errors import ConfigError
from ..events import ToolResultData
from ..media import media_label
from ..messages import ToolCall, ToolResult

if TYPE_CHECKING:
    from .loop import RunLoop
    from ..session import Session
    from ..tools import ToolOutcome

__all__ = ["MAX_NESTED_RUNS", "check_caller", "run_tool_call"]


async def run_tool_call(loop: RunLoop, call: ToolCall) -> ToolResult:
    tool = loop.agent.tools[call.name]
    seconds, by_run = loop.limits.tool_deadline(tool.timeout, time.monotonic() - loop.started_at)
    if seconds is not None and seconds <= 0:  # an earlier call of the turn used the time up
        return loop._loop_result(call, "ToolTimeout", (
            f"Not run: the run reached its time limit max_seconds={loop.limits.max_seconds} "
            f"before this call."))

    def record_cancelled(outcome: ToolOutcome) -> None:
        _record(loop, call, outcome, {"cancelled": True})

    token = CURRENT_RUN.set(loop)  # a delegate call finds its parent run here
    try:
        context = loop.context.bind(loop, call.id) if tool.context_param is not None else None
        outcome = await tool.invoke(call.args, timeout=seconds, on_cancel=record_cancelled,
                                    context=context)
    finally:
        CURRENT_RUN.reset(token)
    extra: ToolResultExtra = {}
    if outcome.error_type == "ToolTimeout":
        extra["timeout"] = seconds
        if by_run:
            extra["limit"] = "max_seconds"
            outcome.content = (f"The run reached its time limit max_seconds="
                               f"{loop.limits.max_seconds} while this call ran. {outcome.content}")
    return _record(loop, call, outcome, extra)


class ToolResultExtra(TypedDict, total=False):
    """What a ``tool.result`` adds for a cancelled or timed-out call (see ToolResultData)."""

    cancelled: bool
    timeout: float | None
    limit: str


def _record(loop: RunLoop, call: ToolCall, outcome: ToolOutcome, extra: ToolResultExtra) -> ToolResult:
    content = loop.window.fit(outcome.content)
    data: ToolResultData = {"call_id": call.id, "name": call.name, "content": content,
                            "is_error": outcome.is_error, "duration_ms": outcome.duration_ms, **extra}
    if content is not outcome.content:
        data["truncated_from"] = len(outcome.content)
    if outcome.is_error:
        data["error_type"] = outcome.error_type or "ToolError"
        if outcome.traceback:
            data["traceback"] = outcome.traceback
    if outcome.media:
        data["media"] = [{**m.to_dict({}), "label": media_label(m)} for m in outcome.media]
    loop.emit("tool.result", data)
    return ToolResult(call_id=call.id, name=call.name, content=content, is_error=outcome.is_error,
                      media=outcome.media)


#: How deep runs may start runs from inside their tools (a tool calling an agent that calls it...).
MAX_NESTED_RUNS = 8


def check_caller(session: Session, loop: RunLoop) -> None:
    """Link a run started from inside a tool to the run whose tool started it, refusing the two
    starts that could never end: one in a session that is waiting for that very tool (it would
    wait for its own turn forever), and recursion past :data:`MAX_NESTED_RUNS`."""
    from .loop import RunLoop

    caller = CURRENT_RUN.get()  # the engine sets only RunLoops there
    if not isinstance(caller, RunLoop) or loop.caller is not None:
        return
    ancestor: RunLoop | None = caller
    while ancestor is not None:
        if ancestor.session is session and not ancestor.ended:
            raise ConfigError(
                f"A tool of run {ancestor.run_id} started a run in session {session.id}, which is "
                f"busy with that very run: the new run would wait for its turn forever. Start it "
                f"in another session (session.child(...), or agent.run(...) for a new one), or "
                f"return what the tool found and let the model go on.")
        ancestor = ancestor.caller
    if caller.nesting + 1 > MAX_NESTED_RUNS:
        raise ConfigError(
            f"Runs started from inside tools are nested {caller.nesting + 1} deep (a tool calling "
            f"its own agent?); at most {MAX_NESTED_RUNS} are allowed. Do the work in the tool "
            f"itself instead of starting another run from it.")
    loop.caller, loop.nesting = caller, caller.nesting + 1
