"""One run's view of the :class:`~loom_nb.context.ContextProtocol`.

The run loop asks this object for the snapshot of each request (after compaction or renewal when
the budget is pressed), for the partition contents not yet recorded in an event, and to fit an
item into the budget. What does not change within a run (the budget, and the rendered fixed
partitions until memory, notes, instructions or tools change) is computed once here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .._compaction import Summary, compact, renew, summarize
from ..context import (
    Budget,
    ContextSnapshot,
    PartitionName,
    RenderedContext,
    estimate_tokens,
    render_context,
    render_memory,
    render_working,
)
from ..errors import ConfigError
from ..events import CompactedData, RenewedData

if TYPE_CHECKING:
    from .loop import RunLoop

__all__ = ["RunWindow"]


class RunWindow:
    """The context window of one run (see the module docstring)."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        self._rendered: tuple[tuple[Any, ...], RenderedContext] | None = None
        self._budget: Budget | None = None
        self._item_limit = 0  # tokens one message part may use (see ContextProtocol.max_item)
        self._shown: dict[PartitionName, str] = {}  # partition contents already recorded in an event

    def snapshot(self) -> ContextSnapshot:
        state = self.loop.session.context
        return self.loop.agent.runtime.context.snapshot(
            budget=self.budget(), factor=state.factor, rendered=self.rendered(),
            history_tokens=state.history_tokens, messages=len(state.history))

    def rendered(self) -> RenderedContext:
        """The non-history partitions, rendered again only when what they show has changed."""
        loop = self.loop
        state, notes, agent = loop.session.context, loop.session.notes, loop.agent
        tools = agent.tool_definitions
        system = loop.system_text
        key = (id(state.memory), len(state.memory), len(notes), system, id(tools))
        if self._rendered is None or self._rendered[0] != key:
            self._rendered = (key, render_context({
                "system": system, "skill": agent.skill_prompt,
                "memory": render_memory(state.memory),
                "working": render_working(loop.task, loop.context, observed=loop.observed,
                                          notes=notes)}, tools))
        return self._rendered[1]

    def budget(self) -> Budget:
        if self._budget is None:  # the model and the protocol do not change within a run
            protocol = self.loop.agent.runtime.context
            self._budget = budget = protocol.budget(self.loop.agent.model)
            self._item_limit = int(budget.available * protocol.max_item)
        return self._budget

    def unrecorded(self, snapshot: ContextSnapshot) -> dict[PartitionName, str]:
        """The partitions whose content no event has recorded yet (each content once per run)."""
        shown = self._shown
        changed = {k: v for k, v in snapshot.content.items() if shown.get(k) != v}
        if changed:
            shown.update(changed)
        return changed

    def fit(self, text: str) -> str:
        """``text``, cut with a marker if it alone would use more than ``max_item`` of the budget."""
        factor = self.loop.session.context.factor
        if estimate_tokens(text) * factor <= self._item_limit:  # the usual case, without a call
            return text
        return self.loop.agent.runtime.context.fit(text, self.budget(), factor)

    async def make_room(self) -> ContextSnapshot:
        """The snapshot for the next request, after compaction or renewal if the budget is pressed."""
        loop = self.loop
        protocol, continuity = loop.agent.runtime.context, loop.agent.runtime.continuity
        snapshot = self.snapshot()
        budget = snapshot.budget.available
        if snapshot.total <= protocol.compact_at * budget:  # the usual case: nothing to do
            return snapshot
        measure = lambda: self.snapshot().total  # noqa: E731
        common: dict[str, Any] = {"measure": measure, "summarize_fn": self._summarize, "goal": loop.task.goal,
                  "checkpoint": loop.session.checkpoint}
        data = await compact(loop.session.context, protocol, continuity, budget=budget, **common)
        loop.emit("context.compacted", cast(CompactedData, {**data, "budget": budget}))
        memory_tokens = lambda: self.snapshot().tokens["memory"]  # noqa: E731
        if measure() > protocol.compact_at * budget or memory_tokens() > protocol.max_memory * budget:
            data = await renew(loop.session.context, continuity,
                               open_tasks=loop.session.open_tasks(), **common)
            loop.emit("context.renewed", cast(RenewedData, {**data, "budget": budget}))
        snapshot = self.snapshot()
        if snapshot.total > budget:
            fixed = snapshot.total - snapshot.tokens["history"]
            raise ConfigError(
                f"The context does not fit the model's budget of {budget} tokens even after "
                f"renewal: instructions, tools, skills and working context use {fixed} tokens and "
                f"the recent history {snapshot.tokens['history']}. Shorten the instructions or "
                f"inputs, lower ContextProtocol(max_item=...), or use a model with a larger "
                f"context_window.")
        return snapshot

    async def _summarize(self, messages: Any, instructions: str) -> Summary:
        loop = self.loop
        summary = await summarize(loop.agent.runtime.context.summarizer, loop.agent.model,
                                  messages, instructions)
        loop.usage = loop.usage + summary.usage  # a summary is the run's cost
        return summary
