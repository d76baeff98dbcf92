"""What an MCP server asks of loom_nb, and what it tells it: sampling, elicitation, roots,
progress, log messages and ``tools/list_changed``.

A server sends these on the connection's lifetime task, not in the task of the tool call that
caused them, and the protocol does not say which call a request belongs to. So each source keeps
the calls in flight (:class:`ActiveCall`, registered around every ``tools/call``), and a request
is attributed to them: to the one call when there is one, to the latest call when all calls in
flight belong to the same run, and to no run when calls of several runs are in flight (the
request is then refused: loom_nb cannot tell whose model, governance and usage it would be).

The run's task is suspended in ``await tool.invoke(...)`` while the call is in flight (a run's
calls are sequential), so emitting the run's events and adding to its usage from here does not
race with the run itself. Events are emitted in a copy of the call's ``contextvars`` context so
that a notebook's display of the run draws them in the cell that runs it.

A request that needs a person's approval cannot pause the run like an approval of a tool call:
the server is waiting on the open connection, inside a tool call, for the answer. It is answered
by the ``approve_sampling=`` callback when there is one, and refused otherwise (with the reason).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ..delegation import CURRENT_RUN
from ..events import EventPayload, EventType, McpElicitationData, McpSamplingData
from ..messages import Message

if TYPE_CHECKING:
    from mcp.client.session import ClientRequestContext
    from mcp_types import (
        CreateMessageRequestParams,
        CreateMessageResult,
        ElicitRequestParams,
        ElicitResult,
        ErrorData,
        ListRootsResult,
        LoggingMessageNotificationParams,
    )

    from ..models import Model

__all__ = ["ActiveCall", "ElicitationAnswer", "ElicitationRequest", "SamplingRequest",
           "ServerRequests"]

logger = logging.getLogger("loom_nb.mcp")

#: What an ``elicitation=`` callback returns: the values (accept), or the protocol's other answers.
ElicitationAnswer: TypeAlias = "dict[str, Any] | Literal['decline', 'cancel']"
#: Log levels at or above which a server's log message becomes a run event (RFC 5424 order).
_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
_PY_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
              "warning": logging.WARNING, "error": logging.ERROR}
#: The longest answer text an ``mcp.sampling`` event records.
EVENT_TEXT_CHARS = 2000
#: The most ``mcp.progress`` and ``mcp.log`` events one call records: a server that floods the
#: client with notifications must not flood the run's store (the rest go to the logger only).
MAX_NOTES_PER_CALL = 200


@dataclass(frozen=True, kw_only=True)
class SamplingRequest:
    """A server's ``sampling/createMessage`` request, as governance callbacks see it."""

    server: str
    tool: str  #: the tool call during which the server asked ('' outside a run)
    system: str
    messages: tuple[Message, ...]
    max_tokens: int


@dataclass(frozen=True, kw_only=True)
class ElicitationRequest:
    """A server's ``elicitation/create`` request, as the ``elicitation=`` callback gets it."""

    server: str
    tool: str
    mode: Literal["form", "url"]
    message: str
    schema: dict[str, Any] = field(default_factory=dict)  #: the requested schema (form mode)
    url: str | None = None  #: the page to open (url mode)


@dataclass(eq=False)
class ActiveCall:
    """A ``tools/call`` in flight: the tool, the run that made it, the caller's context and
    event loop (the run's events are recorded on the run's loop, in the caller's context)."""

    tool: str
    run: Any  #: the engine's RunLoop (see delegation.CURRENT_RUN), or None outside a run
    context: contextvars.Context
    loop: asyncio.AbstractEventLoop | None = None
    notes: int = 0  #: mcp.progress / mcp.log events recorded so far

    def note(self, type: EventType, data: EventPayload) -> None:
        """Record a notification, up to MAX_NOTES_PER_CALL of them."""
        self.notes += 1
        if self.notes <= MAX_NOTES_PER_CALL:
            self.emit(type, data)
        elif self.notes == MAX_NOTES_PER_CALL + 1:
            logger.warning("The MCP call %r sent more than %d progress and log notifications; "
                           "the rest are not recorded in the run.", self.tool, MAX_NOTES_PER_CALL)

    @classmethod
    def here(cls, tool: str, loop: asyncio.AbstractEventLoop | None = None) -> ActiveCall:
        return cls(tool=tool, run=CURRENT_RUN.get(), context=contextvars.copy_context(),
                   loop=loop)

    def emit(self, type: EventType, data: EventPayload) -> None:
        if self.run is not None:
            self._on_run_loop(self.run.emit, type, data)

    def absorb(self, usage: Any) -> None:
        """Count what the run's server asked for (a sampling request) in the run's usage."""
        if self.run is not None:
            self._on_run_loop(self.run.absorb_usage, usage, 0)

    def _on_run_loop(self, function: Callable[..., Any], *args: Any) -> None:
        # Run parallel tools or not, the run's records change on the run's loop only. Scheduled
        # before the call's answer is, so they land before its tool.result.
        loop = self.loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or loop is here or loop.is_closed():
            self.context.run(function, *args)
        else:
            loop.call_soon_threadsafe(self.context.run, function, *args)


