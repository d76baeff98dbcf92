"""Capability.web: ``timeout`` is a deadline for the whole fetch, and HTML-to-text is bounded.

A server that drips one byte at a time never lets a per-read socket timeout fire, so a fetch
must be cut by a deadline that covers connecting, the TLS handshake, the headers and the body.
HTML from the web is hostile input as well: the reduction to text must take time linear in the
page and produce text no larger than the page, for markup built to defeat a parser.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from loom_nb import Capability
from loom_nb.capability.web import html_to_text


class DripServer:
    """A loopback TCP server that sends ``prefix`` at once, then ``payload`` a byte at a time."""

    def __init__(self, payload: bytes, interval: float, prefix: bytes = b"") -> None:
        self.payload, self.interval, self.prefix = payload, interval, prefix
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            if self.prefix:
                conn.sendall(self.prefix)
            for i in range(len(self.payload)):
                if self.stop.wait(self.interval):
                    return
                try:
                    conn.sendall(self.payload[i:i + 1])
                except OSError:
                    return  # the client gave up: that is the point

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def drip() -> Iterator[list[DripServer]]:
    servers: list[DripServer] = []
    yield servers
    for server in servers:
        server.close()


def _fetch(url: str, timeout: float) -> tuple[str, bool, float]:
    cap = Capability.web(allow_private=True, timeout=timeout)
    started = time.monotonic()
    outcome = asyncio.run(cap.toolset[0].invoke({"url": url}))
    return outcome.content, outcome.is_error, time.monotonic() - started


_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"


@pytest.mark.parametrize("case", ["headers", "body", "tls"])
def test_a_dripping_server_cannot_outlast_the_timeout(drip: list[DripServer], case: str) -> None:
    timeout = 1.5
    if case == "headers":  # the status line and headers arrive a byte at a time
        server = DripServer(_HEADERS + b"x" * 100, interval=0.2)
    elif case == "body":  # headers at once, then a byte at a time (kept: it is cut, not lost)
        server = DripServer(b"x" * 100, interval=0.2, prefix=_HEADERS)
    else:  # https: a ServerHello whose 70 bytes come one at a time
        server = DripServer(b"\x03\x03" + b"\x07" * 68, interval=0.2,
                            prefix=b"\x16\x03\x03\x00\x4a\x02\x00\x00\x46")
    drip.append(server)
    scheme = "https" if case == "tls" else "http"
    content, is_error, seconds = _fetch(f"{scheme}://127.0.0.1:{server.port}/", timeout)
    assert seconds < timeout + 2.0, f"a {timeout} s fetch took {seconds:.1f} s ({case})"
    if case == "body":  # what arrived in time is kept, and marked
        assert not is_error and "the time limit of 1.5 s ran out" in content
        assert content.count("x") >= 2
    else:
        assert is_error and "time limit" in content, content


def test_a_hanging_name_server_cannot_outlast_the_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hanging(*args: object, **kwargs: object) -> list[object]:
        release.wait(10)  # getaddrinfo cannot be interrupted: only stopped waiting for
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        content, is_error, seconds = _fetch("http://slow-dns.example/", timeout=1.0)
    finally:
        release.set()
    assert seconds < 3.0 and is_error and "did not finish within the time limit" in content


# -- HTML to text ----------------------------------------------------------------------------------

# Pages of ~300 KB built to make a parser rescan (unclosed tags, attributes and quotes, bogus
# comments) or to make the text grow faster than the page (deeply nested lists).
_HOSTILE = {
    "nested lists": "<ul><li>x" * 30_000,
    "unclosed end tags": "</" * 150_000,
    "unclosed start tags": "<a" * 150_000,
    "attributes without values": "<a x=" * 60_000,
    "unclosed quotes": '<a href="' * 33_000,
    "comments without an end": "<!--x>" * 50_000,
    "processing instructions": "<?" * 150_000,
    "links never closed": '<a href="/x">l<br>' * 20_000,
}

_CONVERT = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a blow-up fails, not swaps
    from loom_nb.capability.web import html_to_text
    out = {}
    for name, page in json.loads(sys.stdin.read()).items():
        started = time.process_time()
        title, text = html_to_text(page)
        out[name] = [time.process_time() - started, len(text)]
    print(json.dumps(out))
""")


def test_hostile_html_is_converted_in_linear_time_and_size() -> None:
    try:
        done = subprocess.run([sys.executable, "-c", _CONVERT], input=json.dumps(_HOSTILE),
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("converting the hostile pages took more than 30 s")
    assert done.returncode == 0, done.stderr[-2000:]
    for name, (seconds, size) in json.loads(done.stdout).items():
        assert seconds < 5, f"{name}: {seconds:.1f} s of CPU for {len(_HOSTILE[name])} chars"
        assert size <= 4 * len(_HOSTILE[name]), f"{name}: {size} chars of text"


def test_the_text_stops_at_max_chars_and_the_page_is_still_read_right() -> None:
    page = "<html><head><title>T</title></head><body>" + "<p>para</p>" * 200_000
    started = time.process_time()
    title, text = html_to_text(page, max_chars=1000)
    assert time.process_time() - started < 2  # stopped early, not converted whole and cut
    assert title == "T" and 1000 <= len(text) < 1100 and text.startswith("para\n\npara")
    # ordinary markup still reads as before
    title, text = html_to_text(
        '<title>A &amp; B</title><h2>Head</h2><p>One <a href="/d?x=1&amp;y=2">doc</a>.</p>'
        '<script>if (a < b) { x = "</p>"; }</script><ul><li>a<li>b</ul><pre>  x\n  y</pre>',
        base_url="https://example.org/")
    assert title == "A & B"
    assert text == ("## Head\n\nOne doc (https://example.org/d?x=1&y=2).\n\n- a\n- b\n\n  x\n  y")
