"""DelegationPolicy: whether and how the model may hand subtasks to sub-agents.

``DelegationPolicy.subagents({"researcher": agent, ...})`` gives the model a ``delegate`` tool
(agent name and task). Each call is a full run of that agent in a nested session of the same
store, linked to the calling run by ``parent_run_id``; its events reach the caller's live views,
and ``delegation.started`` / ``delegation.finished`` events in the calling run point at it.

Limits: ``max_depth`` (a sub-agent may delegate further only this deep), ``max_parallel`` (sub-runs
at once across the agent; calls beyond wait), and ``budget`` (:class:`Limits` for each sub-run).
What the sub-run used counts towards the calling run's usage.

A sub-run that pauses for approval pauses the calling run too: its waiting calls become the
caller's (``PendingApproval.via`` names the ``delegate`` call), so a person approves them where
they approve the caller's own calls. Resuming the caller resumes the sub-run with those decisions,
and its answer becomes the ``delegate`` call's result.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError, SubAgentPaused, ToolError
from .task import RunContext, RuntimeTask
from .tools import Tool, tool

if TYPE_CHECKING:
    from .agent import Agent
    from .result import PendingApproval, RunResult
    from .run import RunLoop
    from .runtime import Limits
    from .session import Session

__all__ = ["CURRENT_RUN", "DelegationPolicy", "SubAgentPaused", "resume_nested"]

#: The run whose tool is executing; a delegate call reads its parent from here.
CURRENT_RUN: contextvars.ContextVar[RunLoop | None] = contextvars.ContextVar("loom_current_run", default=None)


class DelegationPolicy:
    """Who the model may delegate to, and within which limits. Build with the static methods."""

    def __init__(self, agents: Mapping[str, Agent] | None = None, *, max_depth: int = 1,
                 max_parallel: int = 2, budget: Limits | None = None, tool_name: str = "delegate") -> None:
        if max_depth < 1 or max_parallel < 1:
            raise ConfigError("DelegationPolicy needs max_depth >= 1 and max_parallel >= 1.")
        self.agents = dict(agents or {})
        self.max_depth = max_depth
        self.max_parallel = max_parallel
        self.budget = budget
        self.tool_name = tool_name
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._tool = self._make_tool() if self.agents else None

    def __repr__(self) -> str:
        if not self.agents:
            return "DelegationPolicy.none()"
        return f"DelegationPolicy.subagents({list(self.agents)}, max_depth={self.max_depth})"

    @staticmethod
    def none() -> DelegationPolicy:
        return DelegationPolicy()

    @staticmethod
    def subagents(agents: Mapping[str, Agent], *, max_depth: int = 1, max_parallel: int = 2,
                  budget: Limits | None = None) -> DelegationPolicy:
        if not agents:
            raise ConfigError("DelegationPolicy.subagents needs at least one agent: {'name': agent}.")
        return DelegationPolicy(agents, max_depth=max_depth, max_parallel=max_parallel, budget=budget)

    @property
    def tools(self) -> tuple[Tool, ...]:
        return (self._tool,) if self._tool else ()

    def _make_tool(self) -> Tool:
        names = tuple(self.agents)
        roster = "\n".join(f"- {name}: {_first_line(agent.instructions) or 'a sub-agent'}"
                           for name, agent in self.agents.items())

        async def delegate(agent: str, task: str) -> str:
            return await self._delegate(agent, task)

        delegate.__annotations__ = {"agent": Literal[names], "task": str, "return": str}  # type: ignore[valid-type]
        delegate.__doc__ = (f"Hand a self-contained subtask to a sub-agent and get its answer.\n\n"
                            f"Sub-agents:\n{roster}\n\nArgs:\n    agent: Which sub-agent.\n"
                            f"    task: The subtask, with everything the sub-agent needs to know.")
        return tool(name=self.tool_name)(delegate)

    async def _delegate(self, name: str, task: str) -> str:
        import asyncio
        parent = CURRENT_RUN.get()
        if parent is None:
            raise ToolError("delegate can only be called by a running agent.")
        depth = parent.depth + 1
        if depth > self.max_depth:
            raise ToolError(f"Delegation depth limit reached (max_depth={self.max_depth}): do this "
                            f"subtask yourself instead of delegating it.")
        # A thread semaphore (acquired off the loop) because sub-runs may come from several loops.
        await asyncio.to_thread(self._slots.acquire)
        try:
            return await self._sub_run(parent, name, task, depth)
        finally:
            self._slots.release()

    async def _sub_run(self, parent: RunLoop, name: str, task: str, depth: int) -> str:
        from .run import RunLoop

        agent = self.agents[name]
        session = parent.session.child(name, agent=agent)
        loop = RunLoop(session, RuntimeTask(task), RunContext(budget=self.budget),
                       parent_run_id=parent.run_id, depth=depth)
        loop.subscribers.extend(parent.subscribers)
        parent.emit("delegation.started", {"agent": name, "task": task, "run_id": loop.run_id,
                                           "session_id": session.id, "depth": depth})
        return _answer(parent, name, session, await session._execute(loop), counted=None)

    async def resume(self, parent: RunLoop, nested: dict[str, Any],
                     decisions: dict[str, str | None],
                     seen: Mapping[str, PendingApproval] | None = None) -> str:
        """Resume a sub-run paused for approval (``nested``: what :meth:`SubAgentPaused.nested`
        kept) with a person's decisions on its calls (``seen``: those calls as the person saw
        them, by the sub-run's ids); its answer, for the ``delegate`` call."""
        import asyncio

        from .session import SessionConfig

        agent = self.agents.get(nested["agent"])
        if agent is None:
            raise ToolError(f"The sub-agent {nested['agent']!r} is no longer in this agent's "
                            f"DelegationPolicy, so its paused run {nested['run_id']} cannot resume.")
        session = agent.session(SessionConfig(id=nested["session_id"], store=parent.session.store))
        if parent.session.notify not in session._subscribers:
            session._subscribers.append(parent.session.notify)  # as Session.child does
        await asyncio.to_thread(self._slots.acquire)
        try:
            result = await session.resume(nested["run_id"], decisions, seen)
        finally:
            self._slots.release()
        return _answer(parent, nested["agent"], session, result, counted=nested.get("usage"))


