"""A run's steering of each model turn: structured output and tool choice.

:class:`TurnSteer` is consulted by :class:`~loom_nb.engine.loop.RunLoop` at three points of a
turn: before the request (the output format, the output tool, ``tool_choice``), while it streams
(``output.partial`` events), and on the answer (validate it, or tell the model what to fix, at
most ``output_retries`` times; then the run fails with :class:`OutputValidationError`).

Tool choice after a forced call: ``"required"`` or a tool name holds for one turn only. Once the
model has called tools under it, the next turn is ``"auto"``, as in the OpenAI Agents SDK
(``reset_tool_choice``) and pydantic-ai, because a choice that forces a call on every turn never
lets the model answer. In output-tool mode, ``"auto"`` is ``"required"``: the answer itself is a
tool call.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, OutputValidationError
from ..messages import ToolCall, ToolResult
from ..output import OUTPUT_TOOL, OutputSpec

if TYPE_CHECKING:
    from ..events import OutputPartialData
    from ..models import Model, ModelRequest, ToolChoice, ToolDefinition

__all__ = ["PAUSED", "TurnSteer", "check_tool_choice", "remember_pause"]

_CHOICES = ("auto", "required", "none")
#: ``output.partial`` is parsed at every delta up to this many characters (see partial()).
_EVERY_DELTA_UP_TO = 2048
#: The steering of runs paused for approval in this process, by run id: a resume here goes on
#: with the run's own output_type and tool choice. (A type cannot be stored; a resume in another
#: process uses the agent's.) Bounded: the oldest pauses are forgotten first.
PAUSED: dict[str, TurnSteer] = {}
_PAUSED_KEPT = 1000


def remember_pause(run_id: str, steer: TurnSteer, paused: bool) -> None:
    PAUSED.pop(run_id, None)
    if paused:
        PAUSED[run_id] = steer
        while len(PAUSED) > _PAUSED_KEPT:
            PAUSED.pop(next(iter(PAUSED)))


def check_tool_choice(choice: Any, tool_names: list[str] | None) -> None:
    """A ConfigError for a choice that cannot work; ``tool_names`` None: not known yet."""
    if choice is None:
        return
    if not isinstance(choice, str) or not choice.strip():
        raise ConfigError(f"tool_choice= is 'auto', 'required', 'none' or a tool's name, got "
                          f"{choice!r}.")
    if tool_names is None or choice in ("auto", "none"):
        return
    if choice == "required" and not tool_names:
        raise ConfigError("tool_choice='required' but the agent has no tools: give it tools, or "
                          "leave tool_choice unset.")
    if choice not in _CHOICES and choice not in tool_names:
        known = ", ".join(sorted(tool_names)) or "none"
        raise ConfigError(f"tool_choice={choice!r} is not one of the agent's tools ({known}), nor "
                          f"'auto', 'required' or 'none'.")


class TurnSteer:
    """Output format and tool choice for the turns of one run."""

    def __init__(self, spec: OutputSpec | None, tool_choice: ToolChoice | None, model: Model) -> None:
        self.spec = spec
        self.mode: Literal["native", "tool"] | None = spec.resolve(model) if spec else None
        # A choice given to the run wins over the model's ``tool_choice`` setting.
        settings = getattr(model, "settings", None)
        self.choice = tool_choice if tool_choice is not None else (
            settings.get("tool_choice") if isinstance(settings, dict) else None)
        if self.mode == "tool" and self.choice == "none":
            raise ConfigError(
                "tool_choice='none' leaves the model no way to call the output tool; use "
                "output_mode='native', or another tool_choice.")
        self.retries_left = spec.retries if spec else 0
        self._streamed: list[str] = []
        self._last_partial: Any = None
        self._size = self._parsed_at = 0  # characters streamed, and at the last partial parse
        self._valid: tuple[str, Any] | None = None  # the last valid answer's text and value
        #: Set when an answer is invalid and no retry is left (see _retry).
        self.failure: OutputValidationError | None = None

    # -- before the request -----------------------------------------------------------------------

    def tools(self, tools: tuple[ToolDefinition, ...]) -> tuple[ToolDefinition, ...]:
        """The request's tools: the agent's, and the output tool in tool mode."""
        check_tool_choice(self.choice, [t.name for t in tools])
        if self.mode != "tool" or self.spec is None:
            return tools
        if any(t.name == OUTPUT_TOOL for t in tools):
            raise ConfigError(f"A tool is named {OUTPUT_TOOL!r}, the name of the output tool; "
                              f"rename it with @tool(name=...), or use output_mode='native'.")
        return (*tools, self.spec.tool())

    def prepare(self, request: ModelRequest) -> ModelRequest:
        """The request with its output format and this turn's tool choice."""
        self._streamed, self._last_partial, self._size, self._parsed_at = [], None, 0, 0
        choice = self.choice
        if self.mode == "tool" and choice in (None, "auto"):
            choice = "required"
        if self.spec is None and choice is None:
            return request
        output = self.spec.wire(self.mode) if self.spec is not None and self.mode else None
        return dataclasses.replace(request, output=output, tool_choice=choice)

    # -- while it streams -------------------------------------------------------------------------

    def partial(self, text: str | None = None, *, name: str = "", args: str = "") -> OutputPartialData | None:
        """An ``output.partial`` payload when the answer streamed so far parses to something new."""
        if self.spec is None:
            return None
        if text is not None and self.mode != "tool":
            self._streamed.append(text)
        elif text is None and name == OUTPUT_TOOL and self.mode == "tool":
            self._streamed.append(args)
        else:
            return None
        size = self._size = self._size + len(self._streamed[-1])
        # Parsing the whole answer at every delta is quadratic: past a few KB, parse again only
        # once it has grown by a tenth, which keeps the total work linear in its length.
        if size > _EVERY_DELTA_UP_TO and size < self._parsed_at * 1.1:
            return None
        self._parsed_at = size
        parsed = self.spec.partial("".join(self._streamed))
        if parsed is None or parsed[0] == self._last_partial:
            return None
        self._last_partial = parsed[0]
        return {"output": parsed[0], "valid": parsed[1]}

    # -- on the answer ----------------------------------------------------------------------------

    def after_tools(self) -> None:
        """The model called tools: a forcing choice has done its work (see the module doc)."""
        if self.choice not in (None, "auto", "none"):
            self.choice = "auto"

    def output_call(self, calls: tuple[ToolCall, ...]) -> ToolCall | None:
        if self.spec is None or self.mode != "tool":
            return None
        return next((c for c in calls if c.name == OUTPUT_TOOL), None)

    def check_text(self, text: str) -> str | None:
        """None when the answer validates (or no type is asked); else the retry message."""
        if self.spec is None:
            return None
        try:
            self._valid = (text, self.spec.parse(text))
        except OutputValidationError as exc:
            return self._retry(exc.problems, self.spec.retry_text(exc.problems, self.mode or "native"))
        return None

    def final_call(self, call: ToolCall, calls: tuple[ToolCall, ...]) -> tuple[str | None, list[ToolResult]]:
        """The answer's text (None when invalid) and a result for each of the turn's calls.

        The other calls of the turn are not run, whichever way it goes: a valid answer ends the
        run, and an invalid one is answered before anything else happens.
        """
        assert self.spec is not None
        text = call.invalid_args if call.invalid_args is not None else json.dumps(call.args)
        try:
            self._valid = (text, self.spec.parse(text))
            answer: str | None = text
            mine = ToolResult(call_id=call.id, name=call.name, content="Final result processed.")
        except OutputValidationError as exc:
            answer = None
            mine = ToolResult(call_id=call.id, name=call.name, is_error=True,
                              content=self._retry(exc.problems, self.spec.retry_args(exc.problems)))
        why = ("a final result was given in the same turn" if answer is not None else
               f"the {OUTPUT_TOOL} call of the same turn was invalid; call it again if needed")
        results = [mine if c is call else ToolResult(
            call_id=c.id, name=c.name, is_error=True, content=f"Not run: {why}.") for c in calls]
        return answer, results

    def _retry(self, problems: str, message: str) -> str:
        """``message`` for the model; when no retry is left, ``failure`` is set too, which the
        loop raises once the turn is committed (so the history stays a valid conversation)."""
        assert self.spec is not None
        if self.retries_left <= 0:
            self.failure = OutputValidationError(
                f"The model's answer is not a valid {self.spec.name} after "
                f"output_retries={self.spec.retries} retr{'y' if self.spec.retries == 1 else 'ies'}: "
                f"{problems}. Raise output_retries=, simplify the type, or try "
                f"output_mode='tool' / 'native'.", problems=problems)
        self.retries_left -= 1
        return message

    def value(self, text: str) -> Any:
        """The validated output for the kept answer's text (None when there is none)."""
        if self.spec is None:
            return text
        if self._valid is not None and self._valid[0] == text:
            return self._valid[1]  # validated as the answer came: not parsed twice
        try:
            return self.spec.parse(text)
        except OutputValidationError:
            return None
