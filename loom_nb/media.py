"""Images and documents: binary message parts, provider-neutral.

``Image(x)`` takes bytes, a path, an ``http(s)`` URL, a ``data:`` URI, a PIL image or a
matplotlib Figure; ``Document(x)`` takes a PDF or a text file (bytes, a path or a PDF URL), or
``Document.from_text(...)``. Both are message parts (see :mod:`loom_nb.messages`): a prompt may be
a list of ``str``, Image and Document, and a tool may return them.

What is checked here, before anything is sent:

* the MIME type is one every provider takes (:data:`IMAGE_TYPES`, :data:`DOCUMENT_TYPES`); the
  bytes' own signature (PNG, JPEG, GIF, WebP, PDF) wins over a file name, and a ``media_type=``
  that contradicts it is refused;
* the size (:data:`MAX_IMAGE_BYTES`, :data:`MAX_PDF_BYTES`, :data:`MAX_TEXT_BYTES`), checked on
  the file's size before it is read;
* a URL is never fetched by loom_nb: it goes to the provider as a URL (the provider fetches it).

A part's identity is the sha256 of its bytes: stores keep each binary once under it, and
``Message.to_dict(blobs=...)`` writes a reference instead of the bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import mimetypes
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from .errors import ConfigError, StoreError

__all__ = ["DOCUMENT_TYPES", "IMAGE_TYPES", "MAX_IMAGE_BYTES", "MAX_PDF_BYTES", "MAX_RESULT_MEDIA",
           "MAX_TEXT_BYTES", "ONLY_MEDIA", "Document", "Image", "Media", "media_from_dict",
           "media_label", "split_media"]

#: Image types all three wire formats (Anthropic, OpenAI chat and Responses) accept. SVG is not
#: one: it is a script-capable document, never an image input.
IMAGE_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: Document types: PDF, and text sent as text.
DOCUMENT_TYPES: tuple[str, ...] = ("application/pdf", "text/plain", "text/markdown", "text/csv")
#: Anthropic's limit for one image (OpenAI's is larger): the smaller one, so that a session
#: can move between providers.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: Anthropic's request limit for PDFs.
MAX_PDF_BYTES = 32 * 1024 * 1024
#: A text document this size is already about half a million tokens.
MAX_TEXT_BYTES = 2 * 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"))
_EXTENSIONS = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv",
               ".txt": "text/plain", ".webp": "image/webp", ".jpg": "image/jpeg"}


def _sniff(data: bytes) -> str | None:
    """The MIME type the bytes' own signature says, if they have one we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media_type in _SIGNATURES:
        if data.startswith(magic):
            return media_type
    return None


def _guess(name: str) -> str | None:
    extension = os.path.splitext(name.split("?")[0])[1].lower()
    return _EXTENSIONS.get(extension) or mimetypes.guess_type("x" + extension)[0]


def _size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KB"


