"""An MCP server for the tests, on the official SDK's MCPServer.

Run over stdio: ``python toolbox.py``; over streamable HTTP: ``python toolbox.py --http PORT``
(endpoint http://127.0.0.1:PORT/mcp).
"""

from __future__ import annotations

import os
import sys

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("toolbox", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
async def echo(text: str) -> str:
    """Repeat the text."""
    return text


@server.tool()
def point() -> types.CallToolResult:
    """A result with structured content and no text."""
    return types.CallToolResult(content=[], structured_content={"x": 1, "y": 2})


@server.tool()
def refuse(reason: str) -> str:
    """Always fails with the given reason."""
    raise ToolError(f"refused: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def crash() -> str:
    """Kill this server's process."""
    print("toolbox: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of an HTTP request header ('' over stdio or when it is missing)."""
    return (ctx.headers or {}).get(name.lower(), "")


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
def peek() -> str:
    """Look without touching."""
    return "all quiet"


@server.tool(annotations=types.ToolAnnotations(destructive_hint=True))
def wipe(target: str) -> str:
    """Delete the target."""
    return f"wiped {target}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
