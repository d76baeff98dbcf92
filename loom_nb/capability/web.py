"""Capability.web: fetch http(s) URLs as readable text, with size and time limits.

One tool, ``web__fetch(url)`` (``name`` defaults to ``"web"``), marked ``read_only`` (it sends GET
requests only; governance read-only mode lets it run).

Safety, enforced in :mod:`loom_nb.capability._net`:

- only ``http`` and ``https``;
- loopback, private, link-local, multicast, reserved and unspecified addresses (IPv4 and IPv6,
  IPv4-mapped IPv6 included) are refused unless ``allow_private=True`` (or a list of networks that
  may be reached, e.g. ``["10.1.0.0/16"]``). The check is on the addresses the name resolves to,
  and the connection goes to a checked address, so DNS cannot answer differently in between;
- redirects are followed by hand (at most ``max_redirects``), each hop checked the same way;
- ``allow_domains``: when given, only those hosts and their subdomains;
- at most ``max_bytes`` of the body are read (the rest is never downloaded) and the whole fetch
  must finish within ``timeout`` seconds; what was cut is marked in the result. (Name resolution
  itself cannot be interrupted by the standard library; a hanging DNS server can add to that.)

Proxies from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``) are not used: the address check
needs a direct connection to the address it checked.

HTML is reduced to text with the standard library's ``html.parser``: scripts, styles and
navigation dropped; headings, paragraphs, list items and link text (with its URL) kept. Other text
types come back as they are; binary content is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

from ..errors import ConfigError, ToolError
from ..tools import tool
from . import Capability
from ._paths import is_binary
from ._net import FetchPolicy, Response, fetch

__all__ = ["html_to_text", "web_capability"]

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|xml|javascript|x-javascript|ecmascript|yaml|x-yaml|toml|"
    r"x-ndjson|ndjson|csv|x-sh|sql|graphql|rss\+xml|atom\+xml)|.*\+(json|xml))$")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def web_capability(*, name: str = "web", allow_domains: Sequence[str] | None = None,
                   allow_private: bool | Sequence[str] = False, max_bytes: int = 2_000_000,
                   max_chars: int = 50_000, timeout: float = 20.0, max_redirects: int = 5,
                   **unknown: Any) -> Capability:
    """The web capability (see the module docstring); ``Capability.web`` calls this.

    Args:
        name: the capability's name; the tool is ``{name}__fetch``.
        allow_domains: only these hosts (and their subdomains) may be fetched.
        allow_private: True lets private and loopback addresses be fetched; a list of networks
            (``"10.1.0.0/16"``, ``"127.0.0.1"``) allows just those.
        max_bytes: how much of a response body is read at most.
        max_chars: how many characters of text go back to the model at most.
        timeout: seconds the whole fetch (redirects included) may take.
        max_redirects: how many redirects are followed.
    """
    if unknown:
        raise ConfigError(f"Capability.web() got unknown options {sorted(unknown)}; it takes name, "
                          f"allow_domains, allow_private, max_bytes, max_chars, timeout, "
                          f"max_redirects.")
    for option, value, least in (("max_bytes", max_bytes, 1), ("max_chars", max_chars, 1),
                                 ("max_redirects", max_redirects, 0)):
        if not isinstance(value, int) or value < least:
            raise ConfigError(f"Capability.web({option}=...) takes an int >= {least}, got "
                              f"{value!r}.")
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"Capability.web(timeout=...) takes seconds > 0, got {timeout!r}.")
    everything, networks = _private_option(allow_private)
    policy = FetchPolicy(allow_domains=_domains(allow_domains), allow_private=everything,
                         private_networks=networks, max_bytes=max_bytes, timeout=float(timeout),
                         max_redirects=max_redirects)
    tool_name = f"{name}__fetch"

    def fetch_url(url: str) -> str:
        """Fetch a web page or text file over http(s) and return it as readable text.

        Args:
            url: the full URL, starting with https:// or http://.
        """
        return _render(fetch(url, policy, tool=tool_name), url, policy, max_chars, tool_name)

    fetch_tool = tool(name=tool_name, read_only=True, thread=True)(fetch_url)
    return Capability(name=name, toolset=(fetch_tool,), kind="web",
                      instructions=_instructions(tool_name, policy, max_chars))


def _instructions(tool_name: str, policy: FetchPolicy, max_chars: int) -> str:
    text = (f"{tool_name}(url) fetches an http or https URL and returns its text (HTML reduced to "
            f"readable text with link URLs in parentheses; at most {max_chars} characters, "
            f"{policy.timeout:g} s).")
    if policy.allow_domains is not None:
        text += f" Only these domains can be fetched: {', '.join(policy.allow_domains)}."
    if not policy.allow_private:
        text += " Local and private network addresses are refused."
    return text


def _domains(allow_domains: Sequence[str] | None) -> tuple[str, ...] | None:
    if allow_domains is None:
        return None
    if isinstance(allow_domains, str):
        raise ConfigError(f"Capability.web(allow_domains=...) takes a list of host names, e.g. "
                          f"[{allow_domains!r}].")
    domains = []
    for domain in allow_domains:
        clean = str(domain).strip().lower().removeprefix("*.").strip(".")
        if not clean or "/" in clean or " " in clean:
            raise ConfigError(f"Capability.web(allow_domains=...): {domain!r} is not a host name; "
                              f"pass names like 'example.org' (subdomains are included).")
        domains.append(clean.encode("idna").decode("ascii"))
    return tuple(domains)


def _private_option(value: bool | Sequence[str]) -> tuple[bool, tuple[Any, ...]]:
    if isinstance(value, bool):
        return value, ()
    if isinstance(value, str):
        raise ConfigError(f"Capability.web(allow_private=...) takes True, False or a list of "
                          f"networks, e.g. [{value!r}].")
    try:
        return False, tuple(ipaddress.ip_network(str(v), strict=False) for v in value)
    except ValueError as exc:
        raise ConfigError(f"Capability.web(allow_private=...): {exc}; pass networks like "
                          f"'10.1.0.0/16' or single addresses like '127.0.0.1'.") from None


# -- turning a response into text for the model ----------------------------------------------------


def _render(response: Response, asked: str, policy: FetchPolicy, max_chars: int,
            tool_name: str) -> str:
    kind = response.content_type
    if _is_binary(kind, response.body):
        raise ToolError(f"{tool_name}: {response.url} is binary content "
                        f"({kind or 'unknown type'}); only text and HTML pages can be fetched.")
    title = ""
    if kind in _HTML_TYPES or (not kind and _looks_like_html(response.body)):
        title, text = html_to_text(_decode(response, html=True), base_url=response.url)
    else:
        text = _decode(response, html=False)
    if not 200 <= response.status < 300:
        excerpt = text[:1000] + (" [...]" if len(text) > 1000 else "")
        raise ToolError(f"{tool_name}: HTTP {response.status} {response.reason} for "
                        f"{response.url}.\n{excerpt}".rstrip())
    header = [f"URL: {response.url}"]
    if response.redirects:
        header[0] += f" (redirected from {asked})"
    if title:
        header.append(f"Title: {title}")
    header.append(f"Content-Type: {kind or 'unknown'}")
    notes = []
    if len(text) > max_chars:
        notes.append(f"[truncated: the text goes on past {max_chars} characters; only the start "
                     f"is shown]")
        text = text[:max_chars]
    if response.truncated:
        notes.append(f"[truncated: the response is larger than {policy.max_bytes} bytes; only "
                     f"its first {policy.max_bytes} bytes were read]")
    if response.timed_out:
        notes.append(f"[truncated: the time limit of {policy.timeout:g} s ran out while the "
                     f"response was arriving; only what arrived is shown]")
    return "\n".join(header) + "\n\n" + "\n".join([text, *notes]).strip()


def _is_binary(kind: str, body: bytes) -> bool:
    if kind in _HTML_TYPES or _TEXT_TYPES.match(kind):
        return False
    # an unknown or missing type: a NUL byte in the start means binary, otherwise text will do
    return bool(kind and kind != "application/octet-stream") or is_binary(body)


def _looks_like_html(body: bytes) -> bool:
    start = body[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _decode(response: Response, *, html: bool) -> str:
    charset = response.charset
    if charset is None and html:
        found = _META_CHARSET.search(response.body[:4096])
        charset = found.group(1).decode("ascii") if found else None
    try:
        return response.body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return response.body.decode("utf-8", errors="replace")


# -- HTML to text ----------------------------------------------------------------------------------

_SKIP = frozenset({"script", "style", "nav", "noscript", "template", "svg", "iframe", "object",
                   "canvas", "select", "button"})
_BLOCK = frozenset({"p", "div", "section", "article", "main", "header", "footer", "aside",
                    "blockquote", "ul", "ol", "table", "dl", "dt", "dd", "figure", "figcaption",
                    "form", "address", "details", "summary", "tr", "body", "hr"})
_SPACED = frozenset({"p", "blockquote", "table", "pre", "figure", "section",
                     "article", "h1", "h2", "h3", "h4", "h5", "h6"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "source", "wbr", "col", "area",
                   "base", "embed", "param", "track"})


def html_to_text(html: str, base_url: str = "") -> tuple[str, str]:
    """(title, text) of an HTML page: readable text, links as 'text (url)'."""
    parser = _TextExtractor(base_url)
    parser.feed(html)
    parser.close()
    return parser.title, parser.text()


class _TextExtractor(HTMLParser):
    """Collects lines of text; block elements start new lines, headings and list items marked."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1  # no skipped tag is void: each has its end tag
            return
        if self.skip:
            return
        attr = dict(attrs)
        if tag == "title":
            self.in_title = True
        elif tag in _HEADINGS:
            self.flush(blank=True)
            self.prefix = "#" * _HEADINGS[tag] + " "
        elif tag == "li":
            self.flush()
            self.prefix = "  " * max(self.lists - 1, 0) + "- "
        elif tag in ("td", "th"):
            if self.cells:
                self.buffer.append(" | ")
            self.cells += 1
        elif tag == "br":
            self.flush()
        elif tag == "pre":
            self.flush(blank=True)
            self.pre += 1
        elif tag == "img" and attr.get("alt"):
            self.buffer.append(f" [image: {attr['alt']}] ")
        elif tag == "a":
            self.links.append((attr.get("href") or "", len(self.buffer)))
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
            self.title = " ".join((self.title + " " + data).split())
        elif self.pre:
            self.buffer.append(data)
        else:
            self.buffer.append(re.sub(r"\s+", " ", data))

    def flush(self, *, blank: bool = False) -> None:
        joined = "".join(self.buffer)
        self.buffer = []
        self.links = [(href, 0) for href, _ in self.links]  # a link spanning a block break
        if self.pre:
            self.lines.extend(joined.strip("\n").splitlines())
        else:
            text = " ".join(joined.split())
            if text:
                self.lines.append(self.prefix + text)
                self.prefix = ""
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def text(self) -> str:
        self.flush()
        return "\n".join(self.lines).strip()
