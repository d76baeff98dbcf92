"""Instructions: the parts of the system partition, static or evaluated per run.

``Agent(instructions=...)`` takes a str, a function (sync or async) of the run's
:class:`~loom_nb.RunContext` or of nothing, or a list of these. The capabilities' instructions
follow as parts of their own. A function is called once per run, before the first model request
(and again when a paused run resumes), with the run's bound context; what it returns must be a
str. Each part keeps a label, so the context view can show what each contributed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import ConfigError

if TYPE_CHECKING:
    from .task import RunContext

__all__ = ["InstructionPart", "Instructions", "instruction_parts", "render_parts"]

#: What ``Agent(instructions=...)`` takes.
Instructions: TypeAlias = (
    "str | Callable[..., str | Awaitable[str]] | Sequence[str | Callable[..., str | Awaitable[str]]]")


@dataclass(frozen=True, slots=True)
class InstructionPart:
    """One part of the system partition: its label and its text, or the function that makes it."""

    label: str
    source: str | Callable[..., Any]
    #: Whether the function takes the run context (else it is called with no argument).
    takes_context: bool = False

    @property
    def dynamic(self) -> bool:
        return not isinstance(self.source, str)


def instruction_parts(instructions: Any, capabilities: Sequence[tuple[str, str]]
                      ) -> tuple[InstructionPart, ...]:
    """The labelled parts: the agent's instructions, then each capability's (name, text)."""
    given = list(instructions) if isinstance(instructions, (list, tuple)) else [instructions]
    several = len(given) > 1
    parts: list[InstructionPart] = []
    for index, item in enumerate(given):
        label = f"instructions[{index}]" if several else "instructions"
        if isinstance(item, str):
            if item.strip():
                parts.append(InstructionPart(label, item.strip()))
        elif callable(item):
            name = getattr(item, "__name__", type(item).__name__)
            parts.append(InstructionPart(f"{label}: {name}()", item, _takes_context(item, name)))
        else:
            raise ConfigError(
                f"Agent(instructions=...) takes a str, a function of the RunContext (sync or "
                f"async), or a list of these; item {index} is {type(item).__name__}.")
    parts += [InstructionPart(f"capability {name}", text.strip())
              for name, text in capabilities if text.strip()]
    return tuple(parts)


def _takes_context(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # a builtin without a signature: call it with the context
        return True
    if len(params) > 1:
        raise ConfigError(f"Instructions function {name} takes {len(params)} arguments; it takes "
                          f"the RunContext or nothing.")
    return bool(params)


async def render_parts(parts: Sequence[InstructionPart], context: RunContext[Any]
                       ) -> list[tuple[str, str]]:
    """Each part's (label, text) for this run; functions are called here, in order."""
    rendered: list[tuple[str, str]] = []
    for part in parts:
        if isinstance(part.source, str):
            rendered.append((part.label, part.source))
            continue
        try:
            value = part.source(context) if part.takes_context else part.source()
            if inspect.isawaitable(value):
                value = await value
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - the run fails with what the function raised
            raise ConfigError(f"The instructions function {part.label.split(': ')[-1]} raised "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(value, str):
            raise ConfigError(f"The instructions function {part.label.split(': ')[-1]} returned "
                              f"{type(value).__name__}; it must return a str.")
        if value.strip():
            rendered.append((part.label, value.strip()))
    return rendered


def joined(parts: Sequence[tuple[str, str]]) -> str:
    """The system partition's text: the parts' texts, a blank line apart."""
    return "\n\n".join(text for _, text in parts if text)
