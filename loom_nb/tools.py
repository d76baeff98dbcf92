"""Tools: Python functions the model may call.

``@tool`` reads the JSON schema of the arguments from the type hints (through pydantic) and the
descriptions from the docstring (Google, Sphinx or NumPy style). The decorated object stays
callable like the function. When the model calls a tool, its arguments are validated first; an
invalid argument, an exception inside the tool or a result that cannot be sent back becomes an
*error result* for the model, and the run goes on.
"""

from __future__ import annotations

import json
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, overload

from ._tabular import json_fallback, tabular
from ._workers import Escaped, Job, submit_to_worker
from .errors import ConfigError, Suspended, ToolError
from .media import MAX_RESULT_MEDIA, ONLY_MEDIA, Media, media_label, split_media
from .models import ToolDefinition

if TYPE_CHECKING:
    import pydantic

__all__ = ["Suspended", "Tool", "ToolOutcome", "as_tool", "tool", "unrunnable"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


# Not frozen: one is made per tool call (or model request), and frozen construction is slow.
@dataclass(slots=True)
class ToolOutcome:
    """What running a tool produced, ready to go back to the model."""

    content: str
    is_error: bool = False
    error_type: str | None = None
    traceback: str | None = None
    duration_ms: float = 0.0
    media: tuple[Media, ...] = ()


@dataclass(eq=False)
class Tool:
    """A function the model may call, with its schema and metadata.

    Attributes:
        function: the wrapped sync or async function.
        name: the name the model uses.
        description: what the tool does, from the docstring unless given.
        parameters: JSON schema of the arguments.
        read_only: the tool only reads (governance may allow it where writes are refused).
        destructive: the tool may destroy data (governance may ask before running it).
        requires_approval: a person must approve each call.
        timeout: seconds a call may take before it ends as a ``ToolTimeout`` error result
            (None: the run's ``Limits(tool_seconds=...)``). An async tool is stopped there; a
            sync tool's thread cannot be stopped, and the result says the call may still
            complete.
        thread: kept for compatibility: a sync tool always runs on a worker thread, never on
            the event loop every run shares (one slow call there would freeze them all), so
            ``True`` and ``None`` are the same; ``False`` is refused.
    """

    function: Callable[..., Any]
    name: str
    description: str
    parameters: dict[str, Any]
    read_only: bool = False
    destructive: bool = False
    requires_approval: bool = False
    thread: bool | None = None
    timeout: float | None = None
    #: The parameter annotated RunContext, which gets the run's context (not in the schema).
    context_param: str | None = None
    #: True for a tool whose calls ask the person a question (Capability.ask_user()): governance
    #: pauses the run for the answer, which becomes the call's result.
    asks_person: ClassVar[bool] = False
    # Set by @tool; the type is only named here so that pydantic loads with the first tool.
    _args_model: type[pydantic.BaseModel] = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        # Checked once: inspect's check costs more than the rest of a call's dispatch.
        import inspect
        self._is_async = inspect.iscoroutinefunction(self.function)
        if self.thread is False:
            raise ConfigError(
                f"Tool {self.name!r}: thread=False is no longer supported: a sync tool always runs "
                f"on a worker thread, so that a slow call cannot freeze every other run. Drop "
                f"thread=False, or make the tool `async def` to run it on the event loop.")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not (isinstance(self.timeout, (int, float))
                                             and 0 < self.timeout < float("inf"))):
            raise ConfigError(f"Tool {self.name!r}: timeout={self.timeout!r}; use a positive "
                              f"number of seconds, or None for the run's Limits(tool_seconds=...).")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    @property
    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, description=self.description, parameters=self.parameters)

    async def invoke(self, args: dict[str, Any], *, timeout: float | None = None,
                     on_cancel: Callable[[ToolOutcome], None] | None = None,
                     context: Any = None) -> ToolOutcome:
        """Validate ``args``, run the tool and serialize its result; never raises for tool faults.

        ``timeout`` (seconds; default: the tool's own) bounds the call: past it, the call is an
        error result of type ``ToolTimeout``. When the awaiting task is cancelled, ``on_cancel``
        gets what became of the call (see :data:`CANCEL_GRACE_SECONDS`) before the cancellation
        goes on. ``context`` (a bound RunContext) goes to the tool's RunContext parameter.
        """
        import asyncio
        started = time.perf_counter()
        try:
            # The validator itself: model_validate adds a Python frame to every call.
            validated = self._args_model.__pydantic_validator__.validate_python(args)
        except Exception as exc:  # pydantic is imported only when a call fails
            import pydantic
            if not isinstance(exc, pydantic.ValidationError):
                raise
            return ToolOutcome(self._invalid_args_message(exc), is_error=True,
                               error_type="ValidationError")
        kwargs = validated.__dict__  # extra="forbid": exactly the parameters
        if self.context_param is not None:
            if context is None:
                return ToolOutcome(f"Tool {self.name!r} takes a RunContext and runs only inside a "
                                   f"run.", is_error=True, error_type="ConfigError")
            kwargs = {**kwargs, self.context_param: context}
        limit = self.timeout if timeout is None else timeout
        try:
            if self._is_async:
                value = await self._await_async(kwargs, limit, on_cancel, started)
            else:
                value = await self._await_worker(kwargs, limit, on_cancel, started)
            content, media = result_content(value, self.name)
        except _TimedOut as exc:
            return ToolOutcome(str(exc), is_error=True, error_type="ToolTimeout", duration_ms=_ms(started))
        except ToolError as exc:
            return ToolOutcome(str(exc), is_error=True, error_type="ToolError",
                               duration_ms=_ms(started))
        except Suspended:
            raise
        except asyncio.CancelledError:
            if _task_cancelled():
                raise
            return self._fault(asyncio.CancelledError("raised by the tool"), started)
        except KeyboardInterrupt:
            if threading.current_thread() is threading.main_thread():
                raise  # Ctrl-C landing in an async tool on the main thread's loop: the user's
            return self._fault(KeyboardInterrupt("raised by the tool"), started)
        except BaseException as exc:  # noqa: BLE001 - any tool fault goes back to the model
            # SystemExit, GeneratorExit and the like raised by the tool itself (and
            # KeyboardInterrupt off the main thread, where no interrupt lands): let through, they
            # would stop the event loop every run and session shares.
            return self._fault(exc.original if isinstance(exc, Escaped) else exc, started)
        return ToolOutcome(content, duration_ms=_ms(started), media=media)

    async def _await_async(self, kwargs: dict[str, Any], limit: float | None,
                           on_cancel: Callable[[ToolOutcome], None] | None, started: float) -> Any:
        import asyncio
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await self.function(**kwargs)
        except TimeoutError:
            if deadline.expired():
                raise _TimedOut(f"Tool {self.name!r} did not finish within {limit:g} s, its "
                                f"timeout, and was stopped.") from None
            raise
        except asyncio.CancelledError:
            if on_cancel is not None and _task_cancelled():
                on_cancel(ToolOutcome("The run was cancelled while this call ran; the call was "
                                      "stopped.", is_error=True, error_type="ToolCancelled",
                                      duration_ms=_ms(started)))
            raise

    async def _await_worker(self, kwargs: dict[str, Any], limit: float | None,
                            on_cancel: Callable[[ToolOutcome], None] | None, started: float) -> Any:
        import asyncio
        job = submit_to_worker(self.function, **kwargs)
        # A timer rather than asyncio.wait/timeout: this is every sync call's path, and those
        # cost about 20 µs more a call.
        timer = None if limit is None else job.loop.call_later(limit, self._expire, job, limit)
        try:
            return await job.future
        except asyncio.CancelledError:
            outcome = await self._after_cancel(job, started)
            if on_cancel is not None:
                on_cancel(outcome)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, job: Job, limit: float) -> None:
        if not job.future.done():  # the worker's late result is dropped
            job.future.set_exception(_TimedOut(
                f"Tool {self.name!r} did not finish within {limit:g} s, its timeout. It runs on a "
                f"thread that cannot be stopped, so it may still complete in the background: "
                f"check its effect before calling it again."))

    async def _after_cancel(self, job: Job, started: float) -> ToolOutcome:
        """What became of a worker call whose run was cancelled: awaited for a short grace."""
        import asyncio
        follower = job.follow()
        try:
            await asyncio.wait((follower,), timeout=CANCEL_GRACE_SECONDS)
        except asyncio.CancelledError:
            pass  # cancelled again: stop waiting, report it as still running
        if not follower.done():
            follower.cancel()
            return ToolOutcome(
                f"The run was cancelled while this call ran. It runs on a thread that cannot be "
                f"stopped and had not finished {CANCEL_GRACE_SECONDS:g} s later, so it may still "
                f"complete in the background: check its effect.", is_error=True,
                error_type="ToolCancelled", duration_ms=_ms(started))
        if follower.exception() is not None:
            return ToolOutcome(f"The run was cancelled while this call ran; the call then failed: "
                               f"{follower.exception()}", is_error=True, error_type="ToolCancelled",
                               duration_ms=_ms(started))
        try:
            content = result_content(follower.result(), self.name)[0]
        except ToolError as exc:
            content = str(exc)
        return ToolOutcome(f"The run was cancelled while this call ran; the call completed "
                           f"within the grace: {content}", is_error=True,
                           error_type="ToolCancelled", duration_ms=_ms(started))

    def _fault(self, exc: BaseException, started: float) -> ToolOutcome:
        import traceback
        return ToolOutcome(
            f"Tool {self.name!r} raised {type(exc).__name__}: {exc}",
            is_error=True,
            error_type=type(exc).__name__,
            traceback="".join(traceback.format_exception(exc, limit=-3)),
            duration_ms=_ms(started),
        )

    def argument_problems(self, args: dict[str, Any]) -> list[str]:
        """What is wrong with ``args`` for this tool's schema (empty when they are valid), as
        :meth:`invoke` would find before running it (a person's edited arguments are checked
        with it before the paused run resumes)."""
        import pydantic
        try:
            self._args_model.__pydantic_validator__.validate_python(args)
        except pydantic.ValidationError as exc:
            return _problems(exc)
        return []

    def _invalid_args_message(self, exc: pydantic.ValidationError) -> str:
        return (
            f"Invalid arguments for tool {self.name!r}: " + "; ".join(_problems(exc))
            + ". Call the tool again with arguments that match its schema."
        )