class ServerRequests:
    """The handlers of one MCP source for what its server sends (use on the background loop)."""

    def __init__(self, name: str, *, sampling: Model | Literal[False] | None,
                 approve_sampling: Callable[[SamplingRequest], bool | Awaitable[bool]] | None,
                 elicitation: Callable[[ElicitationRequest], Any] | Literal[False] | None,
                 roots: Sequence[str | Path] | None, requires_approval: bool) -> None:
        self.name = name
        self.sampling = sampling
        self.approve_sampling = approve_sampling
        self.elicitation = elicitation
        self.roots = None if roots is None else [Path(r).expanduser().resolve() for r in roots]
        self.requires_approval = requires_approval
        self.active: list[ActiveCall] = []
        #: Set by a ``tools/list_changed`` notification: the tools are listed again before the
        #: next model turn.
        self.tools_changed = False
        self._ids = itertools.count(1)
        self.log = logger.getChild(name)

    def mark_tools_changed(self) -> None:
        self.tools_changed = True

    # -- what the client declares ------------------------------------------------------------------

    def client_options(self) -> dict[str, Any]:
        """The callbacks for ``mcp.Client``: each one given declares that client capability."""
        options: dict[str, Any] = {"logging_callback": self.on_log,
                                   "message_handler": self.on_message, "log_level": "info"}
        if self.sampling is not False:
            options["sampling_callback"] = self.on_sampling
        if self.elicitation is not False:
            options["elicitation_callback"] = self.on_elicitation
        if self.roots is not None:
            options["list_roots_callback"] = self.on_list_roots
        return options

    def call_in_flight(self) -> tuple[ActiveCall | None, str | None]:
        """The call a server request belongs to, or why none can be chosen."""
        if not self.active:
            return None, None
        runs = {id(call.run) for call in self.active}
        if len(runs) > 1:
            return None, (f"calls of {len(runs)} runs to the MCP server {self.name!r} are in "
                          f"flight, so loom_nb cannot tell which run this request belongs to")
        return self.active[-1], None

    def calls_to_tell(self, call: ActiveCall | None) -> list[ActiveCall]:
        """Where a request's event goes: its call, or (when it cannot be attributed) the latest
        call of every run in flight, so that each run records what its server asked."""
        if call is not None:
            return [call]
        latest = {id(c.run): c for c in self.active if c.run is not None}
        return list(latest.values())

    def progress(self, call: ActiveCall) -> Callable[[float, float | None, str | None],
                                                      Awaitable[None]]:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            call.note("mcp.progress", {"server": self.name, "tool": call.tool,
                                       "progress": progress, "total": total, "message": message})
        return on_progress

    # -- sampling ----------------------------------------------------------------------------------

    async def on_sampling(self, context: ClientRequestContext, params: CreateMessageRequestParams,
                          ) -> CreateMessageResult | ErrorData:
        from mcp_types import INVALID_REQUEST, ErrorData

        from ._mcp_sampling import answer_sampling
        call, ambiguous = self.call_in_flight()
        try:
            return await answer_sampling(self, call, ambiguous, params)
        except Exception as exc:  # noqa: BLE001 - the server gets an error, the run goes on
            self.log.warning("Answering a sampling request of %r failed: %s", self.name, exc)
            return ErrorData(code=INVALID_REQUEST, message=f"The client could not answer: {exc}")

    def record_sampling(self, call: ActiveCall | None, data: McpSamplingData) -> None:
        for told in self.calls_to_tell(call):
            told.emit("mcp.sampling", data)
        self.log.info("sampling request of %r: %s (%s)", self.name, data["action"], data["reason"])

    def governance_name(self) -> str:
        return f"{self.name}__sampling"

    def next_id(self) -> str:
        return f"{self.name}-sampling-{next(self._ids)}"

    # -- elicitation -------------------------------------------------------------------------------

    async def on_elicitation(self, context: ClientRequestContext, params: ElicitRequestParams,
                             ) -> ElicitResult | ErrorData:
        from mcp_types import ElicitResult

        call, _ = self.call_in_flight()
        mode: Literal["form", "url"] = "url" if getattr(params, "mode", "form") == "url" else "form"
        schema = dict(getattr(params, "requested_schema", None) or {})
        request = ElicitationRequest(server=self.name, tool=call.tool if call else "", mode=mode,
                                     message=params.message, schema=schema,
                                     url=getattr(params, "url", None))
        data: McpElicitationData = {"server": self.name, "tool": request.tool, "mode": mode,
                                    "message": params.message[:EVENT_TEXT_CHARS],
                                    "action": "decline", "answered_by": "nobody",
                                    "fields": sorted(schema.get("properties", {}))}
        if not callable(self.elicitation):
            data["reason"] = ("no elicitation= callback was given to Capability.mcp, so the "
                              "request is declined")
            self._record_elicitation(call, data)
            return ElicitResult(action="decline")
        data["answered_by"] = "callback"
        try:
            answer = await in_call_context(call, self.elicitation, request)
            result, reason = _elicit_result(answer, schema, mode)
        except Exception as exc:  # noqa: BLE001 - a failing callback cancels, the run goes on
            result, reason = ElicitResult(action="cancel"), (
                f"the elicitation callback raised {type(exc).__name__}: {exc}")
        data["action"] = result.action
        if reason:
            data["reason"] = reason
        self._record_elicitation(call, data)
        return result

    def _record_elicitation(self, call: ActiveCall | None, data: McpElicitationData) -> None:
        for told in self.calls_to_tell(call):
            told.emit("mcp.elicitation", data)
        self.log.info("elicitation request of %r: %s by %s", self.name, data["action"],
                      data["answered_by"])

    # -- roots, log messages, notifications --------------------------------------------------------

    async def on_list_roots(self, context: ClientRequestContext) -> ListRootsResult:
        from mcp_types import ListRootsResult, Root

        return ListRootsResult(roots=[Root.model_validate({"uri": path.as_uri(),
                                                           "name": path.name or str(path)})
                                      for path in self.roots or ()])

    async def on_log(self, params: LoggingMessageNotificationParams) -> None:
        level = str(params.level)
        text = params.data if isinstance(params.data, str) else _json(params.data)
        self.log.log(_PY_LEVELS.get(level, logging.CRITICAL), "[%s] %s",
                     params.logger or self.name, text)
        if level not in _LEVELS or _LEVELS.index(level) >= _LEVELS.index("warning"):
            call, _ = self.call_in_flight()
            if call is not None:
                call.note("mcp.log", {"server": self.name, "level": level,
                                      "logger": params.logger,
                                      "message": text[:EVENT_TEXT_CHARS]})

    async def on_message(self, message: Any) -> None:
        from mcp_types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            self.tools_changed = True
        elif isinstance(message, Exception):
            self.log.debug("MCP server %r: transport message %r", self.name, message)
        await asyncio.sleep(0)


