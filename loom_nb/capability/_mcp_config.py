"""Checking what ``Capability.mcp(...)`` is given: where the server is, and who answers its
requests. Every mistake is a ConfigError that says what to pass instead."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, NotSupportedError
from ._mcp_connection import ServerSpec
from ._mcp_requests import ServerRequests

__all__ = ["server_requests", "server_spec"]

_CAPABILITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def server_requests(name: str, sampling: Any, approve_sampling: Any, elicitation: Any,
                     roots: Any, requires_approval: bool) -> ServerRequests:
    if isinstance(sampling, str):
        from ..models import Model

        sampling = Model.from_string(sampling)
    from ..models import Model

    if not (sampling is None or sampling is False or isinstance(sampling, Model)):
        raise ConfigError(f"Capability.mcp(sampling=...) takes a Model, a 'provider:name' string, "
                          f"None (the run's model) or False (no sampling); got {sampling!r}.")
    if elicitation == "ask":
        raise NotSupportedError(
            "Capability.mcp(elicitation='ask'), pausing the run so that a person answers the "
            "server's question in the approvals view, is not supported yet: the server waits for "
            "the answer inside a tool call, which a paused run cannot keep open. Pass "
            "elicitation=callback (it may ask the person itself, e.g. with input()) instead.")
    for option, value in (("approve_sampling", approve_sampling), ("elicitation", elicitation)):
        if not (value is None or value is False and option == "elicitation" or callable(value)):
            raise ConfigError(f"Capability.mcp({option}=...) takes a function (sync or async); "
                              f"got {value!r}.")
    if roots is not None:
        if isinstance(roots, (str, os.PathLike)):
            raise ConfigError("Capability.mcp(roots=...) takes a list of folders, e.g. "
                              "roots=['./data'].")
        missing = [str(r) for r in roots if not os.path.isdir(os.path.expanduser(r))]
        if missing:
            raise ConfigError(f"Capability.mcp(roots=...): {missing} are not folders; give "
                              f"existing folders the server may work in.")
    return ServerRequests(name, sampling=sampling, approve_sampling=approve_sampling,
                          elicitation=elicitation, roots=roots,
                          requires_approval=requires_approval)


def server_spec(name: str, command: Sequence[str] | None, url: str | None,
                 env: dict[str, str] | None, cwd: str | None,
                 headers: dict[str, str] | None) -> ServerSpec:
    if not isinstance(name, str) or not _CAPABILITY_NAME.match(name):
        raise ConfigError(
            f"Capability.mcp name {name!r}: use a short label of letters, digits, '_' or '-' "
            f"(at most 32, starting with a letter), e.g. Capability.mcp('time', command=[...])."
        )
    if (command is None) == (url is None):
        raise ConfigError(
            "Capability.mcp takes exactly one of command=[program, *args] (a stdio server) or "
            "url='http://host:port/mcp' (a streamable HTTP server)."
        )
    if command is not None:
        if isinstance(command, str) or not command or not all(
                isinstance(part, str) and part for part in command):
            raise ConfigError(
                f"Capability.mcp(command=...) takes a list: the program, then its arguments, e.g. "
                f"command=['uvx', 'mcp-server-time'] (got {command!r})."
            )
        if headers:
            raise ConfigError("Capability.mcp(headers=...) is for url= servers; a command= server "
                              "takes env= instead.")
        return ServerSpec(command=tuple(command), env=dict(env) if env else None,
                          cwd=str(cwd) if cwd is not None else None)
    assert url is not None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") \
            or not urlsplit(url).netloc:
        raise ConfigError(f"Capability.mcp(url=...) takes an http(s) URL, e.g. "
                          f"'http://127.0.0.1:8000/mcp' (got {url!r}).")
    if env or cwd:
        raise ConfigError("Capability.mcp(env=..., cwd=...) are for command= servers; a url= "
                          "server is already running.")
    return ServerSpec(url=url, headers=dict(headers or {}))
