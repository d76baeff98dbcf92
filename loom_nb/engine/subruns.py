"""Sub-runs: the runs the engine starts for a ``delegate`` call of a run.

The delegation policy decides whether a sub-run may happen (agent, depth, parallel slots); the
functions here carry it out for a :class:`~loom_nb.engine.loop.RunLoop`, which exposes them as
its :class:`~loom_nb.delegation.SubRunner` methods. A sub-run lives in a nested session of the
same store, linked by ``parent_run_id``; what it used counts towards the calling run. A sub-run
paused for approval pauses the calling run: its waiting calls are shown under the ``delegate``
call (:func:`shown_under`), and resuming the caller resumes it (:func:`resume_nested`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ..delegation import SubAgent, SubAgentPaused
from ..errors import LoomError, ToolError
from ..messages import Usage
from ..result import Decision, PendingApproval
from ..task import RunContext, RuntimeTask

if TYPE_CHECKING:
    from ..agent import Agent
    from ..limits import Limits
    from ..result import RunResult
    from ..session import Session
    from .loop import RunLoop

__all__ = ["resume_nested", "resume_sub_run", "shown_under", "sub_run"]


async def sub_run(parent: RunLoop, name: str, agent: SubAgent, task: str, *, depth: int,
                  budget: Limits | None) -> str:
    """Run a sub-agent for ``parent``'s ``delegate`` call; its answer."""
    from .loop import RunLoop

    # The policy types its agents by what it reads of them; they are Agents.
    session = parent.session.child(name, agent=cast("Agent", agent))
    loop = RunLoop(session, RuntimeTask(task), RunContext(budget=budget),
                   parent_run_id=parent.run_id, depth=depth)
    loop.subscribers.extend(parent.subscribers)
    parent.emit("delegation.started", {"agent": name, "task": task, "run_id": loop.run_id,
                                       "session_id": session.id, "depth": depth})
    return _answer(parent, name, session, await session._execute(loop), counted=None)


async def resume_sub_run(parent: RunLoop, name: str, agent: SubAgent, paused: Mapping[str, Any],
                         decisions: Mapping[str, Decision],
                         seen: Mapping[str, PendingApproval]) -> str:
    """Resume a sub-run that paused the calling run, with the decisions on its own calls."""
    from ..session import SessionConfig

    session = cast("Agent", agent).session(SessionConfig(id=paused["session_id"],
                                                         store=parent.session.store))
    session.forward_to(parent.session)  # as Session.child does: the caller's views see it
    result = await session.resume(paused["run_id"], dict(decisions), seen)
    return _answer(parent, name, session, result, counted=paused.get("usage"))


def shown_under(paused: SubAgentPaused, via: str) -> tuple[list[PendingApproval], dict[str, Any]]:
    """A paused sub-run's waiting calls as the calling run shows them, under its ``delegate``
    call ``via``, and what :func:`resume_nested` needs later (JSON-ready)."""
    shown = [PendingApproval(call_id=f"{via}/{p.call_id}", name=p.name, args=p.args,
                             reason=f"sub-agent {paused.agent!r}: {p.reason}", via=via,
                             kind=p.kind)
             for p in paused.pending]
    return shown, {"agent": paused.agent, "session_id": paused.session_id,
                   "run_id": paused.run_id, "call_ids": [p.call_id for p in paused.pending],
                   "usage": paused.usage}


async def resume_nested(parent: RunLoop, nested: dict[str, Any], decisions: Mapping[str, Decision],
                        ) -> tuple[dict[str, tuple[str, bool]], list[PendingApproval], dict[str, Any]]:
    """Resume the sub-runs a paused turn waits for (``nested``: delegate call id -> sub-run),
    each with the decisions on its calls. Returns each delegate call's (content, is_error), the
    calls that wait again (a sub-run that asks anew) and their sub-runs."""
    answers: dict[str, tuple[str, bool]] = {}
    again: list[PendingApproval] = []
    waiting: dict[str, Any] = {}
    for via, sub in nested.items():
        own = {call_id: decisions[f"{via}/{call_id}"] for call_id in sub["call_ids"]}
        # The calls the person saw under this delegate call, by the sub-run's own ids.
        seen = {c: parent.seen[f"{via}/{c}"] for c in sub["call_ids"] if f"{via}/{c}" in parent.seen}
        try:
            answers[via] = (await parent.agent.runtime.delegation.resume(parent, sub, own, seen), False)
        except SubAgentPaused as paused:
            shown, waiting[via] = shown_under(paused, via)
            again.extend(shown)
        except LoomError as exc:  # ToolError, or a sub-run that can no longer resume
            answers[via] = (str(exc), True)
    return answers, again, waiting


def _answer(parent: RunLoop, name: str, session: Session, result: RunResult,
            counted: dict[str, int] | None) -> str:
    """What a finished (or paused) sub-run gives the ``delegate`` call. ``counted``: the usage
    of the sub-run already counted towards the caller (before it paused), counted once only."""
    used = cast(dict[str, int], result.usage.to_dict())
    parent.absorb_usage(_not_counted(result.usage, Usage.from_dict(counted)), 0)
    parent.emit("delegation.finished", {"agent": name, "run_id": result.run_id,
                                        "status": result.status, "output": result.text,
                                        "usage": result.usage.to_dict(), "error": result.error})
    if result.status == "needs_approval":
        raise SubAgentPaused(name, session.id, result.run_id, result.pending, used)
    if result.status != "completed":
        raise ToolError(f"Sub-agent {name!r} ended with status {result.status!r}: {result.error}")
    return result.text


def _not_counted(used: Usage, counted: Usage) -> Usage:
    """What of ``used`` is not in ``counted`` yet (a resumed sub-run's usage before its pause)."""
    if counted.empty:
        return used
    cost = None if used.cost is None or counted.cost is None else used.cost - counted.cost
    return Usage(input_tokens=used.input_tokens - counted.input_tokens,
                 output_tokens=used.output_tokens - counted.output_tokens,
                 cache_read_tokens=used.cache_read_tokens - counted.cache_read_tokens,
                 cache_write_tokens=used.cache_write_tokens - counted.cache_write_tokens,
                 requests=used.requests - counted.requests, cost=cost)