async def in_call_context(call: ActiveCall | None, callback: Callable[[Any], Any],
                          request: Any) -> Any:
    """A user's callback (sync or async) in the context of the call it answers for, so that
    what it prints or displays lands in the cell running that call."""
    context = call.context.copy() if call is not None else contextvars.copy_context()
    answer = context.run(callback, request)
    if inspect.isawaitable(answer):
        async def wait() -> Any:
            return await answer
        answer = await asyncio.get_running_loop().create_task(wait(), context=context)
    return answer


def _elicit_result(answer: Any, schema: Mapping[str, Any],
                   mode: Literal["form", "url"]) -> tuple[ElicitResult, str]:
    """The protocol's answer for what the callback returned, checked against the schema."""
    from mcp_types import ElicitResult

    if mode == "url" and answer in ("accept", {}):  # the person opened the page: no values
        return ElicitResult(action="accept"), ""
    if answer == "accept":
        answer = {}
    if answer in ("decline", None):
        return ElicitResult(action="decline"), ""
    if answer == "cancel":
        return ElicitResult(action="cancel"), ""
    if not isinstance(answer, dict):
        return ElicitResult(action="cancel"), (
            f"the elicitation callback returned {type(answer).__name__}; it returns a dict of the "
            f"requested fields (accept; 'accept' in url mode), 'decline' or 'cancel'")
    from ._mcp_content import schema_problems, validator

    problems = schema_problems(validator(dict(schema)), answer) if schema else []
    if problems:
        return ElicitResult(action="cancel"), (
            f"the elicitation callback's values do not match the requested schema: "
            f"{'; '.join(problems)}")
    return ElicitResult(action="accept", content=answer), ""


def _json(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)
