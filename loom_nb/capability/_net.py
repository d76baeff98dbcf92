"""HTTP GET with the address check made on the address actually connected to (for Capability.web).

Checking a hostname and then letting an HTTP library resolve it again is not a check: DNS may
answer differently the second time (DNS rebinding), and a redirect may lead anywhere. So this
module resolves the name itself, checks *every* address it got, opens the TCP connection to one of
those checked addresses, and only then speaks HTTP over that socket, with the original ``Host``
header and, for https, the hostname for SNI and certificate verification. Redirects are followed
by hand, each hop checked the same way.

The time limit is a deadline for the whole fetch, not a timeout per read: a per-read timeout
starts over with every byte, so a server that drips one byte every half second would hold a
fetch for as long as it likes. Name resolution runs in a helper thread that the fetch stops
waiting for at the deadline, and once connected a watchdog shuts the socket down at the deadline,
which ends whatever call is blocked on it (TLS handshake, status line, headers or body).

Only the standard library is used (``socket``, ``ssl``, ``http.client``), so the kernel keeps its
single dependency. Everything here blocks; the web tool is a sync function, which loom_nb runs in a
worker thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..errors import ToolError

__all__ = ["FetchPolicy", "Response", "blocked_reason", "fetch"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 65536


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """Where a fetch may go and how much it may take."""

    allow_domains: tuple[str, ...] | None = None
    allow_private: bool = False
    private_networks: tuple[IPNetwork, ...] = ()  # private ranges allowed one by one
    max_bytes: int = 1_000_000
    timeout: float = 20.0
    max_redirects: int = 5
    user_agent: str = "loom_nb-web/0.1 (+https://github.com/loom-nb)"
    accept: str = "text/html,application/xhtml+xml,text/*;q=0.9,application/json;q=0.9,*/*;q=0.1"


@dataclass(kw_only=True)
class Response:
    """What a fetch got: the final URL, status, headers and (up to ``max_bytes`` of) the body."""

    url: str
    status: int
    reason: str
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool = False  # the body went on past max_bytes
    timed_out: bool = False  # the time limit cut the body
    redirects: list[str] = field(default_factory=list)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address is not on the public internet, or None when it is.

    IPv6 forms that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64)
    are judged by the IPv4 address inside, since that is where the packets end up.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            reason = blocked_reason(inner)
            return f"{reason} (inside the IPv6 address {ip})" if reason else None
    checks = (("loopback", ip.is_loopback), ("unspecified", ip.is_unspecified),
              ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
              ("private", ip.is_private), ("reserved", ip.is_reserved),
              ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
              ("not globally routable", not ip.is_global))
    for name, hit in checks:
        if hit:
            return f"{ip} is a {name} address" if name != "not globally routable" \
                else f"{ip} is not a public internet address"
    return None


def fetch(url: str, policy: FetchPolicy, *, tool: str) -> Response:
    """GET ``url`` under ``policy``, following redirects; a refusal or failure is a ToolError."""
    deadline = time.monotonic() + policy.timeout
    redirects: list[str] = []
    while True:
        target = _Target.parse(url, tool=tool)
        _check_domain(target, policy, tool=tool)
        response, location = _get(target, policy, deadline, tool=tool)
        if location is None:
            response.redirects = redirects
            return response
        if len(redirects) >= policy.max_redirects:
            raise ToolError(f"{tool}: more than {policy.max_redirects} redirects starting at "
                            f"{redirects[0] if redirects else url}; stopped at {url}.")
        redirects.append(url)
        url = urljoin(url, location)


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # without brackets, lower case, no trailing dot
    port: int
    path: str  # path and query, as sent in the request line

    @classmethod
    def parse(cls, url: str, *, tool: str) -> _Target:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ToolError(f"{tool}: {url!r} is not a valid URL ({exc}).") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ToolError(f"{tool}: only http and https URLs can be fetched, not "
                            f"{scheme + ':' if scheme else 'a URL without a scheme'} ({url!r}); "
                            f"pass a URL starting with https://.")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ToolError(f"{tool}: {url!r} has no host name; pass a full URL like "
                            f"https://example.org/page.")
        try:  # internationalized names travel as punycode (DNS, Host header, SNI)
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ToolError(f"{tool}: {host!r} is not a valid host name.") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c in path for c in "\r\n ") or any(c in host for c in "\r\n /"):
            raise ToolError(f"{tool}: {url!r} contains spaces or line breaks; percent-encode "
                            f"them (a space is %20).")
        return cls(url, scheme, host, port or (443 if scheme == "https" else 80), path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _check_domain(target: _Target, policy: FetchPolicy, *, tool: str) -> None:
    allowed = policy.allow_domains
    if allowed is None:
        return
    host = target.host
    if any(host == d or (target.literal is None and host.endswith("." + d)) for d in allowed):
        return
    raise ToolError(f"{tool}: {host!r} is not on the list of allowed domains "
                    f"({', '.join(allowed)}); fetch a URL on one of those domains instead.")


def _addresses(target: _Target, policy: FetchPolicy, deadline: float,
               *, tool: str) -> list[IPAddress]:
    """Resolve the host and check every address before any connection is made."""
    literal = target.literal
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = _resolve(target, deadline, tool=tool)
        except (socket.gaierror, UnicodeError) as exc:
            raise ToolError(f"{tool}: cannot resolve the host {target.host!r} ({exc}); check "
                            f"the URL.") from None
        # sockaddr[0] may carry a scope ("fe80::1%eth0"); the scope is not part of the address.
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0])
                                       for info in infos))
    if policy.allow_private:
        return addresses
    for ip in addresses:
        reason = blocked_reason(ip)
        if reason and not any(ip in net for net in policy.private_networks if
                              net.version == ip.version):
            # One bad address refuses the whole host: otherwise a name that resolves to both a
            # public and a private address would be a way in.
            via = "" if literal is not None else f" ({target.host!r} resolves to it)"
            raise ToolError(
                f"{tool}: refused to fetch {target.url!r}: {reason}{via}. Only public internet "
                f"addresses can be fetched; a person can allow private ones with "
                f"Capability.web(allow_private=True).")
    return addresses


def _resolve(target: _Target, deadline: float, *, tool: str) -> list[Any]:
    """getaddrinfo, given up at the deadline (the call itself cannot be interrupted)."""
    outcome: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting fetch, which raises it
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="loom-web-resolve", daemon=True).start()
    if not done.wait(max(deadline - time.monotonic(), 0.0)):
        raise ToolError(f"{tool}: resolving the host {target.host!r} did not finish within the "
                        f"time limit; the name server is slow or unreachable.")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return list(outcome[0])


class _Watchdog:
    """Shuts a connection down at the deadline, ending any call that is blocked on it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        # a duplicate descriptor of the same socket: it survives the TLS wrap (which detaches
        # the original object), and shutting it down stops reads on every descriptor
        self._spare: socket.socket | None = sock.dup()
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:  # never shut down a descriptor that close() released (reused number)
            if self._spare is None:
                return
            self.fired = True
            try:
                self._spare.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._spare is not None:
                self._spare.close()
                self._spare = None


