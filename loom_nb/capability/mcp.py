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

What the model gets back from a call:

* the result's text parts, joined (structured content as JSON when there is no text);
* the server's error (``isError``) as an error result, with the server's message;
* arguments that do not match the tool's schema: an error result, the server is not called;
* a server that **crashes** (its process exits, the HTTP connection breaks): an error result that
  says so, with the end of the server's stderr. The connection is closed, and the server is
  **started again on the next call** of one of its tools (a restart that fails is reported the same
  way, and retried on the call after);
* a server that **hangs**: after ``call_timeout`` seconds an error result; the call is abandoned and
  the connection kept for the next call.

Servers are closed when the agent closes (``agent.close()`` / ``await agent.aclose()`` /
``async with agent``) and, as a last resort, when the Python process exits. The connection lives on
loom_nb's background event loop, so one agent can be run from a notebook's loop (``await``) and from
``run_sync`` against the same server process (see ``_mcp_connection``).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import re
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import ConfigError, ToolError
from ..tools import Tool, ToolOutcome
from . import Capability
from ._mcp_connection import (
    CallTimeout,
    ConnectFailed,
    McpConnection,
    ServerGone,
    ServerSpec,
    on_bridge,
)

if TYPE_CHECKING:
    from mcp_types import CallToolResult
    from mcp_types import Tool as McpToolSpec

__all__ = ["McpSource", "McpTool", "mcp_capability"]

_CAPABILITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
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
    """
    if unknown:
        raise ConfigError(
            f"Capability.mcp got unknown option(s) {sorted(unknown)}; the options are command, url, "
            f"env, cwd, headers, timeout, call_timeout, requires_approval, max_result_chars, "
            f"instructions."
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
    source = McpSource(name, spec, timeout=float(timeout), call_timeout=float(call_timeout),
                       requires_approval=requires_approval, max_result_chars=max_result_chars)
    return Capability(name=name, kind="mcp", source=source, instructions=instructions)


def _server_spec(name: str, command: Sequence[str] | None, url: str | None,
                 env: dict[str, str] | None, cwd: str | None,
                 headers: dict[str, str] | None) -> ServerSpec:
    if not isinstance(name, str) or not _CAPABILITY_NAME.match(name):
        raise ConfigError(
            f"Capability.mcp name {name!r}: use a short label of letters, digits, '_' or '-' "
            f"(at most 32, starting with a letter), e.g. Capability.mcp('time', command=[...])."
        )
    if (command is None) == (url is None):
        raise ConfigError(
            "Capability.mcp takes exactly one of command=[program, *args] (a stdio server) or "
            "url='http://host:port/mcp' (a streamable HTTP server)."
        )
    if command is not None:
        if isinstance(command, str) or not command or not all(
                isinstance(part, str) and part for part in command):
            raise ConfigError(
                f"Capability.mcp(command=...) takes a list: the program, then its arguments, e.g. "
                f"command=['uvx', 'mcp-server-time'] (got {command!r})."
            )
        if headers:
            raise ConfigError("Capability.mcp(headers=...) is for url= servers; a command= server "
                              "takes env= instead.")
        return ServerSpec(command=tuple(command), env=dict(env) if env else None,
                          cwd=str(cwd) if cwd is not None else None)
    assert url is not None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") \
            or not urlsplit(url).netloc:
        raise ConfigError(f"Capability.mcp(url=...) takes an http(s) URL, e.g. "
                          f"'http://127.0.0.1:8000/mcp' (got {url!r}).")
    if env or cwd:
        raise ConfigError("Capability.mcp(env=..., cwd=...) are for command= servers; a url= "
                          "server is already running.")
    return ServerSpec(url=url, headers=dict(headers or {}))


class McpSource:
    """The :class:`~loom_nb.capability.ToolSource` of one MCP server.

    All state is touched on loom_nb's background loop only (the public methods forward there), so
    no thread lock is needed; an asyncio lock serialises starting and restarting the server.
    """

    def __init__(self, name: str, spec: ServerSpec, *, timeout: float, call_timeout: float,
                 requires_approval: bool, max_result_chars: int) -> None:
        self.name = name
        self.spec = spec
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.requires_approval = requires_approval
        self.max_result_chars = max_result_chars
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

    async def _list_tools(self) -> list[McpTool]:
        await self._connected()
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
            connection = McpConnection(self.name, self.spec)
            try:
                specs = await connection.start(self.timeout)
            except ConnectFailed as exc:
                raise ConfigError(f"Could not start the MCP server {self.label}: {exc}") from None
            self._connection = connection
            _open_sources.add(self)
            # The listing of this connection: a restarted server may have changed its tools.
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
        return await on_bridge(self._call(tool, args, shown_as, timeout))

    async def _call(self, tool: str, args: dict[str, Any], shown_as: str,
                    timeout: float | None = None) -> ToolOutcome:
        started = time.perf_counter()
        seconds = self.call_timeout if timeout is None else min(timeout, self.call_timeout)
        try:
            connection = await self._connected()
        except ConfigError as exc:
            return _outcome(f"The call to {shown_as!r} did not run. {exc}", started,
                            "McpConnectionError")
        try:
            result = await connection.call(tool, args, seconds)
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
            return _outcome(f"The MCP server {self.label} failed the call to {shown_as!r}: "
                            f"{type(exc).__name__}: {exc}", started, type(exc).__name__)
        text = result_text(result)
        if len(text) > self.max_result_chars:
            text = (text[: self.max_result_chars] + f"\n[... cut: the result had {len(text)} "
                    f"characters, only the first {self.max_result_chars} are shown]")
        if result.is_error:
            return _outcome(text or f"The MCP tool {shown_as!r} reported an error without a message.",
                            started, "McpError")
        return ToolOutcome(text, duration_ms=_ms(started))

    # -- tools -------------------------------------------------------------------------------------

    def _build_tools(self, specs: Sequence[McpToolSpec]) -> list[McpTool]:
        tools: list[McpTool] = []
        for spec in specs:
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
        return tools

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

    def __post_init__(self) -> None:
        self._validator = _validator(self.parameters)

    def argument_problems(self, args: dict[str, Any]) -> list[str]:
        return _schema_problems(self._validator, args)

    async def invoke(self, args: dict[str, Any], *, timeout: float | None = None,
                     on_cancel: Callable[[ToolOutcome], None] | None = None) -> ToolOutcome:
        problems = _schema_problems(self._validator, args)
        if problems:
            return ToolOutcome(
                f"Invalid arguments for tool {self.name!r}: {'; '.join(problems)}. Call the tool "
                f"again with arguments that match its schema.", is_error=True,
                error_type="ValidationError")
        assert self.source is not None
        started = time.perf_counter()
        try:
            return await self.source.call(self.server_tool, args, self.name, timeout)
        except asyncio.CancelledError:
            if on_cancel is not None:  # the request is cancelled on the server's session too
                on_cancel(_outcome("The run was cancelled while this call ran; the call was "
                                   "abandoned (the server may still complete it).", started,
                                   "ToolCancelled"))
            raise


def _validator(schema: dict[str, Any]) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # a dependency of the mcp SDK

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None  # a broken schema from the server: let the server judge the arguments
    return cls(schema)


def _schema_problems(validator: Any, args: dict[str, Any]) -> list[str]:
    if validator is None:
        return []
    problems = []
    for error in sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        problems.append(f"{where}: {error.message}")
    return problems[:10]


def result_text(result: CallToolResult) -> str:
    """What the model reads of a tool result: text parts, else structured content as JSON."""
    parts: list[str] = []
    for item in result.content:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            size = len(getattr(item, "data", "") or "") * 3 // 4
            parts.append(f"[{kind} ({getattr(item, 'mime_type', '?')}, about {size} bytes): not "
                         f"shown to the model]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {item.uri} {getattr(item, 'name', '')}]".strip())  # type: ignore[union-attr]
        elif kind == "resource":
            resource = item.resource  # type: ignore[union-attr]
            text = getattr(resource, "text", None)
            parts.append(f"[resource {resource.uri}]\n{text}" if text is not None
                         else f"[binary resource {resource.uri} ({resource.mime_type}): not shown]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


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
