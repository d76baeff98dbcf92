"""What the model reads of MCP content: tool results, embedded resources, resource reads.

* text parts as they are;
* an embedded **text** resource inline, under a line naming its URI;
* an embedded **blob** resource, and a **resource link**, as a reference: URI, type and size, and
  the tool to read it with (``{name}__read_resource``); a read blob of a textual type is decoded;
* ``structuredContent`` beside the text (as JSON), unless the text already is that JSON; the
  SDK checks it against the tool's ``outputSchema`` first (a mismatch is an error result);
* images: :func:`result_media` makes them :class:`~loom_nb.Image` parts of the tool result (the
  text names each one); an image loom_nb cannot send (a type it does not take, too large,
  malformed) and audio are described by :func:`media_text` instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..media import MAX_RESULT_MEDIA, Image, media_label

if TYPE_CHECKING:
    from mcp_types import CallToolResult

__all__ = ["blob_text", "image_part", "media_text", "result_media", "result_text",
           "schema_problems", "validator"]

#: MIME types (besides text/*) whose blobs are decoded as UTF-8 text for the model.
_TEXTUAL = ("application/json", "application/xml", "application/yaml", "application/javascript",
            "application/x-yaml", "application/toml", "image/svg+xml")


def result_text(result: CallToolResult, read_tool: str | None = None) -> str:
    """What the model reads of a tool result. ``read_tool`` is the name of the capability's
    resource-reading tool, named in references (None when the server has no resources)."""
    parts = [_item_text(item, read_tool) for item in result.content]
    structured = result.structured_content
    if structured is not None:
        encoded = json.dumps(structured, ensure_ascii=False)
        if not parts:
            return encoded
        if not any(_says(part, structured) for part in parts):
            parts.append(f"[structured content]\n{encoded}")
    return "\n".join(parts)


def _item_text(item: Any, read_tool: str | None) -> str:
    kind = getattr(item, "type", "")
    if kind == "text":
        return str(item.text)
    if kind == "image" and (image := image_part(item)) is not None:
        return f"[{media_label(image)}: attached]"
    if kind in ("image", "audio"):
        return media_text(item)
    if kind == "resource_link":
        return _reference("resource link", item.uri, item.mime_type, getattr(item, "size", None),
                          read_tool, title=item.title or item.name, about=item.description)
    if kind == "resource":
        resource = item.resource
        text = getattr(resource, "text", None)
        if text is not None:
            return f"[resource {resource.uri}{_mime(resource.mime_type)}]\n{text}"
        blob = getattr(resource, "blob", "") or ""
        return _reference("binary resource", resource.uri, resource.mime_type,
                          len(blob) * 3 // 4, read_tool)
    return f"[content of type {kind!r}: not shown to the model]"


def image_part(item: Any) -> Image | None:
    """An MCP image content item as an Image part; None when loom_nb cannot send it (a type it
    does not take, over its size limit, or base64 that does not decode)."""
    if getattr(item, "type", "") != "image":
        return None
    try:
        return Image(base64.b64decode(getattr(item, "data", "") or "", validate=True),
                     getattr(item, "mime_type", None) or None)
    except (ConfigError, binascii.Error, ValueError):
        return None


def result_media(result: CallToolResult) -> tuple[Image, ...]:
    """The images of a tool result that go to the model as image parts (at most
    :data:`~loom_nb.media.MAX_RESULT_MEDIA`)."""
    found = [image for item in result.content if (image := image_part(item)) is not None]
    return tuple(found[:MAX_RESULT_MEDIA])


def media_text(item: Any) -> str:
    """An image loom_nb cannot send, or audio (no provider-neutral audio part yet), described
    for the model."""
    size = len(getattr(item, "data", "") or "") * 3 // 4
    return (f"[{getattr(item, 'type', 'media')} ({getattr(item, 'mime_type', '?')}, about {size} "
            f"bytes): not shown to the model]")


def blob_text(uri: str, mime_type: str | None, blob: str, limit: int) -> str:
    """A read blob: decoded when its type is textual and it decodes, else described."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return f"[binary resource {uri}{_mime(mime_type)}: its base64 content is malformed]"
    textual = mime_type is not None and (mime_type.startswith("text/") or mime_type in _TEXTUAL)
    if textual:
        try:
            return f"[resource {uri}{_mime(mime_type)}]\n{raw[:limit].decode('utf-8')}"
        except UnicodeDecodeError:
            pass
    if mime_type and mime_type.startswith(("image/", "audio/")):
        kind = mime_type.split("/")[0]
        return media_text(_Media(kind, mime_type, blob))
    return (f"[binary resource {uri}{_mime(mime_type)}, {len(raw)} bytes: binary content cannot "
            f"be shown to the model]")


class _Media:
    def __init__(self, type: str, mime_type: str, data: str) -> None:
        self.type, self.mime_type, self.data = type, mime_type, data


def _reference(what: str, uri: str, mime_type: str | None, size: int | None,
               read_tool: str | None, *, title: str | None = None, about: str | None = None) -> str:
    details = ", ".join(d for d in (mime_type, f"about {size} bytes" if size else None) if d)
    head = f"[{what} {uri}" + (f" ({details})" if details else "")
    head += f": {title}" if title else ""
    head += f" - {about}" if about else ""
    how = (f"; read it with {read_tool}(uri={json.dumps(uri)})" if read_tool
           else "; this server offers no resources to read it with")
    return head + how + "]"


def _mime(mime_type: str | None) -> str:
    return f" ({mime_type})" if mime_type else ""


def _says(text: str, value: Any) -> bool:
    """The text already carries the structured content: the same JSON, or (as servers wrap a
    plain return value in ``{"result": value}``) the one value of a one-key object."""
    candidates = [value]
    if isinstance(value, dict) and len(value) == 1:
        candidates.append(next(iter(value.values())))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate == text:
            return True
        try:
            if json.loads(text) == candidate:
                return True
        except (ValueError, TypeError):
            continue
    return False


# -- JSON schema checks (tool arguments, elicitation answers) --------------------------------------


def validator(schema: dict[str, Any]) -> Any:
    """A validator for ``schema``, or None when the schema itself is broken (then nothing is
    checked here: the server judges)."""
    import jsonschema  # type: ignore[import-untyped]  # a dependency of the mcp SDK

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None
    return cls(schema)


def schema_problems(check: Any, value: Any) -> list[str]:
    if check is None:
        return []
    problems = []
    for error in sorted(check.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        problems.append(f"{where}: {error.message}")
    return problems[:10]
