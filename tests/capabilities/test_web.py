"""Capability.web against real HTTP servers on loopback, and the address checks that guard it.

No test sends a packet to a non-loopback address: the refusals of private addresses happen before
any connection, which ``no_connect`` proves by failing the test if a socket is opened.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loom_nb import Capability, ConfigError
from loom_nb.runtime import GovernancePolicy

from .conftest import LoopbackServer, run_calls


def fetch(cap: Capability, url: str):
    """web__fetch through Tool.invoke: (content, is_error)."""
    outcome = asyncio.run(cap.toolset[0].invoke({"url": url}))
    return outcome.content, outcome.is_error


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail on any outgoing TCP connection during the test; returns the attempts."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"the web tool tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


# -- the capability itself -------------------------------------------------------------------------


def test_tool_and_configuration() -> None:
    cap = Capability.web()
    (fetch_tool,) = cap.toolset
    assert (cap.kind, fetch_tool.name, fetch_tool.read_only, fetch_tool.destructive) == (
        "web", "web__fetch", True, False)
    assert fetch_tool.parameters["required"] == ["url"]
    assert "private network addresses are refused" in cap.instructions
    named = Capability.web(name="net", allow_domains=["Example.org", "*.docs.python.org"])
    assert named.toolset[0].name == "net__fetch"
    assert "example.org, docs.python.org" in named.instructions
    with pytest.raises(ConfigError, match="list of host names"):
        Capability.web(allow_domains="example.org")
    with pytest.raises(ConfigError, match="is not a host name"):
        Capability.web(allow_domains=["https://example.org/"])
    with pytest.raises(ConfigError, match="networks like"):
        Capability.web(allow_private=["not-a-network"])
    with pytest.raises(ConfigError, match="unknown options"):
        Capability.web(max_size=10)
    with pytest.raises(ConfigError, match="timeout"):
        Capability.web(timeout=0)


# -- fetching --------------------------------------------------------------------------------------


def test_html_is_reduced_to_readable_text_through_an_agent(server: LoopbackServer) -> None:
    result = run_calls(Capability.web(allow_private=True),
                       ("web__fetch", {"url": f"{server.base}/page"}),
                       ("web__fetch", {"url": f"{server.base}/text"}),
                       ("web__fetch", {"url": f"{server.base}/json"}))
    page, text, data = result.tool_calls
    assert not page.is_error
    assert page.content == (
        f"URL: {server.base}/page\nTitle: Test Page\nContent-Type: text/html\n\n"
        f"# Main & heading\n\nFirst paragraph with a docs link ({server.base}/docs/intro).\n\n"
        f"- apple\n- pear")
    assert "hidden script" not in page.content and "color: red" not in page.content
    assert "Menu link" not in page.content  # navigation dropped
    assert text.content == f"URL: {server.base}/text\nContent-Type: text/plain\n\nplain text é"
    assert data.content.endswith('\n\n{"answer": 42}')
    host, port = server.server_address[:2]
    assert server.hosts == [f"{host}:{port}"] * 3  # the Host header names what the URL named


def test_binary_and_http_errors_are_reported(server: LoopbackServer) -> None:
    cap = Capability.web(allow_private=True)
    content, is_error = fetch(cap, f"{server.base}/png")
    assert is_error and content == (f"web__fetch: {server.base}/png is binary content (image/png); "
                                    f"only text and HTML pages can be fetched.")
    content, is_error = fetch(cap, f"{server.base}/untyped-binary")
    assert is_error and "is binary content (unknown type)" in content
    content, is_error = fetch(cap, f"{server.base}/missing")
    assert is_error and content == (f"web__fetch: HTTP 404 Not Found for {server.base}/missing.\n"
                                    f"Not here, sorry.")


def test_size_limits_cut_the_response_and_say_so(server: LoopbackServer) -> None:
    small = Capability.web(allow_private=True, max_bytes=5000)
    content, is_error = fetch(small, f"{server.base}/big?size=10000000")
    assert not is_error
    body = content.split("\n\n", 1)[1]
    assert body.endswith("[truncated: the response is larger than 5000 bytes; only its first "
                         "5000 bytes were read]")
    assert body.count("x") == 5000 - 5  # 5 newlines among the first 5000 bytes

    short = Capability.web(allow_private=True, max_chars=100)
    content, _ = fetch(short, f"{server.base}/big?size=5000")
    body = content.split("\n\n", 1)[1]
    assert body == "x" * 100 + "\n[truncated: the text goes on past 100 characters; only the " \
                               "start is shown]"


def test_time_limit(server: LoopbackServer) -> None:
    cap = Capability.web(allow_private=True, timeout=0.5)
    started = time.monotonic()
    content, is_error = fetch(cap, f"{server.base}/slow?delay=5")
    assert time.monotonic() - started < 4  # it gave up, it did not wait for the server
    assert is_error and content == (f"web__fetch: {server.base}/slow?delay=5 did not answer "
                                    f"within the time limit of 0.5 s.")
    content, is_error = fetch(cap, f"{server.base}/trickle?delay=5")
    assert not is_error and "first part" in content and "second part" not in content
    assert content.endswith("[truncated: the time limit of 0.5 s ran out while the response was "
                            "arriving; only what arrived is shown]")


def test_redirects_are_followed_by_hand(serve: Callable[[str], LoopbackServer]) -> None:
    first, second = serve("127.0.0.1"), serve("127.0.0.1")
    cap = Capability.web(allow_private=True, max_redirects=3)
    content, is_error = fetch(cap, f"{first.base}/redirect?to=/text")
    assert not is_error
    assert content.startswith(f"URL: {first.base}/text (redirected from {first.base}/redirect")
    to_other_port = f"{first.base}/redirect?to={second.base}/page&status=307"
    content, is_error = fetch(cap, to_other_port)
    assert not is_error and content.startswith(f"URL: {second.base}/page (redirected from")
    assert second.hits == ["/page"]
    content, is_error = fetch(cap, f"{first.base}/loop")
    assert is_error and content == (f"web__fetch: more than 3 redirects starting at "
                                    f"{first.base}/loop; stopped at {first.base}/loop.")
    assert first.hits.count("/loop") == 4
    content, is_error = fetch(cap, f"{first.base}/redirect?to=file:///etc/passwd")
    assert is_error and "only http and https URLs can be fetched, not file:" in content


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme_url", ["file:///etc/passwd", "ftp://example.org/x",
                                        "javascript:alert(1)", "example.org/page", "http:///x"])
def test_only_http_and_https(scheme_url: str, no_connect: list) -> None:
    content, is_error = fetch(Capability.web(), scheme_url)
    assert is_error and ("only http and https" in content or "has no host name" in content)
    assert no_connect == []


def test_loopback_is_refused_by_default(server: LoopbackServer, no_connect: list) -> None:
    port = server.server_address[1]
    urls = [f"http://127.0.0.1:{port}/page", f"http://localhost:{port}/page",
            f"http://[::1]:{port}/page", f"http://[::ffff:127.0.0.1]:{port}/page",
            f"http://0.0.0.0:{port}/page", f"http://2130706433:{port}/page",
            f"http://127.1:{port}/page"]
    result = run_calls(Capability.web(), *[("web__fetch", {"url": u}) for u in urls])
    assert result.status == "completed" and result.output == "done"
    for call in result.tool_calls:
        assert call.is_error, call
        assert "refused to fetch" in call.content
        assert "Only public internet addresses can be fetched; a person can allow private ones "\
               "with Capability.web(allow_private=True)." in call.content
    first, by_name, v6, mapped = (c.content for c in result.tool_calls[:4])
    assert f"refused to fetch 'http://127.0.0.1:{port}/page': 127.0.0.1 is a loopback " \
           f"address." in first
    assert "127.0.0.1 is a loopback address ('localhost' resolves to it)" in by_name
    assert "::1 is a loopback address" in v6
    assert "127.0.0.1 is a loopback address (inside the IPv6 address ::ffff:7f00:1)" in mapped
    assert server.hits == [] and no_connect == []


@pytest.mark.parametrize("url, reason", [
    ("http://10.1.2.3/", "10.1.2.3 is a private address"),
    ("http://192.168.0.1:8080/admin", "192.168.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://[fd00::1]/", "fd00::1 is a private address"),
    ("http://100.64.0.1/", "100.64.0.1 is not a public internet address"),
    ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
    ("http://[::ffff:10.0.0.1]/", "10.0.0.1 is a private address (inside the IPv6 address"),
])
def test_private_addresses_are_refused_before_connecting(url: str, reason: str,
                                                         no_connect: list) -> None:
    content, is_error = fetch(Capability.web(), url)
    assert is_error and reason in content
    assert no_connect == []


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch,
                                           no_connect: list) -> None:
    def two_answers(host: str, port: int, *args: object, **kwargs: object) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr("loom_nb.capability._net.socket.getaddrinfo", two_answers)
    content, is_error = fetch(Capability.web(), "https://mixed.example/")
    assert is_error and "10.0.0.7 is a private address ('mixed.example' resolves to it)" in content
    assert no_connect == []


def test_connection_goes_to_the_checked_address_with_the_original_host(
        server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name is resolved once, by the tool; the socket goes to that address while the request
    # still names the host (what a DNS-rebinding attacker cannot change after the check).
    lookups: list[str] = []

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr("loom_nb.capability._net.socket.getaddrinfo", resolve)
    port = server.server_address[1]
    content, is_error = fetch(Capability.web(allow_private=True), f"http://docs.test:{port}/text")
    assert not is_error and content.endswith("plain text é")
    assert lookups == ["docs.test"] and server.hosts == [f"docs.test:{port}"]


def test_a_redirect_to_loopback_is_refused(serve: Callable[[str], LoopbackServer]) -> None:
    allowed = serve("127.0.0.1")
    target = serve("127.0.0.2")  # loopback too, but not among the allowed networks
    cap = Capability.web(allow_private=["127.0.0.1/32"])
    content, is_error = fetch(cap, f"{allowed.base}/text")
    assert not is_error  # the allowed server itself is reachable
    port = target.server_address[1]
    for where in (f"{target.base}/page", f"http://[::1]:{port}/page", "http://10.0.0.1/x"):
        content, is_error = fetch(cap, f"{allowed.base}/redirect?to={where}")
        assert is_error, content
        assert f"refused to fetch {where!r}" in content and "address" in content
    assert target.hits == []
    assert allowed.hits == ["/text", "/redirect", "/redirect", "/redirect"]


def test_allow_domains() -> None:
    from loom_nb.capability._net import FetchPolicy, _check_domain, _Target
    from loom_nb.errors import ToolError

    policy = FetchPolicy(allow_domains=("example.org", "127.0.0.1"))
    for ok in ("https://example.org/", "https://docs.example.org/x", "https://EXAMPLE.org./",
               "http://127.0.0.1/"):
        _check_domain(_Target.parse(ok, tool="t"), policy, tool="t")
    for bad in ("https://notexample.org/", "https://example.org.evil.com/",
                "https://example.com/", "http://1.127.0.0.1.nip.io/"):
        with pytest.raises(ToolError, match="is not on the list of allowed domains"):
            _check_domain(_Target.parse(bad, tool="t"), policy, tool="t")


def test_allow_domains_through_the_tool(server: LoopbackServer, no_connect: list) -> None:
    cap = Capability.web(allow_domains=["example.org"], allow_private=True)
    content, is_error = fetch(cap, f"{server.base}/text")
    assert is_error and content == ("web__fetch: '127.0.0.1' is not on the list of allowed domains "
                                    "(example.org); fetch a URL on one of those domains instead.")
    assert server.hits == [] and no_connect == []


def test_blocked_reason_covers_the_special_ranges() -> None:
    from loom_nb.capability._net import blocked_reason

    public = ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946",
              "::ffff:93.184.216.34", "2002:5db8:d822::1"]
    assert [blocked_reason(ipaddress.ip_address(a)) for a in public] == [None] * len(public)
    blocked = ["127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.1.1",
               "100.64.0.1", "0.0.0.0", "224.0.0.251", "240.0.0.1", "255.255.255.255",
               "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
               "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:0a00:0001::1",
               "64:ff9b::10.0.0.1", "2001:db8::1", "fec0::1"]
    for address in blocked:
        assert blocked_reason(ipaddress.ip_address(address)) is not None, address


def test_read_only_governance_lets_fetch_run(server: LoopbackServer) -> None:
    result = run_calls(Capability.web(allow_private=True),
                       ("web__fetch", {"url": f"{server.base}/text"}),
                       governance=GovernancePolicy(read_only=True))
    assert not result.tool_calls[0].is_error


# -- https -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path, server: LoopbackServer):
    """The loopback server behind TLS with a self-signed certificate for 'localhost'."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server, cert, names


