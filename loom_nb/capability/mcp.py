"""Capability.mcp: the tools of a real MCP server, on the official ``mcp`` SDK (2.x).

``Capability.mcp("time", command=["uvx", "mcp-server-time"])`` starts a stdio server;
``Capability.mcp("docs", url="http://127.0.0.1:8000/mcp")`` connects over streamable HTTP. The
server is contacted when the agent first runs (the run fails with a clear message if it cannot be
started or reached); its tools join the agent as ``{name}__{tool}``, with the server's description
and input JSON schema. Tool annotations set governance flags: ``readOnlyHint`` -> ``read_only``,
``destructiveHint`` -> ``destructive`` (so a destructive tool asks for approval under the default
policy). Only hints the server states explicitly count: the MCP default of ``destructiveHint=true``
for unannotated tools would make every call of most servers ask for approval. Annotations are the
server's claims; with ``requires_approval=True`` every call of this server needs a person's approval.

What the model gets back from a call (see ``_mcp_content``):

* the result's text parts, joined; embedded text resources inline, blob resources and resource
  links as references to ``{name}__read_resource``; structured content beside the text (checked
  against the tool's ``outputSchema``: a mismatch is an error result);
* the server's error (``isError``) as an error result, with the server's message;
* arguments that do not match the tool's schema: an error result, the server is not called;
* a server that **crashes** (its process exits, the HTTP connection breaks): an error result that
  says so, with the end of the server's stderr. The connection is closed, and the server is
  **started again on the next call** of one of its tools (a restart that fails is reported the same
  way, and retried on the call after);
* a server that **hangs**: after ``call_timeout`` seconds an error result; the call is abandoned and
  the connection kept for the next call.

Beyond tools: the server's resources (``{name}__list_resources`` / ``{name}__read_resource``
for the model, ``capability.resources()`` / ``read(uri)`` / ``prompts()`` / ``prompt(name, args)``
for the user, ``_mcp_resources``); its sampling, elicitation and roots requests, progress, log
messages and list changes (``_mcp_requests``, ``_mcp_sampling``). Tools that run only as MCP tasks
(``execution.taskSupport == "required"``) are left out, with a warning.

Servers are closed when the agent closes (``agent.close()`` / ``await agent.aclose()`` /
``async with agent``) and, as a last resort, when the Python process exits. The connection lives on
loom_nb's background event loop, so one agent can be run from a notebook's loop (``await``) and from
``run_sync`` against the same server process (see ``_mcp_connection``).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .. import _bridge
from ..errors import ConfigError, ToolError
from ..tools import Tool, ToolOutcome
from . import Capability
from . import _mcp_resources as res
from ._mcp_config import server_requests as _server_requests
from ._mcp_config import server_spec as _server_spec
from ._mcp_content import result_media, result_text, schema_problems, validator
from ._mcp_connection import (
    CallTimeout,
    ConnectFailed,
    McpConnection,
    ServerGone,
    ServerSpec,
    on_bridge,
)
from ._mcp_requests import ActiveCall, ElicitationRequest, SamplingRequest, ServerRequests

if TYPE_CHECKING:
    from mcp import Client
    from mcp_types import Tool as McpToolSpec

    from ..models import Model

__all__ = ["McpSource", "McpTool", "mcp_capability"]

T = TypeVar("T")

_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_INSTALL = 'pip install "loom-nb[mcp]"'


def mcp_capability(
    name: str,
    *,
    command: Sequence[str] | None = None,
    url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    call_timeout: float = 120.0,
    requires_approval: bool = False,
    max_result_chars: int = 100_000,
    instructions: str = "",
    sampling: Model | str | Literal[False] | None = None,
    approve_sampling: Callable[[SamplingRequest], bool | Awaitable[bool]] | None = None,
    elicitation: Callable[[ElicitationRequest], Any] | Literal[False] | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    **unknown: Any,
) -> Capability:
    """The tools of an MCP server, named ``{name}__{tool}``.

    Args:
        name: a short label (letters, digits, ``_``, ``-``); it prefixes the tool names.
        command: a stdio server: the program and its arguments, e.g. ``["uvx", "mcp-server-time"]``.
        url: a streamable HTTP server: its MCP endpoint, e.g. ``"http://127.0.0.1:8000/mcp"``.
        env: extra environment variables for a stdio server. The SDK starts it with a minimal
            environment (``HOME``, ``PATH``, ``USER``, ...) plus these, not the whole of yours.
        cwd: the working directory of a stdio server.
        headers: HTTP headers for a streamable HTTP server (e.g. ``Authorization``).
        timeout: seconds to start (or reach) the server, finish the handshake and list its tools.
        call_timeout: seconds a tool call may take before it is reported to the model as hung.
        requires_approval: every call of this server's tools needs a person's approval.
        max_result_chars: longer results are cut to this many characters (with a note).
        instructions: text for the system prompt about when to use this server.
        sampling: who answers the server's ``sampling/createMessage`` requests: None (the
            default) the model of the run whose tool call is in flight; a model (or
            ``"provider:name"``) answers them instead; ``False`` does not offer sampling.
            Governed as calls of a tool ``{name}__sampling`` (see ``_mcp_sampling``).
        approve_sampling: decides sampling requests that governance says need approval
            (``callback(request) -> bool``); without it they are refused.
        elicitation: ``callback(request) -> dict | "decline" | "cancel"`` answers the server's
            ``elicitation/create`` requests (sync or async); without one they are declined;
            ``False`` does not offer elicitation.
        roots: folders the server may work in, declared as MCP roots (default: none declared).
    """
    if unknown:
        raise ConfigError(
            f"Capability.mcp got unknown option(s) {sorted(unknown)}; the options are command, url, "
            f"env, cwd, headers, timeout, call_timeout, requires_approval, max_result_chars, "
            f"instructions, sampling, approve_sampling, elicitation, roots."
        )
    spec = _server_spec(name, command, url, env, cwd, headers)
    for option, value in (("timeout", timeout), ("call_timeout", call_timeout)):
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"Capability.mcp({option}=...) takes a number of seconds > 0.")
    try:
        import mcp  # noqa: F401 - fail here, at construction, not at the first run
    except ImportError:
        raise ConfigError(
            f"Capability.mcp needs the official MCP SDK, which is not installed: {_INSTALL}"
        ) from None
    requests = _server_requests(name, sampling, approve_sampling, elicitation, roots,
                                requires_approval)
    source = McpSource(name, spec, timeout=float(timeout), call_timeout=float(call_timeout),
                       requires_approval=requires_approval, max_result_chars=max_result_chars,
                       requests=requests)
    return Capability(name=name, kind="mcp", source=source, instructions=instructions)


class McpSource:
    """The :class:`~loom_nb.capability.ToolSource` of one MCP server.

    All state is touched on loom_nb's background loop only (the public methods forward there), so
    no thread lock is needed; an asyncio lock serialises starting and restarting the server.
    """

    def __init__(self, name: str, spec: ServerSpec, *, timeout: float, call_timeout: float,
                 requires_approval: bool, max_result_chars: int,
                 requests: ServerRequests | None = None) -> None:
        self.name = name
        self.spec = spec
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.requires_approval = requires_approval
        self.max_result_chars = max_result_chars
        self.requests = requests or ServerRequests(
            name, sampling=None, approve_sampling=None, elicitation=None, roots=None,
            requires_approval=requires_approval)
        #: What the connected server offers (its ``capabilities``), read at each connection.
        self.offers: set[str] = set()
        self._connection: McpConnection | None = None
        self._tools: list[McpTool] | None = None
        self._lock: asyncio.Lock | None = None  # made on the background loop, where it is used
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"McpSource({self.name!r}, {self.spec.describe()!r})"

    @property
    def label(self) -> str:
        return f"{self.name!r} ({self.spec.describe()})"

    # -- the ToolSource protocol -------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        """Start the server (if it is not running) and return its tools as loom_nb tools."""
        return await on_bridge(self._list_tools())

    async def aclose(self) -> None:
        """Close the connection; a stdio server process is ended. A later run starts it again."""
        await on_bridge(self._close())

    # -- on the background loop --------------------------------------------------------------------

    @property
    def tools_changed(self) -> bool:
        """The server said its tools changed (``tools/list_changed``) since they were listed."""
        return self.requests.tools_changed

    async def _list_tools(self) -> list[McpTool]:
        connection = await self._connected()
        if self.requests.tools_changed:
            self.requests.tools_changed = False
            try:
                specs = await connection.request(connection.list_tools, self.timeout)
            except (ServerGone, CallTimeout) as exc:
                self.requests.log.warning("Listing the changed tools of %s failed (%s); the "
                                          "previous list is kept.", self.label, type(exc).__name__)
            else:
                self._tools = self._build_tools(specs)
        assert self._tools is not None
        return list(self._tools)

    async def _connected(self) -> McpConnection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or loom_nb's background loop was replaced (its thread died): whatever was
            # bound to the old loop is unusable.
            self._loop, self._lock, self._connection = loop, asyncio.Lock(), None
        assert self._lock is not None
        async with self._lock:
            if self._connection is not None and self._connection.alive:
                return self._connection
            if self._connection is not None:
                await self._connection.stop()
            connection = McpConnection(self.name, self.spec, self.requests.client_options(),
                                       self.requests.mark_tools_changed)
            try:
                specs = await connection.start(self.timeout)
            except ConnectFailed as exc:
                raise ConfigError(f"Could not start the MCP server {self.label}: {exc}") from None
            self._connection = connection
            _open_sources.add(self)
            self.offers = res.server_offers(connection)
            if "resources" in self.offers and not await self._lists_resources(connection):
                # The model gets resource tools only when there is something to read with them.
                self.offers.add("no-resources")
            # The listing of this connection: a restarted server may have changed its tools.
            self.requests.tools_changed = False
            self._tools = self._build_tools(specs)
            return connection

    async def _drop(self, connection: McpConnection) -> None:
        # Only the connection that failed: a concurrent call may already have started a new one.
        if self._connection is connection:
            await self._close()
        else:
            await connection.stop()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        _open_sources.discard(self)
        if connection is not None:
            await connection.stop()

    async def call(self, tool: str, args: dict[str, Any], shown_as: str,
                   timeout: float | None = None) -> ToolOutcome:
        """Call ``tool`` on the server and turn every outcome into a result for the model;
        ``timeout`` (the run's bound on the call) shortens ``call_timeout``."""
        # The caller's loop: what the server asks during the call is recorded there (see
        # ActiveCall), where the run records everything else.
        run_loop = asyncio.get_running_loop()
        return await on_bridge(self._call(tool, args, shown_as, timeout, run_loop))

    async def _call(self, tool: str, args: dict[str, Any], shown_as: str,
                    timeout: float | None = None,
                    run_loop: asyncio.AbstractEventLoop | None = None) -> ToolOutcome:
        started = time.perf_counter()
        seconds = self.call_timeout if timeout is None else min(timeout, self.call_timeout)
        try:
            connection = await self._connected()
        except ConfigError as exc:
            return _outcome(f"The call to {shown_as!r} did not run. {exc}", started,
                            "McpConnectionError")
        active = ActiveCall.here(shown_as, run_loop)
        self.requests.active.append(active)
        try:
            result = await connection.call(tool, args, seconds, self.requests.progress(active))
        except ServerGone as exc:
            why, stderr_tail = exc.args
            again = "start the server again" if self.spec.command else "reconnect to the server"
            await self._drop(connection)
            return _outcome(
                f"The MCP server {self.label} stopped before answering the call to {shown_as!r}: "
                f"{why}. "
                f"The call's effect is unknown. loom_nb will {again} on the next call to one of "
                f"its tools; if that fails too, tell the user.{stderr_tail}", started,
                "McpServerCrashed")
        except CallTimeout:
            return _outcome(
                f"The MCP server {self.label} did not answer the call to {shown_as!r} within "
                f"{seconds:g} s, so the call was abandoned (the server may still be "
                f"working on it). Try a smaller request, or tell the user that the server is too "
                f"slow.", started, "McpTimeout" if seconds == self.call_timeout else "ToolTimeout")
        except Exception as exc:  # noqa: BLE001 - a protocol error goes back to the model
            return _failed_call(self.label, shown_as, exc, started)
        finally:
            self.requests.active.remove(active)
        text = _cut(result_text(result, self.read_tool_name), self.max_result_chars)
        if result.is_error:
            return _outcome(text or f"The MCP tool {shown_as!r} reported an error without a message.",
                            started, "McpError")
        return ToolOutcome(text, duration_ms=_ms(started), media=result_media(result))

    # -- tools -------------------------------------------------------------------------------------

    def _build_tools(self, specs: Sequence[McpToolSpec]) -> list[McpTool]:
        tools: list[McpTool] = []
        for spec in specs:
            if getattr(spec.execution, "task_support", None) == "required":
                # Such a tool answers only as an MCP task (tasks/get, tasks/result), which loom_nb
                # does not drive: offered, every call the model made would fail.
                self.requests.log.warning(
                    "The MCP tool %r of %s is not offered to the model: it runs only as an MCP "
                    "task (execution.taskSupport='required'), which loom_nb does not support.",
                    spec.name, self.label)
                continue
            full = f"{self.name}__{re.sub(r'[^A-Za-z0-9_.-]', '_', spec.name)}"
            if not _TOOL_NAME.match(full):
                warnings.warn(
                    f"The MCP server {self.label} has a tool {spec.name!r} whose name, as "
                    f"{full!r}, is too long for a model's tool name (64 characters); it is left "
                    f"out. Use a shorter Capability.mcp name to include it.", stacklevel=2)
                continue
            if any(t.name == full for t in tools):
                warnings.warn(f"The MCP server {self.label} has two tools named {full!r}; the "
                              f"second is left out.", stacklevel=2)
                continue
            tools.append(self._tool(spec, full))
        if self.read_tool_name:
            own = self._resource_tools()
            if any(t.name == o.name for t in own for o in tools):
                # The server has tools of these names: its own win, and references to resources
                # cannot name a tool of loom_nb's (read_tool_name is None from here on).
                self.requests.log.warning("The MCP server %s has a tool named list_resources or "
                                          "read_resource; loom_nb's resource tools are left out.",
                                          self.label)
                self.offers.add("no-resources")
            else:
                tools += own
        return tools

    async def _lists_resources(self, connection: McpConnection) -> bool:
        client = connection.client
        assert client is not None
        try:
            return await connection.request(lambda: res.lists_any(client), self.timeout)
        except Exception:  # noqa: BLE001 - a server that cannot list them has none to offer
            return False

    @property
    def read_tool_name(self) -> str | None:
        offered = "resources" in self.offers and "no-resources" not in self.offers
        return f"{self.name}__read_resource" if offered else None

    def _resource_tools(self) -> list[McpTool]:
        source, read_name = self, f"{self.name}__read_resource"

        async def list_resources() -> str:
            return res.resource_lines(await source.aresources(), read_name)

        async def read_resource(uri: str) -> str:
            result = await source._request(lambda client: client.read_resource(uri))
            return _cut(res.contents_text(result, source.max_result_chars), source.max_result_chars)

        uri_schema = {"type": "object", "required": ["uri"], "additionalProperties": False,
                      "properties": {"uri": {"type": "string", "description": "The resource's "
                                             "URI, from a listing or a resource link."}}}
        made = []
        for function, suffix, about, schema in (
                (list_resources, "list_resources", "List the resources (and URI templates) of "
                 f"the MCP server {self.name!r}.", {"type": "object", "properties": {}}),
                (read_resource, "read_resource", f"Read a resource of the MCP server "
                 f"{self.name!r} by its URI.", uri_schema)):
            function.__name__ = f"{self.name}__{suffix}"
            made.append(McpTool(function=function, name=function.__name__, description=about,
                                parameters=schema, read_only=True,
                                requires_approval=self.requires_approval, source=self,
                                local=function))
        return made

    # -- resources and prompts, for the user -------------------------------------------------------

    async def _request(self, make: Callable[[Client], Awaitable[T]]) -> T:
        """One request on the (started) connection; faults raise ToolError with the reason."""
        return await on_bridge(self._on_connection(make))

    async def _on_connection(self, make: Callable[[Client], Awaitable[T]]) -> T:
        connection = await self._connected()
        client = connection.client
        assert client is not None
        try:
            return await connection.request(lambda: make(client), self.call_timeout)
        except ServerGone as exc:
            await self._drop(connection)
            raise ToolError(f"The MCP server {self.label} stopped before answering: "
                            f"{exc.args[0]}.{exc.args[1]}") from None
        except CallTimeout:
            raise ToolError(f"The MCP server {self.label} did not answer within "
                            f"{self.call_timeout:g} s.") from None
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - the server's error, in loom_nb's terms
            raise ToolError(f"The MCP server {self.label} failed the request: "
                            f"{type(exc).__name__}: {exc}") from None

    async def _offered(self, kind: str) -> None:
        await on_bridge(self._connected())
        if kind not in self.offers:
            raise res.not_offered(self.label, kind)

    async def aresources(self) -> list[res.McpResource]:
        await self._offered("resources")
        return await self._request(res.resources_of)

    async def aread(self, uri: str) -> list[res.McpResourceContent]:
        if not isinstance(uri, str) or not uri:
            raise ConfigError("capability.read(uri) takes a resource URI, e.g. from resources().")
        await self._offered("resources")
        return res.read_contents(await self._request(lambda client: client.read_resource(uri)))

    async def aprompts(self) -> list[res.McpPrompt]:
        await self._offered("prompts")
        specs = await self._request(
            lambda client: res.list_all(lambda c: client.list_prompts(cursor=c), "prompts"))
        return [res.prompt_of(spec) for spec in specs]

    async def aprompt(self, name: str, args: dict[str, Any] | None = None,
                      ) -> res.McpPromptMessages:
        arguments = res.check_prompt_args(name, args)
        await self._offered("prompts")
        result = await self._request(lambda client: client.get_prompt(name, arguments))
        return res.prompt_messages(name, result)

    def resources(self) -> list[res.McpResource]:
        return _bridge.run_sync(self.aresources())

    def read(self, uri: str) -> list[res.McpResourceContent]:
        return _bridge.run_sync(self.aread(uri))

    def prompts(self) -> list[res.McpPrompt]:
        return _bridge.run_sync(self.aprompts())

    def prompt(self, name: str, args: dict[str, Any] | None = None) -> res.McpPromptMessages:
        return _bridge.run_sync(self.aprompt(name, args))

    def _tool(self, spec: McpToolSpec, full: str) -> McpTool:
        hints = spec.annotations
        read_only = bool(hints and hints.read_only_hint is True)
        destructive = bool(hints and hints.destructive_hint is True and not read_only)
        schema = dict(spec.input_schema or {})
        schema.setdefault("type", "object")
        if schema["type"] == "object":
            schema.setdefault("properties", {})
        source = self

        async def call_server(**kwargs: Any) -> str:
            # Calling the tool object directly (tool(a=1)) raises on errors like a @tool would.
            outcome = await source.call(spec.name, kwargs, full)
            if outcome.is_error:
                raise ToolError(outcome.content)
            return outcome.content

        call_server.__name__ = full
        return McpTool(
            function=call_server, name=full,
            description=spec.description or spec.title or f"The tool {spec.name!r} of the MCP "
                                                          f"server {self.name!r}.",
            parameters=schema, read_only=read_only, destructive=destructive,
            requires_approval=self.requires_approval, server_tool=spec.name, source=self,
        )


@dataclass(eq=False)
class McpTool(Tool):
    """A tool of an MCP server: the server's schema, validated here, and the call forwarded."""

    server_tool: str = ""
    source: McpSource | None = field(default=None, repr=False)
    #: For the resource tools: loom_nb's own function (a ToolError is the model's error result).
    local: Callable[..., Awaitable[str]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._validator = validator(self.parameters)

    def argument_problems(self, args: dict[str, Any]) -> list[str]:
        return schema_problems(self._validator, args)

    async def invoke(self, args: dict[str, Any], *, timeout: float | None = None,
                     on_cancel: Callable[[ToolOutcome], None] | None = None,
                     context: Any = None) -> ToolOutcome:  # an MCP tool takes no RunContext
        problems = schema_problems(self._validator, args)
        if problems:
            return ToolOutcome(
                f"Invalid arguments for tool {self.name!r}: {'; '.join(problems)}. Call the tool "
                f"again with arguments that match its schema.", is_error=True,
                error_type="ValidationError")
        assert self.source is not None
        started = time.perf_counter()
        if self.local is not None:
            return await _run_local(self.local, args, started)
        try:
            return await self.source.call(self.server_tool, args, self.name, timeout)
        except asyncio.CancelledError:
            if on_cancel is not None:  # the request is cancelled on the server's session too
                on_cancel(_outcome("The run was cancelled while this call ran; the call was "
                                   "abandoned (the server may still complete it).", started,
                                   "ToolCancelled"))
            raise


async def _run_local(function: Callable[..., Awaitable[str]], args: dict[str, Any],
                     started: float) -> ToolOutcome:
    try:
        return ToolOutcome(await function(**args), duration_ms=_ms(started))
    except (ToolError, ConfigError) as exc:
        return _outcome(str(exc), started, "McpError")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[... cut: the result had {len(text)} characters, only the first "
            f"{limit} are shown]")


def _failed_call(label: str, shown_as: str, exc: Exception, started: float) -> ToolOutcome:
    if isinstance(exc, RuntimeError) and "structured content" in str(exc):
        # The SDK checks structuredContent against the tool's outputSchema and raises this.
        return _outcome(
            f"The MCP server {label} answered the call to {shown_as!r} with a result that does "
            f"not match the tool's outputSchema, so the result is not used: {exc}. Tell the "
            f"user that the server is misbehaving.", started, "McpOutputSchemaError")
    return _outcome(f"The MCP server {label} failed the call to {shown_as!r}: "
                    f"{type(exc).__name__}: {exc}", started, type(exc).__name__)


def _outcome(message: str, started: float, error_type: str) -> ToolOutcome:
    return ToolOutcome(message, is_error=True, error_type=error_type, duration_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


# -- last-resort cleanup ---------------------------------------------------------------------------

_open_sources: weakref.WeakSet[McpSource] = weakref.WeakSet()


@atexit.register
def _close_open_sources() -> None:
    # An agent that was never closed must not leave server processes behind when Python exits.
    from .. import _bridge

    for source in list(_open_sources):
        try:
            _bridge.submit(source._close()).result(timeout=15)
        except Exception:  # noqa: BLE001, S110 - best effort while the interpreter shuts down
            pass
