"""RuntimeTask and RunContext: what a run is asked to do, and the inputs and limits for that run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .events import TaskData
    from .limits import Limits

__all__ = ["RunContext", "RuntimeTask", "as_task"]


# init=False: a hand-written __init__ copies the mutable inputs and checks the goal.
@dataclass(frozen=True, init=False)
class RuntimeTask:
    """A structured work request.

    Attributes:
        goal: what to do; it becomes the run's user message.
        inputs: data for the task, rendered into the run's working context.
        criteria: what a good answer satisfies, shown to the model (and checked by quality gates).
        metadata: labels for traces and DataFrames; not shown to the model.
    """

    goal: str
    inputs: dict[str, Any] = field(default_factory=dict)
    criteria: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __init__(self, goal: str, inputs: dict[str, Any] | None = None,
                 criteria: list[str] | None = None, metadata: dict[str, Any] | None = None) -> None:
        if not isinstance(goal, str) or not goal.strip():
            raise ConfigError("RuntimeTask needs a goal: a non-empty string saying what to do.")
        object.__setattr__(self, "goal", goal)
        object.__setattr__(self, "inputs", dict(inputs or {}))
        object.__setattr__(self, "criteria", [str(c) for c in (criteria or [])])
        object.__setattr__(self, "metadata", dict(metadata or {}))

    def to_dict(self) -> TaskData:
        return {"goal": self.goal, "inputs": self.inputs, "criteria": self.criteria,
                "metadata": self.metadata}


@dataclass(frozen=True, init=False)
class RunContext:
    """Run-scoped inputs and limits.

    Attributes:
        inputs: data for this run only, rendered into the working context (not kept in history).
        metadata: labels for traces and DataFrames; not shown to the model.
        budget: :class:`~loom_nb.runtime.Limits` for this run, instead of the runtime's.
    """

    inputs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    budget: Limits | None = None

    def __init__(self, inputs: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                 budget: Limits | None = None) -> None:
        object.__setattr__(self, "inputs", dict(inputs or {}))
        object.__setattr__(self, "metadata", dict(metadata or {}))
        object.__setattr__(self, "budget", budget)


def as_task(prompt_or_task: str | RuntimeTask) -> RuntimeTask:
    """A :class:`RuntimeTask` from a prompt string or a task."""
    if isinstance(prompt_or_task, RuntimeTask):
        return prompt_or_task
    if isinstance(prompt_or_task, str):
        return RuntimeTask(prompt_or_task)
    raise ConfigError(
        f"A run takes a prompt (str) or a RuntimeTask, not {type(prompt_or_task).__name__}."
    )
