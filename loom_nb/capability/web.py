"""Capability.web: not built yet."""

from __future__ import annotations

from typing import Any

from . import Capability, not_yet


def web_capability(**options: Any) -> Capability:
    not_yet("Capability.web")
