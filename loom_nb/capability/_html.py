"""HTML to readable text in time linear in the page, for Capability.web.

Why not ``html.parser``: when a construct is not closed (``<a x=``, ``<a href="``, ``</``,
``<!--x>``...), the standard library's parser searches the rest of the document for its end, gives
up, and does it again at the next ``<``: quadratic (and worse) in the page. A 300 KB page of
``<a x=`` takes minutes of CPU on Python 3.11. The tokenizer here follows the HTML standard
instead: every construct runs to its terminator or to the end of the document (an unclosed tag at
the end is dropped, as browsers do), so the position only moves forward and each character is
looked at a bounded number of times.

The text is bounded too: list indentation is capped (a page of ``<ul><li>`` nested 30,000 deep
made 4 GB of spaces), an ``<a>`` inside an open ``<a>`` closes the first one (as in browsers), the
input is cut at ``MAX_HTML_CHARS`` and conversion stops once ``max_chars`` of text are made.
"""

from __future__ import annotations

import html
import re
import string
from urllib.parse import urljoin

__all__ = ["MAX_HTML_CHARS", "html_to_text"]

MAX_HTML_CHARS = 3_000_000  # characters of a page that are converted (under 2 s of CPU at worst)
_MAX_INDENT = 8  # list levels shown by indentation; deeper items stay at this level
_MAX_TITLE = 300

_SKIP = frozenset({"script", "style", "nav", "noscript", "template", "svg", "iframe", "object",
                   "canvas", "select", "button"})
_BLOCK = frozenset({"p", "div", "section", "article", "main", "header", "footer", "aside",
                    "blockquote", "ul", "ol", "table", "dl", "dt", "dd", "figure", "figcaption",
                    "form", "address", "details", "summary", "tr", "body", "hr"})
_SPACED = frozenset({"p", "blockquote", "table", "pre", "figure", "section",
                     "article", "h1", "h2", "h3", "h4", "h5", "h6"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# elements whose content is text up to their end tag, never markup (the standard's raw text and
# escapable raw text elements)
_RAW = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "title", "textarea"})
_ESCAPABLE_RAW = frozenset({"title", "textarea"})