@dataclass(frozen=True, slots=True, eq=False)
class _Media:
    """What Image and Document share: bytes (or a URL), their type, size and sha256."""

    media_type: str
    data: bytes | None
    url: str | None
    sha256: str
    size: int
    name: str | None
    kind_name: ClassVar[str] = ""
    allowed: ClassVar[tuple[str, ...]] = ()

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def _limit(cls, media_type: str) -> int:
        return MAX_IMAGE_BYTES

    @classmethod
    def _build(cls, data: bytes | None, media_type: str | None, *, url: str | None = None,
               name: str | None = None) -> tuple[Any, ...]:
        """The checked fields, in order: media_type, data, url, sha256, size, name."""
        where = cls.kind_name
        if data is None:  # a URL: the provider fetches it; nothing is known of its bytes
            checked = media_type or (_guess(url or "") if url else None) or ""
            if checked and checked not in cls.allowed:
                raise ConfigError(f"{where}({url!r}): {checked!r} is not a type loom_nb sends as "
                                  f"{where.lower()}; allowed: {', '.join(cls.allowed)}.")
            return checked, None, url, "", 0, name
        sniffed = _sniff(data)
        if media_type and sniffed and media_type != sniffed:
            raise ConfigError(f"{where}: the data is {sniffed} (by its first bytes) but "
                              f"media_type={media_type!r} was given; drop media_type= or fix it.")
        checked = media_type or sniffed or (_guess(name) if name else None) or ""
        if checked not in cls.allowed:
            raise ConfigError(
                f"{where}: {'unknown data' if not checked else repr(checked)} is not a type loom_nb "
                f"sends as {where.lower()}; allowed: {', '.join(cls.allowed)}. Pass media_type= "
                f"if the type is one of these.")
        limit = cls._limit(checked)
        if len(data) > limit:
            raise ConfigError(f"{where}: {_size_text(len(data))} is over the {_size_text(limit)} "
                              f"limit for {checked}; send a smaller or downscaled one.")
        return checked, data, None, hashlib.sha256(data).hexdigest(), len(data), name

    @classmethod
    def _read_path(cls, path: str | os.PathLike[str], media_type: str | None) -> tuple[Any, ...]:
        where = f"{cls.kind_name}({os.fspath(path)!r})"
        try:
            info = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the file ({exc.strerror or exc}). Pass bytes, "
                              f"an existing path or an http(s) URL.") from None
        if not os.path.isfile(path):
            raise ConfigError(f"{where}: not a regular file.")
        name = os.path.basename(os.fspath(path))
        # The size is checked before reading: a 4 GB file given by mistake is never loaded.
        guessed = media_type or _guess(name) or ""
        limit = cls._limit(guessed) if guessed in cls.allowed else max(MAX_IMAGE_BYTES, MAX_PDF_BYTES)
        if info.st_size > limit:
            raise ConfigError(f"{where}: {_size_text(info.st_size)} is over the "
                              f"{_size_text(limit)} limit; send a smaller file.")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        return cls._build(data, media_type, name=name)

    @classmethod
    def _from_source(cls, source: Any, media_type: str | None) -> tuple[Any, ...]:
        if isinstance(source, _Media):
            return (source.media_type, source.data, source.url, source.sha256, source.size,
                    source.name)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls._build(bytes(source), media_type)
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            return cls._build(None, media_type, url=source)
        if isinstance(source, str) and source.startswith("data:"):
            return cls._build(*_data_uri(source, cls.kind_name, media_type))
        if isinstance(source, (str, os.PathLike)):
            return cls._read_path(source, media_type)
        rendered = cls._render(source)
        if rendered is not None:
            return cls._build(rendered, "image/png", name=None)
        raise ConfigError(f"{cls.kind_name}(...) takes bytes, a path, an http(s) or data: URL"
                          f"{cls._also()}; got {type(source).__name__}.")

    @classmethod
    def _render(cls, source: Any) -> bytes | None:
        return None

    @classmethod
    def _also(cls) -> str:
        return ""

    # -- use -----------------------------------------------------------------------------------

    @property
    def is_pdf(self) -> bool:
        return self.media_type == "application/pdf"

    def base64(self) -> str:
        """The bytes as base64 text (for the wire formats); a URL part has none."""
        if self.data is None:
            raise ConfigError(f"This {self.kind_name.lower()} is a URL ({self.url}); it has no bytes.")
        return base64.b64encode(self.data).decode("ascii")

    def data_uri(self) -> str:
        """``data:TYPE;base64,...``, or the URL itself for a URL part."""
        if self.data is None:
            return self.url or ""
        return f"data:{self.media_type};base64,{self.base64()}"

    def to_dict(self, blobs: dict[str, bytes] | None = None) -> dict[str, Any]:
        """JSON data. With ``blobs``, the bytes go there (under sha256) and the dict holds only
        the reference; without it, they are inline as base64."""
        out: dict[str, Any] = {"kind": self.kind_name.lower(), "media_type": self.media_type,
                               "sha256": self.sha256, "size": self.size, "url": self.url,
                               "name": self.name}
        if self.data is not None:
            if blobs is None:
                out["data"] = self.base64()
            else:
                blobs[self.sha256] = self.data
        return out

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, _Media)
                and (self.media_type, self.sha256, self.url, self.name)
                == (other.media_type, other.sha256, other.url, other.name))

    def __hash__(self) -> int:
        return hash((self.kind_name, self.sha256, self.url))

    def __repr__(self) -> str:
        where = self.url if self.data is None else f"{_size_text(self.size)}, sha256 {self.sha256[:12]}"
        return f"{self.kind_name}({self.media_type or 'unknown type'}, {where})"


