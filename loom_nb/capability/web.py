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
  must finish within ``timeout`` seconds: a deadline for the whole fetch (name resolution,
  connection, TLS, headers and body of every hop), not a timeout per read, so a server that
  drips a byte at a time is cut off too. What was cut is marked in the result.

Proxies from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``) are not used: the address check
needs a direct connection to the address it checked.

HTML is reduced to text by :mod:`loom_nb.capability._html`, in time linear in the page (the
standard library's parser is quadratic on unclosed markup): scripts, styles and navigation
dropped; headings, paragraphs, list items and link text (with its URL) kept; at most
``MAX_HTML_CHARS`` of a page are converted. Other text types come back as they are; binary
content is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, ToolError
from ..tools import tool
from . import Capability
from ._html import MAX_HTML_CHARS, html_to_text
from ._net import FetchPolicy, Response, fetch
from ._paths import is_binary

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
    title, cut_page = "", False
    if kind in _HTML_TYPES or (not kind and _looks_like_html(response.body)):
        page = _decode(response, html=True)
        # one character past max_chars is enough to know that the text goes on
        title, text = html_to_text(page, base_url=response.url, max_chars=max_chars + 1)
        cut_page = len(page) > MAX_HTML_CHARS and len(text) <= max_chars
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
    if cut_page:
        notes.append(f"[truncated: the page is longer than {MAX_HTML_CHARS} characters; only "
                     f"its start was converted to text]")
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