def test_https_verifies_the_certificate_for_the_host_name(tls_server, monkeypatch) -> None:
    server, cert, names = tls_server
    port = server.server_address[1]
    cap = Capability.web(allow_private=True, timeout=5)
    content, is_error = fetch(cap, f"https://localhost:{port}/text")
    assert is_error and "TLS failed for localhost" in content  # self-signed: not trusted

    original = ssl.create_default_context

    def trusting() -> ssl.SSLContext:  # the default checks, with our test CA as the only root
        return original(cafile=str(cert))

    monkeypatch.setattr("loom_nb.capability._net.ssl.create_default_context", trusting)
    content, is_error = fetch(cap, f"https://localhost:{port}/text")
    assert not is_error and content.endswith("plain text é"), content
    content, is_error = fetch(cap, f"https://127.0.0.1:{port}/text")
    assert is_error and "TLS failed for 127.0.0.1" in content  # the certificate names localhost
    assert names[:2] == ["localhost", "localhost"]
    assert server.hosts == [f"localhost:{port}"]


def test_fetch_runs_off_the_event_loop(server: LoopbackServer) -> None:
    # A slow fetch must not stall other work on the loop (the tool is sync: it runs in a thread).
    cap = Capability.web(allow_private=True, timeout=0.6)

    async def both() -> tuple[float, bool]:
        ticks = 0
        stop = threading.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.05)

        task = asyncio.create_task(ticker())
        outcome = await cap.toolset[0].invoke({"url": f"{server.base}/slow?delay=5"})
        stop.set()
        await task
        return ticks, outcome.is_error

    ticks, is_error = asyncio.run(both())
    assert is_error and ticks >= 5
