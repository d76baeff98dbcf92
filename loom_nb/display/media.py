"""Images and documents in the run card: bounded thumbnails and labelled chips.

A thumbnail is an ``<img>`` with a ``data:`` URI, made only for the raster types of
:data:`~loom_nb.media.IMAGE_TYPES` (never SVG, which can hold script) and only from bytes the
run holds. An image larger than :data:`THUMBNAIL_BYTES` is downscaled first when Pillow is
installed, and shown as a chip otherwise, so a card stays small whatever the model was sent. A
URL image is a chip with its (escaped) address: drawing it would make the browser fetch it.
"""

from __future__ import annotations

import base64
import html
import io
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ..media import IMAGE_TYPES, Image, Media
from .common import MUTED, theme

__all__ = ["THUMBNAIL_BYTES", "THUMBNAIL_PIXELS", "media_html", "media_index", "media_lines"]

#: The most bytes of image data one thumbnail embeds in a card.
THUMBNAIL_BYTES = 96 * 1024
#: The longest side of a downscaled thumbnail, and of any thumbnail as drawn.
THUMBNAIL_PIXELS = 160

_CHIP = (f"display:inline-block;margin:4px 6px 0 0;padding:1px 8px;border-radius:10px;"
         f"border:1px solid {theme('border-color2', '#d0d7de')};font-size:12px")


def media_index(messages: Iterable[Any]) -> dict[str, Media]:
    """The images and documents with bytes among ``messages``, by sha256."""
    return {m.sha256: m for message in messages for m in message.media if m.data is not None}


def media_lines(refs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Text lines for the media references of an event (``attachments`` or ``media``)."""
    return [f"  [{ref.get('label') or ref.get('kind', 'media')}]" for ref in refs]


def media_html(refs: Iterable[Mapping[str, Any]], held: Mapping[str, Media] | None = None) -> str:
    """A row of thumbnails (for images whose bytes are in ``held``) and chips (the rest)."""
    items = []
    for ref in refs:
        part = (held or {}).get(str(ref.get("sha256") or ""))
        thumb = _thumbnail(part) if isinstance(part, Image) else None
        label = html.escape(str(ref.get("label") or ref.get("kind") or "media"))
        if thumb is not None:
            items.append(f"<img src='{thumb}' alt='{label}' title='{label}' style='max-width:"
                         f"{THUMBNAIL_PIXELS}px;max-height:{THUMBNAIL_PIXELS}px;margin:4px 6px 0 0;"
                         f"border-radius:4px;vertical-align:top'>")
        else:
            icon = "📄" if ref.get("kind") == "document" else "🖼"
            items.append(f"<span style='{_CHIP}'>{icon} {label}</span>")
    if not items:
        return ""
    return f"<div style='{MUTED};margin-left:18px'>{''.join(items)}</div>"


#: Thumbnails already made, by sha256: a card is drawn again on each display (and each live
#: update), and downscaling a large image takes a tenth of a second.
_MADE: OrderedDict[str, str | None] = OrderedDict()
_KEEP = 64


def _thumbnail(part: Image) -> str | None:
    """A ``data:`` URI of at most :data:`THUMBNAIL_BYTES`, or None."""
    if part.media_type not in IMAGE_TYPES or part.data is None:
        return None
    if part.sha256 in _MADE:
        _MADE.move_to_end(part.sha256)
        return _MADE[part.sha256]
    made = _make_thumbnail(part)
    _MADE[part.sha256] = made
    if len(_MADE) > _KEEP:
        _MADE.popitem(last=False)
    return made


def _make_thumbnail(part: Image) -> str | None:
    assert part.data is not None
    data, media_type = part.data, part.media_type
    if len(data) > THUMBNAIL_BYTES:
        smaller = _downscale(data)
        if smaller is None:
            return None
        data, media_type = smaller, "image/png"
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _downscale(data: bytes) -> bytes | None:
    try:
        from PIL import Image as PILImage
    except ImportError:  # optional: without Pillow a large image is a chip
        return None
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            buffer = io.BytesIO()
            image.convert("RGBA").save(buffer, format="PNG", optimize=True)
    except Exception:  # noqa: BLE001 - a damaged image is shown as a chip, never breaks a card
        return None
    out = buffer.getvalue()
    return out if len(out) <= THUMBNAIL_BYTES else None