def _data_uri(uri: str, kind: str, media_type: str | None) -> tuple[bytes, str | None]:
    header, sep, body = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ConfigError(f"{kind}: a data: URI must be base64, 'data:TYPE;base64,...'.")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{kind}: the data: URI is not valid base64.") from None
    return data, media_type or header[5:-7] or None


class Image(_Media):
    """An image for the model: ``Image(data_or_path_or_url, media_type=None)``.

    Args:
        source: bytes, a path, an ``http(s)`` URL (sent as a URL, not fetched), a ``data:``
            URI, a PIL image or a matplotlib Figure (both rendered to PNG).
        media_type: one of :data:`IMAGE_TYPES`; found from the bytes when not given.
    """

    __slots__ = ()
    kind_name: ClassVar[str] = "Image"
    allowed: ClassVar[tuple[str, ...]] = IMAGE_TYPES
    kind: ClassVar[Literal["image"]] = "image"

    def __init__(self, source: Any, media_type: str | None = None) -> None:
        fields = self._from_source(source, media_type)
        for slot, value in zip(("media_type", "data", "url", "sha256", "size", "name"), fields,
                               strict=True):
            object.__setattr__(self, slot, value)

    @classmethod
    def _render(cls, source: Any) -> bytes | None:
        module = type(source).__module__
        buffer = io.BytesIO()
        if module.startswith("matplotlib.") and hasattr(source, "savefig"):
            source.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        elif module.startswith("PIL.") and hasattr(source, "save") and hasattr(source, "mode"):
            image = source if source.mode in ("RGB", "RGBA", "L", "LA", "P") else source.convert("RGBA")
            image.save(buffer, format="PNG")
        else:
            return None
        return buffer.getvalue()

    @classmethod
    def _also(cls) -> str:
        return ", a PIL image or a matplotlib Figure"


class Document(_Media):
    """A document for the model: a PDF, or a text file (plain, Markdown, CSV).

    Args:
        source: bytes, a path, or an ``http(s)`` URL of a PDF (sent as a URL, not fetched).
        media_type: one of :data:`DOCUMENT_TYPES`; found from the bytes or the file name.
        name: the title the model sees; the file name by default.
    """

    __slots__ = ()
    kind_name: ClassVar[str] = "Document"
    allowed: ClassVar[tuple[str, ...]] = DOCUMENT_TYPES
    kind: ClassVar[Literal["document"]] = "document"

    def __init__(self, source: Any, media_type: str | None = None, *, name: str | None = None) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)) and not media_type and _sniff(bytes(source)) is None:
            media_type = "text/plain"  # bytes without a signature: text, checked below
        fields = list(self._from_source(source, media_type))
        if fields[2] is not None and fields[0] not in ("", "application/pdf"):
            raise ConfigError(f"Document({source!r}): only a PDF can be sent as a URL; read a text "
                              f"file yourself and pass Document.from_text(...).")
        if fields[1] is not None and not fields[0] == "application/pdf":
            try:
                fields[1].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"Document: {fields[0]} data is not UTF-8 text ({exc.reason} at "
                                  f"byte {exc.start}); pass a PDF or UTF-8 text.") from None
        fields[5] = name or fields[5]
        for slot, value in zip(("media_type", "data", "url", "sha256", "size", "name"), fields,
                               strict=True):
            object.__setattr__(self, slot, value)

    @classmethod
    def from_text(cls, text: str, *, name: str | None = None,
                  media_type: str = "text/plain") -> Document:
        """A text document from a string."""
        return cls(text.encode("utf-8"), media_type, name=name)

    @classmethod
    def _limit(cls, media_type: str) -> int:
        return MAX_PDF_BYTES if media_type == "application/pdf" else MAX_TEXT_BYTES

    @property
    def text(self) -> str:
        """The text of a text document ("" for a PDF or a URL)."""
        return "" if self.is_pdf or self.data is None else self.data.decode("utf-8")


