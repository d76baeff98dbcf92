"""One connection to an MCP server, kept on loom_nb's background event loop.

The official SDK's client (``mcp.Client``) runs anyio task groups that belong to the task and the
event loop that entered it. An agent, though, is run from several loops: a notebook's loop
(``await agent.run()``), loom_nb's background loop (``run_sync``, the magics), a script's
``asyncio.run``. So every connection lives on the background loop (``loom_nb._bridge``):

* one long-lived *lifetime task* enters the transport and the client, publishes the client, waits
  until it is told to close, and leaves the context managers again, all in that one task;
* tool calls run as their own tasks on the same loop (anyio's memory streams are fine across tasks
  of one loop), each raced against the lifetime task, so a connection that dies while a call waits
  ends the call at once instead of leaving it hanging.

Everything in this module runs on the background loop; :func:`on_bridge` forwards a coroutine there
from whatever loop the caller is on. Nothing here imports ``mcp`` at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .. import _bridge

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client._transport import Transport
    from mcp_types import CallToolResult
    from mcp_types import Tool as McpToolSpec

__all__ = ["CallTimeout", "ConnectFailed", "McpConnection", "ServerGone", "ServerSpec", "on_bridge"]

T = TypeVar("T")

#: How long closing may take before the lifetime task is cancelled. The SDK's own stdio shutdown
#: (close stdin, wait 2 s, SIGTERM, wait 2 s, SIGKILL) fits inside it.
CLOSE_TIMEOUT = 10.0
#: How much of a stdio server's stderr goes into error messages.
STDERR_TAIL_CHARS = 1500
#: The SDK's defaults for streamable HTTP: 30 s to connect and write, 5 min to read a stream.
HTTP_TIMEOUT = 30.0
HTTP_READ_TIMEOUT = 300.0


async def on_bridge(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on loom_nb's background loop, from any loop (cancellation is forwarded)."""
    if _bridge.in_bridge_thread():
        return await coro
    return await asyncio.wrap_future(_bridge.submit(coro))


class ConnectFailed(Exception):
    """The server could not be started or reached, or did not complete the MCP handshake."""


class ServerGone(Exception):
    """The connection closed while a call was running (the server exited, crashed or hung up).

    ``args`` are the reason and the end of the server's stderr (a block of text, or '').
    """


class CallTimeout(Exception):
    """A tool call got no answer within the call timeout."""


@dataclass(frozen=True)
class ServerSpec:
    """Where the server is: a stdio command (program and arguments) or a streamable HTTP URL."""

    command: tuple[str, ...] | None = None
    url: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return shlex.join(self.command) if self.command else str(self.url)


