"""Structured output: ``output_type=T`` turns a run's answer into a validated ``T``.

One :class:`OutputSpec` per run holds the type's pydantic ``TypeAdapter``, the JSON schema the
provider is sent, and how the answer travels:

* ``"native"``: the provider's own structured output (OpenAI chat ``response_format``,
  Responses ``text.format``, Anthropic ``output_config.format``); the answer is JSON text.
* ``"tool"``: an output tool (``final_result``) whose arguments are the answer; for compatible
  servers that implement tools but not (or not faithfully) a JSON schema format.
* ``"auto"`` (the default): ``model.native_output`` decides (see :meth:`OutputSpec.resolve`).

A type whose schema is not an object with properties (a scalar, ``list[...]``, a union) is
wrapped as ``{"response": ...}``: both OpenAI and Anthropic require an object at the root. A
JSON text answer is accepted in every mode, wrapped or bare, so scripted and replayed models can
answer with plain JSON text.

This module is provider-neutral: pydantic is imported lazily (it is a dependency of the vendor
SDKs, not of ``import loom_nb``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, get_args

from .errors import ConfigError, OutputValidationError

if TYPE_CHECKING:
    from .models import Model, OutputFormat, ToolDefinition

__all__ = ["OUTPUT_TOOL", "OutputMode", "OutputSpec", "RunOptions", "output_spec",
           "restored_output", "run_options"]

OutputMode: TypeAlias = Literal["auto", "native", "tool"]
#: The name of the output tool in ``"tool"`` mode (pydantic-ai uses the same name).
OUTPUT_TOOL = "final_result"
#: ``output_retries=`` when not given: one more try after an answer that does not validate.
DEFAULT_RETRIES = 1
_WRAP_KEY = "response"
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.S)
_PROBLEMS_SHOWN = 8


@dataclass(frozen=True, eq=False)
class OutputSpec:
    """The expected output of a run: the type, its schema, the mode and the retry budget."""

    type: Any
    mode: OutputMode = "auto"
    retries: int = DEFAULT_RETRIES
    adapter: Any = field(init=False, repr=False)
    #: A label for messages and displays, e.g. ``Invoice`` or ``list[int]``.
    name: str = field(init=False)
    #: The schema as sent: an object at the root, every object closed (additionalProperties).
    schema: dict[str, Any] = field(init=False, repr=False)
    #: True when the type is not an object and its answer travels as ``{"response": ...}``.
    wrapped: bool = field(init=False)
    #: True when the closed schema means the same as the type's (OpenAI ``strict``).
    strict: bool = field(init=False)

    def __post_init__(self) -> None:
        import pydantic

        try:
            adapter = pydantic.TypeAdapter(self.type)
            raw = adapter.json_schema()
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
            raise ConfigError(
                f"output_type={self.type!r} cannot be validated by pydantic ({exc}). Use a pydantic "
                f"model, a dataclass, a TypedDict, a scalar type, a list[...] or a union of those."
            ) from None
        wrapped = not (raw.get("type") == "object" and raw.get("properties"))
        if wrapped:
            defs = raw.pop("$defs", None)
            raw = {"type": "object", "properties": {_WRAP_KEY: raw}, "required": [_WRAP_KEY]}
            if defs:
                raw["$defs"] = defs
        schema, strict = closed_schema(raw)
        set_ = object.__setattr__  # frozen: derived fields are set once, here
        set_(self, "adapter", adapter)
        set_(self, "name", _type_name(self.type))
        set_(self, "schema", schema)
        set_(self, "wrapped", wrapped)
        set_(self, "strict", strict)

    # -- how the answer travels -------------------------------------------------------------------

    def resolve(self, model: Model) -> Literal["native", "tool"]:
        """The mode for ``model``: as given, or for ``"auto"`` native where the model says it
        has structured output (``model.native_output``), else the output tool."""
        if self.mode != "auto":
            return self.mode
        return "native" if getattr(model, "native_output", True) else "tool"

    def wire(self, mode: Literal["native", "tool"]) -> OutputFormat:
        from .models import OutputFormat

        return OutputFormat(name=_wire_name(self.name), schema=self.schema, strict=self.strict,
                            mode=mode, tool_name=OUTPUT_TOOL)

    def tool(self) -> ToolDefinition:
        from .models import ToolDefinition

        return ToolDefinition(
            name=OUTPUT_TOOL, parameters=self.schema,
            description=f"Give the final answer ({self.name}) by calling this tool; its "
                        f"arguments are the answer.")

    # -- validation -------------------------------------------------------------------------------

    def parse(self, text: str) -> Any:
        """The validated value of an answer's JSON text (optionally in a ```json fence);
        raises :class:`OutputValidationError` with the ``problems``, in words for the model."""
        import pydantic

        body = text.strip()
        fenced = None if body[:1] in ("{", "[") else _FENCE.search(body)
        if fenced:
            body = fenced.group(1).strip()
        if self.wrapped:
            body = self._unwrap(body)
        try:
            return self.adapter.validate_json(body)
        except pydantic.ValidationError as exc:
            problems = _problems(exc)
            raise OutputValidationError(f"Not a valid {self.name}: {problems}",
                                        problems=problems) from None

    def _unwrap(self, body: str) -> str:
        try:
            data = json.loads(body)
        except ValueError:
            return body  # validate_json says what is wrong with it
        if isinstance(data, dict) and set(data) == {_WRAP_KEY}:
            return json.dumps(data[_WRAP_KEY])
        return body

    def partial(self, text: str) -> tuple[Any, bool] | None:
        """``(value, valid)`` for a partly streamed answer: the JSON parsed so far, and whether
        it already validates (with the last string or item incomplete); None before any JSON."""
        import pydantic
        import pydantic_core

        body = text.lstrip()
        if body.startswith("```"):
            body = body.partition("\n")[2]
        if not body:
            return None
        try:
            value = pydantic_core.from_json(body, allow_partial="trailing-strings")
        except ValueError:
            return None
        if self.wrapped and isinstance(value, dict):  # wrapped; a bare list or scalar is taken too
            if _WRAP_KEY not in value:
                return None
            value = value[_WRAP_KEY]
        try:
            self.adapter.validate_python(value, experimental_allow_partial="trailing-strings")
            valid = True
        except (pydantic.ValidationError, TypeError, ValueError):
            valid = False  # some types (models, dataclasses) validate only once complete
        return value, valid

    def jsonable(self, value: Any) -> Any:
        """``value`` as JSON data (for events and stores)."""
        return self.adapter.dump_python(value, mode="json")

    # -- what the model is told -------------------------------------------------------------------

    def retry_text(self, problems: str, mode: Literal["native", "tool"]) -> str:
        how = (f"Call the {OUTPUT_TOOL} tool with the answer as its arguments."
               if mode == "tool" else "Answer again with only the JSON value, no other text.")
        return f"Your answer is not a valid {self.name}: {problems}. {how}"

    def retry_args(self, problems: str) -> str:
        return (f"Invalid {OUTPUT_TOOL} arguments for {self.name}: {problems}. Call "
                f"{OUTPUT_TOOL} again with corrected arguments.")


def output_spec(output_type: Any, mode: Any = "auto", retries: Any = None) -> OutputSpec | None:
    """The spec for ``run(..., output_type=, output_mode=, output_retries=)``; None for no
    structured output (``output_type`` None or ``str``: the answer is text)."""
    if mode not in get_args(OutputMode):
        raise ConfigError(f"output_mode= is 'auto', 'native' or 'tool', got {mode!r}.")
    if retries is None:
        retries = DEFAULT_RETRIES
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"output_retries= is an int >= 0 (retries after an invalid answer), "
                          f"got {retries!r}.")
    if output_type is None or output_type is str:
        return None
    if isinstance(output_type, OutputSpec):
        return output_type
    return OutputSpec(output_type, mode, retries)


def restored_output(spec: OutputSpec | None, data: Mapping[str, Any], text: str) -> tuple[Any, str | None]:
    """``(output, output_type)`` of a stored run from its ``run.finished`` data: validated again
    as the agent's type when it has the same name, else the stored JSON value."""
    name = data.get("output_type")
    if not isinstance(name, str):
        return text, None
    parsed = data.get("parsed")
    if spec is None or spec.name != name or parsed is None:
        return parsed, name
    try:
        return spec.adapter.validate_python(parsed), name
    except ValueError:  # the type changed since the run (pydantic's ValidationError is one)
        return parsed, name