Media: TypeAlias = Image | Document


def media_from_dict(data: dict[str, Any], blobs: Any = None) -> Media:
    """An Image or Document from :meth:`to_dict` data: its bytes inline (checked against the
    sha256), or from ``blobs`` (a mapping or a callable of sha256, which a store checks once)
    when the data holds only a reference."""
    cls: type[Image] | type[Document] = Image if data["kind"] == "image" else Document
    part = object.__new__(cls)
    raw: bytes | None = None
    sha = str(data.get("sha256") or "")
    if data.get("data") is not None:
        raw = base64.b64decode(data["data"])
        if hashlib.sha256(raw).hexdigest() != sha:
            raise StoreError(f"A stored {cls.kind_name.lower()} does not match its sha256; the "
                             f"data is damaged.")
    elif data.get("url") is None:
        raw = blobs(sha) if callable(blobs) else (blobs or {}).get(sha)
        if raw is None:
            raise StoreError(f"The stored {cls.kind_name.lower()} {sha[:12]} is missing from the "
                             f"store's blobs; the store file is incomplete (copied without its "
                             f"blobs table?).")
    fields = (data.get("media_type") or "", raw, data.get("url"), sha,
              int(data.get("size") or 0), data.get("name"))
    for slot, value in zip(("media_type", "data", "url", "sha256", "size", "name"), fields,
                           strict=True):
        object.__setattr__(part, slot, value)
    return part


def media_label(part: Media) -> str:
    """A short description for text forms and tool results: ``image/png, 12.3 KB``."""
    where = part.url if part.data is None else _size_text(part.size)
    title = f" {part.name!r}" if part.name else ""
    return f"{part.kind_name.lower()}{title} ({part.media_type or 'unknown type'}, {where})"


#: The most images and documents one tool result may hold (each is bounded in size too).
MAX_RESULT_MEDIA = 20
#: What :func:`split_media` leaves of a return value that was only images and documents.
ONLY_MEDIA: Any = object()


def split_media(value: Any) -> tuple[Any, tuple[Media, ...]]:
    """A tool's return value without its images and documents, and those.

    An Image, a Document or a matplotlib Figure (as a PNG), alone or as items of a returned list
    or tuple, go to the model as media next to the text of the rest.
    """
    one = _as_media(value)
    if one is not None:
        return ONLY_MEDIA, (one,)
    if not isinstance(value, (list, tuple)) or not any(map(_is_media, value)):
        return value, ()
    media: list[Media] = []
    rest: list[Any] = []
    for item in value:
        found = _as_media(item) if _is_media(item) else None  # a figure is rendered once
        if found is None:
            rest.append(item)
        else:
            media.append(found)
    if not rest:
        return ONLY_MEDIA, tuple(media)
    return (rest[0] if len(rest) == 1 else rest), tuple(media)


def _is_media(value: Any) -> bool:
    return isinstance(value, (Image, Document)) or type(value).__module__.startswith("matplotlib.")


def _as_media(value: Any) -> Media | None:
    if isinstance(value, (Image, Document)):
        return value
    module = type(value).__module__
    if module.startswith("matplotlib."):
        figure = value if type(value).__name__ == "Figure" else getattr(value, "figure", None)
        if type(value).__name__ != "SubFigure" and type(figure).__name__ == "Figure":
            return Image(figure)  # a Figure, or the Axes of one: the whole figure as a PNG
    return None
