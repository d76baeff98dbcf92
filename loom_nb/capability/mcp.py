"""Capability.mcp: not built yet."""

from __future__ import annotations

from typing import Any

from . import Capability, not_yet


def mcp_capability(name: str, **options: Any) -> Capability:
    not_yet("Capability.mcp")
