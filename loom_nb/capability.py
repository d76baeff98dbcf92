"""Capability: a named bundle of tools (and the instructions that go with them).

``Capability.tools(...)`` bundles plain functions or ``@tool``s. The built-in capabilities (files,
web, shell, MCP, skills) arrive with the capabilities issue; until then their factories raise
:class:`~loom_nb.errors.NotSupportedError` rather than pretend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol, TypeAlias, runtime_checkable

from .errors import NotSupportedError
from .tools import Tool, as_tool

__all__ = ["Capability", "CapabilityKind", "ToolSource"]

CapabilityKind: TypeAlias = Literal["tools", "files", "web", "shell", "mcp", "skills"]


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
    def files(root: str = ".", *, read_only: bool = True, **options: Any) -> Capability:
        _not_yet("Capability.files")

    @staticmethod
    def web(**options: Any) -> Capability:
        _not_yet("Capability.web")

    @staticmethod
    def shell(cwd: str = ".", *, require_approval: bool = True, **options: Any) -> Capability:
        _not_yet("Capability.shell")

    @staticmethod
    def mcp(name: str, *, command: list[str] | None = None, url: str | None = None,
            **options: Any) -> Capability:
        _not_yet("Capability.mcp")

    @staticmethod
    def skills(path: str, **options: Any) -> Capability:
        _not_yet("Capability.skills")


def _not_yet(what: str) -> NoReturn:
    raise NotSupportedError(
        f"{what} is not available in this version of loom_nb yet. Until it lands, write the "
        f"operations you need as plain functions and pass them with Capability.tools(...) or "
        f"Agent(tools=[...])."
    )