async def resume_nested(parent: RunLoop, nested: dict[str, Any], decisions: Mapping[str, str | None],
                        ) -> tuple[dict[str, tuple[str, bool]], list[PendingApproval], dict[str, Any]]:
    """Resume the sub-runs a paused turn waits for (``nested``: delegate call id -> sub-run),
    each with the decisions on its calls. Returns each delegate call's (content, is_error), the
    calls that wait again (a sub-run that asks anew) and their sub-runs."""
    from .errors import LoomError

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
            shown, waiting[via] = paused.nested(via)
            again.extend(shown)
        except LoomError as exc:  # ToolError, or a sub-run that can no longer resume
            answers[via] = (str(exc), True)
    return answers, again, waiting


def _answer(parent: RunLoop, name: str, session: Session, result: RunResult,
            counted: dict[str, int] | None) -> str:
    """What a finished (or paused) sub-run gives the ``delegate`` call. ``counted``: the usage
    of the sub-run already counted towards the caller (before it paused), counted once only."""
    from .messages import Usage

    used = result.usage.to_dict()
    parent.absorb_usage(Usage(**{k: n - (counted or {}).get(k, 0) for k, n in used.items()}), 0)
    parent.emit("delegation.finished", {"agent": name, "run_id": result.run_id,
                                        "status": result.status, "output": result.output,
                                        "usage": result.usage.to_dict(), "error": result.error})
    if result.status == "needs_approval":
        raise SubAgentPaused(name, session.id, result.run_id, result.pending, used)
    if result.status != "completed":
        raise ToolError(f"Sub-agent {name!r} ended with status {result.status!r}: {result.error}")
    return result.output


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""

