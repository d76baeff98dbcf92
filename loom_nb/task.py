"""RuntimeTask and RunContext: what a run is asked to do, and the inputs and limits for that run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ConfigError
from .media import Document, Image, Media, media_label

if TYPE_CHECKING:
    from .events import TaskData
    from .limits import Limits
    from .messages import Message

__all__ = ["RunContext", "RuntimeTask", "as_task", "check_deps", "user_message"]


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


DepsT = TypeVar("DepsT")


@dataclass(frozen=True, init=False)
class RunContext(Generic[DepsT]):
    """Run-scoped inputs, limits and dependencies; and, inside a tool, the run itself.

    You make one to pass to ``run(prompt, context=RunContext(...))``. A tool parameter annotated
    ``RunContext`` (or ``RunContext[MyDeps]``) gets the run's context when the model calls the
    tool, bound to that run: ``run_id``, ``session``, ``usage`` so far, ``turn`` and
    ``tool_call_id`` are then set. Such a parameter is not in the tool's schema.

    Attributes:
        inputs: data for this run only, rendered into the working context (not kept in history).
        metadata: labels for traces and DataFrames; not shown to the model.
        budget: :class:`~loom_nb.runtime.Limits` for this run, instead of the runtime's.
        deps: your objects for the tools and dynamic instructions (a database client, a user
            id); never shown to the model, never stored. ``run(..., deps=...)`` sets it.
    """

    inputs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    budget: Limits | None = None
    deps: DepsT = field(default=None)  # type: ignore[assignment]
    #: The call a tool was given this context for (None outside a tool).
    tool_call_id: str | None = field(default=None, compare=False)
    _run: Any = field(default=None, repr=False, compare=False)

    def __init__(self, inputs: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                 budget: Limits | None = None, deps: Any = None) -> None:
        object.__setattr__(self, "inputs", dict(inputs or {}))
        object.__setattr__(self, "metadata", dict(metadata or {}))
        object.__setattr__(self, "budget", budget)
        object.__setattr__(self, "deps", deps)
        object.__setattr__(self, "tool_call_id", None)
        object.__setattr__(self, "_run", None)

    def bind(self, run: Any, tool_call_id: str | None = None) -> RunContext[DepsT]:
        """A copy bound to ``run`` (the engine's run loop), for a tool call or instructions."""
        bound: RunContext[DepsT] = RunContext(self.inputs, self.metadata, self.budget, self.deps)
        object.__setattr__(bound, "tool_call_id", tool_call_id)
        object.__setattr__(bound, "_run", run)
        return bound

    def with_deps(self, deps: Any) -> RunContext[Any]:
        """A copy with ``deps``."""
        return RunContext(self.inputs, self.metadata, self.budget, deps)

    def _loop(self, what: str) -> Any:
        if self._run is None:
            raise ConfigError(
                f"RunContext.{what} is only known inside a run: annotate a tool parameter (or "
                f"the argument of callable instructions) with RunContext to get a bound one.")
        return self._run

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self._loop("run_id").run_id)

    @property
    def session(self) -> Any:
        """The :class:`~loom_nb.Session` the run is in."""
        return self._loop("session").session

    @property
    def agent(self) -> Any:
        """The :class:`~loom_nb.Agent` that runs."""
        return self._loop("agent").agent

    @property
    def usage(self) -> Any:
        """The run's :class:`~loom_nb.Usage` so far (every model turn before this point)."""
        return self._loop("usage").usage

    @property
    def turn(self) -> int:
        """How many model turns the run has had so far."""
        return int(self._loop("turn").turns)

    @property
    def task(self) -> RuntimeTask:
        """What the run was asked to do."""
        task: RuntimeTask = self._loop("task").task
        return task

    @property
    def prompt(self) -> str:
        """The run's goal text."""
        return self.task.goal


def check_deps(deps: Any, deps_type: Any, where: str) -> None:
    """Raise a ConfigError when ``deps`` is not a ``deps_type`` (an Agent's ``deps_type=``)."""
    if deps_type is None:
        return
    import typing
    cls = typing.get_origin(deps_type) or deps_type
    if not isinstance(cls, type):
        return  # a type isinstance cannot check (a Protocol alias, a Literal): trusted
    if getattr(cls, "_is_protocol", False) and not getattr(cls, "_is_runtime_protocol", False):
        return
    if not isinstance(deps, cls):
        shown = getattr(deps_type, "__name__", repr(deps_type))
        given = "no deps" if deps is None else f"deps of type {type(deps).__name__}"
        raise ConfigError(f"{where} declares deps_type={shown} but the run got {given}; pass "
                          f"run(..., deps={shown}(...)).")


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


#: The most images and documents one prompt may hold.
MAX_PROMPT_MEDIA = 100


def _parts_task(parts: list[Any]) -> RuntimeTask:
    for index, part in enumerate(parts):
        if not isinstance(part, (str, Image, Document)):
            hint = (" Wrap it: loom_nb.Image(...)." if type(part).__module__.startswith(("PIL.", "matplotlib."))
                    else "")
            raise ConfigError(f"Prompt part {index} is {type(part).__name__}; a prompt list takes "
                              f"str, loom_nb.Image and loom_nb.Document.{hint}")
    texts = [p for p in parts if isinstance(p, str) and p.strip()]
    media = tuple(p for p in parts if not isinstance(p, str))
    if len(media) > MAX_PROMPT_MEDIA:
        raise ConfigError(f"The prompt has {len(media)} images and documents; at most "
                          f"{MAX_PROMPT_MEDIA} go in one prompt (Anthropic's limit is 100 images "
                          f"a request). Send fewer, or over several runs.")
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
