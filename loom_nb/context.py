"""ContextProtocol: what the model sees, partition by partition, within a token budget.

Partitions, in the order they are rendered:

* ``system``: the agent's instructions and its capabilities' instructions;
* ``skill``: the skill index of skill capabilities;
* ``memory``: carried-over summaries (from compaction and renewal);
* ``working``: the session's notes, this run's task inputs and criteria, RunContext inputs and
  the signals observed since the last run (run-scoped, never stored in history; the run's goal
  is its user message, kept visible in history even through compaction);
* ``history``: the session's messages, then this run's.

The budget is the model's context window (given, known, or a default) minus the output reserve.
Before each model request the protocol checks the budget: past ``compact_at`` it compacts
(shrinks old tool results, then summarizes older turns into memory, keeping recent turns whole);
when that is not enough it renews (a handoff note replaces memory and history, under the
:class:`~loom_nb.continuity.ContinuityPolicy`). Each request carries a snapshot of the partitions
with their token counts, recorded in its ``model.request`` event.

Token counts are estimates (about four characters a token) scaled by a factor that each
provider-reported input count calibrates; the factor never goes below 1, so the local estimate is
a floor that an under-reporting server cannot lower.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._tokens import estimate_tokens, message_tokens, tool_tokens
from .errors import ConfigError
from .events import PartitionName
from .messages import Message
from .models import Model, ModelRequest, ToolDefinition
from .models.windows import DEFAULT_WINDOW, WindowSource, known_window
from .signals import RuntimeSignal
from .task import RunContext, RuntimeTask

if TYPE_CHECKING:
    from .events import ContextData

__all__ = [
    "PARTITIONS",
    "Budget",
    "ContextProtocol",
    "ContextSnapshot",
    "PartitionName",
    "RenderedContext",
    "Summarizer",
    "estimate_tokens",
    "message_tokens",
    "render_context",
    "tool_tokens",
    "render_system",
    "render_working",
]

PARTITIONS: tuple[PartitionName, ...] = ("system", "skill", "memory", "working", "history")
#: A summarizer: a Model, or a function from messages (and instructions) to summary text.
Summarizer: TypeAlias = "Model | Callable[[Sequence[Message], str], str] | Literal['extractive']"
TRUNCATION_MARK = "[... {n} characters cut here by loom_nb to fit the context budget ...]"


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How many tokens a request may use."""

    window: int
    output_reserve: int
    source: WindowSource
    #: Tokens a request may use: the window minus the output reserve (read on every turn).
    available: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "available", max(self.window - self.output_reserve, 1))


# Not frozen: one is made per tool call (or model request), and frozen construction is slow.
@dataclass(slots=True, kw_only=True)
class ContextSnapshot:
    """The partitions of one request: their tokens (calibrated) and, on demand, their content."""

    tokens: dict[PartitionName, int]
    #: The sum of ``tokens``.
    total: int
    budget: Budget
    messages: int
    content: dict[PartitionName, str] = field(default_factory=dict, repr=False)

    @property
    def used(self) -> float:
        """The share of the budget in use (1.0 = full)."""
        return self.total / self.budget.available

    def to_dict(self) -> ContextData:
        budget, total = self.budget, self.total
        return {"partitions": dict(self.tokens), "total_tokens": total,
                "budget": budget.available, "window": budget.window,
                "output_reserve": budget.output_reserve, "window_source": budget.source,
                "used": round(total / budget.available, 4), "messages": self.messages}


def render_system(instructions: str, capability_instructions: Sequence[str]) -> str:
    blocks = [instructions.strip(), *(text.strip() for text in capability_instructions)]
    return "\n\n".join(b for b in blocks if b)


def render_working(task: RuntimeTask, context: RunContext,
                   observed: Sequence[RuntimeSignal] = (), notes: Sequence[str] = ()) -> str:
    """The run-scoped working partition as text (empty when there is nothing to show)."""
    sections = []
    if notes:
        sections.append("Notes:\n" + "\n".join(f"- {n}" for n in notes))
    if task.inputs:
        sections.append("Task inputs:\n" + _render_mapping(task.inputs))
    if task.criteria:
        sections.append("Acceptance criteria:\n" + "\n".join(f"- {c}" for c in task.criteria))
    if context.inputs:
        sections.append("Run inputs:\n" + _render_mapping(context.inputs))
    if observed:
        sections.append("Signals observed since the last run (for your information):\n"
                        + "\n".join(f"- {s.describe()}" for s in observed))
    return "\n\n".join(sections)


def render_memory(memory: Sequence[str]) -> str:
    if not memory:
        return ""
    return "Memory of earlier work in this session:\n\n" + "\n\n".join(memory)


