"""Fixtures for the provider tests: a fresh loopback fake server per test, and a clean env;
and the request every provider test sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from loom_nb import Message, Model
from loom_nb.models import ModelRequest, ToolDefinition

from .fake_servers import FakeServer

#: Retry options that keep fault-injection tests fast.
FAST = {"retry_base_delay": 0.01, "retry_max_delay": 0.05}

WEATHER = ToolDefinition(name="get_weather", description="Weather of a city.",
                         parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]})

_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY",
        "OPENAI_BASE_URL", "LOOM_MODEL")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the run loop and the per-loop SDK clients are asyncio-based


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real key or endpoint from the developer's shell may leak into a test."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    try:
        yield fake
    finally:
        fake.close()


def free_port() -> int:
    """A loopback port with nothing listening on it (for connection-refused tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(*messages: Message, **settings: Any) -> ModelRequest:
    return ModelRequest(system="Be brief.", messages=messages or (Message.user("Hi"),),
                        tools=(WEATHER,), settings=settings)


async def collect(m: Model, req: ModelRequest) -> list[Any]:
    return [item async for item in m.stream(req)]