_LETTERS = frozenset(string.ascii_letters)
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_SEPARATORS = re.compile(r"[\t\n\f\r /]*")
_BLANKS = re.compile(r"[\t\n\f\r ]*")
_ATTR_NAME = re.compile(r"=?[^\t\n\f\r />=]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_WHITESPACE = re.compile(r"\s+")


def html_to_text(page: str, base_url: str = "", *, max_chars: int | None = None) -> tuple[str, str]:
    """(title, text) of an HTML page: readable text, links as 'text (url)'.

    At most ``MAX_HTML_CHARS`` of the page are read; with ``max_chars``, conversion stops soon
    after that much text is made (the text may run a line past it).
    """
    sink = _TextExtractor(base_url, max_chars)
    _Tokenizer(page[:MAX_HTML_CHARS], sink).run()
    return sink.title, sink.text()


class _Tokenizer:
    """Start tags, end tags and text of a page, handed to the extractor in document order."""

    def __init__(self, page: str, sink: _TextExtractor) -> None:
        self.page, self.sink, self.n = page, sink, len(page)
        self.raw_ends: dict[str, re.Pattern[str]] = {}

    def run(self) -> None:
        page, i = self.page, 0
        while i < self.n and not self.sink.full:
            lt = page.find("<", i)
            if lt < 0:
                self.sink.handle_data(html.unescape(page[i:]))
                return
            if lt > i:
                self.sink.handle_data(html.unescape(page[i:lt]))
            i = self._markup(lt)

    def _markup(self, i: int) -> int:
        """Consume the construct that starts with '<' at ``i``; the position after it."""
        page, after = self.page, self.page[i + 1: i + 2]
        if after in _LETTERS:
            return self._start_tag(i + 1)
        if after == "/":
            rest = page[i + 2: i + 3]
            if rest in _LETTERS:
                return self._end_tag(i + 2)
            if rest == ">":
                return i + 3  # '</>' is nothing
            if not rest:
                self.sink.handle_data("</")
                return self.n
            return self._until(">", i + 2)  # '</3...>' is a bogus comment
        if page.startswith("<!--", i):
            return self._until("-->", i + 4)
        if after in ("!", "?"):
            return self._until(">", i + 2)  # doctype, CDATA, processing instruction
        self.sink.handle_data("<")
        return i + 1

    def _until(self, end: str, start: int) -> int:
        found = self.page.find(end, start)
        return self.n if found < 0 else found + len(end)

    def _start_tag(self, i: int) -> int:
        name, attrs, end, closed = self._tag(i)
        if end < 0:
            return self.n  # the document ended inside the tag: it is dropped
        self.sink.handle_starttag(name, attrs)
        if closed:
            self.sink.handle_endtag(name)
        elif name in _RAW:
            return self._raw_text(name, end)
        return end

    def _end_tag(self, i: int) -> int:
        name, _, end, _ = self._tag(i)
        if end >= 0:
            self.sink.handle_endtag(name)
        return self.n if end < 0 else end

    def _raw_text(self, name: str, start: int) -> int:
        pattern = self.raw_ends.get(name)
        if pattern is None:
            pattern = self.raw_ends[name] = re.compile(f"</{name}[\t\n\f\r />]", re.IGNORECASE)
        found = pattern.search(self.page, start)
        stop = self.n if found is None else found.start()
        content = self.page[start:stop]
        self.sink.handle_data(html.unescape(content) if name in _ESCAPABLE_RAW else content)
        return stop  # the end tag is read next, as any other

    def _tag(self, i: int) -> tuple[str, list[tuple[str, str | None]], int, bool]:
        """(name, attributes, position after '>' or -1 at the end of the page, self-closing)."""
        page = self.page
        j = _TAG_NAME.match(page, i).end()  # type: ignore[union-attr]
        name = page[i:j].lower()
        attrs: list[tuple[str, str | None]] = []
        while True:
            slash = page.startswith("/", j)
            j = _SEPARATORS.match(page, j).end()  # type: ignore[union-attr]
            if j >= self.n:
                return name, attrs, -1, False
            if page[j] == ">":
                return name, attrs, j + 1, slash and page[j - 1] == "/"
            k = _ATTR_NAME.match(page, j).end()  # type: ignore[union-attr]
            attr, value = page[j:k].lower(), None
            j = _BLANKS.match(page, k).end()  # type: ignore[union-attr]
            if page.startswith("=", j):
                j = _BLANKS.match(page, j + 1).end()  # type: ignore[union-attr]
                quote = page[j: j + 1]
                if quote in ('"', "'"):
                    close = page.find(quote, j + 1)
                    if close < 0:
                        return name, attrs, -1, False  # an unclosed quote runs to the end
                    value, j = page[j + 1: close], close + 1
                else:
                    k = _UNQUOTED.match(page, j).end()  # type: ignore[union-attr]
                    value, j = page[j:k], k
                value = html.unescape(value)
            attrs.append((attr, value))


class _TextExtractor:
    """Collects lines of text; block elements start new lines, headings and list items marked."""

    def __init__(self, base_url: str, max_chars: int | None) -> None:
        self.base_url = base_url
        self.max_chars = max_chars
        self.size = 0  # characters in self.lines
        self.title = ""
        self.lines: list[str] = []
        self.buffer: list[str] = []
        self.prefix = ""
        self.skip = 0
        self.in_title = False
        self.pre = 0
        self.lists = 0
        self.links: list[tuple[str, int]] = []
        self.cells = 0

    @property
    def full(self) -> bool:
        return self.max_chars is not None and self.size > self.max_chars

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1  # no skipped tag is void: each has its end tag
            return
        if self.skip:
            return
        if tag == "title":
            self.in_title = True
        elif tag in _HEADINGS:
            self.flush(blank=True)
            self.prefix = "#" * _HEADINGS[tag] + " "
        elif tag == "li":
            self.flush()
            self.prefix = "  " * min(max(self.lists - 1, 0), _MAX_INDENT) + "- "
        elif tag in ("td", "th"):
            if self.cells:
                self.buffer.append(" | ")
            self.cells += 1
        elif tag == "br":
            self.flush()
        elif tag == "pre":
            self.flush(blank=True)
            self.pre += 1
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.buffer.append(f" [image: {alt}] ")
        elif tag == "a":
            if self.links:  # an <a> inside an open <a> ends the first one, as in browsers
                self._end_link(*self.links.pop())
            self.links.append((dict(attrs).get("href") or "", len(self.buffer)))
        elif tag in _BLOCK:
            self.lists += tag in ("ul", "ol")
            self.cells = 0 if tag == "tr" else self.cells
            self.flush(blank=tag in _SPACED)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
            return
        if self.skip:
            return
        if tag == "title":
            self.in_title = False
        elif tag == "a" and self.links:
            self._end_link(*self.links.pop())
        elif tag == "pre":
            self.flush(blank=True)
            self.pre = max(self.pre - 1, 0)
        elif tag in _HEADINGS or tag in _BLOCK or tag == "li":
            self.lists -= tag in ("ul", "ol") and self.lists > 0
            self.cells = 0 if tag == "tr" else self.cells
            self.flush(blank=tag in _SPACED)

    def _end_link(self, href: str, start: int) -> None:
        text = "".join(self.buffer[start:]).strip()
        href = href.strip()
        if not text or not href or href.startswith(("#", "javascript:")):
            return
        url = urljoin(self.base_url, href)
        if url != text:
            self.buffer.append(f" ({url})")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.in_title:
            if len(self.title) < _MAX_TITLE:
                self.title = " ".join((self.title + " " + data[:_MAX_TITLE]).split())[:_MAX_TITLE]
        elif self.pre:
            self.buffer.append(data)
        else:
            self.buffer.append(_WHITESPACE.sub(" ", data))

    def flush(self, *, blank: bool = False) -> None:
        joined = "".join(self.buffer)
        self.buffer = []
        self.links = [(href, 0) for href, _ in self.links]  # a link spanning a block break
        if self.pre:
            new = joined.strip("\n").splitlines()
        else:
            text = " ".join(joined.split())
            new = [self.prefix + text] if text else []
            self.prefix = "" if text else self.prefix
        if blank and (new or self.lines) and (new or self.lines)[-1] != "":
            new.append("")
        self.lines.extend(new)
        self.size += sum(len(line) + 1 for line in new)

    def text(self) -> str:
        self.flush()
        return "\n".join(self.lines).strip()