class McpConnection:
    """A live connection: start it, call tools on it, stop it. Use only on the background loop."""

    def __init__(self, label: str, spec: ServerSpec,
                 client_options: dict[str, Any] | None = None,
                 on_tools_changed: Callable[[], None] | None = None) -> None:
        self.label = label
        self.spec = spec
        #: Callbacks for mcp.Client (sampling, elicitation, roots, logging, notifications).
        self.client_options = dict(client_options or {})
        self.on_tools_changed = on_tools_changed
        self._listener: asyncio.Task[None] | None = None
        self.client: Client | None = None
        self.failure: BaseException | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # A stdio server's stderr goes to a temporary file rather than the notebook (where it would
        # clutter cell outputs); its tail explains a failed start or a crash.
        self._stderr: IO[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and self.client is not None

    # -- start and stop ----------------------------------------------------------------------------

    async def start(self, timeout: float) -> list[McpToolSpec]:
        """Connect, complete the handshake and list the server's tools."""
        if self.spec.command:
            # Closed in stop(), which every path out of a started connection goes through.
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._lifetime(ready), name=f"mcp-{self.label}")
        try:
            async with asyncio.timeout(timeout):
                self.client = await asyncio.shield(ready)
                return await self.list_tools()
        except TimeoutError:
            tail = self.stderr_tail()
            await self.stop()
            raise ConnectFailed(
                f"the server did not finish connecting within {timeout:g} s. Check that it is an "
                f"MCP server speaking {'stdio' if self.spec.command else 'streamable HTTP'}, or "
                f"raise timeout=.{tail}"
            ) from None
        except BaseException as exc:
            tail = self.stderr_tail()
            await self.stop()
            if isinstance(exc, asyncio.CancelledError):
                raise
            problem = _connect_problem(exc, self.spec).rstrip()
            raise ConnectFailed(problem + ("" if problem.endswith((".", "?", "!")) else ".")
                                + tail) from None

    async def list_tools(self) -> list[McpToolSpec]:
        assert self.client is not None
        tools: list[McpToolSpec] = []
        cursor: str | None = None
        for _ in range(100):  # a server that keeps returning cursors must not loop us forever
            # "refresh": the server says what it has now, not the SDK's cache of an older list.
            page = await self.client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _lifetime(self, ready: asyncio.Future[Client]) -> None:
        # Entering and leaving the SDK's context managers in this one task is the point of the
        # module: anyio cancel scopes must be exited by the task that entered them.
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = await stack.enter_async_context(
                    _new_client(transport, self.client_options))
                if not ready.done():
                    ready.set_result(client)
                self._listen_for_changes(client)
                await self._closing.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - kept to explain the next failed call
            self.failure = exc
            if not ready.done():
                ready.set_exception(exc)

    def _listen_for_changes(self, client: Client) -> None:
        """From protocol 2026-07-28 on, list changes come on a ``subscriptions/listen`` stream
        rather than as notifications (which the message handler sees on older versions)."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        tools = getattr(client.server_capabilities, "tools", None)
        if (self.on_tools_changed is None or client.protocol_version not in
                MODERN_PROTOCOL_VERSIONS or not getattr(tools, "list_changed", False)):
            return
        changed = self.on_tools_changed

        async def listen() -> None:
            with contextlib.suppress(Exception):  # no stream: changes are seen at reconnection
                async with client.listen(tools_list_changed=True) as subscription:
                    async for _event in subscription:
                        changed()

        self._listener = asyncio.create_task(listen(), name=f"mcp-{self.label}-listen")

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Transport:
        spec = self.spec
        if spec.command:
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(command=spec.command[0], args=list(spec.command[1:]),
                                           env=spec.env, cwd=spec.cwd)
            return stdio_client(params, errlog=self._stderr)  # type: ignore[arg-type]
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers=spec.headers, timeout=httpx2.Timeout(HTTP_TIMEOUT, read=HTTP_READ_TIMEOUT)))
        assert spec.url is not None
        return streamable_http_client(spec.url, http_client=http)

    async def stop(self) -> None:
        """Leave the client and the transport (a stdio server process is ended by the SDK)."""
        task, connected = self._task, self.client is not None
        self._task, self.client = None, None
        listener, self._listener = self._listener, None
        if listener is not None and not listener.done():
            listener.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({listener}, timeout=CLOSE_TIMEOUT)
        if task is not None and not task.done():
            # A connected client closes in order (the SDK ends a stdio process gracefully); one
            # still connecting is cancelled, which the SDK's shutdown handles just as well.
            done: set[asyncio.Task[None]] = set()
            if connected:
                self._closing.set()
                done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
            if not done:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- calls -------------------------------------------------------------------------------------

    async def call(self, tool: str, args: dict[str, Any], timeout: float,
                   progress: Callable[[float, float | None, str | None], Awaitable[None]]
                   | None = None) -> CallToolResult:
        """Call one tool; raise :class:`ServerGone` or :class:`CallTimeout` for those faults."""
        if not self.alive:
            raise ServerGone(self._why_gone(), self.stderr_tail())
        assert self.client is not None
        client = self.client
        return await self.request(lambda: client.call_tool(
            tool, args, progress_callback=progress),  # type: ignore[arg-type]
            timeout)

    async def request(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Any request of the client (a tool call, a resource read, ...), raced against the
        connection's end and ``timeout``: raise :class:`ServerGone` or :class:`CallTimeout`."""
        if not self.alive:
            raise ServerGone(self._why_gone(), self.stderr_tail())
        assert self._task is not None

        async def run() -> T:
            return await make()

        call = asyncio.create_task(run())
        try:
            done, _ = await asyncio.wait({call, self._task}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({call}, timeout=CLOSE_TIMEOUT)
        if call in done and not call.cancelled():
            exc = call.exception()
            if exc is None:
                return call.result()
            if _is_connection_loss(exc):
                raise ServerGone(self._why_gone(exc), self.stderr_tail())
            raise exc
        if call in done or self._task in done:
            # The call was cancelled by the transport, or the lifetime task ended: either way the
            # connection is gone. A moment for the lifetime task to record why.
            await asyncio.wait({self._task}, timeout=1.0)
            raise ServerGone(self._why_gone(), self.stderr_tail())
        raise CallTimeout()

    def _why_gone(self, exc: BaseException | None = None) -> str:
        cause = self.failure or exc
        # "Connection closed" and cancellations say nothing the sentence does not say already.
        leaves = [e for e in _leaves(cause) if not _is_connection_loss(e)
                  and not isinstance(e, asyncio.CancelledError)]
        detail = f" ({'; '.join(_one_line(e) for e in leaves)})" if leaves else ""
        what = ("its process exited or crashed" if self.spec.command
                else "the HTTP connection to it failed")
        return f"the connection to the server closed: {what}{detail}"

    def stderr_tail(self) -> str:
        """The end of a stdio server's stderr, as a block to append to a message ('' if none)."""
        if self._stderr is None:
            return ""
        try:
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            # pread leaves the file offset alone: the server process shares it and keeps writing.
            raw = os.pread(fd, STDERR_TAIL_CHARS, max(0, size - STDERR_TAIL_CHARS))
        except (OSError, ValueError):
            return ""
        text = raw.decode("utf-8", "replace").strip()
        return f"\n\nThe server's stderr ends with:\n{text}" if text else ""


def _new_client(transport: Transport, options: dict[str, Any]) -> Client:
    from mcp import Client
    from mcp_types import Implementation

    from .. import __version__

    return Client(transport, client_info=Implementation(name="loom-nb", version=__version__),
                  **options)


def _leaves(exc: BaseException | None) -> list[BaseException]:
    """The individual exceptions inside (nested) exception groups."""
    if exc is None:
        return []
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _is_connection_loss(exc: BaseException) -> bool:
    import anyio
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError,
                            anyio.EndOfStream, ConnectionError))


