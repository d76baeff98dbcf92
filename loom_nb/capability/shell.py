"""Capability.shell: not built yet."""

from __future__ import annotations

from typing import Any

from . import Capability, not_yet


def shell_capability(cwd: str, **options: Any) -> Capability:
    not_yet("Capability.shell")
