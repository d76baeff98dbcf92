"""Capability.skills: not built yet."""

from __future__ import annotations

from typing import Any

from . import Capability, not_yet


def skills_capability(path: str, **options: Any) -> Capability:
    not_yet("Capability.skills")
