from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_loom_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's LOOM_MODEL must not turn offline tests into real model calls.
    monkeypatch.delenv("LOOM_MODEL", raising=False)