def _connect(target: _Target, addresses: Sequence[IPAddress], deadline: float,
             *, tool: str) -> socket.socket:
    """A TCP connection to one of the checked addresses (never to a name resolved again)."""
    errors = []
    for ip in addresses:
        remaining = _remaining(deadline, target, tool=tool)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        # A plain socket, not socket.create_connection: that would resolve the address again.
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect((str(ip), target.port))
            return sock
        except OSError as exc:
            sock.close()
            errors.append(f"{ip}: {exc.strerror or exc}")
    raise ToolError(f"{tool}: cannot connect to {target.host}:{target.port} "
                    f"({'; '.join(errors)}).")


def _get(target: _Target, policy: FetchPolicy, deadline: float,
         *, tool: str) -> tuple[Response, str | None]:
    """One request: the response, and the Location to follow when it is a redirect."""
    sock = _connect(target, _addresses(target, policy, deadline, tool=tool), deadline, tool=tool)
    watchdog = _Watchdog(sock, deadline)
    try:
        sock.settimeout(_remaining(deadline, target, tool=tool))
        if target.scheme == "https":
            # The name, not the IP, is what the certificate must match (and what SNI selects).
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        conn = http.client.HTTPConnection(target.host, target.port)
        conn.sock = sock  # HTTPConnection sends over this socket instead of opening its own
        conn.request("GET", target.path, headers={
            "Host": target.host_header, "User-Agent": policy.user_agent,
            "Accept": policy.accept, "Accept-Encoding": "identity", "Connection": "close"})
        raw = conn.getresponse()
        location = raw.getheader("Location")
        if raw.status in (301, 302, 303, 307, 308) and location:
            return _response(target, raw, b"", False, False), location
        body, truncated, timed_out = _read_body(raw, sock, policy.max_bytes, deadline, watchdog)
        return _response(target, raw, body, truncated, timed_out), None
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or isinstance(exc, TimeoutError | socket.timeout):
            raise ToolError(f"{tool}: {target.url} did not answer within the time limit of "
                            f"{policy.timeout:g} s.") from None
        if isinstance(exc, ssl.SSLError):
            raise ToolError(f"{tool}: TLS failed for {target.host}: "
                            f"{exc.reason or exc}.") from None
        raise ToolError(f"{tool}: fetching {target.url} failed: "
                        f"{type(exc).__name__}: {exc}.") from None
    finally:
        watchdog.close()
        sock.close()


def _read_body(raw: http.client.HTTPResponse, sock: socket.socket, limit: int,
               deadline: float, watchdog: _Watchdog) -> tuple[bytes, bool, bool]:
    """Up to ``limit`` bytes of the body; stops at the deadline instead of waiting for more."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(parts)[:limit], False, True
        sock.settimeout(remaining)
        try:
            data = raw.read1(min(_CHUNK, limit + 1 - size))
        except (OSError, http.client.IncompleteRead) as exc:
            if parts and (watchdog.fired or isinstance(exc, TimeoutError)):
                return b"".join(parts)[:limit], False, True  # cut by the deadline: keep it
            raise
        if not data:
            if watchdog.fired:  # the watchdog cut the body: what arrived is kept, marked
                if not parts:
                    raise TimeoutError
                return b"".join(parts)[:limit], False, True
            break
        parts.append(data)
        size += len(data)
    body = b"".join(parts)
    return body[:limit], size > limit, False


def _response(target: _Target, raw: http.client.HTTPResponse, body: bytes, truncated: bool,
              timed_out: bool) -> Response:
    message = raw.headers
    return Response(url=target.url, status=raw.status, reason=raw.reason,
                    content_type=message.get_content_type() if "Content-Type" in message else "",
                    charset=message.get_content_charset(), body=body, truncated=truncated,
                    timed_out=timed_out)


def _remaining(deadline: float, target: _Target, *, tool: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ToolError(f"{tool}: the time limit ran out before {target.url} answered.")
    return remaining
