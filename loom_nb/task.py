"""RuntimeTask and RunContext: what a run is asked to do, and the inputs and limits for that run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .media import Document, Image, Media, media_label

if TYPE_CHECKING:
    from .events import TaskData
    from .limits import Limits
    from .messages import Message

__all__ = ["RunContext", "RuntimeTask", "as_task", "user_message"]


# init=False: a hand-written __init__ copies the mutable inputs and checks the goal.
@dataclass(frozen=True, init=False)
class RuntimeTask:
    """A structured work request.

    Attributes:
        goal: what to do; it becomes the run's user message.
        inputs: data for the task, rendered into the run's working context.
        criteria: what a good answer satisfies, shown to the model (and checked by quality gates).
        metadata: labels for traces and DataFrames; not shown to the model.
        attachments: images and documents sent with the goal (after it, in the user message).
    """

    goal: str
    inputs: dict[str, Any] = field(default_factory=dict)
    criteria: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[Media, ...] = ()
    #: The prompt's parts in the order given (a list prompt); empty for a plain goal.
    parts: tuple[str | Media, ...] = field(default=(), repr=False)

    def __init__(self, goal: str, inputs: dict[str, Any] | None = None,
                 criteria: list[str] | None = None, metadata: dict[str, Any] | None = None,
                 *, attachments: tuple[Media, ...] | list[Media] = ()) -> None:
        if not isinstance(goal, str) or not goal.strip():
            raise ConfigError("RuntimeTask needs a goal: a non-empty string saying what to do.")
        for item in attachments:
            if not isinstance(item, (Image, Document)):
                raise ConfigError(f"RuntimeTask(attachments=...) takes Image and Document parts, "
                                  f"not {type(item).__name__}.")
        object.__setattr__(self, "goal", goal)
        object.__setattr__(self, "inputs", dict(inputs or {}))
        object.__setattr__(self, "criteria", [str(c) for c in (criteria or [])])
        object.__setattr__(self, "metadata", dict(metadata or {}))
        object.__setattr__(self, "attachments", tuple(attachments))
        object.__setattr__(self, "parts", ())

    def to_dict(self) -> TaskData:
        data: TaskData = {"goal": self.goal, "inputs": self.inputs, "criteria": self.criteria,
                          "metadata": self.metadata}
        if self.attachments:  # references only: the bytes are in the history's blobs
            data["attachments"] = [{**a.to_dict({}), "label": media_label(a)} for a in self.attachments]
        return data


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


#: What a run takes: a prompt, a list of prompt parts, or a task.
Prompt = str | RuntimeTask | list[str | Image | Document] | tuple[str | Image | Document, ...]


def as_task(prompt_or_task: Prompt | Image | Document) -> RuntimeTask:
    """A :class:`RuntimeTask` from a prompt string, a list of parts (``str``, Image, Document),
    or a task."""
    if isinstance(prompt_or_task, RuntimeTask):
        return prompt_or_task
    if isinstance(prompt_or_task, str):
        return RuntimeTask(prompt_or_task)
    if isinstance(prompt_or_task, (Image, Document)):
        prompt_or_task = [prompt_or_task]
    if isinstance(prompt_or_task, (list, tuple)):
        return _parts_task(list(prompt_or_task))
    raise ConfigError(
        f"A run takes a prompt (str), a list of parts (str, Image, Document) or a RuntimeTask, "
        f"not {type(prompt_or_task).__name__}."
    )


def _parts_task(parts: list[Any]) -> RuntimeTask:
    for index, part in enumerate(parts):
        if not isinstance(part, (str, Image, Document)):
            hint = (" Wrap it: loom_nb.Image(...)." if type(part).__module__.startswith(("PIL.", "matplotlib."))
                    else "")
            raise ConfigError(f"Prompt part {index} is {type(part).__name__}; a prompt list takes "
                              f"str, loom_nb.Image and loom_nb.Document.{hint}")
    texts = [p for p in parts if isinstance(p, str) and p.strip()]
    media = tuple(p for p in parts if not isinstance(p, str))
    if not texts and not media:
        raise ConfigError("The prompt list is empty: give at least one str, Image or Document.")
    goal = "\n\n".join(texts) or "(see the attached " + ", ".join(media_label(m) for m in media) + ")"
    task = RuntimeTask(goal, attachments=media)
    object.__setattr__(task, "parts", tuple(p for p in parts if not isinstance(p, str) or p.strip()))
    return task


def user_message(task: RuntimeTask, fit: Callable[[str], str]) -> Message:
    """The run's user message: the goal's text (each text part fitted to the budget) and its
    images and documents, in the order the prompt gave them."""
    from .messages import Message, TextPart

    given: tuple[str | Media, ...] = task.parts or (task.goal, *task.attachments)
    return Message(role="user", parts=tuple(TextPart(text=fit(p)) if isinstance(p, str) else p
                                            for p in given))