def _render_mapping(values: dict[str, Any]) -> str:
    lines = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        lines.append(f"- {key}: {text}")
    return "\n".join(lines)


@dataclass(eq=False, kw_only=True)
class ContextProtocol:
    """Partitions, budget, compaction and renewal (see the module docstring).

    Args:
        window: the context window in tokens; default: the model's ``context_window``, else a
            known window for the model, else ``DEFAULT_WINDOW``.
        output_reserve: tokens kept free for the answer.
        compact_at: compact when a request would use more than this share of the budget.
        compact_to: a compaction aims below this share.
        shrink_over: old tool results above this many tokens are shrunk first.
        max_item: no single message part may use more than this share of the budget; a larger
            one is cut with a visible marker when it enters the history.
        max_memory: when carried summaries use more than this share of the budget, a renewal
            folds them into one handoff note.
        summarizer: who writes summaries and handoff notes: a Model, a function
            ``(messages, instructions) -> str``, or ``"extractive"`` (no model call). Default: the
            agent's model, or ``"extractive"`` for a scripted model, which cannot know when a
            summary will be asked of it.
    """

    window: int | None = None
    output_reserve: int = 8_192
    compact_at: float = 0.8
    compact_to: float = 0.5
    shrink_over: int = 500
    max_item: float = 0.5
    max_memory: float = 0.25
    summarizer: Summarizer | None = None

    def __post_init__(self) -> None:
        if not 0 < self.compact_to < self.compact_at <= 1:
            raise ConfigError("ContextProtocol needs 0 < compact_to < compact_at <= 1, e.g. 0.5 and 0.8.")
        if not 0 < self.max_item <= 1:
            raise ConfigError("ContextProtocol(max_item=...) is a share of the budget in (0, 1].")

    def budget(self, model: Model) -> Budget:
        if self.window is not None:
            window, source = self.window, "given"
        elif model.context_window is not None:
            window, source = model.context_window, "given"
        else:
            known = known_window(model.provider, model.name)
            window, source = (known, "known") if known else (DEFAULT_WINDOW, "default")
        reserve = min(self.output_reserve, window // 2)
        return Budget(window=window, output_reserve=reserve, source=source)  # type: ignore[arg-type]

    def snapshot(self, *, budget: Budget, factor: float, rendered: RenderedContext,
                 history_tokens: int, messages: int) -> ContextSnapshot:
        raw, ceil = rendered.raw, math.ceil
        tokens = {"system": ceil(raw["system"] * factor), "skill": ceil(raw["skill"] * factor),
                  "memory": ceil(raw["memory"] * factor), "working": ceil(raw["working"] * factor),
                  "history": ceil(history_tokens * factor)}
        return ContextSnapshot(tokens=tokens, total=sum(tokens.values()), budget=budget,  # type: ignore[arg-type]
                               messages=messages, content=rendered.content)

    def fit(self, text: str, budget: Budget, factor: float) -> str:
        """``text`` unchanged, or cut in the middle with a marker if it alone exceeds ``max_item``."""
        limit_tokens = int(budget.available * self.max_item)
        if estimate_tokens(text) * factor <= limit_tokens:
            return text
        keep = max(int(limit_tokens / factor * 4) - 120, 200)
        head, tail = text[: keep * 3 // 4], text[-(keep // 4):]
        return head + "\n" + TRUNCATION_MARK.format(n=len(text) - len(head) - len(tail)) + "\n" + tail


@dataclass(slots=True, frozen=True)
class RenderedContext:
    """The non-history partitions of a run, with what each request needs from them.

    Made once and kept while memory, notes and instructions stay the same, so a model turn does
    not join the system prompt or estimate the partitions again.
    """

    content: dict[PartitionName, str]
    #: The partitions as one system prompt, in partition order.
    system: str
    #: Token estimates before calibration; the tool definitions count towards ``system``.
    raw: dict[PartitionName, int]


def render_context(partitions: dict[PartitionName, str],
                   tools: Sequence[ToolDefinition]) -> RenderedContext:
    raw = {name: estimate_tokens(partitions.get(name, "")) for name in PARTITIONS[:-1]}
    raw["system"] += tool_tokens(tools)
    system = "\n\n".join(partitions[name] for name in PARTITIONS[:-1] if partitions.get(name))
    return RenderedContext(content=partitions, system=system, raw=raw)


def build_request(*, rendered: RenderedContext, history: Sequence[Message],
                  tools: Sequence[ToolDefinition]) -> ModelRequest:
    """The request: the non-history partitions as the system prompt, then the messages."""
    return ModelRequest(system=rendered.system, messages=tuple(history), tools=tuple(tools))
