"""An MCP server's resources and prompts: for the model as tools, for the user as methods.

When the server offers resources, the model gets two read-only tools: ``{name}__list_resources``
(the resources and the URI templates, one line each) and ``{name}__read_resource(uri)``. The user
gets ``capability.resources()``, ``capability.read(uri)``, ``capability.prompts()`` and
``capability.prompt(name, args)`` (see :class:`~loom_nb.capability.Capability`); a prompt comes
back as :class:`McpPromptMessages`, whose ``text`` is a run's prompt.

Listings are paged by the server; at most :data:`MAX_PAGES` pages are read (a server that keeps
returning cursors must not loop the client forever).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, ToolError
from ..messages import Message, TextPart
from ._mcp_content import blob_text, media_text

if TYPE_CHECKING:
    from mcp import Client

    from ._mcp_connection import McpConnection

__all__ = ["McpPrompt", "McpPromptMessages", "McpResource", "McpResourceContent",
           "list_all", "prompt_messages", "read_contents", "resource_lines", "server_offers"]

MAX_PAGES = 20
#: The most resources/templates the list tool shows the model.
MAX_LISTED = 200


@dataclass(frozen=True, kw_only=True)
class McpResource:
    """A resource (``template`` False) or a resource template (its ``uri`` is the template)."""

    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    template: bool = False


@dataclass(frozen=True, kw_only=True)
class McpResourceContent:
    """One content of a read resource: ``text``, or ``data`` (the decoded blob)."""

    uri: str
    mime_type: str | None
    text: str | None = None
    data: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class McpPrompt:
    name: str
    title: str | None
    description: str | None
    arguments: tuple[tuple[str, bool, str | None], ...]  #: (name, required, description)


@dataclass(frozen=True, kw_only=True)
class McpPromptMessages:
    """A prompt the server rendered: its messages, and ``text`` to use as a run's prompt."""

    name: str
    description: str | None
    messages: tuple[Message, ...]

    @property
    def text(self) -> str:
        """The messages as one prompt: a lone user message as it is, else each under its role."""
        if len(self.messages) == 1 and self.messages[0].role == "user":
            return self.messages[0].text
        return "\n\n".join(f"[{m.role}]\n{m.text}" for m in self.messages)

    def __str__(self) -> str:
        return self.text


def server_offers(connection: McpConnection) -> set[str]:
    """Which of resources / prompts / tools the connected server declares."""
    client = connection.client
    try:
        capabilities = client.server_capabilities if client is not None else None
    except Exception:  # noqa: BLE001 - an SDK without the property: assume tools only
        capabilities = None
    if capabilities is None:
        return {"tools"}
    return {kind for kind in ("resources", "prompts", "tools")
            if getattr(capabilities, kind, None) is not None}


async def list_all(page: Callable[[str | None], Awaitable[Any]], field: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        result = await page(cursor)
        items.extend(getattr(result, field))
        cursor = result.next_cursor
        if not cursor:
            break
    return items


async def lists_any(client: Client) -> bool:
    """Whether the server has a resource or a template to read (first pages only)."""
    if (await client.list_resources()).resources:
        return True
    return bool((await client.list_resource_templates()).resource_templates)


async def resources_of(client: Client) -> list[McpResource]:
    listed = await list_all(lambda c: client.list_resources(cursor=c), "resources")
    templates = await list_all(lambda c: client.list_resource_templates(cursor=c),
                               "resource_templates")
    return ([McpResource(uri=str(r.uri), name=r.name, title=r.title, description=r.description,
                         mime_type=r.mime_type) for r in listed]
            + [McpResource(uri=t.uri_template, name=t.name, title=t.title,
                           description=t.description, mime_type=t.mime_type, template=True)
               for t in templates])


def resource_lines(resources: list[McpResource], read_tool: str) -> str:
    if not resources:
        return "The server lists no resources."
    lines = [f"{len(resources)} resources (read one with {read_tool}(uri=...); a template's "
             f"{{placeholders}} are filled in by you):"]
    for r in resources[:MAX_LISTED]:
        about = " - ".join(x for x in (r.title or r.name, r.description) if x)
        kind = "template " if r.template else ""
        lines.append(f"- {kind}{r.uri}" + (f" ({r.mime_type})" if r.mime_type else "")
                     + (f": {about}" if about else ""))
    if len(resources) > MAX_LISTED:
        lines.append(f"[... {len(resources) - MAX_LISTED} more not shown]")
    return "\n".join(lines)


def read_contents(result: Any) -> list[McpResourceContent]:
    import base64
    import binascii

    contents = []
    for item in result.contents:
        text, data = getattr(item, "text", None), None
        if text is None:
            try:
                data = base64.b64decode(getattr(item, "blob", "") or "", validate=True)
            except (binascii.Error, ValueError):
                data = b""
        contents.append(McpResourceContent(uri=str(item.uri), mime_type=item.mime_type,
                                           text=text, data=data))
    return contents


def contents_text(result: Any, limit: int) -> str:
    """A read resource as the model reads it."""
    parts = []
    for item in result.contents:
        text = getattr(item, "text", None)
        if text is not None:
            parts.append(f"[resource {item.uri}" + (f" ({item.mime_type})" if item.mime_type
                                                    else "") + f"]\n{text}")
        else:
            parts.append(blob_text(str(item.uri), item.mime_type, item.blob or "", limit))
    return "\n".join(parts) or "[the resource has no contents]"


def prompt_of(spec: Any) -> McpPrompt:
    return McpPrompt(name=spec.name, title=spec.title, description=spec.description,
                     arguments=tuple((a.name, bool(a.required), a.description)
                                     for a in spec.arguments or ()))


def prompt_messages(name: str, result: Any) -> McpPromptMessages:
    messages = []
    for message in result.messages:
        role: Literal["user", "assistant"] = ("assistant" if message.role == "assistant"
                                              else "user")
        messages.append(Message(role=role, parts=(TextPart(text=_block_text(message.content)),)))
    return McpPromptMessages(name=name, description=result.description, messages=tuple(messages))


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(block.text)
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return (f"[resource {resource.uri}]\n{text}" if text is not None else
                blob_text(str(resource.uri), resource.mime_type, resource.blob or "", 100_000))
    if kind == "resource_link":
        return f"[resource link {block.uri}: {block.name}]"
    if kind in ("image", "audio"):
        return media_text(block)
    return f"[content of type {kind!r}]"


def check_prompt_args(name: str, args: Any) -> dict[str, str]:
    if args is None:
        return {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ConfigError(f"capability.prompt({name!r}, args) takes a dict of argument names to "
                          f"values, e.g. {{'city': 'Paris'}}.")
    # Prompt arguments are strings on the wire; other values go as JSON.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}


def not_offered(label: str, what: str) -> ToolError:
    return ToolError(f"The MCP server {label} does not offer {what} (its capabilities do not "
                     f"list them).")
