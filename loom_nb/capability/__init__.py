"""Capability: a named bundle of tools (and the instructions that go with them).

``Capability.tools(...)`` bundles plain functions or ``@tool``s. The built-in capabilities live in
one module each (files, web, shell, mcp, skills), imported only when their factory is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from ..tools import Tool, as_tool

__all__ = ["Capability", "CapabilityKind", "ToolSource"]

CapabilityKind: TypeAlias = Literal["tools", "files", "web", "shell", "mcp", "skills", "ask_user"]


@runtime_checkable
class ToolSource(Protocol):
    """Tools known only at run time (e.g. an MCP server's), and a resource to close.

    ``list_tools`` is awaited once, before the agent's first run; ``aclose`` when the agent
    closes. Implementations must work from any event loop (keep loop-bound connections on
    loom_nb's background loop, see ``loom_nb._bridge``).
    """

    async def list_tools(self) -> Sequence[Tool]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Capability:
    """Tools the agent may use, with instructions that tell the model how.

    Attributes:
        name: a label for displays and traces.
        toolset: the tools of this capability (``Capability.tools(...)`` is the factory).
        instructions: text added to the system partition when the capability is present.
        kind: which family the capability belongs to.
        source: where tools known only at run time come from (an MCP server), if anywhere.
    """

    name: str
    toolset: tuple[Tool, ...] = ()
    instructions: str = ""
    kind: CapabilityKind = "tools"
    source: ToolSource | None = None

    @staticmethod
    def tools(*functions: Tool | Callable[..., Any], name: str = "tools",
              instructions: str = "") -> Capability:
        """A bundle of plain functions or ``@tool``-decorated functions."""
        return Capability(name=name, toolset=tuple(as_tool(f) for f in functions),
                          instructions=instructions)

    @staticmethod
    def files(root: str = ".", read_only: bool = True, **options: Any) -> Capability:
        """List, read, glob and search files under ``root``; write and edit when not read-only."""
        from .files import files_capability

        return files_capability(root, read_only=read_only, **options)

    @staticmethod
    def web(**options: Any) -> Capability:
        """Fetch http(s) URLs, with size and time limits; private addresses refused."""
        from .web import web_capability

        return web_capability(**options)

    @staticmethod
    def shell(cwd: str = ".", require_approval: bool = True, **options: Any) -> Capability:
        """Run shell commands in ``cwd`` with a timeout; each call needs approval by default."""
        from .shell import shell_capability

        return shell_capability(cwd, require_approval=require_approval, **options)

    @staticmethod
    def mcp(name: str, *, command: list[str] | None = None, url: str | None = None,
            **options: Any) -> Capability:
        """The tools of an MCP server (stdio ``command`` or streamable HTTP ``url``)."""
        from .mcp import mcp_capability

        return mcp_capability(name, command=command, url=url, **options)

    # -- an MCP server's resources and prompts (Capability.mcp only) --------------------------------

    def resources(self) -> list[Any]:
        """An MCP server's resources and URI templates (``McpResource``; starts the server)."""
        return self._mcp("resources").resources()

    def read(self, uri: str) -> list[Any]:
        """Read an MCP resource: its contents (``McpResourceContent``: ``text`` or ``data``)."""
        return self._mcp("read").read(uri)

    def prompts(self) -> list[Any]:
        """An MCP server's prompts (``McpPrompt``: name, description, arguments)."""
        return self._mcp("prompts").prompts()

    def prompt(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """Render an MCP prompt: ``McpPromptMessages``, whose ``.text`` is a run's prompt."""
        return self._mcp("prompt").prompt(name, args)

    def _mcp(self, method: str) -> Any:
        if self.kind != "mcp" or self.source is None:
            from ..errors import ConfigError

            raise ConfigError(f"capability.{method}() is for MCP servers (Capability.mcp(...)); "
                              f"{self.name!r} is a {self.kind!r} capability.")
        return self.source

    @staticmethod
    def ask_user(name: str = "ask_user", **options: Any) -> Capability:
        """A tool through which the model asks the person a question: the run pauses (like an
        approval) until ``session.answer(call_id, text)``, whose text is the tool's result."""
        from .ask_user import ask_user_capability

        return ask_user_capability(name, **options)

    @staticmethod
    def skills(path: str, **options: Any) -> Capability:
        """Skill folders with ``SKILL.md``; the index is in context, full text on request."""
        from .skills import skills_capability

        return skills_capability(path, **options)