def _problems(exc: pydantic.ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in exc.errors(include_url=False)]


#: How long a cancelled run waits for a sync tool's call in flight to end, so that its outcome
#: is recorded; past it, the result says the call may still complete in the background.
CANCEL_GRACE_SECONDS = 1.0


class _TimedOut(Exception):
    """A call that reached its timeout (the message says what became of it)."""


def _task_cancelled() -> bool:
    """Whether the running task was asked to stop (not a tool raising CancelledError itself)."""
    import asyncio
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def unrunnable(tools: Mapping[str, Tool], name: str, invalid_args: str | None) -> tuple[str, str] | None:
    """Why a model's call of ``name`` cannot run on ``tools`` at all, as (error type, message
    for the model); None when it can (its arguments are validated when it runs)."""
    if name not in tools:
        known = ", ".join(sorted(tools)) or "none"
        return "UnknownTool", f"There is no tool named {name!r}. Available tools: {known}."
    if invalid_args is not None:
        return ("InvalidJSON", f"The arguments for tool {name!r} are not a JSON object: "
                               f"{invalid_args[:500]!r}. Call the tool again with a JSON object of "
                               f"arguments that matches its schema.")
    return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def result_content(value: Any, tool_name: str) -> tuple[str, tuple[Media, ...]]:
    """The text and the images/documents a tool's return value goes back to the model as."""
    if type(value) is str:  # the usual case, without a look for media
        return value, ()
    value, media = split_media(value)
    if len(media) > MAX_RESULT_MEDIA:
        raise ToolError(f"Tool {tool_name!r} returned {len(media)} images and documents; at most "
                        f"{MAX_RESULT_MEDIA} go back in one result. Return fewer (a grid of "
                        f"plots in one figure, or the most relevant ones).")
    if value is ONLY_MEDIA:
        return "Returned " + "; ".join(media_label(m) for m in media) + ".", media
    return serialize_result(value, tool_name), media