def closed_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``schema`` with every object closed (``additionalProperties: false``), and whether that
    is all strict mode changes: every property required, no free-form dict."""
    strict = True

    def walk(node: Any) -> Any:
        nonlocal strict
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: walk(value) for key, value in node.items()}
        if out.get("type") == "object":
            props = out.get("properties") or {}
            extra = out.get("additionalProperties")
            if extra not in (None, False) or not props:
                strict = False  # a dict[str, X]: strict mode cannot say it
            else:
                out["additionalProperties"] = False
                if set(out.get("required", ())) != set(props):
                    strict = False  # a field with a default: strict would make it required
        if "default" in out:
            strict = False
        return out

    return walk(schema), strict


def _problems(exc: Any) -> str:
    errors = exc.errors(include_url=False)
    shown = [f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in errors[:_PROBLEMS_SHOWN]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    if isinstance(name, str) and not getattr(tp, "__args__", None):
        return name
    return repr(tp).replace("typing.", "")


def _wire_name(name: str) -> str:
    # OpenAI's schema name: ^[a-zA-Z0-9_-]{1,64}$
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return (cleaned or "output")[:64]


class RunOptions(TypedDict, total=False):
    """The per-run options of ``run``, ``run_sync``, ``stream`` and ``start``."""

    #: The type the answer must validate as (``str``: plain text, overriding the agent's type).
    output_type: Any
    #: How the answer travels: ``"auto"``, ``"native"`` or ``"tool"`` (see the module doc).
    output_mode: OutputMode
    #: How many times an invalid answer is sent back to the model with its errors.
    output_retries: int
    #: ``"auto"``, ``"required"``, ``"none"`` or a tool's name (see loom_nb.engine.structured).
    tool_choice: str
    #: Your objects for the tools and instruction functions (``RunContext.deps``; never stored).
    deps: Any


def run_options(agent_spec: OutputSpec | None, options: Mapping[str, Any]) -> tuple[OutputSpec | None, Any]:
    """The run's output spec (the agent's, unless the run gives its own) and its tool choice."""
    unknown = sorted(set(options) - set(RunOptions.__annotations__))
    if unknown:
        raise ConfigError(f"run() got unknown keyword argument(s) {', '.join(unknown)}; the run "
                          f"options are {', '.join(RunOptions.__annotations__)}.")
    spec = agent_spec
    if {"output_type", "output_mode", "output_retries"} & set(options):
        base_type = agent_spec.type if agent_spec is not None else None
        spec = output_spec(
            options.get("output_type", base_type),
            options.get("output_mode", agent_spec.mode if agent_spec else "auto"),
            options.get("output_retries", agent_spec.retries if agent_spec else None))
        if spec is None and "output_type" not in options and base_type is None:
            raise ConfigError("output_mode= / output_retries= need an output_type= (on the run "
                              "or the agent).")
    return spec, options.get("tool_choice")
