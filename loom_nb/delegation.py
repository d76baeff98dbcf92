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
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import ConfigError, SubAgentPaused, ToolError
from .tools import Tool, tool

if TYPE_CHECKING:
    import asyncio

    from .limits import Limits
    from .result import Decision, PendingApproval

__all__ = ["CURRENT_RUN", "DelegationPolicy", "SubAgent", "SubAgentPaused", "SubRunner"]


class SubAgent(Protocol):
    """What the policy reads of a sub-agent (an :class:`~loom_nb.Agent`)."""

    #: A str, a function, or a list of these (see ``Agent(instructions=...)``).
    @property
    def instructions(self) -> object: ...


class SubRunner(Protocol):
    """What the policy needs from the run whose ``delegate`` call is executing: its depth, and
    sub-runs started and resumed for it. ``loom_nb.engine`` implements it; the policy only decides
    whether a sub-run may happen (agent, depth, parallel slots, budget)."""

    @property
    def depth(self) -> int: ...
    async def sub_run(self, name: str, agent: SubAgent, task: str, *, depth: int,
                      budget: Limits | None) -> str:
        """Run ``agent`` on ``task`` in a nested session; its answer (raises SubAgentPaused or
        ToolError when it does not complete)."""
    async def resume_sub_run(self, name: str, agent: SubAgent, paused: Mapping[str, Any],
                             decisions: Mapping[str, Decision],
                             seen: Mapping[str, PendingApproval]) -> str:
        """Resume the paused sub-run ``paused`` with a person's decisions; its answer."""


#: The run whose tool is executing (the engine sets it); a delegate call reads its parent here.
CURRENT_RUN: contextvars.ContextVar[SubRunner | None] = contextvars.ContextVar(
    "loom_current_run", default=None)


class DelegationPolicy:
    """Who the model may delegate to, and within which limits. Build with the static methods."""

    def __init__(self, agents: Mapping[str, SubAgent] | None = None, *, max_depth: int = 1,
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
    def subagents(agents: Mapping[str, SubAgent], *, max_depth: int = 1, max_parallel: int = 2,
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

        delegate.__annotations__ = {"agent": Literal[names], "task": str, "return": str}
        delegate.__doc__ = (f"Hand a self-contained subtask to a sub-agent and get its answer.\n\n"
                            f"Sub-agents:\n{roster}\n\nArgs:\n    agent: Which sub-agent.\n"
                            f"    task: The subtask, with everything the sub-agent needs to know.")
        return tool(name=self.tool_name)(delegate)

    async def _delegate(self, name: str, task: str) -> str:
        parent = CURRENT_RUN.get()
        if parent is None:
            raise ToolError("delegate can only be called by a running agent.")
        depth = parent.depth + 1
        if depth > self.max_depth:
            raise ToolError(f"Delegation depth limit reached (max_depth={self.max_depth}): do this "
                            f"subtask yourself instead of delegating it.")
        async with self._slot():
            return await parent.sub_run(name, self.agents[name], task, depth=depth,
                                        budget=self.budget)

    async def resume(self, parent: SubRunner, nested: Mapping[str, Any],
                     decisions: Mapping[str, Decision],
                     seen: Mapping[str, PendingApproval] | None = None) -> str:
        """Resume a sub-run paused for approval (``nested``: what the calling run kept of it)
        with a person's decisions on its calls (``seen``: those calls as the person saw them, by
        the sub-run's ids); its answer, for the ``delegate`` call."""
        agent = self.agents.get(nested["agent"])
        if agent is None:
            raise ToolError(f"The sub-agent {nested['agent']!r} is no longer in this agent's "
                            f"DelegationPolicy, so its paused run {nested['run_id']} cannot resume.")
        async with self._slot():
            return await parent.resume_sub_run(nested["agent"], agent, nested, decisions, seen or {})

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of ``max_parallel`` sub-runs at once. A thread semaphore (acquired off the loop)
        because sub-runs may come from several event loops."""
        import asyncio

        if not self._slots.acquire(blocking=False):  # every slot busy: wait off the loop
            acquiring = asyncio.ensure_future(asyncio.to_thread(self._slots.acquire))
            try:
                await asyncio.shield(acquiring)
            except BaseException:  # cancelled while waiting: the thread may still get the slot
                acquiring.add_done_callback(self._release_if_acquired)
                raise
        try:
            yield
        finally:
            self._slots.release()

    def _release_if_acquired(self, acquiring: asyncio.Future[bool]) -> None:
        if not acquiring.cancelled() and acquiring.exception() is None:
            self._slots.release()



def _first_line(text: object) -> str:
    # Callable instructions have no text before a run: the roster says "a sub-agent".
    if isinstance(text, (list, tuple)):
        text = next((t for t in text if isinstance(t, str) and t.strip()), "")
    if not isinstance(text, str):
        return ""
    return text.strip().splitlines()[0][:200] if text.strip() else ""