def serialize_result(value: Any, tool_name: str) -> str:
    """The text sent to the model for a tool's return value.

    Strings go as they are; a pandas DataFrame or Series and a numpy array as a bounded Markdown
    table with its shape; everything else as JSON (dataclasses, pydantic models, dates, paths,
    numpy scalars and the like included). A matplotlib figure, and anything else, is a
    :class:`ToolError` that says what to return.
    """
    import pydantic_core
    if isinstance(value, str):
        return value
    table = tabular(value, tool_name)
    if table is not None:
        return table
    try:
        return json.dumps(pydantic_core.to_jsonable_python(value, fallback=json_fallback),
                          ensure_ascii=False)
    except (pydantic_core.PydanticSerializationError, TypeError, ValueError) as exc:
        raise ToolError(
            f"Tool {tool_name!r} returned an object of type {type(value).__name__}, which cannot be sent to the "
            f"model as JSON ({exc}). Make the tool return a str, a number, a bool, None, or a "
            f"list/dict of these (dataclasses and pydantic models work too), for example "
            f"str(value) or value.to_dict()."
        ) from None


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, read_only: bool = False,
    destructive: bool = False, requires_approval: bool = False, thread: bool | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool = False,
    requires_approval: bool = False,
    thread: bool | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a sync or async function into a :class:`Tool`; use bare (``@tool``) or with options.

    ``timeout=`` bounds each call in seconds (default: the run's ``Limits(tool_seconds=...)``).
    Sync tools run on worker threads, async ones on the run's event loop; see :class:`Tool`.
    """

    def decorate(func: Callable[..., Any]) -> Tool:
        return _build_tool(func, name=name, description=description, read_only=read_only,
                           destructive=destructive, requires_approval=requires_approval,
                           thread=thread, timeout=timeout)

    return decorate(fn) if fn is not None else decorate


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """A :class:`Tool` from a Tool or a plain function."""
    if isinstance(obj, Tool):
        return obj
    if callable(obj):
        return _build_tool(obj)
    raise ConfigError(f"{obj!r} is not a tool: pass a function or a @tool-decorated function.")


def _build_tool(func: Callable[..., Any], *, name: str | None = None,
                description: str | None = None, **flags: Any) -> Tool:
    import inspect
    if isinstance(func, Tool):
        func = func.function
    tool_name: str = name if name else getattr(func, "__name__", "")
    if not _NAME.match(tool_name):
        raise ConfigError(
            f"{tool_name!r} is not a valid tool name: use letters, digits, '_', '-' or '.', "
            f"starting with a letter or '_' (at most 64 characters); pass @tool(name=...)."
        )
    summary, param_docs = parse_docstring(inspect.getdoc(func) or "")
    context_param = _context_param(func, tool_name)
    args_model = _args_model(func, tool_name, param_docs, skip=context_param)
    try:
        schema = args_model.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - e.g. a Callable: it validates, JSON cannot say it
        raise _unschemable(func, tool_name, exc) from None
    _drop_titles(schema)
    return Tool(function=func, name=tool_name, description=description or summary,
                parameters=schema, _args_model=args_model, context_param=context_param, **flags)


def _hints(func: Callable[..., Any], tool_name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - unresolvable forward references
        raise ConfigError(
            f"Cannot read the type hints of tool {tool_name!r}: {exc}. Make sure every type it "
            f"names is importable where the function is defined."
        ) from None


def _is_context(annotation: Any) -> bool:
    """RunContext, RunContext[Deps], or either inside Optional / Annotated."""
    from .task import RunContext
    if annotation is RunContext or typing.get_origin(annotation) is RunContext:
        return True
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_context(args[0])
    return origin in (typing.Union, types.UnionType) and any(
        _is_context(a) for a in args if a is not type(None))


def _context_param(func: Callable[..., Any], tool_name: str) -> str | None:
    import inspect
    hints = _hints(func, tool_name)
    found = [name for name in inspect.signature(func).parameters if _is_context(hints.get(name))]
    if len(found) > 1:
        raise ConfigError(f"Tool {tool_name!r} has {len(found)} RunContext parameters "
                          f"({', '.join(found)}); keep one.")
    return found[0] if found else None


def _args_model(func: Callable[..., Any], tool_name: str, param_docs: dict[str, str],
                skip: str | None = None) -> type[pydantic.BaseModel]:
    import inspect

    import pydantic
    hints = _hints(func, tool_name)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.name == skip:  # the RunContext: given by the run, not by the model
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(
                f"Tool {tool_name!r} takes *{param.name}: tools need named parameters so that "
                f"the model knows what to pass."
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, pydantic.Field(default, description=param_docs.get(param.name)))
    try:
        return pydantic.create_model(
            f"{tool_name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
        )
    except Exception as exc:  # noqa: BLE001 - a type's own schema hook may raise anything
        raise _unschemable(func, tool_name, exc) from None


_JSON_TYPES = ("str, int, float, bool, None, list[...], dict[str, ...], Literal[...], an Enum, a "
               "dataclass, a TypedDict or a pydantic model")


def _unschemable(func: Callable[..., Any], tool_name: str, exc: Exception) -> ConfigError:
    """The error for a signature JSON Schema cannot describe, naming the parameter at fault."""
    import inspect

    import pydantic
    hints = typing.get_type_hints(func, include_extras=True)
    for name in inspect.signature(func).parameters:
        annotation = hints.get(name, Any)
        if _is_context(annotation):
            continue
        try:  # the same two steps as for the whole model, one parameter at a time
            pydantic.TypeAdapter(annotation).json_schema()
        except Exception:  # noqa: BLE001 - this is the parameter we are looking for
            shown = annotation.__name__ if isinstance(annotation, type) else repr(annotation)
            return ConfigError(
                f"Tool {tool_name!r}: parameter {name!r} is annotated {shown}, which a JSON "
                f"schema cannot express, so the model could not pass it. Annotate it with "
                f"{_JSON_TYPES}; keep other objects out of the signature (a closure or "
                f"run(..., deps=...)).")
    return ConfigError(f"Cannot build the argument schema of tool {tool_name!r} "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                       f"Annotate its parameters with {_JSON_TYPES}.")


def _drop_titles(schema: Any) -> None:
    # pydantic adds a "title" to every property; models read the names anyway, and the noise costs
    # tokens on every request.
    if isinstance(schema, dict):
        if isinstance(schema.get("title"), str):
            del schema["title"]
        for key, value in schema.items():
            if key != "properties":
                _drop_titles(value)
            else:
                for prop in value.values():
                    _drop_titles(prop)
    elif isinstance(schema, list):
        for item in schema:
            _drop_titles(item)


_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:?\s*$"
)
_PARAM_SECTIONS = {"args", "arguments", "parameters", "params"}
_GOOGLE_PARAM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_PARAM = re.compile(r"^(\w+)\s*(?::.*)?$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def _is_rule(line: str) -> bool:
    return bool(line) and set(line) == {"-"}


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary and the per-parameter descriptions of a Google, Sphinx or NumPy docstring."""
    lines = doc.splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    numpy = False
    current: str | None = None
    param_indent: int | None = None
    for i, raw in enumerate(lines):
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if _is_rule(line):
            continue
        underlined = i + 1 < len(lines) and _is_rule(lines[i + 1].strip())
        header = _SECTION.match(line)
        if header and (line.endswith(":") or underlined):
            section, numpy, current, param_indent = header.group(1).lower(), underlined, None, None
            continue
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx or line.startswith(":"):
            section, current = "sphinx", sphinx.group(1) if sphinx else None
            if sphinx:
                params[current] = sphinx.group(2).strip()  # type: ignore[index]
            continue
        if section is None:
            summary.append(line)
            continue
        if section in _PARAM_SECTIONS and line:
            param_indent = indent if param_indent is None else param_indent
            match = (_NUMPY_PARAM if numpy else _GOOGLE_PARAM).match(line)
            if indent <= param_indent and match:
                current = match.group(1)
                params[current] = "" if numpy else match.group(2).strip()
                continue
        if current and line and section in _PARAM_SECTIONS | {"sphinx"}:
            params[current] = f"{params[current]} {line}".strip()
    return "\n".join(summary).strip(), params
