"""``%loom mcp NAME prompts`` / ``%loom mcp NAME resources``: what an MCP server of the agent
offers besides tools, as a table (HTML in the notebook, aligned text elsewhere)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Literal

from ..display.common import printable, short, table_html, text_table, view_card
from ..errors import CommandError

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = ["McpListing", "mcp_listing"]

USAGE = "%loom mcp NAME prompts|resources"


class McpListing:
    """The prompts or resources of one MCP capability, listed when it is made."""

    def __init__(self, server: str, kind: Literal["prompts", "resources"],
                 rows: list[list[str]]) -> None:
        self.server, self.kind, self.rows = server, kind, rows

    @property
    def headers(self) -> list[str]:
        if self.kind == "prompts":
            return ["prompt", "arguments (* required)", "description"]
        return ["URI", "type", "name", "description"]

    def _repr_html_(self) -> str:
        title = f"MCP {self.kind} of {self.server!r} ({len(self.rows)})"
        if not self.rows:
            return view_card("mcp", title, f"<i>The server lists no {self.kind}.</i>")
        cells = [[html.escape(c) for c in row] for row in self.rows]
        return view_card("mcp", title, table_html(self.headers, cells))

    def __repr__(self) -> str:
        lines = [f"MCP {self.kind} of {self.server!r} ({len(self.rows)})"]
        if not self.rows:
            return lines[0] + f": the server lists no {self.kind}."
        return "\n".join(lines + text_table([self.headers, *[[printable(c) for c in row]
                                                               for row in self.rows]]))


def mcp_listing(agent: Agent, args: tuple[str, ...]) -> McpListing:
    """The listing ``%loom mcp NAME WHAT`` asks for (it starts the server if it is not running)."""
    if len(args) != 2 or args[1] not in ("prompts", "resources"):
        raise CommandError(f"Write `{USAGE}`, where NAME is the Capability.mcp name, e.g. "
                           f"`%loom mcp docs prompts`.")
    name, kind = args[0], args[1]
    servers = {c.name: c for c in agent.capabilities if c.kind == "mcp"}
    if name not in servers:
        have = ", ".join(sorted(servers)) or "none"
        raise CommandError(f"The agent has no MCP capability named {name!r} (its MCP servers: "
                           f"{have}). Use the name given to Capability.mcp(NAME, ...).")
    capability = servers[name]
    if kind == "prompts":
        return McpListing(name, "prompts", [_prompt_row(p) for p in capability.prompts()])
    return McpListing(name, "resources", [_resource_row(r) for r in capability.resources()])


def _prompt_row(prompt: Any) -> list[str]:
    arguments = ", ".join(f"{a}{'*' if required else ''}" for a, required, _ in prompt.arguments)
    return [prompt.name, arguments, short(prompt.description or prompt.title or "", 120)]


def _resource_row(resource: Any) -> list[str]:
    uri = f"{resource.uri} (template)" if resource.template else resource.uri
    return [uri, resource.mime_type or "", resource.title or resource.name,
            short(resource.description or "", 120)]