def _connect_problem(exc: BaseException, spec: ServerSpec) -> str:
    """What went wrong while connecting, in words a user can act on."""
    leaves = _leaves(exc) or [exc]
    for leaf in leaves:
        if isinstance(leaf, FileNotFoundError) and spec.command:
            return (f"the program {spec.command[0]!r} was not found. Pass command=[program, *args] "
                    f"with a program that is installed (on PATH, or an absolute path)")
        if isinstance(leaf, PermissionError) and spec.command:
            return f"the program {spec.command[0]!r} cannot be executed ({leaf})"
    if any(_is_connection_loss(leaf) for leaf in leaves):
        if spec.command:
            return ("the server process closed the connection before the MCP handshake finished "
                    "(it exited, or it is not an MCP stdio server)")
        return "the server closed the connection before the MCP handshake finished"
    names = {type(leaf).__name__ for leaf in leaves}
    if spec.url and names & {"ConnectError", "ConnectTimeout"}:
        return (f"could not connect to {spec.url} ({'; '.join(_one_line(e) for e in leaves)}). "
                f"Is the server running, and is the URL its MCP endpoint (often ending in /mcp)?")
    problem = "; ".join(_one_line(leaf) for leaf in leaves)
    if spec.url:
        problem += ". Check that the URL is the server's MCP endpoint (often ending in /mcp)"
    return problem

