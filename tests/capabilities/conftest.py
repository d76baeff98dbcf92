"""Shared helpers: run tool calls through a real Agent, and real HTTP servers on loopback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from loom_nb import Agent, Capability, Model, Runtime
from loom_nb.result import RunResult
from loom_nb.runtime import GovernancePolicy


def run_calls(capability: Capability, *calls: tuple[str, dict[str, Any]],
              governance: GovernancePolicy | None = None) -> RunResult:
    """One run in which the model makes ``calls`` (in one turn) and then says 'done'."""
    model = Model.scripted([[{"tool": name, "args": args} for name, args in calls], "done"])
    runtime = Runtime.sdk(governance=governance) if governance else None
    return Agent(model, capabilities=[capability], runtime=runtime).run_sync("go")


PAGE = b"""<!doctype html><html><head><title>Test  Page</title>
<style>body { color: red }</style><script>alert("hidden script")</script></head>
<body><nav><a href="/menu">Menu link</a></nav>
<h1>Main &amp; heading</h1>
<p>First    paragraph with a <a href="/docs/intro">docs link</a>.</p>
<ul><li>apple</li><li>pear</li></ul>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.hits.append(url.path)
        self.server.hosts.append(self.headers.get("Host", ""))
        route = self.server.routes.get(url.path)
        try:
            if route is None:
                self._send(404, "text/plain", b"no such page")
            else:
                route(self, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (a size or time limit): that is the point

    def _send(self, status: int, content_type: str, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _big(handler: _Handler, query: dict[str, str]) -> None:
    size = int(query.get("size", "100000"))
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    for _ in range(size // 1000):
        handler.wfile.write(b"x" * 999 + b"\n")


def _slow(handler: _Handler, query: dict[str, str]) -> None:
    handler.server.stop.wait(float(query.get("delay", "5")))  # before any header
    handler._send(200, "text/plain", b"late")


def _trickle(handler: _Handler, query: dict[str, str]) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.end_headers()
    handler.wfile.write(b"first part\n")
    handler.wfile.flush()
    handler.server.stop.wait(float(query.get("delay", "5")))
    handler.wfile.write(b"second part\n")


def _redirect(handler: _Handler, query: dict[str, str]) -> None:
    handler._send(int(query.get("status", "302")), "text/plain", b"moved",
                  {"Location": query["to"]})


def _loop(handler: _Handler, query: dict[str, str]) -> None:
    handler._send(302, "text/plain", b"again", {"Location": "/loop"})


ROUTES: dict[str, Callable[[_Handler, dict[str, str]], None]] = {
    "/page": lambda h, q: h._send(200, "text/html; charset=utf-8", PAGE),
    "/text": lambda h, q: h._send(200, "text/plain; charset=utf-8", "plain text é\n".encode()),
    "/json": lambda h, q: h._send(200, "application/json", b'{"answer": 42}'),
    "/png": lambda h, q: h._send(200, "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00"),
    "/untyped-binary": lambda h, q: h._send(200, "", b"\x00\x01\x02binary"),
    "/missing": lambda h, q: h._send(404, "text/html", b"<p>Not here, sorry.</p>"),
    "/big": _big,
    "/slow": _slow,
    "/trickle": _trickle,
    "/redirect": _redirect,
    "/loop": _loop,
}


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping must not hold up the test's teardown

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.routes = ROUTES
        self.hits: list[str] = []
        self.hosts: list[str] = []
        self.stop = threading.Event()

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def serve() -> Iterator[Callable[[str], LoopbackServer]]:
    """Start real HTTP servers on loopback addresses; all are stopped after the test."""
    servers: list[LoopbackServer] = []

    def start(host: str = "127.0.0.1") -> LoopbackServer:
        server = LoopbackServer(host)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(serve: Callable[[str], LoopbackServer]) -> LoopbackServer:
    return serve("127.0.0.1")
