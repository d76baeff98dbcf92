"""An MCP server for the tests, on the official SDK's MCPServer.

Run over stdio: ``python toolbox.py``; over streamable HTTP: ``python toolbox.py --http PORT``
(endpoint http://127.0.0.1:PORT/mcp).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import anyio
import mcp_types as types
from pydantic import BaseModel
from mcp.server.mcpserver import (AcceptedElicitation, Context, Elicit, ElicitationResult, MCPServer,
                                  Resolve, Sample)
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


class Answer(BaseModel):
    answer: str


class Point(BaseModel):
    x: int
    y: int


def _sample(prompt: str, max_tokens: int = 50) -> Sample:
    return Sample([types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
                  max_tokens=max_tokens, system_prompt="You help a test server.")


@server.tool()
def ask_model(prompt: str, answer: Annotated[types.CreateMessageResult, Resolve(_sample)],
              max_tokens: int = 50) -> str:
    """Ask the client's model (sampling/createMessage); the answer's text."""
    return f"model said: {getattr(answer.content, 'text', answer.content)}"


def _ask(question: str) -> Elicit[Answer]:
    return Elicit(question, Answer)


@server.tool()
def ask_person(question: str, reply: Annotated[ElicitationResult[Answer], Resolve(_ask)]) -> str:
    """Ask the person (elicitation/create) for one answer."""
    if isinstance(reply, AcceptedElicitation):
        return f"person said: {reply.data.answer}"
    return f"person did not answer: {reply.action}"


@server.tool()
async def warn(text: str, ctx: Context) -> str:
    """Log at info and at warning level, then answer."""
    await ctx.info(f"info: {text}")
    await ctx.warning(f"warning: {text}")
    return "logged"


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Report progress count times."""
    for step in range(1, count + 1):
        await ctx.report_progress(step, count, f"step {step}")
    return f"{count} steps"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named 'sprout' and tell the client that the tools changed."""
    if not any(t.name == "sprout" for t in await server.list_tools()):
        server.add_tool(lambda: "sprouted", name="sprout", description="A tool added later.")
    await ctx.notify_tools_changed()
    return "grown"


@server.tool()
def where() -> Point:
    """A point, with its output schema (structured content)."""
    return Point(x=1, y=2)


@server.tool()
def bad_where() -> types.CallToolResult:
    """Claims (in its listing) to return a point, returns something else."""
    return types.CallToolResult(content=[types.TextContent(type="text", text="oops")],
                                structured_content={"x": "not a number"})


# A misbehaving server: the listing promises an output schema that the result breaks.
server._tool_manager.get_tool("bad_where").__dict__["output_schema"] = Point.model_json_schema()


@server.prompt()
def greet(name: str, style: str = "plain") -> str:
    """Greet someone by name."""
    return f"Say hello to {name}, {style}."


@server.resource("box://notes/<b>today</b>", mime_type="text/plain")
def today() -> str:
    """Today's note (its URI has markup that a view must escape)."""
    return "nothing planned"


@server.resource("box://notes/{day}", mime_type="text/plain")
def note(day: str) -> str:
    """The note of a day."""
    return f"note of {day}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
